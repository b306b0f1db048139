//! The weight gradient of convolutions (any stride) with 16+ input and output channels per
//! group: `gw[o][c][t] = Σ_q gy[o][q] · x[c][s·q + t]` over the output positions `q`, read
//! from the zero-padded input (`conv_shifted.rs`'s grid) with the output channels in the
//! vector lanes. The output gradient is rearranged once so that each position's block of
//! 16 channels is one vector; per position, a block of sums multiplies it by 12 (channel,
//! tap) pairs' input values (4 in the AVX2 build), each broadcast from the padded input
//! (AVX-512 takes the broadcast straight from memory in the multiply-add). Where a padding
//! zero meets a non-finite output gradient the sum is NaN, as in im2col's GEMM.
//!
//! This replaced dot products along the wide grid's columns (positions in the lanes,
//! `conv_weight_wide.rs`, which stays for fewer output channels): those computed the
//! dropped columns too (13% more products at 14², 23% at 7²) and added each block's lanes
//! across once per chunk, which on deep layers' short planes came often. Single-threaded
//! on a Zen 4 at batch 4 (2026-12-03, `benches/RESULTS-3.md`), ResNet's 256-channel 14²
//! layer's weight gradient took 12.8 → 10.2 ms, the 128-channel 28² one 10.1 → 9.2; 7² and
//! strided layers (which went to im2col's GEMM) 12.6 → 11.8 and, from 28² at stride 2,
//! 14.5 → 10.7.
//!
//! With AVX-512 a tile takes two blocks of 16 output channels (`pair_zmm`, intrinsics):
//! per position two output-gradient vectors and 6 inputs for 12 multiply-adds, where one
//! vector and 12 inputs left the loads the limit on cores with two 512-bit multiply-add
//! units. On an Intel Xeon (2026-12-03, single-threaded, batch 4, fastest of four
//! rounds): 256@14² 8.2 → 7.2 ms, 128@28² 8.6 → 7.3, 512@7² 10.8 → 9.9, stride 2 from
//! 28² 10.3 → 9.0; 64@56² unchanged. The output gradient's rearrangement is 16 × 16
//! transposes (`transpose.rs`).

use super::by_cpu;
use super::conv_direct::{outer_products, pair_offsets};
use super::conv_shifted::{clear, padded_fits, per_block, spread, wide, Wide, MIN_CHANNELS};
use super::transpose::transpose_into;
use crate::backend::Conv3dParams;
use crate::host;
use crate::Result;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Values of the padded inputs and rearranged output gradients made at once (4 MiB, which
/// stay in the processor's cache while the products read them): 2 images of ResNet's
/// 64-channel layers at 56², 8 of its 256-channel ones at 14². Tests take less, so that
/// their small images go in several groups too.
const GROUP_VALUES: usize = if cfg!(test) { 1 << 18 } else { 1 << 20 };

/// Output positions whose products a block of sums adds up in registers before adding them
/// into memory: a sum over every position of a large layer in one chain (7,200 terms
/// in a test) rounded past the definition's tolerance.
const CHUNK_POSITIONS: usize = 256;

/// Output channels per block of the rearranged output gradient: the widest vector any
/// version uses.
const LANES: usize = 16;

/// The batch in groups of images of `per_image` values each (padded input and rearranged
/// output gradient) that fit [`GROUP_VALUES`]: each group's parameters and its images'
/// inputs and output gradients.
pub(super) fn image_groups<'a>(
    x: &'a [f32],
    gy: &'a [f32],
    p: &'a Conv3dParams,
    wd: &'a Wide,
    per_image: usize,
) -> impl Iterator<Item = (Conv3dParams, &'a [f32], &'a [f32])> + 'a {
    let batch = (GROUP_VALUES / per_image.max(1)).clamp(1, p.n.max(1));
    (0..p.n).step_by(batch).map(move |n0| {
        let nb = batch.min(p.n - n0);
        let (x_len, gy_len) = (p.c_in * wd.in_len, p.c_out * wd.out_len);
        (
            Conv3dParams { n: nb, ..*p },
            &x[n0 * x_len..][..nb * x_len],
            &gy[n0 * gy_len..][..nb * gy_len],
        )
    })
}

