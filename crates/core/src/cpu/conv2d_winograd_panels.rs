//! Winograd's F(2×2, 3×3) for the small planes that `conv2d_winograd.rs` leaves to the
//! direct products (7² planes, whose 16 tiles overhang them, and batches of few tiles):
//! there each thread split the tiles and transformed all the kernels into one 16-matrix
//! buffer (the weight's size 16/9 times over), which each thread's GEMM then packed
//! again for its few tile columns, so reading the kernels outweighed the products saved
//! (512@7² at batch 8 took 14.9 ms against 11.2 on one thread).
//!
//! Here the threads split the output channels instead, and each transforms its own
//! kernels, a few output channels at a time, straight into the packed panels that the
//! GEMM's register block (`gemm_zmm::block`) reads, so the transformed kernels never
//! leave the cache; every tile's windows, transformed once before, are the shared
//! operand, 32 tiles per panel. With AVX-512 only (the register block's level).

use std::arch::x86_64::*;
use std::cell::RefCell;

use rayon::prelude::*;

use super::conv2d_winograd::{self as winograd, Kernels};
use super::gemm_zmm::{self, KC, MR, NR};
use super::threads::{self, SendPtr};
use super::transpose;
use super::{recycle_scratch, Level};
use crate::backend::Conv2dParams;
use crate::host;
use crate::Result;

/// Tiles per pass at most (whole images, one at least): the windows and the sums of 512
/// channels then take 16 MiB each. In one pass, a large batch's would outgrow the memory
/// that the direct products need, and past the cache they are slow: 64 × 512@7² (1 024
/// tiles) took 80.9 ms in one pass, 49.5 in passes of 512 tiles, 50.2 of 256 and 51.2
/// of 128 (the Zen 4 VM, fastest of 8 calls).
const MAX_TILES: usize = 512;

/// Register blocks of output channels transformed together: their 16 panels (16 · 4 · 12
/// · `KC` values) meet every tile panel. At `KC` 256 they took 768 KiB and stayed in a
/// Zen 4's 1 MiB L2; at 512 they take 1.5 MiB, yet 512@7² (one slice of 512 channels
/// instead of two) ran 6.29 → 6.20 ms at batch 8 (the Zen 4 VM, 2026-12-05, ten
/// alternating rounds).
const GROUP: usize = 4;

/// Input and output channels at least: 8 × 64@7² took as long either way, 1 × 64@28²
/// longer here (0.34 ms against 0.31).
const MIN_CHANNELS: usize = 128;

/// The fewer channels times the tiles in the batch, at least: each call transforms all
/// the kernels, which the tiles' saved products must pay for. 1 × 512@7² (16 tiles) took
/// 2.32 ms against the direct products' 1.22, 1 × 256@10² (25) 0.62 against 0.60 and
/// 1 × 128@14² (49) 0.44 against 0.30; 2 × 128@14² (98) was even, 1 × 256@14² (49)
/// 0.94 against 1.10 and 2 × 512@7² (32) 2.25 against 2.35.
const MIN_WORK: usize = 12_288;

/// Whether the forward of `p` runs here: a 3×3 kernel at stride 1 and dilation 1, one
/// group, [`MIN_CHANNELS`] on both sides and [`MIN_WORK`], rows of at most 32 tiles (64
/// outputs), with AVX-512 (where `conv2d_winograd` takes it, that runs first). Measured
/// on an AMD EPYC (Zen 4) VM, two threads, fastest of 20 calls twice over, against the
/// direct products: 8 × 512@7² 7.92 → 6.21 ms, 4 × 512@7² 4.16 → 3.40, 8 × 256@7² 2.05
/// → 1.64, 8 × 128@7² 1.04 → 0.89, 1 × 512@14² 4.36 → 3.69, 1 × 128@28² 1.09 → 0.91.
pub(super) fn applies(p: &Conv2dParams) -> bool {
    let tiles = p.n.saturating_mul(p.oh.div_ceil(2) * p.ow.div_ceil(2));
    let channels = p.c_in.min(p.c_out);
    p.kernel == [3, 3]
        && p.stride == [1, 1]
        && p.dilation == [1, 1]
        && p.groups == 1
        && channels >= MIN_CHANNELS
        && channels.saturating_mul(tiles) >= MIN_WORK
        && p.oh >= 1
        && (1..=2 * NR).contains(&p.ow)
        && super::cpu_level() == Level::Avx512
}

