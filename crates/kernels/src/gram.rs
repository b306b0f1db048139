//! Host side of `shaders/gram.wgsl`.

use fovea_core::backend::{ReduceOp, ReduceParams, Storage};
use fovea_core::Result;

use crate::context::{buf, Ctx};
use crate::source::{GRAM, GRAM_ENTRIES};

/// Channels from which the 128×128 tile is used: split-K keeps the GPU busy however few
/// tiles there are, so the only cost of the big tile is its unused edge.
const MIN_BIG_CHANNELS: usize = 128;
/// Split K until about this many workgroups run (counting the upper triangle only).
const TARGET_WORKGROUPS: usize = 256;
/// Shortest K range one split sums.
const MIN_K_PER_SPLIT: usize = 512;

wgsl_struct! {
    pub(crate) struct Params {
        n: u32,
        c: u32,
        hw: u32,
        splits: u32,
        k_per_split: u32,
    }
}

pub fn gram(ctx: &Ctx, f: &Storage, n: usize, c: usize, hw: usize) -> Result<Storage> {
    let out_len = n * c * c;
    if hw == 0 || out_len == 0 {
        // Nothing to sum (or no output at all: no workgroups to share the work).
        return crate::elementwise::fill(ctx, out_len, 0.0);
    }
    let entry = &GRAM_ENTRIES[(c >= MIN_BIG_CHANNELS) as usize];
    let tiles = c.div_ceil(entry.edges()[0]);
    let upper = tiles * (tiles + 1) / 2 * n;
    let max_z = ctx.limits.max_compute_workgroups_per_dimension as usize;
    let splits = if upper >= TARGET_WORKGROUPS {
        1
    } else {
        TARGET_WORKGROUPS
            .div_ceil(upper)
            .min(hw.div_ceil(MIN_K_PER_SPLIT))
            .min(max_z / n.max(1))
            .max(1)
    };
    let k_per_split = hw.div_ceil(splits).next_multiple_of(crate::gemm_gen::DEPTH);
    let splits = hw.div_ceil(k_per_split);
    let p = Params {
        n: n as u32,
        c: c as u32,
        hw: hw as u32,
        splits: splits as u32,
        k_per_split: k_per_split as u32,
    };
    let partial = ctx.alloc(out_len * splits)?;
    let groups = [tiles as u32, tiles as u32, (n * splits) as u32];
    ctx.dispatch(
        GRAM,
        entry.name,
        bytemuck::bytes_of(&p),
        &[(1, buf(f)), (2, buf(&partial))],
        groups,
    )?;
    if splits == 1 {
        return Ok(partial);
    }
    crate::reduce::reduce(
        ctx,
        &partial,
        &ReduceParams {
            outer: 1,
            len: splits,
            inner: out_len,
        },
        ReduceOp::Sum,
    )
}
