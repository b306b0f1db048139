//! The rows' product and output transform (`conv2d_winograd_rows.rs`) with AVX-512
//! intrinsics. The product written as portable loops: the compiler kept a block of 6
//! rows × 64 outputs in registers, but not one of 6 × 32 (the outputs past the last 64,
//! or layers of 32 to 48), which it ran one value at a time with the sums on the stack:
//! conv1d of 32 channels took 30 ms where it had taken 2.3, conv3d of 32 channels 570 ms
//! against the direct products' 46. The outputs: see [`outputs`].

use std::arch::x86_64::*;

use super::super::transpose;
use super::{Segment, Shape, POINTS, ROWS};
use crate::backend::Conv2dParams;

/// [`super::products`] for AVX-512.
///
/// # Safety
/// AVX-512F; the operands passed `products`' checks: every chunk's windows for every
/// row lie in `v[e]`, `u` holds the kernels for `shape`, `m` whole blocks of rows.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn products(
    (v, per_e): (&[f32], usize),
    taps: &[(usize, usize)],
    u: &[f32],
    shape: &Shape,
    m: &mut [f32],
) {
    let (depth, cp, ci) = (shape.depth(), shape.cp, shape.ci);
    let rows = m.len() / (POINTS * cp);
    for e in 0..POINTS {
        let (v, m) = (
            &v[e * per_e..][..per_e],
            &mut m[e * rows * cp..][..rows * cp],
        );
        for &(c0, width) in &shape.columns {
            let u = &u[e * depth * cp + depth * c0..][..depth * width];
            for r0 in (0..rows).step_by(ROWS) {
                let out = &mut m[r0 * cp + c0..][..(ROWS - 1) * cp + width];
                let at = (v, taps, r0, ci);
                // SAFETY: as the caller's; `width` is `V` vectors of 16.
                unsafe {
                    match width / 16 {
                        4 => block::<ROWS, 4>(at, u, out, cp),
                        3 => block::<ROWS, 3>(at, u, out, cp),
                        2 => block::<ROWS, 2>(at, u, out, cp),
                        _ => block::<ROWS, 1>(at, u, out, cp),
                    }
                }
            }
        }
    }
}

/// `R` rows × `V` vectors of outputs: per (chunk, input) pair, `V` vectors of kernels
/// and each row's window value broadcast against them.
///
/// # Safety
/// AVX-512F; for each chunk `(j, off)`, rows `off + r0 ..` of `v` hold `ci` values each
/// up to row `off + r0 + R`; `u` holds chunk `j`'s `ci` rows of `16·V`; `out` holds
/// `(R − 1)·cp + 16·V` values.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn block<const R: usize, const V: usize>(
    (v, taps, r0, ci): (&[f32], &[(usize, usize)], usize, usize),
    u: &[f32],
    out: &mut [f32],
    cp: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    for &(j, off) in taps {
        let rows = &v[(off + r0) * ci..][..R * ci];
        let uj = &u[j * ci * 16 * V..][..ci * 16 * V];
        for k in 0..ci {
            let mut b = [_mm512_setzero_ps(); V];
            for (q, b) in b.iter_mut().enumerate() {
                // SAFETY: `(k·V + q)·16 + 16` is at most `uj`'s `ci·16·V`.
                *b = unsafe { _mm512_loadu_ps(uj.as_ptr().add((k * V + q) * 16)) };
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                // SAFETY: `r·ci + k` is below `rows`' `R·ci`.
                let a = _mm512_set1_ps(unsafe { *rows.get_unchecked(r * ci + k) });
                for (s, &b) in acc.iter_mut().zip(&b) {
                    *s = _mm512_fmadd_ps(a, b, *s);
                }
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (q, s) in acc.iter().enumerate() {
            let at = &mut out[r * cp + q * 16..][..16];
            // SAFETY: `at` holds 16 values.
            unsafe { _mm512_storeu_ps(at.as_mut_ptr(), *s) };
        }
    }
}

/// [`super::outputs`] for AVX-512, in one pass: per 16 tiles × 16 output channels, the
/// outputs `Aᵀ·m` in registers (48 positions of 16 channels), turned by three 16 × 16
/// transposes into 16 channels' runs of positions, stored in place. The portable route
/// wrote them position by position into one buffer, transposed that into another and
/// copied each channel's run out: 25% of a conv1d forward's time (`perf`, 8 × 64 × 4096,
/// 9 taps). Whether every output was finite.
///
/// # Safety
/// AVX-512F; `y` points to the output of `p` and no other thread writes this segment's
/// outputs; `m` holds 5 positions of `rows` rows of `cp` sums (a multiple of 16), the
/// segment's from row `seg.off`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn outputs(
    m: &[f32],
    (rows, cp): (usize, usize),
    p: &Conv2dParams,
    seg: &Segment,
    y: *mut f32,
) -> bool {
    let co = p.c_out;
    let tiles = seg.q1 - seg.q0;
    let kept = (3 * seg.q1).min(p.ow) - 3 * seg.q0;
    assert!(
        cp.is_multiple_of(16) && co <= cp && m.len() >= 5 * rows * cp && seg.off + tiles <= rows,
        "conv2d_winograd_rows: sums too short"
    );
    let (n, r) = (seg.row / p.oh, seg.row % p.oh);
    let plane = p.oh * p.ow;
    // Output channel `o`'s position `i` of this segment at `y + base + o·plane + i`.
    let base = n * co * plane + r * p.ow + 3 * seg.q0;
    let (zero, mut bad) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let (two, four) = (_mm512_set1_ps(2.0), _mm512_set1_ps(4.0));
    for o0 in (0..co).step_by(16) {
        for i0 in (0..tiles).step_by(16) {
            let mut ys = [zero; 48];
            for i in 0..(tiles - i0).min(16) {
                let mut s = [zero; 5];
                for (e, s) in s.iter_mut().enumerate() {
                    let at = &m[(e * rows + seg.off + i0 + i) * cp + o0..][..16];
                    // SAFETY: `at` holds 16 values.
                    *s = unsafe { _mm512_loadu_ps(at.as_ptr()) };
                }
                let (a, b) = (_mm512_add_ps(s[1], s[2]), _mm512_sub_ps(s[1], s[2]));
                ys[3 * i] = _mm512_add_ps(_mm512_add_ps(s[0], a), s[3]);
                ys[3 * i + 1] = _mm512_fmadd_ps(two, s[3], b);
                ys[3 * i + 2] = _mm512_add_ps(_mm512_fmadd_ps(four, s[3], a), s[4]);
            }
            let first = 3 * i0;
            for q in 0..3 {
                let from = first + 16 * q;
                if from >= kept {
                    break;
                }
                let square: [__m512; 16] = ys[16 * q..][..16].try_into().expect("16 vectors");
                let mask = (u32::MAX >> (32 - (kept - from).min(16))) as __mmask16;
                for (c, v) in transpose::square(square).iter().take(co - o0).enumerate() {
                    bad = _mm512_add_ps(bad, _mm512_maskz_mul_ps(mask, *v, zero));
                    // SAFETY: channel `o0 + c` below `co`, positions `from ..` up to
                    // `kept` of this segment's row: inside the output, and this
                    // segment's own (the caller's contract).
                    unsafe {
                        let at = y.add(base + (o0 + c) * plane + from);
                        _mm512_mask_storeu_ps(at, mask, *v);
                    }
                }
            }
        }
    }
    _mm512_reduce_add_ps(bad) == 0.0
}
