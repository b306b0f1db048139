//! 3×3, stride-1 convolutions by Winograd's minimal filtering, F(2×2, 3×3) (Lavin and
//! Gray, 2016): the forward, and the input gradient (a convolution of the output gradient
//! by the kernels turned by half a circle, input and output channels swapped). Each 2×2
//! block of outputs (a tile) comes from a 4×4 window of the input; per tile and channel
//! the window is transformed (`Bᵀ·d·B`), per channel pair the 3×3 kernel (`G·g·Gᵀ`); then
//! for each of the 16 transformed positions one GEMM (`gemm.rs`) multiplies the kernels
//! (output × input channels) by the windows (input channels × tiles), and each tile's 16
//! sums give its 2×2 outputs (`Aᵀ·m·A`). The GEMMs do 16 multiply-adds per tile and
//! channel pair where the direct products do 36; the transforms are additions only.
//!
//! The sums are the direct ones' in another order, with other roundings (the tests hold
//! them to the definition's 1e-4, as every path). An infinity or NaN in a window mixes
//! into the tile's other outputs as NaN, so a result that is not all finite is computed
//! again by the direct products.
//!
//! Two threads on an Intel Xeon (AVX-512, batch 8, 2026-12-04, fastest of three or four
//! alternating rounds, PyTorch in brackets): the forward of 256@14² 6.19 → 5.21 ms (5.49),
//! 128@28² 6.61 → 5.44 (8.47), 64@224² 125.0 → 106.6 (170.4); forward and backward of
//! 256@14² 19.61 → 17.58 (18.37), 128@28² 20.60 → 17.83 (23.20). At batch 1, the style
//! transfer's planes: 64@512² 91.2 → 71.9 (112.1), 128@256² 80.3 → 51.2 (85.0), 256@128²
//! 67.8 → 39.3 (68.3), 512@64² 65.5 → 39.0 (64.9). Written with loops over a tile row,
//! the transforms ran one value at a time on the 7 tiles of a 14² row and made it slower
//! than the direct products; they are written with AVX-512 intrinsics here
//! (`conv2d_winograd_zmm.rs`), with portable loops as the other levels' build (the
//! AVX2 level's measured in [`applies`]).

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::conv2d_winograd_panels as panels;
use super::conv2d_winograd_rows as rows;
use super::gemm::{gemm, Layout};
use super::threads::{self, SendPtr};
use super::{by_cpu, recycle_scratch};
use crate::backend::Conv2dParams;
use crate::host;
use crate::Result;

/// Tiles per GEMM at most: the windows of 512 input channels then take 16 · 512 · 256
/// values (8 MiB), each transformed position's 512 KiB.
const MAX_TILES: usize = 256;

/// Input and output channels at least: with 64 the GEMMs already outweighed the
/// transforms (8 × 64@56², two threads: 7.50 → 6.46 ms).
const MIN_CHANNELS: usize = 64;

/// Tiles in a batch at least: below that the GEMMs are too thin to pay for the
/// transformed kernels (1 × 256@14², 49 tiles: 0.87 → 1.18 ms; 8 × 256@7²: 1.74 → 2.16).
const MIN_TILES: usize = 256;

