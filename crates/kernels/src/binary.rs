//! Host side of `shaders/binary.wgsl`: broadcasting binary ops.

use fovea_core::backend::{BinaryOp, BinaryParams, Storage, MAX_RANK};
use fovea_core::shape::numel;
use fovea_core::{Error, Result};

use crate::context::{buf, Ctx};
use crate::source::BINARY;

wgsl_struct! {
    pub(crate) struct Params {
        n: u32,
        rank: u32,
        op: u32,
        _pad: u32,
        shape: [u32; 8],
        a_strides: [u32; 8],
        b_strides: [u32; 8],
    }
}

/// Copies up to `MAX_RANK` values into a fixed array, or fails naming the op.
pub(crate) fn dims8(op: &str, v: &[usize]) -> Result<[u32; 8]> {
    if v.len() > MAX_RANK {
        return Err(Error::Backend(format!(
            "{op}: the GPU kernels support rank ≤ {MAX_RANK}, got rank {}",
            v.len()
        )));
    }
    let mut out = [0u32; 8];
    for (o, &x) in out.iter_mut().zip(v) {
        *o = u32::try_from(x)
            .map_err(|_| Error::Backend(format!("{op}: size {x} exceeds 32 bits")))?;
    }
    Ok(out)
}

pub fn binary(
    ctx: &Ctx,
    a: &Storage,
    b: &Storage,
    bp: &BinaryParams,
    op: BinaryOp,
) -> Result<Storage> {
    let n = numel(&bp.shape);
    let y = ctx.alloc(n)?;
    let op = match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
        BinaryOp::Maximum => 4,
        BinaryOp::Minimum => 5,
        BinaryOp::Pow => 6,
        BinaryOp::Ge => 7,
        BinaryOp::Eq => 8,
        BinaryOp::ReluBackward => 9,
        BinaryOp::AddRelu => 10,
    };
    let p = Params {
        n: n as u32,
        rank: bp.shape.len() as u32,
        op,
        _pad: 0,
        shape: dims8("binary", &bp.shape)?,
        a_strides: dims8("binary", &bp.a_strides)?,
        b_strides: dims8("binary", &bp.b_strides)?,
    };
    ctx.dispatch(
        BINARY,
        "binary",
        bytemuck::bytes_of(&p),
        &[(1, buf(a)), (2, buf(b)), (3, buf(&y))],
        ctx.groups_1d(n),
    )?;
    Ok(y)
}