/// Whether the input gradient of `p` runs here (see `conv2d_winograd::backward`).
pub(super) fn grad_input_applies(p: &Conv2dParams) -> bool {
    p.padding.iter().all(|&pad| pad <= 2) && applies(&winograd::backward(p))
}

/// The output of `p`'s convolution of `x` by `w`, or None where an output is not finite.
pub(super) fn forward(x: &[f32], w: &[f32], p: &Conv2dParams) -> Result<Option<Vec<f32>>> {
    run(x, w, p, Kernels::Forward)
}

/// `p`'s input gradient from the output gradient `gy`, or None as for [`forward`].
pub(super) fn grad_input(gy: &[f32], w: &[f32], p: &Conv2dParams) -> Result<Option<Vec<f32>>> {
    assert!(
        p.padding.iter().all(|&pad| pad <= 2),
        "conv2d_winograd_panels: padding above 2"
    );
    run(gy, w, &winograd::backward(p), Kernels::Backward)
}

/// The convolution `p` of `x` by the kernels `which` makes of `w`, [`MAX_TILES`] at a
/// time (whole images).
fn run(x: &[f32], w: &[f32], p: &Conv2dParams, which: Kernels) -> Result<Option<Vec<f32>>> {
    assert!(
        w.len() >= p.c_out * p.c_in * 9 && x.len() >= p.input_len(),
        "conv2d_winograd_panels: weights or input too short"
    );
    let images = (MAX_TILES / (p.oh.div_ceil(2) * p.ow.div_ceil(2)).max(1)).max(1);
    let (x_image, y_image) = (p.c_in * p.h * p.w, p.c_out * p.oh * p.ow);
    let len = p.output_len();
    let mut out = host::with_capacity(len)?;
    let y = out.as_mut_ptr();
    let mut finite = Vec::new();
    for n0 in (0..p.n).step_by(images) {
        let q = Conv2dParams {
            n: images.min(p.n - n0),
            ..*p
        };
        let y = SendPtr(y.wrapping_add(n0 * y_image));
        // SAFETY: images `n0..n0 + q.n` of the output, inside `out`'s capacity.
        finite.extend(unsafe { pass(&x[n0 * x_image..], w, &q, which, y) }?);
    }
    // SAFETY: the passes cover every image, each writing all its outputs.
    Ok(unsafe { winograd::finished(out, Vec::new(), len, &finite) })
}

