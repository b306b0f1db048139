//! Host side of `shaders/conv2d_depthwise.wgsl`: convolutions with one input channel per
//! group (depthwise, MobileNet's 3×3 stage), computed directly instead of as a GEMM.

use bytemuck::{Pod, Zeroable};
use fovea_core::backend::{Conv2dParams, Storage};
use fovea_core::Result;

use crate::context::{buf, Ctx, WG};
use crate::source::CONV2D_DEPTHWISE;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    oh: u32,
    ow: u32,
    mult: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
}

/// Whether `p` is a depthwise convolution this kernel handles.
pub fn applies(p: &Conv2dParams) -> bool {
    p.groups > 1 && p.c_in == p.groups
}

fn run(
    ctx: &Ctx,
    entry: &'static str,
    a: &Storage,
    b: &Storage,
    cp: &Conv2dParams,
    out_len: usize,
    threads: usize,
) -> Result<Storage> {
    let u = |v: usize| v as u32;
    let p = Params {
        n: u(cp.n),
        c_in: u(cp.c_in),
        h: u(cp.h),
        w: u(cp.w),
        c_out: u(cp.c_out),
        oh: u(cp.oh),
        ow: u(cp.ow),
        mult: u(cp.c_out / cp.groups),
        kh: u(cp.kernel[0]),
        kw: u(cp.kernel[1]),
        sh: u(cp.stride[0]),
        sw: u(cp.stride[1]),
        ph: u(cp.padding[0]),
        pw: u(cp.padding[1]),
        dh: u(cp.dilation[0]),
        dw: u(cp.dilation[1]),
    };
    let out = ctx.alloc(out_len)?;
    let bindings = [(1, buf(a)), (2, buf(b)), (3, buf(&out))];
    ctx.dispatch(
        CONV2D_DEPTHWISE,
        entry,
        bytemuck::bytes_of(&p),
        &bindings,
        ctx.groups_1d(threads),
    )?;
    Ok(out)
}

pub fn forward(ctx: &Ctx, x: &Storage, w: &Storage, p: &Conv2dParams) -> Result<Storage> {
    run(ctx, "forward", x, w, p, p.output_len(), p.output_len())
}

pub fn grad_input(ctx: &Ctx, gy: &Storage, w: &Storage, p: &Conv2dParams) -> Result<Storage> {
    run(ctx, "grad_input", gy, w, p, p.input_len(), p.input_len())
}

pub fn grad_weight(ctx: &Ctx, x: &Storage, gy: &Storage, p: &Conv2dParams) -> Result<Storage> {
    // One workgroup (WG threads) per weight element.
    let len = p.weight_len();
    run(ctx, "grad_weight", gy, x, p, len, len * WG as usize)
}
