//! Max and average pooling (PyTorch's `F.max_pool2d` / `F.avg_pool2d`).

use super::{check_output, check_positive, check_rank};
use crate::backend::Pool2dParams;
use crate::{Error, Result, Tensor};

/// Options of [`Tensor::max_pool2d`] and [`Tensor::avg_pool2d`]. `Default` is a 2×2
/// window with stride 2 (PyTorch's stride defaults to the kernel size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dOptions {
    /// window `[kh, kw]`
    pub kernel: [usize; 2],
    /// step `[sh, sw]`
    pub stride: [usize; 2],
    /// implicit padding on each side (at most half the window)
    pub padding: [usize; 2],
    /// round the output size up instead of down
    pub ceil_mode: bool,
}

impl Default for Pool2dOptions {
    fn default() -> Self {
        Pool2dOptions {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
            ceil_mode: false,
        }
    }
}

impl Pool2dOptions {
    /// A `k×k` window with stride `k`, the common "halve the image" pool.
    pub fn square(k: usize) -> Self {
        Pool2dOptions {
            kernel: [k, k],
            stride: [k, k],
            ..Default::default()
        }
    }
}

/// Output length along one axis; `None` when the window does not fit, or the padded
/// input overflows (it must stay below `isize::MAX`, as window bounds are signed).
fn pool_out_len(len: usize, k: usize, s: usize, p: usize, ceil: bool) -> Option<usize> {
    let (padded, _) = crate::shape::conv_extents(len, k.max(1), p, 1)?;
    let span = padded.checked_sub(k)?;
    let mut out = if ceil { span.div_ceil(s) } else { span / s } + 1;
    // A last window that would start inside the right padding is dropped.
    if ceil && (out - 1).checked_mul(s)? >= len + p {
        out -= 1;
    }
    Some(out)
}

fn params(
    op: &'static str,
    x: &Tensor,
    o: &Pool2dOptions,
    count_include_pad: bool,
) -> Result<Pool2dParams> {
    check_rank(op, "input", x, 4)?;
    check_positive(op, "kernel", o.kernel)?;
    check_positive(op, "stride", o.stride)?;
    if o.padding[0] > o.kernel[0] / 2 || o.padding[1] > o.kernel[1] / 2 {
        return Err(Error::op(
            op,
            format!(
                "padding {:?} must be at most half the kernel {:?}",
                o.padding, o.kernel
            ),
        ));
    }
    let s = x.shape();
    let oh = pool_out_len(s[2], o.kernel[0], o.stride[0], o.padding[0], o.ceil_mode);
    let ow = pool_out_len(s[3], o.kernel[1], o.stride[1], o.padding[1], o.ceil_mode);
    match (oh, ow) {
        (Some(oh), Some(ow)) if oh > 0 && ow > 0 && s[2] > 0 && s[3] > 0 => Ok(Pool2dParams {
            planes: s[0] * s[1],
            h: s[2],
            w: s[3],
            oh,
            ow,
            kernel: o.kernel,
            stride: o.stride,
            padding: o.padding,
            count_include_pad,
        }),
        _ => Err(Error::op(
            op,
            format!(
                "kernel {:?} is larger than the padded input {s:?} (padding {:?})",
                o.kernel, o.padding
            ),
        )),
    }
}

impl Tensor {
    /// Max pooling over `[N, C, H, W]`; the gradient goes to each window's maximum.
    pub fn max_pool2d(&self, opts: Pool2dOptions) -> Result<Tensor> {
        let p = params("max_pool2d", self, &opts, false)?;
        let shape = vec![self.shape()[0], self.shape()[1], p.oh, p.ow];
        check_output("max_pool2d", &[self.shape()], &shape, self.device())?;
        let s = self
            .backend()
            .max_pool2d(&self.storage(), &p)
            .map_err(|e| e.in_op("max_pool2d", &[self.shape()]))?;
        let x = self.clone();
        Ok(Tensor::from_op(
            s,
            shape,
            self.device(),
            "max_pool2d",
            &[self],
            move |g| {
                let s = g
                    .backend()
                    .max_pool2d_backward(&x.storage(), &g.storage(), &p)?;
                Ok(vec![Some(Tensor::leaf(s, x.shape().to_vec(), g.device()))])
            },
        ))
    }

    /// Average pooling with PyTorch's default `count_include_pad = true`.
    pub fn avg_pool2d(&self, opts: Pool2dOptions) -> Result<Tensor> {
        self.avg_pool2d_with(opts, true)
    }

    /// Average pooling; `count_include_pad` chooses whether padded cells count in the
    /// divisor.
    pub fn avg_pool2d_with(&self, opts: Pool2dOptions, count_include_pad: bool) -> Result<Tensor> {
        let p = params("avg_pool2d", self, &opts, count_include_pad)?;
        let shape = vec![self.shape()[0], self.shape()[1], p.oh, p.ow];
        check_output("avg_pool2d", &[self.shape()], &shape, self.device())?;
        let s = self
            .backend()
            .avg_pool2d(&self.storage(), &p)
            .map_err(|e| e.in_op("avg_pool2d", &[self.shape()]))?;
        let in_shape = self.shape().to_vec();
        Ok(Tensor::from_op(
            s,
            shape,
            self.device(),
            "avg_pool2d",
            &[self],
            move |g| {
                let s = g.backend().avg_pool2d_backward(&g.storage(), &p)?;
                Ok(vec![Some(Tensor::leaf(s, in_shape.clone(), g.device()))])
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::pool_out_len;

    #[test]
    fn ceil_mode_drops_windows_starting_in_padding() {
        assert_eq!(pool_out_len(5, 2, 2, 0, false), Some(2));
        assert_eq!(pool_out_len(5, 2, 2, 0, true), Some(3));
        assert_eq!(pool_out_len(6, 3, 2, 1, true), Some(4));
        assert_eq!(pool_out_len(4, 2, 2, 1, true), Some(3));
        assert_eq!(pool_out_len(1, 3, 1, 0, false), None);
    }

    #[test]
    fn lengths_that_would_overflow_are_none_and_huge_ones_exact() {
        let k = (1 << 62) + 1;
        assert_eq!(pool_out_len(4, k, 1, 1 << 61, false), Some(4));
        assert_eq!(pool_out_len(4, k, k, 1 << 61, true), Some(1));
        assert_eq!(pool_out_len(4, usize::MAX, 1, usize::MAX / 2, false), None);
        assert_eq!(pool_out_len(4, 2, usize::MAX, 1, true), Some(1));
        assert_eq!(pool_out_len(4, 4, 1, 1 << 62, false), None);
    }
}
