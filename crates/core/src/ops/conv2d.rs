//! 2-D convolution (PyTorch's `F.conv2d`): NCHW input, `[out, in/groups, kh, kw]` weight.

use super::pool2d::same_padding;
use super::{check_device, check_dtypes, check_positive, check_rank};
use crate::backend::{Backend, Conv2dParams, Storage};
use crate::shape::conv_out_len;
use crate::{Error, Result, Tensor};

/// Options of [`Tensor::conv2d`]; `Default` gives PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// step of the window `[sh, sw]`
    pub stride: [usize; 2],
    /// zeros added on each side `[ph, pw]`
    pub padding: [usize; 2],
    /// spacing of kernel taps `[dh, dw]`
    pub dilation: [usize; 2],
    /// channel groups (`groups == in_channels` is depthwise)
    pub groups: usize,
    /// TensorFlow/ONNX `SAME_UPPER` padding, computed from the input size (`padding` is
    /// then ignored): the output has `⌈input / stride⌉` cells; when the padding is odd
    /// the extra cell goes at the end (PyTorch's `padding='same'` at stride 1, and
    /// TensorFlow's at any stride).
    pub same: bool,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
            same: false,
        }
    }
}

/// Checks the parts shared by conv2d and conv_transpose2d.
pub(crate) fn check_conv_common(
    op: &'static str,
    x: &Tensor,
    w: &Tensor,
    stride: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> Result<()> {
    check_device(op, &[x, w])?;
    check_dtypes(op, &[x, w])?;
    check_rank(op, "input", x, 4)?;
    check_rank(op, "weight", w, 4)?;
    check_positive(op, "stride", stride)?;
    check_positive(op, "dilation", dilation)?;
    check_positive(op, "kernel size", [w.shape()[2], w.shape()[3]])?;
    if groups == 0 {
        return Err(Error::op(op, "groups must be positive, got 0"));
    }
    Ok(())
}

/// Fails unless `bias` is absent or a `[c]` tensor on `x`'s device.
pub(crate) fn check_bias(
    op: &'static str,
    x: &Tensor,
    bias: Option<&Tensor>,
    c: usize,
) -> Result<()> {
    let Some(b) = bias else { return Ok(()) };
    check_device(op, &[x, b])?;
    check_dtypes(op, &[x, b])?;
    if b.shape() != [c] {
        return Err(Error::op(
            op,
            format!("bias must have shape [{c}], got {:?}", b.shape()),
        ));
    }
    Ok(())
}

/// One graph node for a convolution and its optional `[c]` bias (checked by
/// [`check_bias`]): `out` is the backend's result with the bias already added (no node
/// yet). A separate add node would keep the pre-bias tensor alive until backward, a third
/// of a conv layer's activation memory. `grad_x(backend, g, w)` and `grad_w(backend, g,
/// x)` compute the two gradients from the output's; the input is kept only when the weight
/// needs a gradient and the weight only when the input does, so a frozen network (style
/// transfer) keeps no conv inputs for backward.
pub(crate) fn conv_node(
    op: &'static str,
    out: Tensor,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    grad_x: impl Fn(&dyn Backend, &Storage, &Storage) -> Result<Storage> + Send + Sync + 'static,
    grad_w: impl Fn(&dyn Backend, &Storage, &Storage) -> Result<Storage> + Send + Sync + 'static,
) -> Result<Tensor> {
    let mut inputs = vec![x, weight];
    inputs.extend(bias);
    let bias_grad = bias.map(Tensor::tracks_grad);
    let x_saved = weight.tracks_grad().then(|| x.detach());
    let w_saved = x.tracks_grad().then(|| weight.detach());
    let (x_shape, w_shape) = (x.shape().to_vec(), weight.shape().to_vec());
    Ok(Tensor::from_op_as(
        crate::autocast::gemm_dtype(&inputs),
        out.f32_storage(),
        out.shape().to_vec(),
        out.device(),
        op,
        &inputs,
        move |g| {
            let leaf = |s, shape: &[usize]| Tensor::leaf(s, shape.to_vec(), g.device());
            let gx = w_saved
                .as_ref()
                .map(|w| grad_x(g.backend(), &g.f32_storage(), &w.f32_storage()))
                .transpose()?
                .map(|s| leaf(s, &x_shape));
            let gw = x_saved
                .as_ref()
                .map(|x| grad_w(g.backend(), &g.f32_storage(), &x.f32_storage()))
                .transpose()?
                .map(|s| leaf(s, &w_shape));
            let mut all = vec![gx, gw];
            if let Some(track) = bias_grad {
                let dims: Vec<isize> = (0..g.shape().len() as isize).filter(|&d| d != 1).collect();
                all.push(track.then(|| g.sum_dims(&dims, false)).transpose()?);
            }
            Ok(all)
        },
    ))
}

impl Tensor {
    /// `conv2d` with SAME padding: symmetric padding where the total is even, else the
    /// odd cell padded explicitly at the end first.
    fn conv2d_same(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        opts: Conv2dOptions,
    ) -> Result<Tensor> {
        let (x, w) = (self.shape(), weight.shape());
        let mut pads = [(0, 0); 2];
        for (a, pad) in pads.iter_mut().enumerate() {
            *pad = same_padding(x[2 + a], w[2 + a], opts.stride[a], opts.dilation[a]).ok_or_else(
                || {
                    Error::op(
                        "conv2d",
                        format!(
                            "kernel {:?} with dilation {:?} overflows (input {x:?})",
                            [w[2], w[3]],
                            opts.dilation
                        ),
                    )
                },
            )?;
        }
        let sym = Conv2dOptions {
            padding: [pads[0].0, pads[1].0],
            same: false,
            ..opts
        };
        let (extra_h, extra_w) = (pads[0].1 - pads[0].0, pads[1].1 - pads[1].0);
        if extra_h == 0 && extra_w == 0 {
            return self.conv2d(weight, bias, sym);
        }
        self.pad(&[0, extra_w, 0, extra_h], 0.0)?
            .conv2d(weight, bias, sym)
    }

    /// 2-D convolution of an `[N, C, H, W]` input with an `[O, C/groups, kh, kw]` weight
    /// and an optional `[O]` bias.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        opts: Conv2dOptions,
    ) -> Result<Tensor> {
        const OP: &str = "conv2d";
        check_conv_common(OP, self, weight, opts.stride, opts.dilation, opts.groups)?;
        if opts.same {
            return self.conv2d_same(weight, bias, opts);
        }
        let (x, w) = (self.shape(), weight.shape());
        let g = opts.groups;
        if x[1] % g != 0 || w[0] % g != 0 {
            return Err(Error::op(
                OP,
                format!("groups={g} must divide input channels {} and output channels {} (input {x:?}, weight {w:?})", x[1], w[0]),
            ));
        }
        if w[1].checked_mul(g) != Some(x[1]) {
            return Err(Error::op(
                OP,
                format!("weight {w:?} expects {} input channels (in/groups={} × groups={g}), input {x:?} has {}", w[1] as u128 * g as u128, w[1], x[1]),
            ));
        }
        super::check_extents(OP, [x[2], x[3]], [w[2], w[3]], opts.padding, opts.dilation)?;
        let out = |axis: usize| {
            conv_out_len(
                x[2 + axis],
                w[2 + axis],
                opts.stride[axis],
                opts.padding[axis],
                opts.dilation[axis],
            )
        };
        let (Some(oh), Some(ow)) = (out(0), out(1)) else {
            return Err(Error::op(
                OP,
                format!(
                    "kernel {:?} with dilation {:?} is larger than the padded input {:?} (input {x:?}, padding {:?})",
                    [w[2], w[3]],
                    opts.dilation,
                    [x[2] + 2 * opts.padding[0], x[3] + 2 * opts.padding[1]],
                    opts.padding
                ),
            ));
        };
        super::check_output(OP, &[x, w], &[x[0], w[0], oh, ow], self.device())?;
        let p = Conv2dParams {
            n: x[0],
            c_in: x[1],
            h: x[2],
            w: x[3],
            c_out: w[0],
            oh,
            ow,
            kernel: [w[2], w[3]],
            stride: opts.stride,
            padding: opts.padding,
            dilation: opts.dilation,
            groups: g,
        }
        .normalized();
        check_bias(OP, self, bias, p.c_out)?;
        let s = self
            .backend()
            .conv2d(
                &self.f32_storage(),
                &weight.f32_storage(),
                bias.map(|b| b.f32_storage()).as_ref(),
                &p,
            )
            .map_err(|e| e.in_op(OP, &[self.shape(), weight.shape()]))?;
        let y = Tensor::leaf(s, vec![p.n, p.c_out, oh, ow], self.device());
        conv_node(
            OP,
            y,
            self,
            weight,
            bias,
            move |be, g, w| be.conv2d_grad_input(g, w, &p),
            move |be, g, x| be.conv2d_grad_weight(x, g, &p),
        )
    }
}