/// Whether these sums serve `p`: the padded input fits (more than one tap, not vastly
/// larger than the input; any stride) and the groups have 16+ input and output channels
/// (thinner ones take `conv_direct`'s or `conv_weight_wide.rs`'s sums, or im2col's).
pub(super) fn applies(p: &Conv3dParams) -> bool {
    padded_fits(p).is_some()
        && p.c_in / p.groups >= MIN_CHANNELS
        && p.c_out / p.groups >= MIN_CHANNELS
}

/// `p`'s weight gradient. Every product is one of im2col's (a padding zero or an input
/// value times an output gradient; no column of the wide grid is computed and dropped),
/// so a non-finite input reaches exactly the sums the definition puts it in.
pub(super) fn grad_weight(x: &[f32], gy: &[f32], p: &Conv3dParams) -> Result<Vec<f32>> {
    let wd = &wide(p);
    let per_image = p.c_in * wd.channel + p.groups * wd.og.next_multiple_of(LANES) * wd.out_len;
    let offs = pair_offsets(wd);
    let far = offs.iter().max().copied().unwrap_or(0);
    if p.n == 0 {
        return host::zeros(p.weight_len());
    }
    let (blocks, tiles) = (wd.og.div_ceil(LANES), tiles(wd.og, wd.kdim));
    // Written by the first group of images, added to by the others.
    let mut gw = Vec::new();
    for (i, (part, x_b, gy_b)) in image_groups(x, gy, p, wd, per_image).enumerate() {
        let xp = spread(x_b, &part, wd, true, 0)?;
        let gyt = interleaved(gy_b, &part, wd)?;
        let xpos = positions(&part, wd);
        let q_len = xpos.len();
        let sums: Vec<Vec<Vec<f32>>> = (0..p.groups)
            .map(|gi| {
                let x_g = &xp[gi * wd.cg * wd.channel..];
                let gy_g = &gyt[gi * blocks * q_len * LANES..][..blocks * q_len * LANES];
                // Every unchecked read of the sums is inside `x_g`: positions only grow.
                assert!(
                    xpos.last().is_none_or(|&last| x_g.len() > last + far),
                    "conv_weight: input too short"
                );
                tiles
                    .par_iter()
                    .map(|t| tile_sums(gy_g, x_g, &offs, &xpos, t))
                    .collect()
            })
            .collect();
        super::recycle_scratch(xp);
        super::recycle_scratch(gyt);
        let place = |gw: &mut [MaybeUninit<f32>], add: bool| {
            for (gw_g, sums) in gw.chunks_mut(wd.og * wd.kdim).zip(&sums) {
                placed(gw_g, wd.kdim, &tiles, sums, add);
            }
        };
        if i == 0 {
            // SAFETY: the tiles cover every row of every group (`tiles`), and `placed`
            // writes each tile's pairs in each of its rows.
            gw = unsafe { host::written(p.weight_len(), |gw| place(gw, false))? };
        } else {
            // SAFETY: only initialized values are written through the view.
            let gw = unsafe { &mut *(gw.as_mut_slice() as *mut [f32] as *mut [MaybeUninit<f32>]) };
            place(gw, true);
        }
    }
    Ok(gw)
}

/// Where each output position of the group (in order) reads its first tap in the padded
/// input: one offset per position, so that the sums run over a chunk of positions in one
/// loop. As a loop per output row, the sums went to memory and back at each row's end
/// (`perf`: a fifth of the products' time on 7² rows).
fn positions(p: &Conv3dParams, wd: &Wide) -> Vec<usize> {
    let [od, oh, ow] = p.output;
    let mut at = Vec::with_capacity(p.n * od * oh * ow);
    for ni in 0..p.n {
        for a in 0..od {
            for y in 0..oh {
                let row =
                    ni * p.c_in * wd.channel + a * p.stride[0] * wd.plane + y * p.stride[1] * wd.wp;
                at.extend((0..ow).map(|j| row + j * p.stride[2]));
            }
        }
    }
    at
}

