//! Blocks of a row-major matrix copied transposed, as the products vectorized along
//! channels pack their weights (`conv_channels.rs`): per pair, the weights of a panel's
//! output channels side by side, from rows `kdim` values apart. Value by value, with the
//! pairs outermost every read jumped a row (9 KiB or more); with the channels outermost
//! the compiler made the writes scatters (`vscatterdps`). With AVX-512, 16 × 16 squares
//! go through registers: 16 row loads, 64 shuffles, 16 stores. Single-threaded forwards
//! on an Intel Xeon (2026-12-03, batch 4, fastest of four alternating rounds): channels
//! outermost, 512@7² 8.00 → 7.66 ms and 256@14² 6.97 → 6.93; then the squares, 7.31 →
//! 6.10 and 6.39 → 6.19 (a later set). The input gradient's weight, input channels
//! first ([`swapped`]), is laid out here too.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::host;
use crate::Result;

/// `dst[c·dld + r] = src[r·ld + c]` for `r < rows`, `c < cols`.
pub(super) fn transpose_into(
    src: &[f32],
    ld: usize,
    (rows, cols): (usize, usize),
    dst: &mut [f32],
    dld: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    let span = |n: usize, stride: usize, len: usize| (n - 1).checked_mul(stride)?.checked_add(len);
    assert!(
        span(rows, ld, cols).is_some_and(|n| src.len() >= n)
            && span(cols, dld, rows).is_some_and(|n| dst.len() >= n),
        "transpose: {rows} × {cols} from rows {ld} apart into rows {dld} apart, but {} and {} values",
        src.len(),
        dst.len()
    );
    let (r0, c0) = squares_done(src, ld, (rows, cols), dst, dld);
    // What the squares left: the rows past `r0` in every column, the columns past `c0`
    // in the rows before.
    for (r, c) in (r0..rows)
        .flat_map(|r| (0..cols).map(move |c| (r, c)))
        .chain((0..r0).flat_map(|r| (c0..cols).map(move |c| (r, c))))
    {
        dst[c * dld + r] = src[r * ld + c];
    }
}

/// A panel for the channel-vectorized products: [`transpose_into`] into rows of `lanes`
/// (`dld`), each row's values past `rows` zero, so that a panel of fewer channels than
/// its lanes multiplies zero weights there. `dst` holds `cols · lanes` values.
pub(super) fn panel_into(
    src: &[f32],
    ld: usize,
    (rows, cols): (usize, usize),
    dst: &mut [f32],
    lanes: usize,
) {
    transpose_into(src, ld, (rows, cols), dst, lanes);
    if rows < lanes {
        for row in dst[..cols * lanes].chunks_exact_mut(lanes) {
            row[rows..].fill(0.0);
        }
    }
}

/// The whole 16 × 16 squares of [`transpose_into`]'s block, where the processor has
/// AVX-512, and how far they reach (rows, columns); `(0, 0)` elsewhere.
fn squares_done(
    src: &[f32],
    ld: usize,
    (rows, cols): (usize, usize),
    dst: &mut [f32],
    dld: usize,
) -> (usize, usize) {
    #[cfg(target_arch = "x86_64")]
    if super::cpu_level() == super::Level::Avx512 {
        let (r0, c0) = (rows - rows % 16, cols - cols % 16);
        // SAFETY: the processor has AVX-512F; the squares lie within the bounds
        // `transpose_into` checked.
        unsafe { squares(src, ld, (r0, c0), dst, dld) };
        return (r0, c0);
    }
    let _ = (src, ld, rows, cols, dst, dld);
    (0, 0)
}

/// [`transpose_into`] over `rows × cols`, both multiples of 16, square by square.
///
/// # Safety
/// AVX-512F; `src` holds `(rows − 1)·ld + cols` values and `dst` `(cols − 1)·dld + rows`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn squares(
    src: &[f32],
    ld: usize,
    (rows, cols): (usize, usize),
    dst: &mut [f32],
    dld: usize,
) {
    use std::arch::x86_64::*;
    for r in (0..rows).step_by(16) {
        for c in (0..cols).step_by(16) {
            // SAFETY: rows `r..r + 16` and columns `c..c + 16` are within the bounds the
            // caller checked, and so are their transposes in `dst`.
            unsafe {
                let s = src.as_ptr().add(r * ld + c);
                let x: [__m512; 16] = sixteen!(|i: usize| _mm512_loadu_ps(s.add(i * ld)));
                let y = square(x);
                let d = dst.as_mut_ptr().add(c * dld + r);
                for (i, y) in y.into_iter().enumerate() {
                    _mm512_storeu_ps(d.add(i * dld), y);
                }
            }
        }
    }
}