/// One pass of [`run`] over the images of `p`, its output written at `y`; whether each
/// panel's outputs were finite.
///
/// # Safety
/// `y` points to room for `p`'s output, which no other thread writes.
unsafe fn pass(
    x: &[f32],
    w: &[f32],
    p: &Conv2dParams,
    which: Kernels,
    y: SendPtr,
) -> Result<Vec<bool>> {
    let co = p.c_out;
    let tw = p.ow.div_ceil(2);
    let rows = p.n * p.oh.div_ceil(2);
    let per = NR / tw;
    let panels: Vec<(usize, usize)> = (0..rows)
        .step_by(per)
        .map(|r| (r, (r + per).min(rows)))
        .collect();
    let windows = windows(x, p, &panels)?;
    // The sums, panel by panel: position by position, output channel by output channel,
    // the panel's own tiles (as `winograd::outputs` reads them); a full panel's at
    // `16 · c_out · per · tw` values from the last.
    let full = 16 * co * per * tw;
    let sums_len = 16 * co * rows * tw;
    let mut sums = host::with_capacity(sums_len)?;
    let mp = SendPtr(sums.as_mut_ptr());
    let shares = shares(co);
    let v = &windows.0[windows.1..];
    let share = |&(c0, c1): &(usize, usize)| {
        threads::task(|| {
            // SAFETY: the processor has AVX-512F (`applies`); each share writes its own
            // output channels' rows of every panel's sums.
            unsafe { products(w, v, p, which, (c0, c1), (&panels, full), mp) }
        })
    };
    if threads::nested() || shares.len() == 1 {
        shares.iter().for_each(share);
    } else {
        shares.par_iter().for_each(share);
    }
    recycle_scratch(windows.0);
    // SAFETY: the shares cover every output channel, and for each the first slice of
    // input channels wrote every sum of every panel.
    unsafe { sums.set_len(sums_len) };
    let finish = |(pi, &(r0, r1)): (usize, &(usize, usize))| {
        let tiles = (r1 - r0) * tw;
        let m = &sums[pi * full..][..16 * co * tiles];
        // SAFETY: this panel's tile rows are its own, so no other panel writes its
        // outputs, and every output lies in one panel's rows (the caller's `y`).
        unsafe { winograd::outputs(m, p, (r0, r1), tw, y) }
    };
    let finite: Vec<bool> = if threads::nested() {
        panels.iter().enumerate().map(finish).collect()
    } else {
        panels.par_iter().enumerate().map(finish).collect()
    };
    recycle_scratch(sums);
    Ok(finite)
}

/// The transformed windows of `panels` (tile rows), panel by panel, each position by
/// position and input channel by input channel, 32 tiles (the register block's
/// columns) whatever the panel holds (zeros past its own), so that each position's rows
/// are a packed B operand; and where in the buffer the first panel starts (on a 64-byte
/// boundary, as the register block's aligned loads want).
fn windows(x: &[f32], p: &Conv2dParams, panels: &[(usize, usize)]) -> Result<(Vec<f32>, usize)> {
    let tw = p.ow.div_ceil(2);
    let v_len = 16 * p.c_in * NR;
    let len = panels.len() * v_len + 16;
    let mut v = host::with_capacity(len)?;
    let skip = v.as_ptr().align_offset(64).min(16);
    let vp = SendPtr(v.as_mut_ptr());
    let each = |(pi, &(r0, r1)): (usize, &(usize, usize))| -> Result<()> {
        let tiles = (r1 - r0) * tw;
        let dst = vp.get().wrapping_add(skip + pi * v_len);
        if tiles == NR {
            // SAFETY: the processor has AVX-512F (`applies`); panel `pi`'s `v_len`
            // values lie inside `v` and are this panel's own.
            unsafe { winograd::windows_zmm(x, p, (r0, r1), tw, dst) };
            return Ok(());
        }
        // A short panel: its rows are copied out with zeros after them.
        let t = winograd::windows(x, p, (r0, r1), tw)?;
        for (row, src) in t.chunks_exact(tiles).enumerate() {
            // SAFETY: row `row` of panel `pi` lies inside `v` and is this panel's own.
            unsafe {
                let dst = vp.get().add(skip + pi * v_len + row * NR);
                std::ptr::copy_nonoverlapping(src.as_ptr(), dst, tiles);
                std::ptr::write_bytes(dst.add(tiles), 0, NR - tiles);
            }
        }
        recycle_scratch(t);
        Ok(())
    };
    if threads::nested() {
        panels.iter().enumerate().try_for_each(each)?;
    } else {
        panels.par_iter().enumerate().try_for_each(each)?;
    }
    // SAFETY: every panel wrote its `v_len` values; the slack around them is set here.
    unsafe {
        std::ptr::write_bytes(v.as_mut_ptr(), 0, skip);
        std::ptr::write_bytes(v.as_mut_ptr().add(skip + len - 16), 0, 16 - skip);
        v.set_len(len);
    }
    Ok((v, skip))
}

