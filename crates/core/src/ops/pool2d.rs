//! Max and average pooling (PyTorch's `F.max_pool2d` / `F.avg_pool2d`).

use super::{check_output, check_positive, check_rank};
use crate::backend::{Pool2dParams, Resize2dParams};
use crate::{Error, Result, Tensor};

/// Options of [`Tensor::max_pool2d`] and [`Tensor::avg_pool2d`]. `Default` is a 2×2
/// window with stride 2 (PyTorch's stride defaults to the kernel size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dOptions {
    /// window `[kh, kw]`
    pub kernel: [usize; 2],
    /// step `[sh, sw]`
    pub stride: [usize; 2],
    /// implicit padding on each side (at most half the dilated window), or before the
    /// first cell `[top, left]` when `padding_end` is given
    pub padding: [usize; 2],
    /// padding after the last cell `[bottom, right]` where it differs from `padding`
    /// (PyTorch pads symmetrically only); each side must be smaller than the window
    pub padding_end: Option<[usize; 2]>,
    /// spacing of the window's taps (max pooling only)
    pub dilation: [usize; 2],
    /// round the output size up instead of down
    pub ceil_mode: bool,
    /// TensorFlow/ONNX `SAME_UPPER` padding, computed from the input size: the output
    /// has `⌈input / stride⌉` cells, and an odd padding cell goes at the end. `padding`
    /// and `ceil_mode` are then ignored; padded cells never count (max ignores them,
    /// average divides by the real cells only), as in TensorFlow.
    pub same: bool,
}