/// `[f(0), f(1), …, f(15)]`, written out: with `std::array::from_fn` the squares' steps
/// were loops over arrays on the stack, each shuffle's operands chosen at run time (167
/// instructions per square now, 326 then; 512@7² at batch 8 single-threaded on an Intel
/// Xeon, 2026-12-04, fastest of four alternating rounds: 12.35 → 11.62 ms).
#[cfg(target_arch = "x86_64")]
#[rustfmt::skip]
macro_rules! sixteen {
    ($f:expr) => {{
        let f = $f;
        [
            f(0), f(1), f(2), f(3), f(4), f(5), f(6), f(7),
            f(8), f(9), f(10), f(11), f(12), f(13), f(14), f(15),
        ]
    }};
}
#[cfg(target_arch = "x86_64")]
use sixteen;

/// A 16 × 16 square transposed: values interleaved in pairs, then in pairs of pairs,
/// then 128-bit quarters twice.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn square(r: [std::arch::x86_64::__m512; 16]) -> [std::arch::x86_64::__m512; 16] {
    use std::arch::x86_64::*;
    let t: [__m512; 16] = sixteen!(|i: usize| {
        let (a, b) = (r[i & !1], r[i | 1]);
        if i.is_multiple_of(2) {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    let u: [__m512; 16] = sixteen!(|i: usize| {
        // Rows `4q..4q + 4`: lows of t[4q] and t[4q + 2], highs of them, then the same
        // of t[4q + 1] and t[4q + 3].
        let q = i & !3;
        let (a, b) = if i % 4 < 2 {
            (t[q], t[q + 2])
        } else {
            (t[q + 1], t[q + 3])
        };
        let (a, b) = (_mm512_castps_pd(a), _mm512_castps_pd(b));
        _mm512_castpd_ps(if i.is_multiple_of(2) {
            _mm512_unpacklo_pd(a, b)
        } else {
            _mm512_unpackhi_pd(a, b)
        })
    });
    let v: [__m512; 16] = sixteen!(|i: usize| {
        let (h, j) = (i / 8, i % 4);
        let (a, b) = (u[8 * h + j], u[8 * h + 4 + j]);
        if i % 8 < 4 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xdd>(a, b)
        }
    });
    sixteen!(|i: usize| {
        let (a, b) = (v[i % 8], v[8 + i % 8]);
        if i < 8 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xdd>(a, b)
        }
    })
}

/// Weights of at least this many values are swapped by all threads, in blocks of
/// [`SWAP_BLOCK`] input channels. On one thread, row by row (rows `cg·taps` values apart:
/// a cache line and a page per row), 512@7²'s swap took 3.1 ms at batch 8, 11% of its
/// forward and input gradient's samples, while the other thread waited; 16 rows read
/// together (576 bytes per output channel) took 2.0. (Its finiteness found in the same
/// pass, value by value, made the copy slower than a pass of its own.)
const PARALLEL_SWAP: usize = 1 << 16;
const SWAP_BLOCK: usize = 16;