/// The output gradient rearranged so that each position's output channels are adjacent:
/// per group, blocks of [`LANES`] channels, each block position by position over the
/// group's images (`[block][image · positions][channel in block]`), zeros for the channels
/// past the group's last.
fn interleaved(gy: &[f32], p: &Conv3dParams, wd: &Wide) -> Result<Vec<f32>> {
    let blocks = wd.og.div_ceil(LANES);
    let q_img = wd.out_len;
    let len = p.n * q_img * LANES;
    let fill = |cb: usize, dst: &mut [MaybeUninit<f32>]| {
        let (gi, b) = (cb / blocks, cb % blocks);
        let o0 = gi * wd.og + b * LANES;
        let lanes = LANES.min(wd.og - b * LANES);
        for (ni, dst) in dst.chunks_exact_mut(q_img * LANES).enumerate() {
            let src = &gy[(ni * p.c_out + o0) * q_img..][..lanes * q_img];
            // Zeros in the lanes past the group's channels.
            let dst = clear(dst);
            transpose_into(src, q_img, (lanes, q_img), dst, LANES);
        }
    };
    // SAFETY: `fill` writes every value of each block it is given.
    // A failed `per_block` can only come from its closure, which cannot fail.
    unsafe {
        host::written(p.groups * blocks * len, |buf| {
            let done = per_block(buf, len.max(1), |cb0, part| {
                for (i, dst) in part.chunks_mut(len.max(1)).enumerate() {
                    fill(cb0 + i, dst);
                }
                Ok(())
            });
            debug_assert!(done.is_ok());
        })
    }
}

/// A piece of a group's weight gradient one task computes: output channels `o` (one
/// block of [`LANES`], or two where `pair_zmm` takes them) × pairs `k`.
struct Tile {
    o: std::ops::Range<usize>,
    k: std::ops::Range<usize>,
}

/// Blocks of [`LANES`] output channels per tile: two with AVX-512, whose sums then load
/// two output-gradient vectors and 6 inputs per 12 multiply-adds instead of one and 12
/// (`pair_zmm`).
fn tile_blocks() -> usize {
    if cfg!(target_arch = "x86_64") && super::cpu_level() == super::Level::Avx512 {
        2
    } else {
        1
    }
}

/// The group's weight gradient cut into tasks: [`tile_blocks`] blocks of [`LANES`]
/// output channels (the last may hold fewer), each split along the pairs where there are
/// fewer of them than the threads would need.
fn tiles(og: usize, kdim: usize) -> Vec<Tile> {
    let width = LANES * tile_blocks();
    let blocks = og.div_ceil(width);
    let parts = (4 * rayon::current_num_threads())
        .div_ceil(blocks)
        .clamp(1, kdim.div_ceil(64).max(1));
    // Whole blocks of pairs per task (12 is a multiple of every version's block).
    let per = kdim.div_ceil(parts).next_multiple_of(12);
    let mut out = Vec::new();
    for b in 0..blocks {
        for k0 in (0..kdim).step_by(per.max(1)) {
            out.push(Tile {
                o: b * width..((b + 1) * width).min(og),
                k: k0..(k0 + per).min(kdim),
            });
        }
    }
    out
}

