//! Host side of `shaders/reduce.wgsl`.

use fovea_core::backend::{ReduceOp, ReduceParams, Storage};
use fovea_core::Result;

use crate::context::{buf, Ctx};
use crate::source::REDUCE;

wgsl_struct! {
    pub(crate) struct Params {
        outer: u32,
        len: u32,
        inner: u32,
        op: u32,
        /// values per chunk of the axis, and chunks per output
        chunk: u32,
        chunks: u32,
    }
}

/// Values of a long axis one workgroup of `reduce_rows` sums (32 per thread).
const CHUNK: usize = 8192;

/// Threads `reduce_cols` aims for: fewer outputs than this split their axis into chunks
/// (of at least `MIN_COL_CHUNK` values), so that enough loads are in flight.
const COL_THREADS: usize = 32768;
const MIN_COL_CHUNK: usize = 16;

pub fn reduce(ctx: &Ctx, x: &Storage, rp: &ReduceParams, op: ReduceOp) -> Result<Storage> {
    let outputs = rp.outer * rp.inner;
    // Few outputs over a long axis: a workgroup per output and chunk keeps the GPU busy
    // (then a second pass over the chunks' results); otherwise a thread per output and
    // chunk reads coalesced along `inner`.
    let rows = outputs < 4096 && rp.len >= 256;
    let chunk = if rows {
        rp.len.min(CHUNK)
    } else {
        let chunks = COL_THREADS
            .div_ceil(outputs.max(1))
            .min(rp.len / MIN_COL_CHUNK);
        rp.len.div_ceil(chunks.max(1)).max(1)
    };
    let chunks = rp.len.div_ceil(chunk).max(1);
    let y = ctx.alloc(outputs * chunks)?;
    let p = Params {
        outer: rp.outer as u32,
        len: rp.len as u32,
        inner: rp.inner as u32,
        op: match op {
            ReduceOp::Sum => 0,
            ReduceOp::Max => 1,
        },
        chunk: chunk as u32,
        chunks: chunks as u32,
    };
    let bindings = [(1, buf(x)), (2, buf(&y))];
    if rows {
        let workgroups = outputs * chunks;
        let groups = ctx.groups_of(workgroups);
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
            ctx.groups_1d(outputs * chunks),
        )?;
    }
    if chunks == 1 {
        return Ok(y);
    }
    let rest = ReduceParams {
        outer: rp.outer,
        len: chunks,
        inner: rp.inner,
    };
    reduce(ctx, &y, &rest, op)
}