/// Output channels split between the threads, each share a whole number of register
/// blocks (the last may end short).
fn shares(co: usize) -> Vec<(usize, usize)> {
    let blocks = co.div_ceil(MR);
    let count = rayon::current_num_threads().clamp(1, blocks);
    (0..count)
        .map(|s| {
            (
                (s * blocks / count) * MR,
                ((s + 1) * blocks / count * MR).min(co),
            )
        })
        .collect()
}

/// Output channels `c0..c1`'s sums for every panel: input channels `KC` at a time, and
/// within each slice [`GROUP`] register blocks of output channels at a time, whose
/// kernels are transformed into 16 packed panels (one per position) and multiplied by
/// each tile panel's windows at that position.
///
/// # Safety
/// AVX-512F; `m` holds every panel's sums (a full panel's `full` values), `v` every
/// panel's windows from a 64-byte boundary, and no other thread writes rows `c0..c1`.
#[target_feature(enable = "avx512f")]
unsafe fn products(
    w: &[f32],
    v: &[f32],
    p: &Conv2dParams,
    which: Kernels,
    (c0, c1): (usize, usize),
    (panels, full): (&[(usize, usize)], usize),
    m: SendPtr,
) {
    let (ci, co) = (p.c_in, p.c_out);
    let tw = p.ow.div_ceil(2);
    let v_len = 16 * ci * NR;
    // The packed kernels: position-major, then register block, `MR` rows `KC` apart.
    let panel = MR * KC;
    let mut a = PACKED.take();
    if a.len() < 16 * GROUP * panel {
        a = vec![0.0; 16 * GROUP * panel];
    }
    for p0 in (0..ci).step_by(KC) {
        let kc = KC.min(ci - p0);
        // The first slice writes the sums, later ones add to them.
        let beta = if p0 == 0 { 0.0 } else { 1.0 };
        for g0 in (c0..c1).step_by(GROUP * MR) {
            let g1 = (g0 + GROUP * MR).min(c1);
            for o in g0..g1 {
                let (b, r) = ((o - g0) / MR, (o - g0) % MR);
                // SAFETY: position `k`'s row `r` of block `b` (`GROUP · MR · KC` values
                // apart), `kc` values, inside `a`.
                unsafe {
                    let dst = a.as_mut_ptr().add(b * panel + r * KC);
                    kernels_to(w, (co, ci), which, o, (p0, p0 + kc), dst, GROUP * panel);
                }
            }
            let blocks = (g1 - g0).div_ceil(MR);
            for k in 0..16 {
                for (pi, &(r0, r1)) in panels.iter().enumerate() {
                    let tiles = (r1 - r0) * tw;
                    let bp = &v[pi * v_len + (k * ci + p0) * NR..][..NR * kc];
                    for b in 0..blocks {
                        let o = g0 + b * MR;
                        let rows = MR.min(g1 - o);
                        let ap = &a[(k * GROUP + b) * panel..][..panel];
                        // SAFETY: rows `o..o + rows` of position `k`'s sums in panel
                        // `pi` (`tiles` apart) lie inside `m` and are this share's.
                        unsafe {
                            let c = m.get().add(pi * full + (k * co + o) * tiles);
                            gemm_zmm::block::<KC, 1>(ap, bp, kc, rows, tiles, beta, c, tiles, 1);
                        }
                    }
                }
            }
        }
    }
    PACKED.set(a);
}