/// One tile's sums over every output position (`gy` holds the group's blocks, `LANES`
/// values per position each; the caller checked every read of `x`): per block of the
/// tile and pair, its [`LANES`] output channels.
fn tile_sums(gy: &[f32], x: &[f32], offs: &[usize], xpos: &[usize], t: &Tile) -> Vec<f32> {
    let len = xpos.len() * LANES;
    let (b0, nb) = (t.o.start / LANES, t.o.len().div_ceil(LANES));
    let blocks = &gy[b0 * len..][..nb * len];
    let offs = &offs[t.k.clone()];
    let size = nb * LANES * offs.len();
    #[cfg(target_arch = "x86_64")]
    if nb == 2 && !xpos.is_empty() {
        let mut out = Vec::with_capacity(size);
        // SAFETY: two blocks come only from `tiles` with AVX-512 (`tile_blocks`); the
        // caller checked every read of `x`. With at least one position, the first chunk
        // of positions writes every sum (`pair_zmm`).
        unsafe {
            pair_zmm(blocks, x, offs, xpos, out.as_mut_ptr());
            out.set_len(size);
        }
        return out;
    }
    let mut out = vec![0.0; size];
    for (block, out) in blocks
        .chunks_exact(len)
        .zip(out.chunks_exact_mut(LANES * offs.len()))
    {
        sums_by_cpu(block, x, offs, xpos, out);
    }
    out
}

/// A group's tiles' sums ([`tile_sums`]) into its rows of the weight gradient (`kdim`
/// values each), written where `add` is false (the first group of images), else added to
/// what the groups before wrote. Each block's pairs go 16 at a time through a 16 × 16
/// transpose (`transpose.rs`): read value by value across the lanes and added into a
/// weight gradient cleared first, they took 4.4% and the clearing (on the calling thread
/// alone) 2.2% of 512@7²'s forward and weight gradient's samples (batch 8, two threads).
fn placed(
    gw_g: &mut [MaybeUninit<f32>],
    kdim: usize,
    tiles: &[Tile],
    sums: &[Vec<f32>],
    add: bool,
) {
    gw_g.par_chunks_mut(LANES * kdim)
        .enumerate()
        .for_each(|(b, gw_b)| {
            for (t, sums) in tiles.iter().zip(sums) {
                if t.o.contains(&(b * LANES)) {
                    let j = (b * LANES - t.o.start) / LANES;
                    let len = LANES * t.k.len();
                    lanes_into(gw_b, kdim, t.k.start, &sums[j * len..][..len], add);
                }
            }
        });
}

/// One block's sums (`LANES` output channels per pair, from pair `k0`) into its rows.
fn lanes_into(gw_b: &mut [MaybeUninit<f32>], kdim: usize, k0: usize, sums: &[f32], add: bool) {
    let mut square = [0.0f32; LANES * LANES];
    for (j, lanes) in sums.chunks(LANES * LANES).enumerate() {
        let pairs = lanes.len() / LANES;
        transpose_into(lanes, LANES, (pairs, LANES), &mut square, LANES);
        for (row, src) in gw_b.chunks_exact_mut(kdim).zip(square.chunks_exact(LANES)) {
            let dst = &mut row[k0 + j * LANES..][..pairs];
            for (d, &v) in dst.iter_mut().zip(src) {
                // SAFETY: with `add`, an earlier group wrote every value ([`placed`]).
                let before = if add {
                    unsafe { d.assume_init_read() }
                } else {
                    0.0
                };
                d.write(before + v);
            }
        }
    }
}

/// `out[k][l]` (16 lanes per pair) = the sums of one block of output channels over every
/// position (reading the input at `xpos`), for the pairs at `offs`.
fn sums_by_cpu(gy: &[f32], x: &[f32], offs: &[usize], xpos: &[usize], out: &mut [f32]) {
    by_cpu!(
        pair_blocks(gy: &[f32], x: &[f32], offs: &[usize], xpos: &[usize], out: &mut [f32]),
        // 12 sums and no vector of the input: AVX-512 multiplies by a broadcast straight
        // from memory. 24 sums (1 × 24, or 2 blocks × 12 or × 8) spilled to the stack or
        // became gathers, and took 1.5 to 30 times as long (2026-12-03).
        avx512: [1, 12, 6, 3, 16, true],
        // AVX2 loads each broadcast into a register: 2 × 4 sums, 2 output-gradient vectors
        // and 4 broadcasts fill its 16. As 2 × 6 the sums went to the stack every step and
        // 256@14² took twice as long as the dot products it replaced (22.2 against 11.1 ms).
        avx2: [2, 4, 2, 1, 8, true],
        base: [2, 4, 2, 1, 8, false]
    )
}

