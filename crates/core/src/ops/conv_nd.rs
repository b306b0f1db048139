//! 1-D and 3-D convolution and transposed convolution (PyTorch's `F.conv1d`, `F.conv3d`,
//! `F.conv_transpose1d`, `F.conv_transpose3d`), on the 2-D kernels rather than a kernel
//! per rank. A 1-D convolution is a 2-D one of height 1 (a view, no copy). A 3-D one
//! gathers its `kd` depth taps into the channels (each output depth slice becomes an image
//! of `kd · C` channels) and runs ONE 2-D convolution over all of them, so the implicit
//! GEMM sees `K = kd · kh · kw · C / groups`; the transposed form runs one transposed 2-D
//! convolution per input depth slice (all in one launch) giving `kd` output slices each,
//! then adds them into place along the depth. Gradients follow through the composition.
//! A backend may run a 3-D convolution as one op of its own instead
//! ([`crate::backend::Backend::runs_conv3d`]): the CPU does for stride 1 (or strides
//! that never step: one output along their axis) with enough channels, on its wide grid
//! of padded depth slices (`cpu/conv_shifted.rs`), with no depth gather.

use super::conv2d::{check_bias, conv_node};
use super::{check_device, check_dtypes, check_rank, ConvTranspose2dOptions};
use crate::backend::{Conv3dParams, StridedView};
use crate::ops::Conv2dOptions;
use crate::shape::conv_out_len;
use crate::{Error, Result, Tensor};

/// The depth taps of a 3-D convolution over a depth-padded input.
#[derive(Clone, Copy)]
struct Taps {
    kd: usize,
    dilation: usize,
    stride: usize,
    /// output depth
    od: usize,
    groups: usize,
}

impl Tensor {
    /// `[N, C, Dp, H, W]` → `[N·OD, kd·C, H, W]`: output depth slice `od` of image `n`
    /// becomes one image whose channels are, group by group, tap by tap, the group's
    /// input channels at depth `od·stride + tap·dilation`. One strided copy forward; the
    /// backward adds each tap's gradient back at its depths.
    fn depth_taps(&self, t: Taps) -> Result<Tensor> {
        let &[n, c, dp, h, w] = self.shape() else {
            return Err(Error::op(
                "conv3d",
                format!("depth taps of a non-5-D shape {:?}", self.shape()),
            ));
        };
        let (cg, od, kd) = (c / t.groups, t.od, t.kd);
        // An empty input may have dimensions whose products overflow.
        let hw = product("conv3d", self, &[h, w])?;
        let plane = product("conv3d", self, &[dp, hw])?;
        let strides = [
            product("conv3d", self, &[c, plane])?,
            product("conv3d", self, &[t.stride, hw])?,
            product("conv3d", self, &[cg, plane])?,
            product("conv3d", self, &[t.dilation, hw])?,
        ];
        let shape = vec![
            product("conv3d", self, &[n, od])?,
            product("conv3d", self, &[kd, c])?,
            h,
            w,
        ];
        let taps = self.view_copy(
            "conv3d",
            StridedView {
                shape: vec![n, od, t.groups, kd, cg, h, w],
                strides: vec![strides[0], strides[1], strides[2], strides[3], plane, w, 1],
                offset: 0,
            },
        )?;
        Ok(Tensor::from_op(
            taps.f32_storage(),
            shape,
            self.device(),
            "conv3d",
            &[self],
            move |g| {
                if g.numel() == 0 {
                    // Nothing flows back, and an empty batch's depths times the stride
                    // need not fit a usize.
                    return Ok(vec![Some(Tensor::try_zeros(
                        &[n, c, dp, h, w],
                        g.device(),
                    )?)]);
                }
                let g = g.reshape(&[n, od, t.groups, kd, cg * hw])?;
                let mut sum: Option<Tensor> = None;
                for tap in 0..kd {
                    // This tap's gradient as [N, C, OD, HW], its slices `stride` apart
                    // along the depth (zeros between), placed from depth tap·dilation.
                    let gt = g
                        .narrow(3, tap, 1)?
                        .reshape(&[n, od, c, hw])?
                        .permute(&[0, 2, 1, 3])?;
                    let spread = if t.stride > 1 {
                        gt.reshape(&[n, c, od, 1, hw])?
                            .pad_dims(&[0; 5], &[0, 0, 0, t.stride - 1, 0], 0.0)?
                            .reshape(&[n, c, od * t.stride, hw])?
                    } else {
                        gt
                    };
                    let start = tap * t.dilation;
                    // Past the input's depth the spread holds only the zeros between slices.
                    let len = (od * t.stride).min(dp - start);
                    let spread = if len < od * t.stride {
                        spread.narrow(2, 0, len)?
                    } else {
                        spread
                    };
                    let placed =
                        spread.pad_dims(&[0, 0, start, 0], &[0, 0, dp - start - len, 0], 0.0)?;
                    sum = Some(match sum {
                        Some(s) => s.add(&placed)?,
                        None => placed,
                    });
                }
                let grad = match sum {
                    Some(s) => s.reshape(&[n, c, dp, h, w])?,
                    None => Tensor::zeros(&[n, c, dp, h, w], g.device()),
                };
                Ok(vec![Some(grad)])
            },
        ))
    }
}