/// Whether the forward of `p` runs here: a 3×3 kernel at stride 1 and dilation 1, one
/// group, [`MIN_CHANNELS`] on both sides, [`MIN_TILES`], and planes of at least 8 × 8
/// (a 7² plane's 16 tiles cover 8², and 512@7² at batch 8 took 14.9 ms against 11.2
/// single-threaded), where the processor has AVX2 and FMA or AVX-512. At the AVX2 level
/// (`FOVEA_CPU_LEVEL=avx2` on the Intel Xeon, two threads, batch 8) the forward of
/// 256@14² took 5.46 ms against the direct products' 12.09, 64@56² 8.99 against 12.91,
/// 128@256² at batch 1 64.2 against 129.5; there the GEMMs ran `matrixmultiply`, which
/// picks its own AVX-512 kernel on that processor, so on a processor with AVX2 alone
/// only the transforms' build is the same. The baseline build is left to the direct
/// products, unmeasured.
pub(super) fn applies(p: &Conv2dParams) -> bool {
    p.kernel == [3, 3]
        && p.stride == [1, 1]
        && p.dilation == [1, 1]
        && p.groups == 1
        && p.c_in >= MIN_CHANNELS
        && p.c_out >= MIN_CHANNELS
        && p.oh >= 8
        && p.ow >= 8
        && p.n.saturating_mul(p.oh.div_ceil(2) * p.ow.div_ceil(2)) >= MIN_TILES
        && super::cpu_level() != super::Level::Base
}

/// Whether the input gradient of `p` runs here: [`applies`] to the convolution of the
/// output gradient that it is, with padding at most 2 (its padding is `2 − p`).
pub(super) fn grad_input_applies(p: &Conv2dParams) -> bool {
    p.padding.iter().all(|&pad| pad <= 2) && applies(&backward(p))
}

/// The stride-1 convolution that gives `p`'s input gradient from its output gradient:
/// the kernels turned by half a circle (see [`Kernels`]), padding `k − 1 − p` on each
/// axis (`2 − p` for 3×3; [`grad_input_applies`]). The rows' form takes it too.
pub(super) fn backward(p: &Conv2dParams) -> Conv2dParams {
    Conv2dParams {
        c_in: p.c_out,
        h: p.oh,
        w: p.ow,
        c_out: p.c_in,
        oh: p.h,
        ow: p.w,
        padding: std::array::from_fn(|a| {
            (p.kernel[a].saturating_sub(1)).saturating_sub(p.padding[a])
        }),
        ..*p
    }
}

/// `p`'s forward by whichever Winograd form serves it (3×3 kernels here, kernels one row
/// high in `conv2d_winograd_rows.rs`), or None where none does or an output is not
/// finite.
pub(super) fn try_forward(x: &[f32], w: &[f32], p: &Conv2dParams) -> Result<Option<Vec<f32>>> {
    if applies(p) {
        forward(x, w, p)
    } else if panels_apply(p, Kernels::Forward) {
        #[cfg(target_arch = "x86_64")]
        return panels::forward(x, w, p);
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("the panels' path is x86-64's")
    } else if rows::applies(p) {
        rows::forward(x, w, p)
    } else {
        Ok(None)
    }
}

/// Whether `p`'s forward or input gradient takes `conv2d_winograd_panels.rs` (small
/// planes).
fn panels_apply(p: &Conv2dParams, which: Kernels) -> bool {
    #[cfg(target_arch = "x86_64")]
    return match which {
        Kernels::Forward => panels::applies(p),
        Kernels::Backward => panels::grad_input_applies(p),
    };
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (p, which);
        false
    }
}

/// `p`'s input gradient as [`try_forward`] gives its forward.
pub(super) fn try_grad_input(gy: &[f32], w: &[f32], p: &Conv2dParams) -> Result<Option<Vec<f32>>> {
    if grad_input_applies(p) {
        grad_input(gy, w, p)
    } else if panels_apply(p, Kernels::Backward) {
        #[cfg(target_arch = "x86_64")]
        return panels::grad_input(gy, w, p);
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("the panels' path is x86-64's")
    } else if rows::grad_input_applies(p) {
        rows::grad_input(gy, w, p)
    } else {
        Ok(None)
    }
}

/// The output of `p`'s convolution of `x` by `w`, or None where an output is not finite
/// (the caller then computes it directly).
pub(super) fn forward(x: &[f32], w: &[f32], p: &Conv2dParams) -> Result<Option<Vec<f32>>> {
    run(x, w, p, Kernels::Forward)
}