/// The weight's rows of `taps` values in (input channel, output channel) order within each
/// group of `og` output × `cg` input channels, where the weight has them the other way
/// round. Rows of a length known only at run time were a `memcpy` call each (36 bytes for
/// 3×3 taps): single-threaded at batch 4, 256@14² and 512@14² spent 5.1% of a forward and
/// backward's samples (`perf`) in those calls, 3.2% with the rows copied as arrays here.
pub(super) fn swapped(w: &[f32], (og, cg): (usize, usize), taps: usize) -> Result<Vec<f32>> {
    // Rows of a known length `T` (0: `t`, known at run time) are copied through arrays,
    // whose constant length lets each copy compile to a few moves.
    fn rows<const T: usize>(
        w: &[f32],
        (og, cg, t): (usize, usize, usize),
        out: &mut [MaybeUninit<f32>],
    ) {
        let t = if T > 0 { T } else { t };
        // Input channels `c0..c0 + cb` of group `g`, which start row block `g·cg + c0` of
        // the output: each output channel's rows for them are one read.
        let block = |g: usize, c0: usize, out: &mut [MaybeUninit<f32>]| {
            let w_g = &w[g * og * cg * t..][..og * cg * t];
            let cb = out.len() / (og * t);
            for o in 0..og {
                let src = &w_g[(o * cg + c0) * t..][..cb * t];
                for (c, src) in src.chunks_exact(t).enumerate() {
                    let dst = &mut out[(c * og + o) * t..][..t];
                    if T > 0 {
                        let src: &[f32; T] = src.try_into().expect("T values");
                        let dst: &mut [MaybeUninit<f32>; T] = dst.try_into().expect("T values");
                        dst.iter_mut().zip(src).for_each(|(d, &v)| _ = d.write(v));
                    } else {
                        dst.iter_mut().zip(src).for_each(|(d, &v)| _ = d.write(v));
                    }
                }
            }
        };
        let serial = out.len() < PARALLEL_SWAP || super::threads::nested();
        let per_group = cg.div_ceil(SWAP_BLOCK);
        let nth_block = |(i, out): (usize, &mut [MaybeUninit<f32>])| {
            block(i / per_group, i % per_group * SWAP_BLOCK, out)
        };
        // Blocks never straddle groups: each group is split on its own.
        let blocks: Vec<&mut [MaybeUninit<f32>]> = out
            .chunks_exact_mut(og * cg * t)
            .flat_map(|g| g.chunks_mut(SWAP_BLOCK * og * t))
            .collect();
        if serial {
            blocks.into_iter().enumerate().for_each(nth_block);
        } else {
            blocks.into_par_iter().enumerate().for_each(nth_block);
        }
    }
    let group = og * cg * taps;
    assert!(
        group > 0 && w.len().is_multiple_of(group),
        "swapped: whole groups of weights"
    );
    // SAFETY: the weight is whole groups (checked above), and every group's `cg × og`
    // rows of `taps` are written.
    unsafe {
        host::written(w.len(), |out| match taps {
            1 => rows::<1>(w, (og, cg, taps), out),
            9 => rows::<9>(w, (og, cg, taps), out),
            25 => rows::<25>(w, (og, cg, taps), out),
            27 => rows::<27>(w, (og, cg, taps), out),
            _ => rows::<0>(w, (og, cg, taps), out),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The input gradient's weight layout: rows of each tap count the copies specialise
    /// (1, 9, 25, 27) and one they do not (4), in one group and in three, and weights
    /// large enough for the threads to share (with channels not a multiple of the
    /// blocks).
    #[test]
    fn swapped_weights_put_input_channels_first() {
        let shapes = [(1, 5, 3), (3, 2, 4), (1, 64, 120), (2, 40, 100)];
        for taps in [1, 4, 9, 25, 27] {
            for (groups, og, cg) in shapes {
                let w: Vec<f32> = (0..groups * og * cg * taps).map(|i| i as f32).collect();
                let mut want = Vec::new();
                for g in 0..groups {
                    for c in 0..cg {
                        for o in 0..og {
                            let at = ((g * og + o) * cg + c) * taps;
                            want.extend_from_slice(&w[at..at + taps]);
                        }
                    }
                }
                let got = swapped(&w, (og, cg), taps).unwrap();
                assert_eq!(got, want, "{taps} taps, {groups} groups of {og} × {cg}");
            }
        }
    }

    /// Every value where the definition puts it, and nothing else written, for sizes
    /// around the squares' 16 and strides past the sizes.
    #[test]
    fn blocks_land_transposed() {
        for (rows, cols) in [
            (1, 1),
            (16, 16),
            (17, 33),
            (32, 128),
            (5, 40),
            (48, 7),
            (0, 3),
        ] {
            let (ld, dld) = (cols + 3, rows + 5);
            let src: Vec<f32> = (0..rows * ld).map(|i| i as f32).collect();
            let mut dst = vec![-1.0; cols * dld + 1];
            transpose_into(&src, ld, (rows, cols), &mut dst, dld);
            for (i, &v) in dst.iter().enumerate() {
                let (c, r) = (i / dld, i % dld);
                let want = if c < cols && r < rows {
                    src[r * ld + c]
                } else {
                    -1.0
                };
                assert_eq!(v, want, "{rows} × {cols}: row {r}, column {c}");
            }
        }
    }

    /// Panels of fewer rows than lanes get zeros past them; full ones are the transpose.
    #[test]
    fn panels_pad_with_zeros() {
        for (rows, cols) in [(5, 20), (16, 17), (32, 3), (31, 33)] {
            let (ld, lanes) = (cols + 2, 32);
            let src: Vec<f32> = (0..rows * ld).map(|i| i as f32 + 1.0).collect();
            let mut dst = vec![-1.0; cols * lanes];
            panel_into(&src, ld, (rows, cols), &mut dst, lanes);
            for (i, &v) in dst.iter().enumerate() {
                let (c, r) = (i / lanes, i % lanes);
                let want = if r < rows { src[r * ld + c] } else { 0.0 };
                assert_eq!(v, want, "{rows} × {cols}: lane {r}, row {c}");
            }
        }
    }
}
