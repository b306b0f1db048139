//! Host side of `shaders/matmul.wgsl`.

use fovea_core::backend::{MatmulParams, Storage};
use fovea_core::Result;

use crate::context::{buf, Ctx};
use crate::source::{MATMUL, MATMUL_ENTRIES, TILE_COUNT};

wgsl_struct! {
    pub(crate) struct Params {
        m: u32,
        n: u32,
        k: u32,
        a_stride: u32,
        b_stride: u32,
        batch_offset: u32,
    }
}

pub fn matmul(ctx: &Ctx, a: &Storage, b: &Storage, mp: &MatmulParams) -> Result<Storage> {
    let len = mp.batch * mp.m * mp.n;
    if len == 0 || mp.k == 0 {
        // Nothing to write (however many empty batches: dispatching them would loop), or
        // an empty sum, all zeros: the kernel's loop over K assumes at least one slice.
        return crate::elementwise::fill(ctx, len, 0.0);
    }
    let y = ctx.alloc(len)?;
    let max_z = ctx.limits.max_compute_workgroups_per_dimension as usize;
    // vec4 loads and stores need every row of every matrix to start on a multiple of 4.
    let aligned = mp.m.is_multiple_of(4) && mp.n.is_multiple_of(4) && mp.k.is_multiple_of(4);
    let layout = aligned as usize * 4 + (mp.trans_a as usize) * 2 + mp.trans_b as usize;
    let first = if aligned { 4 } else { 1 };
    let entries = &MATMUL_ENTRIES[layout * TILE_COUNT..][..TILE_COUNT];
    let entry = &entries[ctx.tile_for(mp.m, mp.n, mp.batch, entries)];
    let [tile_m, tile_n] = entry.edges();
    let mut start = 0;
    // Batches beyond the dispatch limit go in several dispatches.
    while start < mp.batch {
        let count = (mp.batch - start).min(max_z);
        let p = Params {
            m: mp.m as u32,
            n: mp.n as u32,
            k: mp.k as u32,
            a_stride: if mp.a_shared { 0 } else { (mp.m * mp.k) as u32 },
            b_stride: if mp.b_shared { 0 } else { (mp.k * mp.n) as u32 },
            batch_offset: start as u32,
        };
        let groups = [
            mp.n.div_ceil(tile_n) as u32,
            mp.m.div_ceil(tile_m) as u32,
            count as u32,
        ];
        ctx.dispatch(
            MATMUL,
            entry.name,
            bytemuck::bytes_of(&p),
            &[(first, buf(a)), (first + 1, buf(b)), (first + 2, buf(&y))],
            groups,
        )?;
        start += count;
    }
    Ok(y)
}