/// `p`'s input gradient from the output gradient `gy`, or None as for [`forward`].
pub(super) fn grad_input(gy: &[f32], w: &[f32], p: &Conv2dParams) -> Result<Option<Vec<f32>>> {
    assert!(
        p.padding.iter().all(|&pad| pad <= 2),
        "conv2d_winograd: padding above 2"
    );
    run(gy, w, &backward(p), Kernels::Backward)
}

/// The convolution `p` of `x` by the kernels `which` makes of `w`.
fn run(x: &[f32], w: &[f32], p: &Conv2dParams, which: Kernels) -> Result<Option<Vec<f32>>> {
    let (ci, co) = (p.c_in, p.c_out);
    let tw = p.ow.div_ceil(2);
    let u = kernels(w, (co, ci), which)?;
    let blocks = blocks(p);
    let len = p.output_len();
    let mut out = host::with_capacity(len)?;
    let y = SendPtr(out.as_mut_ptr());
    // `m`: the sums, kept from block to block of a thread (the GEMMs overwrite them, so
    // only a larger block needs a fresh, cleared buffer).
    let block = |m: &mut Vec<f32>, &(r0, r1): &(usize, usize)| -> Result<bool> {
        threads::task(|| {
            let tiles = (r1 - r0) * tw;
            let v = windows(x, p, (r0, r1), tw)?;
            let len = 16 * co * tiles;
            if m.len() < len {
                recycle_scratch(std::mem::replace(m, host::zeros(len)?));
            }
            for (xi, m) in m[..len].chunks_exact_mut(co * tiles).enumerate() {
                let (u, v) = (&u[xi * co * ci..][..co * ci], &v[xi * ci * tiles..]);
                let (lu, lv, lm) = (Layout::rows(ci), Layout::rows(tiles), Layout::rows(tiles));
                gemm(co, ci, tiles, u, lu, v, lv, 0.0, m, lm);
            }
            recycle_scratch(v);
            // SAFETY: this block's tile rows are its own, so the outputs it writes are
            // written by no other block, and every output lies in one block's rows.
            Ok(unsafe { outputs(&m[..len], p, (r0, r1), tw, y) })
        })
    };
    let finite = if blocks.len() > 1 && !threads::nested() {
        blocks
            .par_iter()
            .map_init(Vec::new, block)
            .collect::<Result<Vec<_>>>()?
    } else {
        let mut m = Vec::new();
        let finite = blocks
            .iter()
            .map(|b| block(&mut m, b))
            .collect::<Result<Vec<_>>>()?;
        recycle_scratch(m);
        finite
    };
    // SAFETY: the blocks cover every tile row of every image, and each tile writes its
    // outputs in every output channel.
    Ok(unsafe { finished(out, u, len, &finite) })
}

/// A Winograd path's result: `out` with its `len` values where every block's outputs
/// were finite (`finite`), else None (the caller computes them another way); the
/// transformed kernels `u` kept for reuse either way.
///
/// # Safety
/// Where all are finite, the blocks wrote all `len` values of `out`.
pub(super) unsafe fn finished(
    mut out: Vec<f32>,
    u: Vec<f32>,
    len: usize,
    finite: &[bool],
) -> Option<Vec<f32>> {
    recycle_scratch(u);
    if !finite.iter().all(|&f| f) {
        recycle_scratch(out);
        return None;
    }
    // SAFETY: the caller's.
    unsafe { out.set_len(len) };
    Some(out)
}

/// Blocks of whole tile rows, counted across the batch (image-major), so that small
/// planes share a GEMM and large ones are split between threads: a multiple of the
/// threads' count of blocks (unless there are fewer tile rows), their sizes at most one
/// row apart, each of at most [`MAX_TILES`] tiles (but one tile row).
fn blocks(p: &Conv2dParams) -> Vec<(usize, usize)> {
    let (th, tw) = (p.oh.div_ceil(2), p.ow.div_ceil(2));
    let rows = p.n * th;
    let threads = rayon::current_num_threads().max(1);
    let most = (MAX_TILES / tw.max(1)).max(1);
    let count = rows.div_ceil(most).next_multiple_of(threads).min(rows);
    (0..count)
        .map(|b| (b * rows / count, (b + 1) * rows / count))
        .collect()
}