/// Options of [`Tensor::conv1d`] and [`Tensor::conv_transpose1d`]; `Default` gives
/// PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1dOptions {
    /// step of the window
    pub stride: usize,
    /// zeros added on each side (for the transposed form: removed from each side of the
    /// output)
    pub padding: usize,
    /// extra output cells on one side (transposed form only; < max(stride, dilation))
    pub output_padding: usize,
    /// spacing of kernel taps
    pub dilation: usize,
    /// channel groups
    pub groups: usize,
}

impl Default for Conv1dOptions {
    fn default() -> Self {
        Conv1dOptions {
            stride: 1,
            padding: 0,
            output_padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

/// Options of [`Tensor::conv3d`] and [`Tensor::conv_transpose3d`], per axis `[d, h, w]`;
/// `Default` gives PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv3dOptions {
    /// step of the window
    pub stride: [usize; 3],
    /// zeros added on each side (transposed form: removed from each side of the output)
    pub padding: [usize; 3],
    /// extra output cells on one side (transposed form only; < max(stride, dilation))
    pub output_padding: [usize; 3],
    /// spacing of kernel taps
    pub dilation: [usize; 3],
    /// channel groups
    pub groups: usize,
}

impl Default for Conv3dOptions {
    fn default() -> Self {
        Conv3dOptions {
            stride: [1; 3],
            padding: [0; 3],
            output_padding: [0; 3],
            dilation: [1; 3],
            groups: 1,
        }
    }
}

/// Checks what the rank-specific ops add to the 2-D checks: the ranks, and that every
/// stride and dilation is positive.
fn check_nd(
    op: &'static str,
    x: &Tensor,
    w: &Tensor,
    rank: usize,
    positive: &[usize],
) -> Result<()> {
    check_device(op, &[x, w])?;
    check_dtypes(op, &[x, w])?;
    check_rank(op, "input", x, rank)?;
    check_rank(op, "weight", w, rank)?;
    if positive.contains(&0) {
        return Err(Error::op(
            op,
            format!(
                "strides, dilations and groups must be positive (input {:?}, weight {:?})",
                x.shape(),
                w.shape()
            ),
        ));
    }
    Ok(())
}

/// The product of `dims` (sizes taken from `x`'s shape and the options), or an error
/// naming `op` and `x`'s shape where it overflows a `usize`.
fn product(op: &'static str, x: &Tensor, dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |p, &d| p.checked_mul(d))
        .ok_or_else(|| {
            Error::op(
                op,
                format!(
                    "sizes {dims:?} from input {:?} overflow a usize when multiplied",
                    x.shape()
                ),
            )
        })
}

/// Re-labels an error of the 2-D op that runs a 1-D or 3-D one with the op the user
/// called and the shapes the user gave.
fn as_op<'a>(op: &'static str, x: &'a Tensor, w: &'a Tensor) -> impl FnOnce(Error) -> Error + 'a {
    move |e| match e {
        Error::Op { msg, .. } => Error::op(
            op,
            format!(
                "{msg} (as a 2-D convolution; input {:?}, weight {:?})",
                x.shape(),
                w.shape()
            ),
        ),
        e => e,
    }
}