thread_local! {
    /// A share's packed kernels, kept per thread (the shares run on the rayon pool): a
    /// fresh, cleared buffer per call took 8% of 512@7²'s forward. Rows past a block's
    /// output channels keep an earlier call's values, which the register block reads but
    /// never stores.
    static PACKED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Output `o`'s transformed kernels for inputs `i0..i1`, from the weight `w` of `outs` ×
/// `ins` kernels as `conv2d_winograd`'s [`Kernels`] reads it: position `k`'s for input
/// `i` at `dst + k·ld + i − i0`.
///
/// # Safety
/// AVX-512F; `dst` has room for the 16 positions' `i1 − i0` values `ld` apart.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn kernels_to(
    w: &[f32],
    (outs, ins): (usize, usize),
    which: Kernels,
    o: usize,
    (i0, i1): (usize, usize),
    dst: *mut f32,
    ld: usize,
) {
    assert!(
        o < outs && i0 <= i1 && i1 <= ins && w.len() >= outs * ins * 9,
        "conv2d_winograd_panels: kernels past the weight"
    );
    // Input `i`'s taps at `first + i·step` (in the other order for the input gradient's).
    let (first, step) = match which {
        Kernels::Forward => (o * ins * 9, 9),
        Kernels::Backward => (o * 9, outs * 9),
    };
    for i in (i0..i1).step_by(16) {
        let count = 16.min(i1 - i);
        let at = first + i * step;
        if which == Kernels::Forward {
            // The next output's taps, contiguous in the forward's weight: the loads below
            // otherwise waited on them line by line.
            let next = w.as_ptr().wrapping_add(at + ins * 9);
            for line in (0..count * 9).step_by(16) {
                _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(line).cast());
            }
        }
        // SAFETY: the `count` inputs' 9 taps lie inside `w` (asserted above), and
        // `w.len() − at` values from `at`.
        let u = unsafe { transformed(w.as_ptr().add(at), (step, w.len() - at), which, count) };
        let keep = ((1u32 << count) - 1) as u16;
        for (k, u) in u.into_iter().enumerate() {
            // SAFETY: `count` values of position `k`'s row, inside the caller's span.
            unsafe { _mm512_mask_storeu_ps(dst.add(k * ld + i - i0), keep, u) };
        }
    }
}

/// The transformed kernels `G·g·Gᵀ` of `count` (at most 16) inputs whose 9 taps start
/// at `w`, `step` apart (in the other order for the input gradient's kernels, turned by
/// half a circle): position `k`'s 16 inputs in vector `k` (lanes past `count` zero). The
/// inputs' taps are loaded as 16 rows and turned around by a 16 × 16 transpose, then
/// transformed as `conv2d_winograd::kernel_rows` does, 16 inputs per vector; gathering
/// each tap's 16 inputs instead (9 gathers of values 9 apart) took a sixth of 512@7²'s
/// forward.
///
/// # Safety
/// AVX-512F; `w` points to `room` values, at least `(count − 1)·step + 9`.
#[target_feature(enable = "avx512f")]
unsafe fn transformed(
    w: *const f32,
    (step, room): (usize, usize),
    which: Kernels,
    count: usize,
) -> [__m512; 16] {
    let rows: [__m512; 16] = std::array::from_fn(|i| {
        if i < count && i * step + 16 <= room {
            // SAFETY: input `i`'s 9 taps and 7 values after them, inside `room`; only
            // the taps' lanes are used.
            unsafe { _mm512_loadu_ps(w.add(i * step)) }
        } else if i < count {
            // SAFETY: input `i`'s 9 taps, inside the caller's span.
            unsafe { _mm512_maskz_loadu_ps(0x1ff, w.add(i * step)) }
        } else {
            _mm512_setzero_ps()
        }
    });
    let taps = transpose::square(rows);
    let tap = |t: usize| taps[if which == Kernels::Backward { 8 - t } else { t }];
    let half = _mm512_set1_ps(0.5);
    // (a, (a + b + e)/2, (a − b + e)/2, e): `G` times a column of three.
    let g = |a: __m512, b: __m512, e: __m512| {
        [
            a,
            _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(a, b), e)),
            _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(a, b), e)),
            e,
        ]
    };
    // Along the kernel's rows (its columns' taps `j`, `3 + j`, `6 + j`), then along its
    // columns.
    let cols: [[__m512; 4]; 3] = std::array::from_fn(|j| g(tap(j), tap(3 + j), tap(6 + j)));
    let mut u = [_mm512_setzero_ps(); 16];
    for r in 0..4 {
        let row = g(cols[0][r], cols[1][r], cols[2][r]);
        u[4 * r..4 * r + 4].copy_from_slice(&row);
    }
    u
}

#[cfg(test)]
#[path = "conv2d_winograd_panels_tests.rs"]
mod tests;
