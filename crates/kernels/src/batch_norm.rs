//! Host side of `shaders/batch_norm.wgsl`.

use fovea_core::backend::{ChannelParams, ReduceOp, ReduceParams, Storage};
use fovea_core::Result;

use crate::context::{buf, Ctx};
use crate::source::BATCH_NORM;

wgsl_struct! {
    pub(crate) struct Params {
        outer: u32,
        channels: u32,
        inner: u32,
        /// 1: a second input (`b`, and centres or three coefficient rows)
        two: u32,
        /// values per chunk of a channel, and chunks per channel
        chunk: u32,
        chunks: u32,
        /// 1: a fused ReLU (see `ChannelParams::relu`)
        relu: u32,
    }
}

/// Values of one channel one workgroup of `channel_sums` adds (16 per thread).
const CHUNK: usize = 4096;

fn params(p: &ChannelParams, two: bool, chunk: usize) -> Params {
    Params {
        outer: p.outer as u32,
        channels: p.channels as u32,
        inner: p.inner as u32,
        two: two as u32,
        chunk: chunk as u32,
        chunks: p.per_channel().div_ceil(chunk).max(1) as u32,
        relu: p.relu as u32,
    }
}

pub fn channel_sums(
    ctx: &Ctx,
    a: &Storage,
    b: Option<(&Storage, &Storage)>,
    p: &ChannelParams,
) -> Result<Storage> {
    let rows = p.channels * if b.is_some() { 2 } else { 1 };
    if p.per_channel() == 0 {
        // Empty channels sum to zero (and an empty input has no buffer to bind).
        return crate::elementwise::fill(ctx, rows, 0.0);
    }
    let chunk = p.per_channel().clamp(1, CHUNK);
    let gp = params(p, b.is_some(), chunk);
    let chunks = gp.chunks as usize;
    let partial = ctx.alloc(rows * chunks)?;
    // Without `b` the shader reads neither it nor the centres; `a` fills their bindings.
    let (b, centers) = b.unwrap_or((a, a));
    let bindings = [
        (1, buf(a)),
        (2, buf(b)),
        (3, buf(centers)),
        (4, buf(&partial)),
    ];
    let workgroups = p.channels * chunks;
    let groups = ctx.groups_of(workgroups);
    ctx.dispatch(
        BATCH_NORM,
        "channel_sums",
        bytemuck::bytes_of(&gp),
        &bindings,
        groups,
    )?;
    if chunks == 1 {
        return Ok(partial);
    }
    let rp = ReduceParams {
        outer: rows,
        len: chunks,
        inner: 1,
    };
    crate::reduce::reduce(ctx, &partial, &rp, ReduceOp::Sum)
}

pub fn channel_affine(
    ctx: &Ctx,
    a: &Storage,
    b: Option<&Storage>,
    coef: &Storage,
    p: &ChannelParams,
) -> Result<Storage> {
    let gp = params(p, b.is_some(), 1);
    let y = ctx.alloc(p.len())?;
    let bindings = [
        (1, buf(a)),
        // Unread with one input.
        (2, buf(b.unwrap_or(a))),
        (3, buf(coef)),
        (4, buf(&y)),
    ];
    ctx.dispatch(
        BATCH_NORM,
        "channel_affine",
        bytemuck::bytes_of(&gp),
        &bindings,
        ctx.groups_1d(p.len()),
    )?;
    Ok(y)
}
