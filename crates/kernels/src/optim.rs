//! Host side of `shaders/optim.wgsl`: fused optimizer updates.

use fovea_core::backend::{AdamStep, SgdStep, Storage};
use fovea_core::Result;

use crate::context::{buf, Ctx};
use crate::source::OPTIM;

wgsl_struct! {
    pub(crate) struct Params {
        n: u32,
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
        decoupled: u32,
        bias_correction1: f32,
        bias_correction2: f32,
        momentum: f32,
        nesterov: u32,
        /// 1: SGD's first step, with no momentum buffer yet
        first: u32,
    }
}

pub fn adam_step(
    ctx: &Ctx,
    param: &Storage,
    grad: &Storage,
    m: &Storage,
    v: &Storage,
    s: &AdamStep,
) -> Result<[Storage; 3]> {
    let n = param.len();
    let out = [ctx.alloc(n)?, ctx.alloc(n)?, ctx.alloc(n)?];
    let p = Params {
        n: n as u32,
        lr: s.opts.lr,
        beta1: s.opts.beta1,
        beta2: s.opts.beta2,
        eps: s.opts.eps,
        weight_decay: s.opts.weight_decay,
        decoupled: s.opts.decoupled as u32,
        bias_correction1: s.bias_correction1,
        bias_correction2: s.bias_correction2,
        ..bytemuck::Zeroable::zeroed()
    };
    let bindings = [
        (1, buf(param)),
        (2, buf(grad)),
        (3, buf(m)),
        (4, buf(v)),
        (5, buf(&out[0])),
        (6, buf(&out[1])),
        (7, buf(&out[2])),
    ];
    ctx.dispatch(
        OPTIM,
        "adam",
        bytemuck::bytes_of(&p),
        &bindings,
        ctx.groups_1d(n),
    )?;
    Ok(out)
}

pub fn sgd_step(
    ctx: &Ctx,
    param: &Storage,
    grad: &Storage,
    momentum_buf: Option<&Storage>,
    s: &SgdStep,
) -> Result<(Storage, Option<Storage>)> {
    let n = param.len();
    let o = &s.opts;
    let p = Params {
        n: n as u32,
        lr: o.lr,
        weight_decay: o.weight_decay,
        momentum: o.momentum,
        nesterov: o.nesterov as u32,
        first: momentum_buf.is_none() as u32,
        ..bytemuck::Zeroable::zeroed()
    };
    let param_out = ctx.alloc(n)?;
    if o.momentum == 0.0 {
        let bindings = [(1, buf(param)), (2, buf(grad)), (5, buf(&param_out))];
        ctx.dispatch(
            OPTIM,
            "sgd",
            bytemuck::bytes_of(&p),
            &bindings,
            ctx.groups_1d(n),
        )?;
        return Ok((param_out, None));
    }
    let buf_out = ctx.alloc(n)?;
    let bindings = [
        (1, buf(param)),
        (2, buf(grad)),
        // Unread at the first step.
        (3, buf(momentum_buf.unwrap_or(grad))),
        (5, buf(&param_out)),
        (6, buf(&buf_out)),
    ];
    ctx.dispatch(
        OPTIM,
        "sgd_momentum",
        bytemuck::bytes_of(&p),
        &bindings,
        ctx.groups_1d(n),
    )?;
    Ok((param_out, Some(buf_out)))
}
