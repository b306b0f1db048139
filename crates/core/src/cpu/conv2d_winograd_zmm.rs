//! The Winograd transforms with AVX-512 intrinsics (`conv2d_winograd.rs` keeps the
//! portable loops the other instruction-set levels build; the kernels' are
//! `conv2d_winograd_panels::kernels_to`): the windows 16 tiles of a row at a time (two
//! rows of up to 8 tiles per vector), the outputs 16 tiles at a time.

use std::arch::x86_64::*;

use crate::backend::Conv2dParams;

/// [`super::windows`] with AVX-512, 16 tiles of a row at a time: a window row's even and odd
/// columns, and the same two columns further on, come out of four masked loads of the
/// input row (the masks leave the padding's lanes zero) by four shuffles, and each
/// position's 16 values go out in one store.
/// Loops over the 7 tiles of a 14² plane's row ran one value at a time; rows copied into
/// a zero-padded buffer first stalled each vector load on the copy's smaller stores.
///
/// # Safety
/// AVX-512F; `x` holds `p`'s input and `v` has room for `16 · c_in · tiles` values.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn windows(
    x: &[f32],
    p: &Conv2dParams,
    (r0, r1, tw): (usize, usize, usize),
    v: *mut f32,
) {
    let tiles = (r1 - r0) * tw;
    let ld = p.c_in * tiles;
    let pw = p.padding[1] as isize;
    // Per chunk of 16 tiles: its first input column and the masks of its four loads,
    // the same for every row and channel.
    let chunks: Vec<(isize, [u16; 4])> = (0..tw)
        .step_by(16)
        .map(|tx0| {
            // Window column `k` of tile `tx0` reads input column `2·tx0 + k − pw`.
            let s0 = 2 * tx0 as isize - pw;
            (s0, [0, 16, 2, 18].map(|k| inside(p.w, s0 + k)))
        })
        .collect();
    let zero = _mm512_setzero_ps();
    for c in 0..p.c_in {
        for r in r0..r1 {
            let rows = input_rows(x, p, c, r);
            let at = c * tiles + (r - r0) * tw;
            for (q, &(s0, masks)) in chunks.iter().enumerate() {
                let tx0 = 16 * q;
                let keep = ((1u32 << (tw - tx0).min(16)) - 1) as u16;
                let mut d = [[zero; 4]; 4];
                for (d, row) in d.iter_mut().zip(rows) {
                    let Some(row) = row else { continue };
                    let at = row.as_ptr().wrapping_offset(s0);
                    // SAFETY: the masks keep each load to the row's columns (a masked-off
                    // lane is not read).
                    let (a, b, a1, b1) = unsafe {
                        (
                            _mm512_maskz_loadu_ps(masks[0], at),
                            _mm512_maskz_loadu_ps(masks[1], at.wrapping_add(16)),
                            _mm512_maskz_loadu_ps(masks[2], at.wrapping_add(2)),
                            _mm512_maskz_loadu_ps(masks[3], at.wrapping_add(18)),
                        )
                    };
                    *d = row_times_b((a, b), (a1, b1));
                }
                for (i, out) in b_transposed_times(d).into_iter().enumerate() {
                    for (j, val) in out.into_iter().enumerate() {
                        // SAFETY: position `4i + j`'s row for channel `c`, tiles `at + tx0`
                        // on, `keep` of them: inside `v` (the caller's contract).
                        unsafe {
                            _mm512_mask_storeu_ps(v.add((4 * i + j) * ld + at + tx0), keep, val)
                        };
                    }
                }
            }
        }
    }
}

