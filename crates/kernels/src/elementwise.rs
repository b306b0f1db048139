//! Host side of `shaders/elementwise.wgsl`: unary ops and fill.

use fovea_core::backend::{Storage, UnaryOp};
use fovea_core::Result;

use crate::context::{buf, Ctx};
use crate::source::ELEMENTWISE;

wgsl_struct! {
    pub(crate) struct Params {
        n: u32,
        op: u32,
        a: f32,
        b: f32,
    }
}

/// The shader's op code and its two scalar parameters.
fn code(op: UnaryOp) -> (u32, f32, f32) {
    match op {
        UnaryOp::Neg => (0, 0.0, 0.0),
        UnaryOp::Exp => (1, 0.0, 0.0),
        UnaryOp::Log => (2, 0.0, 0.0),
        UnaryOp::Sqrt => (3, 0.0, 0.0),
        UnaryOp::Abs => (4, 0.0, 0.0),
        UnaryOp::Relu => (5, 0.0, 0.0),
        UnaryOp::LeakyRelu(s) => (6, s, 0.0),
        UnaryOp::Sigmoid => (7, 0.0, 0.0),
        UnaryOp::Tanh => (8, 0.0, 0.0),
        UnaryOp::Affine { mul, add } => (9, mul, add),
        UnaryOp::Powf(e) => (10, e, 0.0),
        UnaryOp::Step => (11, 0.0, 0.0),
        UnaryOp::Sign => (12, 0.0, 0.0),
        UnaryOp::Recip => (13, 0.0, 0.0),
        UnaryOp::RDiv(c) => (14, c, 0.0),
        UnaryOp::Clamp { min, max } => (15, min, max),
        UnaryOp::Between { lo, hi } => (16, lo, hi),
        UnaryOp::Silu => (17, 0.0, 0.0),
        UnaryOp::SiluGrad => (18, 0.0, 0.0),
        UnaryOp::Hardswish => (19, 0.0, 0.0),
        UnaryOp::HardswishGrad => (20, 0.0, 0.0),
        UnaryOp::Hardsigmoid => (21, 0.0, 0.0),
        UnaryOp::NonFinite => (22, 0.0, 0.0),
    }
}

pub fn unary(ctx: &Ctx, x: &Storage, op: UnaryOp) -> Result<Storage> {
    let n = x.len();
    let y = ctx.alloc(n)?;
    let (op, a, b) = code(op);
    let p = Params {
        n: n as u32,
        op,
        a,
        b,
    };
    ctx.dispatch(
        ELEMENTWISE,
        "unary",
        bytemuck::bytes_of(&p),
        &[(1, buf(x)), (2, buf(&y))],
        ctx.groups_1d(n),
    )?;
    Ok(y)
}

pub fn fill(ctx: &Ctx, n: usize, value: f32) -> Result<Storage> {
    let y = ctx.alloc(n)?;
    let p = Params {
        n: n as u32,
        op: 0,
        a: value,
        b: 0.0,
    };
    ctx.dispatch(
        ELEMENTWISE,
        "fill",
        bytemuck::bytes_of(&p),
        &[(2, buf(&y))],
        ctx.groups_1d(n),
    )?;
    Ok(y)
}