/// Which kernels a convolution's weight (`[outs][ins][3][3]` as PyTorch lays it out)
/// gives: its own, or for the input gradient (a convolution of the output gradient) each
/// input channel's kernels over the output channels, turned by half a circle.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Kernels {
    Forward,
    Backward,
}

/// The transformed kernels `G·g·Gᵀ`, as 16 matrices (one per transformed position) of
/// `outs` rows of `ins`: the forward's of weight `w` (`outs` × `ins`), or the input
/// gradient's (`w` is then `ins` × `outs`, see [`Kernels`]).
fn kernels(w: &[f32], (outs, ins): (usize, usize), which: Kernels) -> Result<Vec<f32>> {
    let plane = outs * ins;
    assert!(w.len() >= plane * 9, "conv2d_winograd: weights too short");
    // With AVX-512 the transform writes each output's rows into the matrices directly.
    #[cfg(target_arch = "x86_64")]
    let direct = super::cpu_level() == super::Level::Avx512;
    #[cfg(not(target_arch = "x86_64"))]
    let direct = false;
    // Output `o`'s transformed kernels into `u` (16 rows along the inputs), through
    // `taps`.
    let one = |(taps, u): &mut (Vec<f32>, Vec<f32>), o: usize| {
        // Output `o`'s kernels tap by tap, each tap's along the inputs: input `i`'s tap
        // `t` at `first + i·step + t` (the taps in the other order for the input
        // gradient's, turned by half a circle).
        let (first, step) = match which {
            Kernels::Forward => (o * ins * 9, 9),
            Kernels::Backward => (o * 9, outs * 9),
        };
        for i in 0..ins {
            for (t, &v) in w[first + i * step..][..9].iter().enumerate() {
                let t = if which == Kernels::Backward { 8 - t } else { t };
                taps[t * ins + i] = v;
            }
        }
        kernel_rows(taps, u);
    };
    // Output `o`'s rows copied into the 16 matrices at `out`.
    let out_at = |out: SendPtr, scratch: &mut (Vec<f32>, Vec<f32>), o: usize| {
        #[cfg(target_arch = "x86_64")]
        if direct {
            // SAFETY: the processor has AVX-512F; output `o`'s `ins` values of each of
            // the 16 matrices (`plane` apart), below `16·plane` and its alone.
            unsafe {
                panels::kernels_to(
                    w,
                    (outs, ins),
                    which,
                    o,
                    (0, ins),
                    out.get().add(o * ins),
                    plane,
                )
            };
            return;
        }
        one(scratch, o);
        for (k, u) in scratch.1.chunks_exact(ins).enumerate() {
            // SAFETY: `ins` values from `k·plane + o·ins`, below `16·plane` (the matrices
            // `host::written` gives below), and output `o`'s alone.
            unsafe {
                let dst = out.get().add(k * plane + o * ins);
                std::ptr::copy_nonoverlapping(u.as_ptr(), dst, ins);
            }
        }
    };
    // Each task's own scratch: the taps and the transformed rows of one output (none
    // where `direct`).
    let scratch = || {
        if direct {
            (Vec::new(), Vec::new())
        } else {
            (vec![0.0f32; 9 * ins], vec![0.0f32; 16 * ins])
        }
    };
    // SAFETY: each output `o` writes the values at `o·ins..(o + 1)·ins` of each of the 16
    // matrices, so every value is written, once, by one thread.
    unsafe {
        host::written(16 * plane, |out| {
            // `MaybeUninit<f32>` has `f32`'s layout.
            let out = SendPtr(out.as_mut_ptr().cast());
            if threads::nested() {
                let mut own = scratch();
                (0..outs).for_each(|o| out_at(out, &mut own, o))
            } else {
                (0..outs)
                    .into_par_iter()
                    .for_each_init(scratch, |own, o| out_at(out, own, o))
            }
        })
    }
}

