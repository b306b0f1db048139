//! Host side of `shaders/conv2d_depthwise.wgsl`: convolutions with one input channel per
//! group (depthwise, MobileNet's 3×3 stage), computed directly instead of as a GEMM.

use fovea_core::backend::{Conv2dParams, Storage};
use fovea_core::Result;

use crate::context::{buf, Ctx, WG};
use crate::conv2d::ConvShape;
use crate::source::CONV2D_DEPTHWISE;

wgsl_struct! {
    /// The parameters of `conv2d_depthwise.wgsl`.
    pub(crate) struct Params {
        s: ConvShape,
        /// 1: the forward adds `bias` (binding 4)
        bias: u32,
    }
}

/// Whether `p` is a depthwise convolution this kernel handles.
pub fn applies(p: &Conv2dParams) -> bool {
    p.is_depthwise()
}

#[allow(clippy::too_many_arguments)]
fn run(
    ctx: &Ctx,
    entry: &'static str,
    a: &Storage,
    b: &Storage,
    bias: Option<&Storage>,
    cp: &Conv2dParams,
    out_len: usize,
    threads: usize,
) -> Result<Storage> {
    let p = Params {
        s: ConvShape::new(cp),
        bias: bias.is_some() as u32,
    };
    let out = ctx.alloc(out_len)?;
    let mut bindings = vec![(1, buf(a)), (2, buf(b)), (3, buf(&out))];
    if entry == "forward" {
        bindings.push((4, buf(bias.unwrap_or(b))));
    }
    ctx.dispatch(
        CONV2D_DEPTHWISE,
        entry,
        bytemuck::bytes_of(&p),
        &bindings,
        ctx.groups_1d(threads),
    )?;
    Ok(out)
}

pub fn forward(
    ctx: &Ctx,
    x: &Storage,
    w: &Storage,
    bias: Option<&Storage>,
    p: &Conv2dParams,
) -> Result<Storage> {
    let len = p.output_len();
    run(ctx, "forward", x, w, bias, p, len, len)
}

pub fn grad_input(ctx: &Ctx, gy: &Storage, w: &Storage, p: &Conv2dParams) -> Result<Storage> {
    run(
        ctx,
        "grad_input",
        gy,
        w,
        None,
        p,
        p.input_len(),
        p.input_len(),
    )
}

pub fn grad_weight(ctx: &Ctx, x: &Storage, gy: &Storage, p: &Conv2dParams) -> Result<Storage> {
    // One workgroup (WG threads) per weight element.
    let len = p.weight_len();
    run(ctx, "grad_weight", gy, x, None, p, len, len * WG as usize)
}
