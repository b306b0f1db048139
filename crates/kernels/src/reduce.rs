//! Host side of `shaders/reduce.wgsl`.

use bytemuck::{Pod, Zeroable};
use fovea_core::backend::{ReduceOp, ReduceParams, Storage};
use fovea_core::Result;

use crate::context::{buf, Ctx};
use crate::source::REDUCE;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    outer: u32,
    len: u32,
    inner: u32,
    op: u32,
}

pub fn reduce(ctx: &Ctx, x: &Storage, rp: &ReduceParams, op: ReduceOp) -> Result<Storage> {
    let outputs = rp.outer * rp.inner;
    let y = ctx.alloc(outputs)?;
    let p = Params {
        outer: rp.outer as u32,
        len: rp.len as u32,
        inner: rp.inner as u32,
        op: match op {
            ReduceOp::Sum => 0,
            ReduceOp::Max => 1,
        },
    };
    let bindings = [(1, buf(x)), (2, buf(&y))];
    // Few outputs over a long axis: a workgroup per output keeps the GPU busy; otherwise
    // a thread per output reads coalesced along `inner`.
    if outputs < 4096 && rp.len >= 256 {
        let mut groups = ctx.groups_1d(outputs * 256);
        groups[0] = groups[0].min(outputs as u32).max(1);
        groups[1] = (outputs as u32).div_ceil(groups[0]);
        ctx.dispatch(
            REDUCE,
            "reduce_rows",
            bytemuck::bytes_of(&p),
            &bindings,
            groups,
        )?;
    } else {
        ctx.dispatch(
            REDUCE,
            "reduce_cols",
            bytemuck::bytes_of(&p),
            &bindings,
            ctx.groups_1d(outputs),
        )?;
    }
    Ok(y)
}
