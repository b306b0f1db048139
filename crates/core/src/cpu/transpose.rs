//! Blocks of a row-major matrix copied transposed, as the products vectorized along
//! channels pack their weights (`conv_channels.rs`): per pair, the weights of a panel's
//! output channels side by side, from rows `kdim` values apart. Value by value, with the
//! pairs outermost every read jumped a row (9 KiB or more); with the channels outermost
//! the compiler made the writes scatters (`vscatterdps`). With AVX-512, 16 × 16 squares
//! go through registers: 16 row loads, 64 shuffles, 16 stores. Single-threaded forwards
//! on an Intel Xeon (2026-12-03, batch 4, fastest of four alternating rounds): channels
//! outermost, 512@7² 8.00 → 7.66 ms and 256@14² 6.97 → 6.93; then the squares, 7.31 →
//! 6.10 and 6.39 → 6.19 (a later set).

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
                let x: [__m512; 16] = std::array::from_fn(|i| _mm512_loadu_ps(s.add(i * ld)));
                let y = square(x);
                let d = dst.as_mut_ptr().add(c * dld + r);
                for (i, y) in y.into_iter().enumerate() {
                    _mm512_storeu_ps(d.add(i * dld), y);
                }
            }
        }
    }
}

/// A 16 × 16 square transposed: values interleaved in pairs, then in pairs of pairs,
/// then 128-bit quarters twice.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn square(r: [std::arch::x86_64::__m512; 16]) -> [std::arch::x86_64::__m512; 16] {
    use std::arch::x86_64::*;
    let t: [__m512; 16] = std::array::from_fn(|i| {
        let (a, b) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    let u: [__m512; 16] = std::array::from_fn(|i| {
        // Rows `4q..4q + 4`: lows of t[4q] and t[4q + 2], highs of them, then the same
        // of t[4q + 1] and t[4q + 3].
        let q = i & !3;
        let (a, b) = if i % 4 < 2 {
            (t[q], t[q + 2])
        } else {
            (t[q + 1], t[q + 3])
        };
        let (a, b) = (_mm512_castps_pd(a), _mm512_castps_pd(b));
        _mm512_castpd_ps(if i % 2 == 0 {
            _mm512_unpacklo_pd(a, b)
        } else {
            _mm512_unpackhi_pd(a, b)
        })
    });
    let v: [__m512; 16] = std::array::from_fn(|i| {
        let (h, j) = (i / 8, i % 4);
        let (a, b) = (u[8 * h + j], u[8 * h + 4 + j]);
        if i % 8 < 4 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xdd>(a, b)
        }
    });
    std::array::from_fn(|i| {
        let (a, b) = (v[i % 8], v[8 + i % 8]);
        if i < 8 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xdd>(a, b)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
