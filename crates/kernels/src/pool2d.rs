//! Host side of `shaders/pool2d.wgsl`.

use fovea_core::backend::{Pool2dParams, Resize2dParams, Storage};
use fovea_core::Result;

use crate::context::{buf, Ctx};
use crate::source::POOL2D;

wgsl_struct! {
    pub(crate) struct Params {
        planes: u32,
        h: u32,
        w: u32,
        oh: u32,
        ow: u32,
        kh: u32,
        kw: u32,
        sh: u32,
        sw: u32,
        ph: u32,
        pw: u32,
        peh: u32,
        pew: u32,
        dh: u32,
        dw: u32,
        count_include_pad: u32,
    }
}

fn params(p: &Pool2dParams) -> Params {
    let u = |v: usize| v as u32;
    Params {
        planes: u(p.planes),
        h: u(p.h),
        w: u(p.w),
        oh: u(p.oh),
        ow: u(p.ow),
        kh: u(p.kernel[0]),
        kw: u(p.kernel[1]),
        sh: u(p.stride[0]),
        sw: u(p.stride[1]),
        ph: u(p.padding[0]),
        pw: u(p.padding[1]),
        peh: u(p.padding_end[0]),
        pew: u(p.padding_end[1]),
        dh: u(p.dilation[0]),
        dw: u(p.dilation[1]),
        count_include_pad: p.count_include_pad as u32,
    }
}

fn run(
    ctx: &Ctx,
    entry: &'static str,
    x: Option<&Storage>,
    gy: Option<&Storage>,
    p: &Pool2dParams,
    out_len: usize,
) -> Result<Storage> {
    crate::geometry::pool(p)?;
    let y = ctx.alloc(out_len)?;
    let mut bindings = Vec::with_capacity(3);
    if let Some(x) = x {
        bindings.push((1, buf(x)));
    }
    if let Some(g) = gy {
        bindings.push((2, buf(g)));
    }
    bindings.push((3, buf(&y)));
    ctx.dispatch(
        POOL2D,
        entry,
        bytemuck::bytes_of(&params(p)),
        &bindings,
        ctx.groups_1d(out_len),
    )?;
    Ok(y)
}

pub fn max_forward(ctx: &Ctx, x: &Storage, p: &Pool2dParams) -> Result<Storage> {
    run(ctx, "max_forward", Some(x), None, p, p.planes * p.oh * p.ow)
}

pub fn max_backward(ctx: &Ctx, x: &Storage, gy: &Storage, p: &Pool2dParams) -> Result<Storage> {
    run(
        ctx,
        "max_backward",
        Some(x),
        Some(gy),
        p,
        p.planes * p.h * p.w,
    )
}

pub fn avg_forward(ctx: &Ctx, x: &Storage, p: &Pool2dParams) -> Result<Storage> {
    run(ctx, "avg_forward", Some(x), None, p, p.planes * p.oh * p.ow)
}

pub fn avg_backward(ctx: &Ctx, gy: &Storage, p: &Pool2dParams) -> Result<Storage> {
    run(ctx, "avg_backward", None, Some(gy), p, p.planes * p.h * p.w)
}

pub fn max_with_indices(ctx: &Ctx, x: &Storage, p: &Pool2dParams) -> Result<(Storage, Storage)> {
    let n = p.planes * p.oh * p.ow;
    let (y, idx) = (ctx.alloc(n)?, ctx.alloc(n)?);
    ctx.dispatch(
        POOL2D,
        "max_with_indices",
        bytemuck::bytes_of(&params(p)),
        &[(1, buf(x)), (3, buf(&y)), (4, buf(&idx))],
        ctx.groups_1d(n),
    )?;
    Ok((y, idx))
}

/// Unpooling in pooling's terms: the unpooled input is the pooled size (oh × ow), the
/// output the unpooled size (h × w).
fn unpool_params(p: &Resize2dParams) -> Pool2dParams {
    Pool2dParams {
        planes: p.planes,
        h: p.oh,
        w: p.ow,
        oh: p.h,
        ow: p.w,
        ..Default::default()
    }
}

pub fn unpool(ctx: &Ctx, x: &Storage, idx: &Storage, p: &Resize2dParams) -> Result<Storage> {
    let q = unpool_params(p);
    let y = crate::elementwise::fill(ctx, p.planes * p.oh * p.ow, 0.0)?;
    ctx.dispatch(
        POOL2D,
        "unpool",
        bytemuck::bytes_of(&params(&q)),
        &[(1, buf(x)), (3, buf(&y)), (4, buf(idx))],
        ctx.groups_1d(x.len()),
    )?;
    Ok(y)
}

pub fn unpool_backward(
    ctx: &Ctx,
    gy: &Storage,
    idx: &Storage,
    p: &Resize2dParams,
) -> Result<Storage> {
    let q = unpool_params(p);
    let n = p.planes * p.h * p.w;
    let gx = ctx.alloc(n)?;
    ctx.dispatch(
        POOL2D,
        "unpool_backward",
        bytemuck::bytes_of(&params(&q)),
        &[(2, buf(gy)), (3, buf(&gx)), (4, buf(idx))],
        ctx.groups_1d(n),
    )?;
    Ok(gx)
}