impl Tensor {
    /// 1-D convolution of an `[N, C, L]` input with an `[O, C/groups, k]` weight and an
    /// optional `[O]` bias.
    pub fn conv1d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        o: Conv1dOptions,
    ) -> Result<Tensor> {
        const OP: &str = "conv1d";
        check_nd(OP, self, weight, 3, &[o.stride, o.dilation, o.groups])?;
        let opts = Conv2dOptions {
            stride: [1, o.stride],
            padding: [0, o.padding],
            dilation: [1, o.dilation],
            groups: o.groups,
            ..Default::default()
        };
        self.unsqueeze(2)?
            .conv2d(&weight.unsqueeze(2)?, bias, opts)
            .map_err(as_op(OP, self, weight))?
            .squeeze(2)
    }

    /// Transposed 1-D convolution of an `[N, C, L]` input with a `[C, O/groups, k]` weight
    /// and an optional `[O]` bias.
    pub fn conv_transpose1d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        o: Conv1dOptions,
    ) -> Result<Tensor> {
        const OP: &str = "conv_transpose1d";
        check_nd(OP, self, weight, 3, &[o.stride, o.dilation, o.groups])?;
        let opts = ConvTranspose2dOptions {
            stride: [1, o.stride],
            padding: [0, o.padding],
            output_padding: [0, o.output_padding],
            dilation: [1, o.dilation],
            groups: o.groups,
        };
        self.unsqueeze(2)?
            .conv_transpose2d(&weight.unsqueeze(2)?, bias, opts)
            .map_err(as_op(OP, self, weight))?
            .squeeze(2)
    }

    /// 3-D convolution of an `[N, C, D, H, W]` input with an `[O, C/groups, kd, kh, kw]`
    /// weight and an optional `[O]` bias.
    pub fn conv3d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        o: Conv3dOptions,
    ) -> Result<Tensor> {
        const OP: &str = "conv3d";
        let mut positive = o.stride.to_vec();
        positive.extend(o.dilation);
        positive.push(o.groups);
        check_nd(OP, self, weight, 5, &positive)?;
        let (x, w, g) = (self.shape(), weight.shape(), o.groups);
        if x[1] % g != 0 || w[0] % g != 0 || w[1].checked_mul(g) != Some(x[1]) {
            return Err(Error::op(
                OP,
                format!("weight {w:?} with groups={g} does not fit input {x:?} (input channels must be in/groups × groups and both channel counts divisible by groups)"),
            ));
        }
        let (kd, sd, pd, dd) = (w[2], o.stride[0], o.padding[0], o.dilation[0]);
        let span = dd
            .checked_mul(kd.saturating_sub(1))
            .and_then(|s| s.checked_add(1));
        let padded = x[2].checked_add(pd.saturating_mul(2));
        let od = match (span, padded) {
            (Some(span), Some(padded)) if kd > 0 && padded >= span => (padded - span) / sd + 1,
            _ => {
                return Err(Error::op(
                    OP,
                    format!("kernel depth {kd} with dilation {dd} is larger than the padded input depth (input {x:?}, padding {:?})", o.padding),
                ))
            }
        };
        let plane = |a: usize| {
            conv_out_len(
                x[a],
                w[a],
                o.stride[a - 2],
                o.padding[a - 2],
                o.dilation[a - 2],
            )
        };
        if let (Some(oh), Some(ow)) = (plane(3), plane(4)) {
            let p = Conv3dParams {
                n: x[0],
                c_in: x[1],
                c_out: w[0],
                input: [x[2], x[3], x[4]],
                output: [od, oh, ow],
                kernel: [kd, w[3], w[4]],
                stride: o.stride,
                padding: o.padding,
                dilation: o.dilation,
                groups: g,
            }
            .normalized();
            if self.backend().runs_conv3d(&p) {
                return self.conv3d_native(weight, bias, p);
            }
        }
        let xp = if pd > 0 {
            // Named as the user's call: the padding is this op's own step.
            self.pad_dims(&[0, 0, pd, 0, 0], &[0, 0, pd, 0, 0], 0.0)
                .map_err(|e| Error::op(OP, format!("{e} (the input's depth padded by {pd})")))?
        } else {
            self.clone()
        };
        // A stride with one output slice, or a dilation with one tap, never steps: as 1,
        // it cannot overflow the gather's strides.
        let cols = xp.depth_taps(Taps {
            kd,
            dilation: if kd > 1 { dd } else { 1 },
            stride: if od > 1 { sd } else { 1 },
            od,
            groups: g,
        })?;
        let w2 = weight.permute(&[0, 2, 1, 3, 4])?.reshape(&[
            w[0],
            product(OP, self, &[kd, w[1]])?,
            w[3],
            w[4],
        ])?;
        let opts = Conv2dOptions {
            stride: [o.stride[1], o.stride[2]],
            padding: [o.padding[1], o.padding[2]],
            dilation: [o.dilation[1], o.dilation[2]],
            groups: g,
            ..Default::default()
        };
        let y = cols
            .conv2d(&w2, bias, opts)
            .map_err(as_op(OP, self, weight))?;
        let (oh, ow) = (y.shape()[2], y.shape()[3]);
        y.reshape(&[x[0], od, w[0], oh, ow])?
            .permute(&[0, 2, 1, 3, 4])
    }

    /// `conv3d` as one op of the backend's own, where it has one for `p`.
    fn conv3d_native(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        p: Conv3dParams,
    ) -> Result<Tensor> {
        const OP: &str = "conv3d";
        let shape = [p.n, p.c_out, p.output[0], p.output[1], p.output[2]];
        super::check_output(OP, &[self.shape(), weight.shape()], &shape, self.device())?;
        check_bias(OP, self, bias, p.c_out)?;
        let s = self
            .backend()
            .conv3d(
                &self.f32_storage(),
                &weight.f32_storage(),
                bias.map(|b| b.f32_storage()).as_ref(),
                &p,
            )
            .map_err(|e| e.in_op(OP, &[self.shape(), weight.shape()]))?;
        let y = Tensor::leaf(s, shape.to_vec(), self.device());
        conv_node(
            OP,
            y,
            self,
            weight,
            bias,
            move |be, g, w| be.conv3d_grad_input(g, w, &p),
            move |be, g, x| be.conv3d_grad_weight(x, g, &p),
        )
    }

    /// Transposed 3-D convolution of an `[N, C, D, H, W]` input with a `[C, O/groups, kd,
    /// kh, kw]` weight and an optional `[O]` bias.
    pub fn conv_transpose3d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        o: Conv3dOptions,
    ) -> Result<Tensor> {
        const OP: &str = "conv_transpose3d";
        let mut positive = o.stride.to_vec();
        positive.extend(o.dilation);
        positive.push(o.groups);
        check_nd(OP, self, weight, 5, &positive)?;
        let (x, w, g) = (self.shape(), weight.shape(), o.groups);
        if x[1] % g != 0 || w[0] != x[1] {
            return Err(Error::op(
                OP,
                format!("weight {w:?} must have the input's {} channels first, divisible by groups={g} (input {x:?})", x[1]),
            ));
        }
        let (kd, sd, pd, dd, opd) = (
            w[2],
            o.stride[0],
            o.padding[0],
            o.dilation[0],
            o.output_padding[0],
        );
        if opd >= sd.max(dd) {
            return Err(Error::op(
                OP,
                format!(
                    "output_padding {:?} must be smaller than max(stride, dilation) on each axis",
                    o.output_padding
                ),
            ));
        }
        let full = (x[2].max(1) - 1)
            .checked_mul(sd)
            .and_then(|v| v.checked_add(dd.checked_mul(kd.saturating_sub(1))?))
            .and_then(|v| v.checked_add(opd + 1));
        let (full, od) = match (full, pd.checked_mul(2)) {
            (Some(f), Some(p2)) if x[2] > 0 && kd > 0 && f > p2 => (f, f - p2),
            _ => {
                return Err(Error::op(
                    OP,
                    format!(
                    "input {x:?} with weight {w:?} and padding {:?} leaves an empty output depth",
                    o.padding
                ),
                ))
            }
        };
        let (n, c, d, h, wd, og) = (x[0], x[1], x[2], x[3], x[4], w[1]);
        // One input slice is never stepped from: its stride as 1 interleaves nothing.
        let sd = if d > 1 { sd } else { 1 };
        // Every input slice through one transposed 2-D convolution whose output channels
        // are (group, tap, channel): the kd output slices it feeds.
        let slices =
            self.permute(&[0, 2, 1, 3, 4])?
                .reshape(&[product(OP, self, &[n, d])?, c, h, wd])?;
        let w2 = weight.permute(&[0, 2, 1, 3, 4])?.reshape(&[
            c,
            product(OP, weight, &[kd, og])?,
            w[3],
            w[4],
        ])?;
        let opts = ConvTranspose2dOptions {
            stride: [o.stride[1], o.stride[2]],
            padding: [o.padding[1], o.padding[2]],
            output_padding: [o.output_padding[1], o.output_padding[2]],
            dilation: [o.dilation[1], o.dilation[2]],
            groups: g,
        };
        let y = slices
            .conv_transpose2d(&w2, None, opts)
            .map_err(as_op(OP, self, weight))?;
        let (oh, ow) = (y.shape()[2], y.shape()[3]);
        let (planes, ohw) = (
            product(OP, self, &[n, g, og])?,
            product(OP, self, &[oh, ow])?,
        );
        super::check_output(
            OP,
            &[x, w],
            &[n, product(OP, weight, &[g, og])?, od, oh, ow],
            self.device(),
        )?;
        // [N, D, g, kd, O/g, OH·OW] → [N, g, O/g, kd, D, OH·OW]
        let y = y
            .reshape(&[n, d, g, kd, og, ohw])?
            .permute(&[0, 2, 4, 3, 1, 5])?;
        // The taps add up in f32 and the sum is rounded once, below.
        let y = y.float()?;
        let zeros = match sd {
            1 => None,
            _ => Some(Tensor::try_zeros(&[planes, d, sd - 1, ohw], self.device())?),
        };
        // The input slices `sd` apart along the output depth, zeros between.
        let spread = product(OP, self, &[d, sd])?;
        let mut out: Option<Tensor> = None;
        for t in 0..kd {
            // Tap t of input slice i lands on output depth i·sd + t·dd (before cropping):
            // interleave sd − 1 zero slices, then shift by t·dd.
            let z = y.narrow(3, t, 1)?.reshape(&[planes, d, 1, ohw])?;
            let z = match &zeros {
                Some(zs) => Tensor::cat(&[&z, zs], 2)?,
                None => z,
            };
            let z = z
                .reshape(&[planes, spread, ohw])?
                .narrow(1, 0, (d - 1) * sd + 1)?;
            let before = t * dd;
            let after = full - before - ((d - 1) * sd + 1);
            let z = z.pad_dims(&[0, before, 0], &[0, after, 0], 0.0)?;
            out = Some(match out {
                Some(acc) => acc.add(&z)?,
                None => z,
            });
        }
        let out = out
            .expect("kd > 0 was checked")
            .narrow(1, pd, od)?
            .reshape(&[n, g * og, od, oh, ow])?
            .to_dtype(crate::autocast::gemm_dtype(&[self, weight]))?;
        match bias {
            Some(b) => {
                check_device(OP, &[self, b])?;
                check_dtypes(OP, &[self, b])?;
                if b.shape() != [g * og] {
                    return Err(Error::op(
                        OP,
                        format!("bias must have shape [{}], got {:?}", g * og, b.shape()),
                    ));
                }
                out.add(&b.reshape(&[1, g * og, 1, 1, 1])?.to_dtype(out.dtype())?)
            }
            None => Ok(out),
        }
    }
}
