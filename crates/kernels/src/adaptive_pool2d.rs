//! Host side of `shaders/adaptive_pool2d.wgsl` (and the resize params it shares with
//! `upsample2d`).

use fovea_core::backend::{Resize2dParams, Storage};
use fovea_core::Result;

use crate::context::{buf, Ctx};
use crate::source::{Shader, ADAPTIVE_POOL2D};

wgsl_struct! {
    pub(crate) struct Params {
        planes: u32,
        h: u32,
        w: u32,
        oh: u32,
        ow: u32,
    }
}

/// Runs a resize kernel (`forward` writes the output grid, `backward` the input grid);
/// binding 1 is the input of the pass (x forward, the output gradient backward).
pub(crate) fn resize(
    ctx: &Ctx,
    shader: Shader,
    backward: bool,
    x: &Storage,
    rp: &Resize2dParams,
) -> Result<Storage> {
    crate::geometry::resize(rp)?;
    let out_len = rp.planes * if backward { rp.h * rp.w } else { rp.oh * rp.ow };
    let y = ctx.alloc(out_len)?;
    let u = |v: usize| v as u32;
    let p = Params {
        planes: u(rp.planes),
        h: u(rp.h),
        w: u(rp.w),
        oh: u(rp.oh),
        ow: u(rp.ow),
    };
    let entry = if backward { "backward" } else { "forward" };
    ctx.dispatch(
        shader,
        entry,
        bytemuck::bytes_of(&p),
        &[(1, buf(x)), (2, buf(&y))],
        ctx.groups_1d(out_len),
    )?;
    Ok(y)
}

pub fn forward(ctx: &Ctx, x: &Storage, p: &Resize2dParams) -> Result<Storage> {
    resize(ctx, ADAPTIVE_POOL2D, false, x, p)
}

pub fn backward(ctx: &Ctx, gy: &Storage, p: &Resize2dParams) -> Result<Storage> {
    resize(ctx, ADAPTIVE_POOL2D, true, gy, p)
}
