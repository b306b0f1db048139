//! 1-D and 3-D pooling and resizing (PyTorch's `F.max_pool1d/3d`, `F.avg_pool1d/3d`,
//! `F.adaptive_avg_pool1d/3d`, `F.interpolate(mode='nearest'|'linear'|'trilinear')`) on the
//! 2-D kernels. A 1-D window is a 2-D one of height 1. A 3-D window is separable: pooling the
//! (H, W) window of every depth slice, then the depth window of the result (viewed as
//! `[N·C, 1, D, OH·OW]` with a `kd × 1` window), gives the maximum, or the mean with the
//! product of the two divisors, of the whole box, padding and ceil mode included. Both
//! steps are views of contiguous data: no copies besides the two pooled results. Linear
//! and trilinear resizing are separable the same way (the weights are products of 1-D
//! ones), and an axis kept at its size by the bilinear kernel is copied exactly: its source
//! coordinate is the output's own, with either `align_corners`.

use super::check_rank;
use crate::ops::Pool2dOptions;
use crate::{Error, Result, Tensor};

/// Options of the 1-D pools; `Default` is a window of 2 with stride 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool1dOptions {
    /// window
    pub kernel: usize,
    /// step
    pub stride: usize,
    /// implicit padding on each side (at most half the window)
    pub padding: usize,
    /// spacing of the window's taps (max pooling only)
    pub dilation: usize,
    /// round the output size up instead of down
    pub ceil_mode: bool,
}

impl Default for Pool1dOptions {
    fn default() -> Self {
        Pool1dOptions {
            kernel: 2,
            stride: 2,
            padding: 0,
            dilation: 1,
            ceil_mode: false,
        }
    }
}

/// Options of the 3-D pools, per axis `[d, h, w]`; `Default` is a 2×2×2 window with
/// stride 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool3dOptions {
    /// window
    pub kernel: [usize; 3],
    /// step
    pub stride: [usize; 3],
    /// implicit padding on each side (at most half the window)
    pub padding: [usize; 3],
    /// spacing of the window's taps (max pooling only)
    pub dilation: [usize; 3],
    /// round the output size up instead of down
    pub ceil_mode: bool,
}

impl Default for Pool3dOptions {
    fn default() -> Self {
        Pool3dOptions {
            kernel: [2; 3],
            stride: [2; 3],
            padding: [0; 3],
            dilation: [1; 3],
            ceil_mode: false,
        }
    }
}

impl Pool1dOptions {
    fn as_2d(&self) -> Pool2dOptions {
        Pool2dOptions {
            kernel: [1, self.kernel],
            stride: [1, self.stride],
            padding: [0, self.padding],
            dilation: [1, self.dilation],
            ceil_mode: self.ceil_mode,
            ..Default::default()
        }
    }
}

impl Pool3dOptions {
    /// The (H, W) window, then the depth window over `[D, OH·OW]`.
    fn as_2d(&self) -> (Pool2dOptions, Pool2dOptions) {
        let hw = Pool2dOptions {
            kernel: [self.kernel[1], self.kernel[2]],
            stride: [self.stride[1], self.stride[2]],
            padding: [self.padding[1], self.padding[2]],
            dilation: [self.dilation[1], self.dilation[2]],
            ceil_mode: self.ceil_mode,
            ..Default::default()
        };
        let depth = Pool2dOptions {
            kernel: [self.kernel[0], 1],
            stride: [self.stride[0], 1],
            padding: [self.padding[0], 0],
            dilation: [self.dilation[0], 1],
            ceil_mode: self.ceil_mode,
            ..Default::default()
        };
        (hw, depth)
    }
}

/// Re-labels an error of the 2-D op that runs a 1-D or 3-D one with the op the user called.
fn as_op<'a>(op: &'static str, x: &'a Tensor) -> impl FnOnce(Error) -> Error + 'a {
    move |e| match e {
        Error::Op { msg, .. } => {
            Error::op(op, format!("{msg} (as 2-D pooling; input {:?})", x.shape()))
        }
        e => e,
    }
}

/// Runs a 2-D op on `[N, C, L]` seen as `[N, C, 1, L]`.
fn on_rows(
    op: &'static str,
    x: &Tensor,
    f: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    check_rank(op, "input", x, 3)?;
    f(&x.unsqueeze(2)?).map_err(as_op(op, x))?.squeeze(2)
}

