//! The rows' product (`conv2d_winograd_rows::products`) with AVX-512 intrinsics: written
//! as portable loops, the compiler kept a block of 6 rows × 64 outputs in registers, but
//! not one of 6 × 32 (the outputs past the last 64, or layers of 32 to 48), which it ran
//! one value at a time with the sums on the stack: conv1d of 32 channels took 30 ms
//! where it had taken 2.3, conv3d of 32 channels 570 ms against the direct products' 46.

use std::arch::x86_64::*;

use super::{Shape, POINTS, ROWS};

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