/// [`windows`] for rows of at most 8 tiles (planes up to 16 outputs wide, 14²'s 7
/// among them): two tile rows per vector, the first's tiles in lanes 0–7 and the
/// second's in lanes 8–15, stored side by side (a block numbers its tiles row by row).
/// One tile row per vector left half of each vector empty, and the transform took 13.6%
/// of a 256@14² forward's samples (two threads, batch 8: 4.63 → 4.40 ms).
///
/// # Safety
/// As [`windows`]; `tw` is at most 8.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn window_pairs(
    x: &[f32],
    p: &Conv2dParams,
    (r0, r1, tw): (usize, usize, usize),
    v: *mut f32,
) {
    assert!(tw <= 8, "conv2d_winograd: rows of at most 8 tiles");
    let tiles = (r1 - r0) * tw;
    let ld = p.c_in * tiles;
    let s0 = -(p.padding[1] as isize);
    // The second row's `tw` tiles moved next to the first's (the lanes past them, which
    // the stores leave out, keep their own).
    let pack: [i32; 16] = std::array::from_fn(|i| match i {
        i if i < tw => i as i32,
        i if i < 2 * tw => (i - tw + 8) as i32,
        i => i as i32,
    });
    // SAFETY: 16 values.
    let pack = unsafe { _mm512_loadu_si512(pack.as_ptr().cast()) };
    // Window column `k` of tile `t` reads input column `2t + k − pw`: columns 0 and 1
    // are the even and odd values of 16 from `s0`, 2 and 3 those of 16 from `s0 + 2`.
    let masks = [inside(p.w, s0), inside(p.w, s0 + 2)];
    let zero = _mm512_setzero_ps();
    let load = |row: Option<&[f32]>, k: usize| {
        row.map_or(zero, |row| {
            let at = row.as_ptr().wrapping_offset(s0 + 2 * k as isize);
            // SAFETY: the mask keeps the load to the row's columns (a masked-off lane is
            // not read).
            unsafe { _mm512_maskz_loadu_ps(masks[k], at) }
        })
    };
    for c in 0..p.c_in {
        for r in (r0..r1).step_by(2) {
            let two = r + 1 < r1;
            let first = input_rows(x, p, c, r);
            let second = if two {
                input_rows(x, p, c, r + 1)
            } else {
                [None; 4]
            };
            let mut d = [[zero; 4]; 4];
            for (d, (a, b)) in d.iter_mut().zip(first.into_iter().zip(second)) {
                *d = row_times_b((load(a, 0), load(b, 0)), (load(a, 1), load(b, 1)));
            }
            let keep = ((1u32 << if two { 2 * tw } else { tw }) - 1) as u16;
            let at = c * tiles + (r - r0) * tw;
            for (i, out) in b_transposed_times(d).into_iter().enumerate() {
                for (j, val) in out.into_iter().enumerate() {
                    let val = _mm512_permutexvar_ps(pack, val);
                    // SAFETY: position `4i + j`'s row for channel `c`, tiles `at` on,
                    // `keep` of them: this block's, inside `v` (the caller's contract).
                    unsafe { _mm512_mask_storeu_ps(v.add((4 * i + j) * ld + at), keep, val) };
                }
            }
        }
    }
}

/// Tile row `r`'s (counted across the batch) four input rows of channel `c`, where they
/// lie in the plane.
fn input_rows<'a>(x: &'a [f32], p: &Conv2dParams, c: usize, r: usize) -> [Option<&'a [f32]>; 4] {
    let th = p.oh.div_ceil(2);
    let (n, ty) = (r / th, r % th);
    let hw = p.h * p.w;
    let plane = &x[(n * p.c_in + c) * hw..][..hw];
    // A loop: built by `std::array::from_fn`, the rows came from a closure that stayed a
    // call of its own (8% of a 256@14² forward's samples; two threads, batch 8: 5.00 →
    // 4.74 ms, 128@28² 4.89 → 4.67).
    let mut rows = [None; 4];
    for (i, row) in rows.iter_mut().enumerate() {
        let ih = (2 * ty + i) as isize - p.padding[0] as isize;
        if (0..p.h as isize).contains(&ih) {
            *row = Some(&plane[ih as usize * p.w..][..p.w]);
        }
    }
    rows
}