/// Runs `hw` on every depth slice of `[N, C, D, H, W]` (as `[N, C·D, H, W]`) and `depth` on
/// the result's depth axis (as `[N·C, 1, D, OH·OW]`).
fn separable(
    op: &'static str,
    x: &Tensor,
    hw: impl FnOnce(&Tensor) -> Result<Tensor>,
    depth: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    check_rank(op, "input", x, 5)?;
    let s = x.shape();
    let (n, c, d) = (s[0], s[1], s[2]);
    let y = hw(&x.reshape(&[n, c * d, s[3], s[4]])?).map_err(as_op(op, x))?;
    let (oh, ow) = (y.shape()[2], y.shape()[3]);
    let z = depth(&y.reshape(&[n * c, 1, d, oh * ow])?).map_err(as_op(op, x))?;
    z.reshape(&[n, c, z.shape()[2], oh, ow])
}

impl Tensor {
    /// Max pooling over `[N, C, L]`.
    pub fn max_pool1d(&self, opts: Pool1dOptions) -> Result<Tensor> {
        on_rows("max_pool1d", self, |x| x.max_pool2d(opts.as_2d()))
    }

    /// Average pooling over `[N, C, L]`; `count_include_pad` as PyTorch's.
    pub fn avg_pool1d(&self, opts: Pool1dOptions, count_include_pad: bool) -> Result<Tensor> {
        on_rows("avg_pool1d", self, |x| {
            x.avg_pool2d_with(opts.as_2d(), count_include_pad)
        })
    }

    /// Adaptive average pooling of `[N, C, L]` to `[N, C, size]`.
    pub fn adaptive_avg_pool1d(&self, size: usize) -> Result<Tensor> {
        on_rows("adaptive_avg_pool1d", self, |x| {
            x.adaptive_avg_pool2d([1, size])
        })
    }

    /// Nearest-neighbour resizing of `[N, C, L]` to `[N, C, size]`.
    pub fn upsample_nearest1d(&self, size: usize) -> Result<Tensor> {
        on_rows("upsample_nearest1d", self, |x| {
            x.upsample_nearest2d([1, size])
        })
    }

    /// Max pooling over `[N, C, D, H, W]`.
    pub fn max_pool3d(&self, opts: Pool3dOptions) -> Result<Tensor> {
        let (hw, depth) = opts.as_2d();
        separable(
            "max_pool3d",
            self,
            |x| x.max_pool2d(hw),
            |x| x.max_pool2d(depth),
        )
    }

    /// Average pooling over `[N, C, D, H, W]`; `count_include_pad` as PyTorch's.
    pub fn avg_pool3d(&self, opts: Pool3dOptions, count_include_pad: bool) -> Result<Tensor> {
        let (hw, depth) = opts.as_2d();
        separable(
            "avg_pool3d",
            self,
            |x| x.avg_pool2d_with(hw, count_include_pad),
            |x| x.avg_pool2d_with(depth, count_include_pad),
        )
    }

    /// Adaptive average pooling of `[N, C, D, H, W]` to `[N, C, size…]`.
    pub fn adaptive_avg_pool3d(&self, size: [usize; 3]) -> Result<Tensor> {
        separable(
            "adaptive_avg_pool3d",
            self,
            |x| x.adaptive_avg_pool2d([size[1], size[2]]),
            |x| x.adaptive_avg_pool2d([size[0], x.shape()[3]]),
        )
    }

    /// Nearest-neighbour resizing of `[N, C, D, H, W]` to `[N, C, size…]`.
    pub fn upsample_nearest3d(&self, size: [usize; 3]) -> Result<Tensor> {
        separable(
            "upsample_nearest3d",
            self,
            |x| x.upsample_nearest2d([size[1], size[2]]),
            |x| x.upsample_nearest2d([size[0], x.shape()[3]]),
        )
    }

    /// Linear resizing of `[N, C, L]` to `[N, C, size]`, as
    /// `F.interpolate(x, size=size, mode='linear', align_corners=align_corners)`.
    pub fn interpolate_linear(&self, size: usize, align_corners: bool) -> Result<Tensor> {
        on_rows("interpolate_linear", self, |x| {
            x.interpolate_bilinear([1, size], align_corners)
        })
    }

    /// Trilinear resizing of `[N, C, D, H, W]` to `[N, C, size…]`, as
    /// `F.interpolate(x, size=size, mode='trilinear', align_corners=align_corners)`.
    pub fn interpolate_trilinear(&self, size: [usize; 3], align_corners: bool) -> Result<Tensor> {
        separable(
            "interpolate_trilinear",
            self,
            |x| x.interpolate_bilinear([size[1], size[2]], align_corners),
            |x| x.interpolate_bilinear([size[0], x.shape()[3]], align_corners),
        )
    }
}