/// One output's kernels, given as 9 rows (one per tap) along the inputs in `taps`,
/// transformed into 16 rows along the inputs in `u`.
fn kernel_rows(taps: &[f32], u: &mut [f32]) {
    #[inline(always)]
    fn rows<const L: usize>(taps: &[f32], u: &mut [f32]) {
        let ins = taps.len() / 9;
        let tap = |t: usize| &taps[t * ins..][..ins];
        // G·g along the kernel's rows, then along its columns: (a, (a + b + c)/2,
        // (a − b + c)/2, c) each way.
        let mut cols = [[0.0f32; 4]; 3];
        for c in 0..ins {
            for (j, col) in cols.iter_mut().enumerate() {
                let (a, b, e) = (tap(j)[c], tap(3 + j)[c], tap(6 + j)[c]);
                *col = [a, 0.5 * (a + b + e), 0.5 * (a - b + e), e];
            }
            for r in 0..4 {
                let (a, b, e) = (cols[0][r], cols[1][r], cols[2][r]);
                let row = [a, 0.5 * (a + b + e), 0.5 * (a - b + e), e];
                for (j, v) in row.into_iter().enumerate() {
                    u[(4 * r + j) * ins + c] = v;
                }
            }
        }
    }
    by_cpu!(rows(taps: &[f32], u: &mut [f32]), avx512: [16], avx2: [8], base: [4])
}

/// The transformed windows `Bᵀ·d·B` of tile rows `r0..r1` (counted across the batch), as
/// 16 matrices of `ci` rows of `(r1 − r0)·tw` tiles.
pub(super) fn windows(
    x: &[f32],
    p: &Conv2dParams,
    (r0, r1): (usize, usize),
    tw: usize,
) -> Result<Vec<f32>> {
    let tiles = (r1 - r0) * tw;
    assert!(x.len() >= p.input_len(), "conv2d_winograd: input too short");
    #[cfg(target_arch = "x86_64")]
    if super::cpu_level() == super::Level::Avx512 {
        // SAFETY: the processor has AVX-512F; the input holds `p`'s, and every value of
        // `v` is written (each channel's row of each position, tile by tile).
        return unsafe {
            host::written(16 * p.c_in * tiles, |v| {
                windows_zmm(x, p, (r0, r1), tw, v.as_mut_ptr().cast())
            })
        };
    }
    let mut v = host::zeros(16 * p.c_in * tiles)?;
    let mut db = vec![0.0f32; 16 * tiles];
    let mut eo = vec![0.0f32; 4 * tw + 4];
    windows_into(x, p, (r0, r1, tw), &mut v, &mut db, &mut eo);
    Ok(v)
}

/// [`windows`] with AVX-512, into `v`.
///
/// # Safety
/// AVX-512F; `x` holds `p`'s input and `v` has room for `16 · c_in · (r1 − r0) · tw`
/// values.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn windows_zmm(
    x: &[f32],
    p: &Conv2dParams,
    (r0, r1): (usize, usize),
    tw: usize,
    v: *mut f32,
) {
    // SAFETY: the caller's.
    unsafe {
        if tw <= 8 {
            zmm::window_pairs(x, p, (r0, r1, tw), v)
        } else {
            zmm::windows(x, p, (r0, r1, tw), v)
        }
    }
}