/// The lanes of 16 columns from input column `s` that lie in a row `width` long.
fn inside(width: usize, s: isize) -> u16 {
    let (lo, hi) = ((-s).clamp(0, 16), (width as isize - s).clamp(0, 16));
    if lo >= hi {
        0
    } else {
        (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
    }
}

/// One window row's `d·B` for 16 tiles, from two pairs of 16 loaded values: the even and
/// odd lanes of the first pair (its first vector's, then its second's) hold the tiles'
/// columns 0 and 1, those of the second pair columns 2 and 3.
#[target_feature(enable = "avx512f")]
#[inline]
fn row_times_b((a, b): (__m512, __m512), (a1, b1): (__m512, __m512)) -> [__m512; 4] {
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let (e, o) = (
        _mm512_permutex2var_ps(a, evens, b),
        _mm512_permutex2var_ps(a, odds, b),
    );
    let (e1, o1) = (
        _mm512_permutex2var_ps(a1, evens, b1),
        _mm512_permutex2var_ps(a1, odds, b1),
    );
    // Columns 0 − 2, 1 + 2, 2 − 1 and 1 − 3 of each tile's window.
    [
        _mm512_sub_ps(e, e1),
        _mm512_add_ps(o, e1),
        _mm512_sub_ps(e1, o),
        _mm512_sub_ps(o, o1),
    ]
}

/// `Bᵀ·(d·B)` from the four rows' [`row_times_b`]: position `4i + j` at `[i][j]`.
#[target_feature(enable = "avx512f")]
#[inline]
fn b_transposed_times([d0, d1, d2, d3]: [[__m512; 4]; 4]) -> [[__m512; 4]; 4] {
    let mut out = [[_mm512_setzero_ps(); 4]; 4];
    for j in 0..4 {
        // Rows 0 − 2, 1 + 2, 2 − 1 and 1 − 3.
        out[0][j] = _mm512_sub_ps(d0[j], d2[j]);
        out[1][j] = _mm512_add_ps(d1[j], d2[j]);
        out[2][j] = _mm512_sub_ps(d2[j], d1[j]);
        out[3][j] = _mm512_sub_ps(d1[j], d3[j]);
    }
    out
}

/// [`super::outputs`] with AVX-512, 16 tiles of a row at a time, each output row's pairs
/// interleaved by two shuffles and stored whole.
///
/// # Safety
/// AVX-512F; as [`super::outputs`].
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn outputs(
    m: &[f32],
    p: &Conv2dParams,
    (r0, r1, tw): (usize, usize, usize),
    y: *mut f32,
) -> bool {
    let (co, ohw) = (p.c_out, p.oh * p.ow);
    let th = p.oh.div_ceil(2);
    let tiles = (r1 - r0) * tw;
    let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let mask = |n: usize| ((1u32 << n.min(16)) - 1) as u16;
    // Zero times each output: NaN in a lane where one was not finite.
    let mut bad = _mm512_setzero_ps();
    let zero = _mm512_setzero_ps();
    for o in 0..co {
        for r in r0..r1 {
            let (n, ty) = (r / th, r % th);
            let plane = (n * co + o) * ohw;
            let at = (r - r0) * tw;
            for tx0 in (0..tw).step_by(16) {
                let keep = mask(tw - tx0);
                // SAFETY: each position's row holds the block's tiles (asserted by the
                // caller), `keep` of them from `at + tx0`.
                let s: [__m512; 16] = std::array::from_fn(|k| unsafe {
                    _mm512_maskz_loadu_ps(keep, m.as_ptr().add((k * co + o) * tiles + at + tx0))
                });
                // Aᵀ·m: rows m0 + m1 + m2 and m1 − m2 − m3, then the same along each row.
                let top: [__m512; 4] =
                    std::array::from_fn(|j| _mm512_add_ps(_mm512_add_ps(s[j], s[4 + j]), s[8 + j]));
                let bottom: [__m512; 4] = std::array::from_fn(|j| {
                    _mm512_sub_ps(_mm512_sub_ps(s[4 + j], s[8 + j]), s[12 + j])
                });
                for (i, t) in [top, bottom].into_iter().enumerate() {
                    let left = _mm512_add_ps(_mm512_add_ps(t[0], t[1]), t[2]);
                    let right = _mm512_sub_ps(_mm512_sub_ps(t[1], t[2]), t[3]);
                    bad = _mm512_fmadd_ps(_mm512_add_ps(left, right), zero, bad);
                    let oy = 2 * ty + i;
                    if oy >= p.oh {
                        continue;
                    }
                    let cols = p.ow - 2 * tx0;
                    let row = y.add(plane + oy * p.ow + 2 * tx0);
                    // SAFETY: `cols` outputs of row `oy` from column `2·tx0`, this block's.
                    unsafe {
                        _mm512_mask_storeu_ps(
                            row,
                            mask(cols),
                            _mm512_permutex2var_ps(left, low, right),
                        );
                        if cols > 16 {
                            let v = _mm512_permutex2var_ps(left, high, right);
                            _mm512_mask_storeu_ps(row.add(16), mask(cols - 16), v);
                        }
                    }
                }
            }
        }
    }
    _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(bad, bad) == 0
}