impl Default for Pool2dOptions {
    fn default() -> Self {
        Pool2dOptions {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
            padding_end: None,
            dilation: [1, 1],
            ceil_mode: false,
            same: false,
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

/// Output length along one axis with `pad`/`pad_end` cells before/after the input and taps
/// `d` apart, PyTorch's rule (in ceil mode a window may overhang the padded input by less
/// than a stride); `None` when no window fits or the padded input reaches `isize::MAX`
/// (window bounds are signed). Computed in i128: no size can wrap.
fn pool_out_len(
    len: usize,
    k: usize,
    s: usize,
    (pad, pad_end): (usize, usize),
    d: usize,
    ceil: bool,
) -> Option<usize> {
    let [len, k, s, pad, pad_end, d] = [len, k, s, pad, pad_end, d].map(|v| v as i128);
    let span = d.checked_mul(k - 1)? + 1;
    if len + pad + pad_end >= isize::MAX as i128 {
        return None;
    }
    let num = len + pad + pad_end - span + if ceil { s - 1 } else { 0 };
    let mut out = num.div_euclid(s) + 1;
    // A last window that would start inside the end padding is dropped.
    if ceil && (out - 1) * s >= len + pad {
        out -= 1;
    }
    (out > 0).then(|| usize::try_from(out).ok()).flatten()
}

/// TensorFlow's SAME_UPPER padding along one axis: `(before, after)` such that the output
/// has `⌈len / s⌉` cells.
pub(crate) fn same_padding(len: usize, k: usize, s: usize, d: usize) -> Option<(usize, usize)> {
    let out = len.div_ceil(s);
    let span = d.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
    let need = (out.max(1) - 1).checked_mul(s)?.checked_add(span)?;
    let total = need.saturating_sub(len);
    Some((total / 2, total - total / 2))
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
    check_positive(op, "dilation", o.dilation)?;
    let s = x.shape();
    let end = o.padding_end.unwrap_or(o.padding);
    let mut pads = [(o.padding[0], end[0]), (o.padding[1], end[1])];
    for a in 0..2 {
        let span = o.dilation[a]
            .saturating_mul(o.kernel[a] - 1)
            .saturating_add(1);
        if o.same {
            pads[a] = same_padding(s[2 + a], o.kernel[a], o.stride[a], o.dilation[a]).ok_or_else(
                || {
                    Error::op(
                        op,
                        format!(
                            "kernel {:?} with dilation {:?} overflows",
                            o.kernel, o.dilation
                        ),
                    )
                },
            )?;
        } else if o.padding_end.is_none() && o.padding[a].saturating_mul(2) > span {
            return Err(Error::op(
                op,
                format!(
                    "padding {:?} must be at most half the kernel {:?} (dilation {:?})",
                    o.padding, o.kernel, o.dilation
                ),
            ));
        } else if pads[a].0 >= span || pads[a].1 >= span {
            return Err(Error::op(
                op,
                format!(
                    "padding {:?} before and {end:?} after must each be smaller than the kernel {:?} (dilation {:?})",
                    o.padding, o.kernel, o.dilation
                ),
            ));
        }
    }
    let ceil = o.ceil_mode && !o.same;
    let out = |a: usize| {
        pool_out_len(
            s[2 + a],
            o.kernel[a],
            o.stride[a],
            pads[a],
            o.dilation[a],
            ceil,
        )
    };
    match (out(0), out(1)) {
        (Some(oh), Some(ow)) if oh > 0 && ow > 0 && s[2] > 0 && s[3] > 0 => Ok(Pool2dParams {
            planes: s[0] * s[1],
            h: s[2],
            w: s[3],
            oh,
            ow,
            kernel: o.kernel,
            stride: o.stride,
            padding: [pads[0].0, pads[1].0],
            padding_end: [pads[0].1, pads[1].1],
            dilation: o.dilation,
            // TensorFlow's SAME never counts padded cells.
            count_include_pad: count_include_pad && !o.same,
        }),
        _ => Err(Error::op(
            op,
            format!(
                "kernel {:?} (dilation {:?}) is larger than the padded input {s:?} (padding {:?})",
                o.kernel, o.dilation, o.padding
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
            .max_pool2d(&self.f32_storage(), &p)
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
                    .max_pool2d_backward(&x.f32_storage(), &g.f32_storage(), &p)?;
                Ok(vec![Some(Tensor::leaf(s, x.shape().to_vec(), g.device()))])
            },
        ))
    }

    /// Max pooling that also returns each output's arg-max as its flat index within the
    /// input plane (`h · W + w`, as f32), PyTorch's `return_indices=True`: what
    /// [`Tensor::max_unpool2d`] takes. The indices carry no gradient.
    pub fn max_pool2d_with_indices(&self, opts: Pool2dOptions) -> Result<(Tensor, Tensor)> {
        const OP: &str = "max_pool2d_with_indices";
        let p = params(OP, self, &opts, false)?;
        if p.h.saturating_mul(p.w) > 1 << 24 {
            return Err(Error::op(
                OP,
                format!("an input plane of {}×{} has indices past 2^24, which f32 indices cannot hold exactly (input {:?})", p.h, p.w, self.shape()),
            ));
        }
        let shape = vec![self.shape()[0], self.shape()[1], p.oh, p.ow];
        check_output(OP, &[self.shape()], &shape, self.device())?;
        let (y, idx) = self
            .backend()
            .max_pool2d_with_indices(&self.f32_storage(), &p)
            .map_err(|e| e.in_op(OP, &[self.shape()]))?;
        let indices = Tensor::leaf(idx, shape.clone(), self.device());
        let x = self.clone();
        let values = Tensor::from_op(y, shape, self.device(), OP, &[self], move |g| {
            let s = g
                .backend()
                .max_pool2d_backward(&x.f32_storage(), &g.f32_storage(), &p)?;
            Ok(vec![Some(Tensor::leaf(s, x.shape().to_vec(), g.device()))])
        });
        Ok((values, indices))
    }

    /// The partial inverse of max pooling (PyTorch's `F.max_unpool2d`): an `[N, C,
    /// output_size]` tensor of zeros with each value of this `[N, C, h, w]` tensor written
    /// at its index from [`Tensor::max_pool2d_with_indices`]. On the CPU an index outside
    /// the output plane is an error; a GPU skips it (checking would read the indices back).
    pub fn max_unpool2d(&self, indices: &Tensor, output_size: [usize; 2]) -> Result<Tensor> {
        const OP: &str = "max_unpool2d";
        check_rank(OP, "input", self, 4)?;
        super::check_device(OP, &[self, indices])?;
        if indices.shape() != self.shape() {
            return Err(Error::op(
                OP,
                format!(
                    "indices of shape {:?} must match the input {:?}",
                    indices.shape(),
                    self.shape()
                ),
            ));
        }
        let s = self.shape();
        let plane = output_size[0].checked_mul(output_size[1]).filter(|&n| n > 0 && n <= 1 << 24).ok_or_else(|| {
            Error::op(OP, format!("output size {output_size:?} must be non-empty with at most 2^24 cells per plane (input {s:?})"))
        })?;
        // Checking the indices on a GPU would wait for it and read them back on every
        // call; its kernel skips an index outside the plane instead.
        if !self.device().is_gpu() {
            let host = indices.to_vec()?;
            let bad = host
                .iter()
                .position(|&i| !(i >= 0.0 && (i as usize) < plane && i.fract() == 0.0));
            if let Some(q) = bad {
                return Err(Error::op(
                    OP,
                    format!("index {} at position {q} is outside the {output_size:?} output plane (input {s:?})", host[q]),
                ));
            }
        }
        let out_shape = [s[0], s[1], output_size[0], output_size[1]];
        check_output(OP, &[s, indices.shape()], &out_shape, self.device())?;
        let p = Resize2dParams {
            planes: s[0] * s[1],
            h: s[2],
            w: s[3],
            oh: output_size[0],
            ow: output_size[1],
        };
        let y = self
            .backend()
            .max_unpool2d(&self.f32_storage(), &indices.f32_storage(), &p)
            .map_err(|e| e.in_op(OP, &[s, indices.shape()]))?;
        let idx = indices.detach();
        let in_shape = s.to_vec();
        Ok(Tensor::from_op(
            y,
            vec![s[0], s[1], output_size[0], output_size[1]],
            self.device(),
            OP,
            &[self],
            move |g| {
                let s =
                    g.backend()
                        .max_unpool2d_backward(&g.f32_storage(), &idx.f32_storage(), &p)?;
                Ok(vec![Some(Tensor::leaf(s, in_shape.clone(), g.device()))])
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
        if opts.dilation != [1, 1] {
            return Err(Error::op(
                "avg_pool2d",
                format!(
                    "average pooling has no dilation (as in PyTorch), got {:?}",
                    opts.dilation
                ),
            ));
        }
        let p = params("avg_pool2d", self, &opts, count_include_pad)?;
        let shape = vec![self.shape()[0], self.shape()[1], p.oh, p.ow];
        check_output("avg_pool2d", &[self.shape()], &shape, self.device())?;
        let s = self
            .backend()
            .avg_pool2d(&self.f32_storage(), &p)
            .map_err(|e| e.in_op("avg_pool2d", &[self.shape()]))?;
        let in_shape = self.shape().to_vec();
        Ok(Tensor::from_op(
            s,
            shape,
            self.device(),
            "avg_pool2d",
            &[self],
            move |g| {
                let s = g.backend().avg_pool2d_backward(&g.f32_storage(), &p)?;
                Ok(vec![Some(Tensor::leaf(s, in_shape.clone(), g.device()))])
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{pool_out_len, same_padding};

    #[test]
    fn ceil_mode_drops_windows_starting_in_padding() {
        assert_eq!(pool_out_len(5, 2, 2, (0, 0), 1, false), Some(2));
        assert_eq!(pool_out_len(5, 2, 2, (0, 0), 1, true), Some(3));
        assert_eq!(pool_out_len(6, 3, 2, (1, 1), 1, true), Some(4));
        assert_eq!(pool_out_len(4, 2, 2, (1, 1), 1, true), Some(3));
        assert_eq!(pool_out_len(1, 3, 1, (0, 0), 1, false), None);
    }

    #[test]
    fn dilation_widens_the_window_and_sizes_never_wrap() {
        // PyTorch: floor((len + 2p − d(k − 1) − 1) / s) + 1.
        assert_eq!(pool_out_len(10, 3, 1, (0, 0), 2, false), Some(6));
        assert_eq!(pool_out_len(10, 3, 2, (2, 2), 3, true), Some(5));
        assert_eq!(pool_out_len(4, 3, 1, (0, 0), 2, false), None);
        assert_eq!(pool_out_len(8, (1 << 62) + 1, 1, (0, 0), 1, false), None);
        assert_eq!(pool_out_len(8, 3, 1, (0, 0), 1 << 63, false), None);
        assert_eq!(
            pool_out_len(8, usize::MAX, 1, (0, 0), usize::MAX, true),
            None
        );
        assert_eq!(pool_out_len(usize::MAX, 1, 1, (1, 0), 1, false), None);
        // Ceil mode lets the one window overhang the input by less than a stride.
        assert_eq!(pool_out_len(3, 4, 2, (0, 0), 1, true), Some(1));
        assert_eq!(pool_out_len(3, 4, 2, (0, 0), 1, false), None);
    }

    #[test]
    fn same_padding_puts_the_odd_cell_at_the_end() {
        // TensorFlow: out = ceil(len / s), total = (out − 1)s + k − len.
        assert_eq!(same_padding(7, 3, 1, 1), Some((1, 1)));
        assert_eq!(same_padding(8, 2, 1, 1), Some((0, 1)));
        assert_eq!(same_padding(8, 3, 2, 1), Some((0, 1)));
        assert_eq!(same_padding(7, 3, 2, 1), Some((1, 1)));
        assert_eq!(same_padding(5, 1, 2, 1), Some((0, 0)));
        assert_eq!(same_padding(13, 5, 1, 2), Some((4, 4)));
    }

    #[test]
    fn lengths_that_would_overflow_are_none_and_huge_ones_exact() {
        let k = (1 << 62) + 1;
        let p = |v: usize| (v, v);
        assert_eq!(pool_out_len(4, k, 1, p(1 << 61), 1, false), Some(4));
        assert_eq!(pool_out_len(4, k, k, p(1 << 61), 1, true), Some(1));
        assert_eq!(
            pool_out_len(4, usize::MAX, 1, p(usize::MAX / 2), 1, false),
            None
        );
        assert_eq!(pool_out_len(4, 2, usize::MAX, p(1), 1, true), Some(1));
        assert_eq!(pool_out_len(4, 4, 1, p(1 << 62), 1, false), None);
    }
}