/// [`windows`] into `v`, with `db` (16 rows of the block's tiles) and `eo` (`4·tw + 4`
/// zeros) as scratch.
fn windows_into(
    x: &[f32],
    p: &Conv2dParams,
    block: (usize, usize, usize),
    v: &mut [f32],
    db: &mut [f32],
    eo: &mut [f32],
) {
    #[inline(always)]
    fn run<const L: usize>(
        x: &[f32],
        p: &Conv2dParams,
        (r0, r1, tw): (usize, usize, usize),
        v: &mut [f32],
        db: &mut [f32],
        eo: &mut [f32],
    ) {
        let (ci, hw) = (p.c_in, p.h * p.w);
        let th = p.oh.div_ceil(2);
        let tiles = (r1 - r0) * tw;
        let ld = ci * tiles;
        // A window row's columns, input column `iw` at `iw + pw` (zeros around it), and
        // its even and odd columns.
        let pw = p.padding[1];
        let width = 2 * tw + 2;
        let (padded, eo) = eo.split_at_mut(width);
        let (e, o) = eo.split_at_mut(tw + 1);
        let n_in = p.w.min(width.saturating_sub(pw));
        for c in 0..ci {
            for r in r0..r1 {
                let (n, ty) = (r / th, r % th);
                let plane = &x[(n * ci + c) * hw..][..hw];
                let at = (r - r0) * tw;
                for i in 0..4 {
                    let ih = (2 * ty + i)
                        .checked_sub(p.padding[0])
                        .filter(|&ih| ih < p.h);
                    match ih {
                        Some(ih) => {
                            padded[pw..pw + n_in].copy_from_slice(&plane[ih * p.w..][..n_in]);
                            for ((e, o), pair) in
                                e.iter_mut().zip(o.iter_mut()).zip(padded.chunks_exact(2))
                            {
                                (*e, *o) = (pair[0], pair[1]);
                            }
                        }
                        None => {
                            e.fill(0.0);
                            o.fill(0.0);
                        }
                    }
                    // d·B for each tile of the row: row `i`'s 4 columns at `db[i][j]`.
                    let (d0, rest) = db[4 * i * tiles + at..].split_at_mut(tiles);
                    let (d1, rest) = rest.split_at_mut(tiles);
                    let (d2, d3) = rest.split_at_mut(tiles);
                    let (e0, e1, o0, o1) = (&e[..tw], &e[1..=tw], &o[..tw], &o[1..=tw]);
                    for t in 0..tw {
                        d0[t] = e0[t] - e1[t];
                        d1[t] = o0[t] + e1[t];
                        d2[t] = e1[t] - o0[t];
                        d3[t] = o0[t] - o1[t];
                    }
                }
            }
            // Bᵀ·(d·B): rows 0 − 2, 1 + 2, 2 − 1 and 1 − 3, for each column `j`.
            for j in 0..4 {
                let row = |i: usize| &db[(4 * i + j) * tiles..][..tiles];
                let (a, b, e, d) = (row(0), row(1), row(2), row(3));
                let dst = |k: usize| k * ld + c * tiles;
                for t in 0..tiles {
                    v[dst(j) + t] = a[t] - e[t];
                    v[dst(4 + j) + t] = b[t] + e[t];
                    v[dst(8 + j) + t] = e[t] - b[t];
                    v[dst(12 + j) + t] = b[t] - d[t];
                }
            }
        }
    }
    by_cpu!(
        run(x: &[f32], p: &Conv2dParams, block: (usize, usize, usize), v: &mut [f32],
            db: &mut [f32], eo: &mut [f32]),
        avx512: [16],
        avx2: [8],
        base: [4]
    )
}

