//! Host side of `shaders/cast.wgsl`: f32 ⇄ f16 storage.

use fovea_core::backend::Storage;
use fovea_core::{DType, Result};

use crate::context::{buf, Ctx};
use crate::source::CAST;

wgsl_struct! {
    pub(crate) struct Params {
        n: u32,
    }
}

pub fn cast(ctx: &Ctx, x: &Storage, to: DType) -> Result<Storage> {
    let n = x.len();
    let (entry, threads) = match (x.dtype(), to) {
        (from, to) if from == to => return Ok(x.clone()),
        (DType::F32, DType::F16) => ("to_f16", n.div_ceil(2)),
        (DType::F16, DType::F32) => ("to_f32", n),
        (from, to) => unreachable!("no conversion from {from} to {to}"),
    };
    let y = ctx.alloc_typed(n, to)?;
    if n > 0 {
        let p = Params { n: n as u32 };
        ctx.dispatch(
            CAST,
            entry,
            bytemuck::bytes_of(&p),
            &[(1, buf(x)), (2, buf(&y))],
            ctx.groups_1d(threads),
        )?;
    }
    Ok(y)
}