/// Blocks of `KB` pairs, the pairs left over in blocks of `K2`, `K3` and one (one sum per
/// pair would wait on each product's latency); `OB` vectors of `L` lanes make the block's
/// 16 output channels.
#[inline(always)]
fn pair_blocks<
    const OB: usize,
    const KB: usize,
    const K2: usize,
    const K3: usize,
    const L: usize,
    const FMA: bool,
>(
    gy: &[f32],
    x: &[f32],
    offs: &[usize],
    xpos: &[usize],
    out: &mut [f32],
) {
    let kdim = offs.len();
    // Every pair over one chunk of positions before the next chunk, so that the chunk's
    // output gradient is read from the first-level cache.
    for (c, xpos) in xpos.chunks(CHUNK_POSITIONS).enumerate() {
        let gy = &gy[c * CHUNK_POSITIONS * LANES..][..xpos.len() * LANES];
        let mut k0 = 0;
        while k0 < kdim {
            let kb = [KB, K2, K3, 1]
                .into_iter()
                .find(|&b| k0 + b <= kdim)
                .unwrap_or(1);
            let (offs, out) = (&offs[k0..k0 + kb], &mut out[k0 * LANES..][..kb * LANES]);
            match kb {
                _ if kb == KB => sums::<OB, KB, L, FMA>(gy, x, offs, xpos, out),
                _ if kb == K2 => sums::<OB, K2, L, FMA>(gy, x, offs, xpos, out),
                _ if kb == K3 => sums::<OB, K3, L, FMA>(gy, x, offs, xpos, out),
                _ => sums::<OB, 1, L, FMA>(gy, x, offs, xpos, out),
            }
            k0 += kb;
        }
    }
}

/// `KB` pairs × `OB·L` output channels over a chunk of positions: per position, `OB`
/// vectors of the output gradient times each pair's input value, broadcast.
#[inline(always)]
fn sums<const OB: usize, const KB: usize, const L: usize, const FMA: bool>(
    gy: &[f32],
    x: &[f32],
    offs: &[usize],
    xpos: &[usize],
    out: &mut [f32],
) {
    const { assert!(OB * L == LANES) };
    let mut acc = [[[0.0f32; L]; KB]; OB];
    let gy = &gy[..xpos.len() * LANES];
    let x_rows: [&[f32]; KB] = std::array::from_fn(|k| &x[offs[k]..]);
    for (i, &at) in xpos.iter().enumerate() {
        // SAFETY: `gy` holds `LANES` values per position and `ob·L + l < LANES`; the
        // caller checked every `at + offs[k]` against the input's length.
        let g: [[f32; L]; OB] = std::array::from_fn(|ob| {
            std::array::from_fn(|l| unsafe { *gy.get_unchecked(i * LANES + ob * L + l) })
        });
        let xv: [[f32; L]; KB] =
            std::array::from_fn(|k| [unsafe { *x_rows[k].get_unchecked(at) }; L]);
        outer_products::<OB, KB, L, FMA>(&mut acc, &g, &xv);
    }
    for (k, lanes) in out.chunks_exact_mut(LANES).enumerate() {
        for (ob, acc) in acc.iter().enumerate() {
            for (o, a) in lanes[ob * L..][..L].iter_mut().zip(acc[k]) {
                *o += a;
            }
        }
    }
}