/// Each tile's 2×2 outputs `Aᵀ·m·A` from its 16 sums in `m` (16 matrices of output
/// channels × tiles), for tile rows `r0..r1`, written into `y` (the whole output);
/// whether they were all finite.
///
/// # Safety
/// `y` points to the output of `p`, and no other thread writes these tile rows' outputs.
pub(super) unsafe fn outputs(
    m: &[f32],
    p: &Conv2dParams,
    (r0, r1): (usize, usize),
    tw: usize,
    y: SendPtr,
) -> bool {
    let tiles = (r1 - r0) * tw;
    assert!(
        m.len() >= 16 * p.c_out * tiles,
        "conv2d_winograd: sums too short"
    );
    #[cfg(target_arch = "x86_64")]
    if super::cpu_level() == super::Level::Avx512 {
        // SAFETY: the processor has AVX-512F; the caller's contract covers `y`.
        return unsafe { zmm::outputs(m, p, (r0, r1, tw), y.get()) };
    }
    let mut ys = vec![0.0f32; 4 * tiles];
    let mut finite = true;
    let th = p.oh.div_ceil(2);
    for o in 0..p.c_out {
        finite &= tile_sums(m, (o, p.c_out, tiles), &mut ys);
        for r in r0..r1 {
            let (n, ty) = (r / th, r % th);
            let plane = (n * p.c_out + o) * p.oh * p.ow;
            let at = (r - r0) * tw;
            for i in 0..2 {
                let oy = 2 * ty + i;
                if oy >= p.oh {
                    continue;
                }
                let (left, right) = (
                    &ys[(2 * i) * tiles + at..][..tw],
                    &ys[(2 * i + 1) * tiles + at..][..tw],
                );
                for ox in 0..p.ow {
                    let val = if ox % 2 == 0 {
                        left[ox / 2]
                    } else {
                        right[ox / 2]
                    };
                    // SAFETY: within the output (the caller's contract), and this
                    // block's own.
                    unsafe { y.get().add(plane + oy * p.ow + ox).write(val) };
                }
            }
        }
    }
    finite
}

/// Output channel `o`'s `Aᵀ·m·A` for every tile: `ys` holds 4 rows of `tiles`, the
/// outputs (0, 0), (0, 1), (1, 0) and (1, 1) of each; whether all are finite.
fn tile_sums(m: &[f32], (o, co, tiles): (usize, usize, usize), ys: &mut [f32]) -> bool {
    #[inline(always)]
    fn run<const L: usize>(
        m: &[f32],
        (o, co, tiles): (usize, usize, usize),
        ys: &mut [f32],
        finite: &mut bool,
    ) {
        let row = |k: usize| &m[(k * co + o) * tiles..][..tiles];
        let s: [&[f32]; 16] = std::array::from_fn(row);
        let (y0, rest) = ys.split_at_mut(tiles);
        let (y1, rest) = rest.split_at_mut(tiles);
        let (y2, y3) = rest.split_at_mut(tiles);
        // Zero times each output: NaN where one is not finite.
        let mut nan = 0.0f32;
        for t in 0..tiles {
            // Aᵀ·m: rows m0 + m1 + m2 and m1 − m2 − m3 (of 4 columns), then the same
            // along each row.
            let top: [f32; 4] = std::array::from_fn(|j| s[j][t] + s[4 + j][t] + s[8 + j][t]);
            let bottom: [f32; 4] =
                std::array::from_fn(|j| s[4 + j][t] - s[8 + j][t] - s[12 + j][t]);
            y0[t] = top[0] + top[1] + top[2];
            y1[t] = top[1] - top[2] - top[3];
            y2[t] = bottom[0] + bottom[1] + bottom[2];
            y3[t] = bottom[1] - bottom[2] - bottom[3];
            nan += (y0[t] + y1[t] + y2[t] + y3[t]) * 0.0;
        }
        *finite = nan == 0.0;
    }
    fn at_level(m: &[f32], shape: (usize, usize, usize), ys: &mut [f32], finite: &mut bool) {
        by_cpu!(
            run(m: &[f32], shape: (usize, usize, usize), ys: &mut [f32], finite: &mut bool),
            avx512: [16],
            avx2: [8],
            base: [4]
        )
    }
    let mut finite = true;
    at_level(m, (o, co, tiles), ys, &mut finite);
    finite
}

#[cfg(target_arch = "x86_64")]
#[path = "conv2d_winograd_zmm.rs"]
mod zmm;

#[cfg(test)]
#[path = "conv2d_winograd_tests.rs"]
mod tests;
