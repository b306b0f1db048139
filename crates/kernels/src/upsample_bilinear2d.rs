//! Host side of `shaders/upsample_bilinear2d.wgsl`.

use fovea_core::backend::{Bilinear2dParams, Storage};
use fovea_core::Result;

use crate::context::{buf, Ctx};
use crate::source::UPSAMPLE_BILINEAR2D;

wgsl_struct! {
    pub(crate) struct Params {
        planes: u32,
        h: u32,
        w: u32,
        oh: u32,
        ow: u32,
        align_corners: u32,
        scale_h: f32,
        scale_w: f32,
    }
}

/// `forward` writes the output grid from x; `backward` the input grid from the output
/// gradient (binding 1 is the pass's input either way).
fn run(ctx: &Ctx, backward: bool, x: &Storage, bp: &Bilinear2dParams) -> Result<Storage> {
    let out_len = bp.planes * if backward { bp.h * bp.w } else { bp.oh * bp.ow };
    let y = ctx.alloc(out_len)?;
    let u = |v: usize| v as u32;
    let p = Params {
        planes: u(bp.planes),
        h: u(bp.h),
        w: u(bp.w),
        oh: u(bp.oh),
        ow: u(bp.ow),
        align_corners: u32::from(bp.align_corners),
        scale_h: bp.scale[0],
        scale_w: bp.scale[1],
    };
    let entry = if backward { "backward" } else { "forward" };
    ctx.dispatch(
        UPSAMPLE_BILINEAR2D,
        entry,
        bytemuck::bytes_of(&p),
        &[(1, buf(x)), (2, buf(&y))],
        ctx.groups_1d(out_len),
    )?;
    Ok(y)
}

pub fn forward(ctx: &Ctx, x: &Storage, p: &Bilinear2dParams) -> Result<Storage> {
    run(ctx, false, x, p)
}

pub fn backward(ctx: &Ctx, gy: &Storage, p: &Bilinear2dParams) -> Result<Storage> {
    run(ctx, true, gy, p)
}