/// [`pair_blocks`] for two blocks of output channels at once (`gy` holds both, one after
/// the other; `out` their `2 · LANES · offs.len()` sums, block by block), in AVX-512's
/// registers by hand: 6 pairs × 2 vectors of sums, the pairs left over in blocks of 3
/// and 1. The first chunk of positions stores its sums, the others add theirs, in the
/// same order as [`pair_blocks`]'s (which adds the first to zeros), so both give the
/// same bits but for the sign of a zero: no buffer to clear first (clearing each tile's
/// took 3% of 512@7²'s forward and weight gradient's samples).
///
/// # Safety
/// AVX-512F; every `xpos[i] + offs[k]` lies inside `x`; `out` has room for the sums.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pair_zmm(gy: &[f32], x: &[f32], offs: &[usize], xpos: &[usize], out: *mut f32) {
    let kdim = offs.len();
    let len = xpos.len() * LANES;
    assert!(gy.len() == 2 * len, "conv_weight: two blocks");
    let (gy0, gy1) = gy.split_at(len);
    // SAFETY: the caller's contract.
    let out1 = unsafe { out.add(LANES * kdim) };
    for (c, xpos) in xpos.chunks(CHUNK_POSITIONS).enumerate() {
        let at = c * CHUNK_POSITIONS * LANES;
        let g = [
            &gy0[at..][..xpos.len() * LANES],
            &gy1[at..][..xpos.len() * LANES],
        ];
        let mut k0 = 0;
        while k0 < kdim {
            let kb = [6, 3, 1].into_iter().find(|&b| k0 + b <= kdim).unwrap_or(1);
            let offs = &offs[k0..k0 + kb];
            // SAFETY: as this function's; pairs `k0..k0 + kb` of each block.
            unsafe {
                let outs = [out.add(k0 * LANES), out1.add(k0 * LANES)];
                let first = c == 0;
                match kb {
                    6 => pair_sums::<6>(g, x, offs, xpos, outs, first),
                    3 => pair_sums::<3>(g, x, offs, xpos, outs, first),
                    _ => pair_sums::<1>(g, x, offs, xpos, outs, first),
                }
            }
            k0 += kb;
        }
    }
}

/// `KB` pairs × two blocks over a chunk of positions, stored at `outs` (`KB · LANES`
/// values each) for the `first` chunk, else added to what is there.
///
/// # Safety
/// As `pair_zmm`'s; `gy[j]` holds `LANES` values per position.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn pair_sums<const KB: usize>(
    gy: [&[f32]; 2],
    x: &[f32],
    offs: &[usize],
    xpos: &[usize],
    outs: [*mut f32; 2],
    first: bool,
) {
    use std::arch::x86_64::*;
    let rows: [*const f32; KB] = std::array::from_fn(|k| x[offs[k]..].as_ptr());
    let mut acc = [[_mm512_setzero_ps(); KB]; 2];
    for (i, &at) in xpos.iter().enumerate() {
        // SAFETY: `gy` holds `LANES` values per position; `at + offs[k]` is inside `x`
        // (the caller's contract).
        unsafe {
            let g = [
                _mm512_loadu_ps(gy[0].as_ptr().add(i * LANES)),
                _mm512_loadu_ps(gy[1].as_ptr().add(i * LANES)),
            ];
            for k in 0..KB {
                let v = _mm512_set1_ps(*rows[k].add(at));
                acc[0][k] = _mm512_fmadd_ps(g[0], v, acc[0][k]);
                acc[1][k] = _mm512_fmadd_ps(g[1], v, acc[1][k]);
            }
        }
    }
    for (acc, out) in acc.iter().zip(outs) {
        for (k, a) in acc.iter().enumerate() {
            // SAFETY: `KB · LANES` values at `out` (the caller's contract), written by
            // the first chunk before any later one reads them.
            unsafe {
                let o = out.add(k * LANES);
                let sum = if first {
                    *a
                } else {
                    _mm512_add_ps(_mm512_loadu_ps(o), *a)
                };
                _mm512_storeu_ps(o, sum);
            }
        }
    }
}
