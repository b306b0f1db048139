//! Transposed 2-D convolution (PyTorch's `F.conv_transpose2d`): weight `[in, out/groups,
//! kh, kw]`. Its forward is the input gradient of the conv2d it transposes, and its
//! gradients are that conv2d's forward and weight gradient, so it shares those kernels.

use super::conv2d::{check_bias, check_conv_common, conv_node};
use crate::backend::{BinaryOp, Conv2dParams};
use crate::{Error, Result, Tensor};

/// Options of [`Tensor::conv_transpose2d`]; `Default` gives PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dOptions {
    /// stride `[sh, sw]`
    pub stride: [usize; 2],
    /// implicit padding removed from each side of the output `[ph, pw]`
    pub padding: [usize; 2],
    /// extra rows/columns added to one side of the output (< max(stride, dilation))
    pub output_padding: [usize; 2],
    /// spacing of kernel taps
    pub dilation: [usize; 2],
    /// channel groups
    pub groups: usize,
}

impl Default for ConvTranspose2dOptions {
    fn default() -> Self {
        ConvTranspose2dOptions {
            stride: [1, 1],
            padding: [0, 0],
            output_padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl Tensor {
    /// Transposed convolution of an `[N, C_in, H, W]` input with a `[C_in, C_out/groups,
    /// kh, kw]` weight and an optional `[C_out]` bias.
    pub fn conv_transpose2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        opts: ConvTranspose2dOptions,
    ) -> Result<Tensor> {
        const OP: &str = "conv_transpose2d";
        check_conv_common(OP, self, weight, opts.stride, opts.dilation, opts.groups)?;
        let (x, w) = (self.shape(), weight.shape());
        let g = opts.groups;
        if x[1] % g != 0 || w[0] != x[1] {
            return Err(Error::op(
                OP,
                format!("weight {w:?} must have the input's {} channels first, divisible by groups={g} (input {x:?})", x[1]),
            ));
        }
        for a in 0..2 {
            if opts.output_padding[a] >= opts.stride[a].max(opts.dilation[a]) {
                return Err(Error::op(
                    OP,
                    format!(
                        "output_padding {:?} must be smaller than max(stride, dilation) = {:?}",
                        opts.output_padding,
                        [
                            opts.stride[0].max(opts.dilation[0]),
                            opts.stride[1].max(opts.dilation[1])
                        ]
                    ),
                ));
            }
        }
        let c_out = w[1].checked_mul(g).ok_or_else(|| {
            Error::op(
                OP,
                format!(
                    "weight {w:?} with groups={g} has more output channels than a usize counts"
                ),
            )
        })?;
        // (x − 1)·stride + dilation·(k − 1) + output_padding + 1 − 2·padding, checked: the
        // uncropped length must not overflow (nor pass isize::MAX, like a conv's extents).
        let full_len = |a: usize| -> Option<usize> {
            (x[2 + a] - 1)
                .checked_mul(opts.stride[a])?
                .checked_add(opts.dilation[a].checked_mul(w[2 + a] - 1)?)?
                .checked_add(opts.output_padding[a] + 1)
                .filter(|&v| v <= isize::MAX as usize)
        };
        if x[2] > 0 && x[3] > 0 && (full_len(0).is_none() || full_len(1).is_none()) {
            return Err(Error::op(
                OP,
                format!(
                    "input {x:?} with weight {w:?}, stride {:?} and dilation {:?} gives an output longer than an isize counts",
                    opts.stride, opts.dilation
                ),
            ));
        }
        let out_len = |a: usize| -> Option<usize> {
            full_len(a)?
                .checked_sub(opts.padding[a].checked_mul(2)?)
                .filter(|&v| v > 0)
        };
        let (Some(oh), Some(ow)) = (if x[2] == 0 || x[3] == 0 {
            (None, None)
        } else {
            (out_len(0), out_len(1))
        }) else {
            return Err(Error::op(
                OP,
                format!(
                    "input {x:?} with weight {w:?} and padding {:?} leaves an empty output",
                    opts.padding
                ),
            ));
        };
        super::check_output(OP, &[x, w], &[x[0], c_out, oh, ow], self.device())?;
        // The conv2d whose input gradient this is: it maps [N, C_out, oh, ow] to x's shape.
        let p = Conv2dParams {
            n: x[0],
            c_in: c_out,
            h: oh,
            w: ow,
            c_out: x[1],
            oh: x[2],
            ow: x[3],
            kernel: [w[2], w[3]],
            stride: opts.stride,
            padding: opts.padding,
            dilation: opts.dilation,
            groups: g,
        }
        .normalized();
        check_bias(OP, self, bias, p.c_in)?;
        let s = self
            .backend()
            .conv2d_grad_input(&self.f32_storage(), &weight.f32_storage(), &p)
            .map_err(|e| e.in_op(OP, &[self.shape(), weight.shape()]))?;
        let mut y = Tensor::leaf(s, vec![p.n, p.c_in, oh, ow], self.device());
        if let Some(b) = bias {
            y = y.zip_raw(&b.reshape(&[1, p.c_in, 1, 1])?, BinaryOp::Add, OP)?;
        }
        conv_node(
            OP,
            y,
            self,
            weight,
            bias,
            move |be, g, w| be.conv2d(g, w, None, &p),
            move |be, g, x| be.conv2d_grad_weight(g, x, &p),
        )
    }
}
