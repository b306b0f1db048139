//! Blocks of a row-major matrix copied transposed, as the products vectorized along
//! channels pack their weights (`conv_channels.rs`): per pair, the weights of a panel's
//! output channels side by side, from rows `kdim` values apart (or, for the input
//! gradient, from the forward's weight read in place: [`Weights`]). Value by value, with the
//! pairs outermost every read jumped a row (9 KiB or more); with the channels outermost
//! the compiler made the writes scatters (`vscatterdps`). With AVX-512, 16 × 16 squares
//! go through registers: 16 row loads, 64 shuffles, 16 stores. Single-threaded forwards
//! on an Intel Xeon (2026-12-03, batch 4, fastest of four alternating rounds): channels
//! outermost, 512@7² 8.00 → 7.66 ms and 256@14² 6.97 → 6.93; then the squares, 7.31 →
//! 6.10 and 6.39 → 6.19 (a later set). The input gradient reads the forward's weight
//! with input channels first ([`Weights::Swapped`]).

use crate::Result;
use rayon::prelude::*;

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

/// Every panel of `lanes` rows of the `rows` × `pairs` row-major `w`, as [`panel_into`]
/// lays out each, for [`Weights::Panels`]; the panels in parallel.
pub(super) fn panels(
    w: &[f32],
    (rows, pairs): (usize, usize),
    lanes: usize,
) -> Result<Vec<Vec<f32>>> {
    assert!(
        w.len() >= rows * pairs,
        "transpose: {rows} × {pairs} weights, but {} values",
        w.len()
    );
    (0..rows.div_ceil(lanes))
        .into_par_iter()
        .map(|i| {
            let r0 = i * lanes;
            let mut panel = crate::host::zeros(pairs * lanes)?;
            let rows = lanes.min(rows - r0);
            panel_into(&w[r0 * pairs..], pairs, (rows, pairs), &mut panel, lanes);
            Ok(panel)
        })
        .collect()
}

/// The whole 16 × 16 squares of [`transpose_into`]'s block, where the processor has
/// AVX-512, then the columns past them down those rows by gathers ([`narrow`]), and how
/// far they reach (rows, columns); `(0, 0)` elsewhere.
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
        if c0 == cols || r0 == 0 || ld > i32::MAX as usize / 16 {
            return (r0, c0);
        }
        // SAFETY: as for the squares; rows `..r0`, columns `c0..cols`.
        unsafe { narrow(&src[c0..], ld, (r0, cols - c0), &mut dst[c0 * dld..], dld) };
        return (r0, cols);
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

/// [`transpose_into`] over `rows` (a multiple of 16) × `cols` fewer than 16, each
/// column of 16 rows one gather: the input gradient's panels take a kernel's 9 taps of
/// each output channel at a time (`Weights::Swapped`), which value by value made them
/// slower than a copy of the weight in that order first.
///
/// # Safety
/// AVX-512F; `src` holds `(rows − 1)·ld + cols` values and `dst` `(cols − 1)·dld + rows`;
/// `15·ld` fits an `i32`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn narrow(
    src: &[f32],
    ld: usize,
    (rows, cols): (usize, usize),
    dst: &mut [f32],
    dld: usize,
) {
    use std::arch::x86_64::*;
    let step = _mm512_set1_epi32(ld as i32);
    let idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        step,
    );
    for r in (0..rows).step_by(16) {
        for c in 0..cols {
            // SAFETY: rows `r..r + 16` of column `c` and its transposed row lie within
            // the bounds the caller checked.
            unsafe {
                let v = _mm512_i32gather_ps::<4>(idx, src.as_ptr().add(r * ld + c));
                _mm512_storeu_ps(dst.as_mut_ptr().add(c * dld + r), v);
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
pub(super) fn square(r: [std::arch::x86_64::__m512; 16]) -> [std::arch::x86_64::__m512; 16] {
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

/// A product's weights as rows of (channel, tap) pairs, as the direct products read them
/// (`conv_direct::block`, `conv_channels.rs`).
#[derive(Clone, Copy, Debug)]
pub(super) enum Weights<'a> {
    /// Row `r`'s pair `k` at `w[r·ld + k]`: a forward's weight, output channels by pairs.
    Rows { w: &'a [f32], ld: usize },
    /// A forward's weight read as its input gradient's, in place: row `r` (an input
    /// channel), pair `k = o·taps + t` (output channel `o`, tap `t`) at
    /// `w[o·ld + r·taps + t]`, `ld` being the group's input channels times the taps. The
    /// input gradient once copied the weight into this order first (9.4 MB for 512@7²;
    /// 5–7% of its forward and input gradient's samples), and the panels then read the
    /// copy. Read in place, with each panel's taps gathered ([`narrow`]), the input
    /// gradient at batch 8 on two threads (an Intel Xeon, 2026-12-04, fastest of three
    /// alternating rounds) took 512@7² 8.98 → 7.54 ms, 256@7² 2.29 → 1.88.
    Swapped {
        w: &'a [f32],
        taps: usize,
        ld: usize,
    },
    /// [`Weights::Rows`] (`ld` pairs a row) with its panels of `lanes` rows laid out
    /// already ([`panels`]; `rows` rows in all); `finite` where the whole weight is known
    /// to be finite.
    Panels {
        w: &'a [f32],
        ld: usize,
        rows: usize,
        panels: &'a [Vec<f32>],
        lanes: usize,
        finite: bool,
    },
}

impl<'a> Weights<'a> {
    /// [`Weights::Rows`]: row `r` at `w[r·ld..]`.
    pub(super) fn rows(w: &'a [f32], ld: usize) -> Self {
        Weights::Rows { w, ld }
    }

    /// Pair `k`'s values from row 0 on, and the distance between rows.
    pub(super) fn column(&self, k: usize) -> (&'a [f32], usize) {
        match *self {
            Weights::Rows { w, ld } | Weights::Panels { w, ld, .. } => (&w[k..], ld),
            Weights::Swapped { w, taps, ld } => (&w[k / taps * ld + k % taps..], taps),
        }
    }

    /// The rows from row `r` on.
    pub(super) fn rows_from(self, r: usize) -> Weights<'a> {
        match self {
            Weights::Rows { w, ld } => Weights::Rows {
                w: &w[r * ld..],
                ld,
            },
            Weights::Swapped { w, taps, ld } => Weights::Swapped {
                w: &w[r * taps..],
                taps,
                ld,
            },
            // Panels start every `lanes` rows; from elsewhere the rows are transposed.
            Weights::Panels {
                w,
                ld,
                rows,
                panels,
                lanes,
                finite,
            } => match r % lanes {
                0 if r <= rows => Weights::Panels {
                    w: &w[r * ld..],
                    ld,
                    rows: rows - r,
                    panels: &panels[r / lanes..],
                    lanes,
                    finite,
                },
                _ => Weights::rows(&w[r * ld..], ld),
            },
        }
    }

    /// What [`Weights::panel_into`] would write for the same arguments, where it is laid
    /// out already: the first panel's pairs `k0..k0 + kc`, if it has `rows` rows (all the
    /// rows left, or the first `lanes` of more) and `lanes` lanes.
    pub(super) fn laid_out(
        &self,
        k0: usize,
        (rows, kc): (usize, usize),
        lanes: usize,
    ) -> Option<&'a [f32]> {
        match *self {
            Weights::Panels {
                rows: all,
                panels,
                lanes: l,
                ..
            } if l == lanes && rows == all.min(lanes) => {
                panels.first()?.get(k0 * lanes..)?.get(..kc * lanes)
            }
            _ => None,
        }
    }

    /// Whether every value is known to be finite without reading them (kept panels know
    /// it from when they were laid out).
    pub(super) fn known_finite(&self) -> bool {
        matches!(self, Weights::Panels { finite: true, .. })
    }

    /// Whether `rows` rows of `pairs` pairs lie inside the weights.
    pub(super) fn holds(&self, rows: usize, pairs: usize) -> bool {
        if rows == 0 || pairs == 0 {
            return true;
        }
        let (last, len) = match *self {
            Weights::Rows { w, ld } | Weights::Panels { w, ld, .. } => {
                ((rows - 1) * ld + pairs, w.len())
            }
            Weights::Swapped { w, taps, ld } => {
                let (o, t) = ((pairs - 1) / taps, (pairs - 1) % taps);
                (o * ld + (rows - 1) * taps + t + 1, w.len())
            }
        };
        len >= last
    }

    /// Rows `..rows` × pairs `k0..k0 + kc` as a panel ([`panel_into`]): pair by pair,
    /// `lanes` values, zeros past `rows`.
    pub(super) fn panel_into(
        &self,
        k0: usize,
        (rows, kc): (usize, usize),
        dst: &mut [f32],
        lanes: usize,
    ) {
        match *self {
            Weights::Rows { w, ld } | Weights::Panels { w, ld, .. } => {
                panel_into(&w[k0..], ld, (rows, kc), dst, lanes)
            }
            Weights::Swapped { w, taps, ld } => {
                // One output channel's taps at a time: `rows` rows of them, `taps` apart.
                let mut k = k0;
                while k < k0 + kc {
                    let (o, t) = (k / taps, k % taps);
                    let n = (taps - t).min(k0 + kc - k);
                    let src = &w[o * ld + t..];
                    transpose_into(src, taps, (rows, n), &mut dst[(k - k0) * lanes..], lanes);
                    k += n;
                }
                if rows < lanes {
                    for row in dst[..kc * lanes].chunks_exact_mut(lanes) {
                        row[rows..].fill(0.0);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A weight read in place as its input gradient's (`Weights::Swapped`) gives what the
    /// copy with input channels first would: every value, from any first row, as
    /// columns and as panels (chunks that start and end inside a channel's taps, rows
    /// fewer than the lanes), and the bounds that `holds` draws.
    #[test]
    fn swapped_weights_read_input_channels_first() {
        for (og, cg, taps) in [(3, 5, 9), (4, 20, 1), (2, 17, 27), (5, 33, 4)] {
            let w: Vec<f32> = (0..og * cg * taps).map(|i| i as f32).collect();
            // The copy: input channel `c`'s row holds pairs `o·taps + t`.
            let want = |c: usize, k: usize| w[(k / taps * cg + c) * taps + k % taps];
            let pairs = og * taps;
            let view = Weights::Swapped {
                w: &w,
                taps,
                ld: cg * taps,
            };
            assert!(view.holds(cg, pairs) && !view.rows_from(1).holds(cg, pairs));
            for r0 in [0, 1, cg - 1] {
                let v = view.rows_from(r0);
                for k in 0..pairs {
                    let (col, rs) = v.column(k);
                    for r in 0..cg - r0 {
                        assert_eq!(
                            col[r * rs],
                            want(r0 + r, k),
                            "{og}×{cg}×{taps} row {r} pair {k}"
                        );
                    }
                }
                // Panels of 64 lanes, as AVX-512's widest: gathers over two row blocks and
                // rows past them value by value.
                let (rows, lanes) = (cg - r0, 64);
                for (k0, kc) in [(0, pairs), (1, pairs - 1), (taps / 2, pairs / 2)] {
                    let mut dst = vec![-1.0; kc * lanes];
                    v.panel_into(k0, (rows, kc), &mut dst, lanes);
                    for (i, &got) in dst.iter().enumerate() {
                        let (k, r) = (k0 + i / lanes, i % lanes);
                        let want = if r < rows { want(r0 + r, k) } else { 0.0 };
                        assert_eq!(got, want, "{og}×{cg}×{taps} from {r0}: pair {k} lane {r}");
                    }
                }
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

    /// Laid-out panels are [`panel_into`]'s, the last padded with zeros; read from a
    /// panel's first row they give the pairs asked for, read from inside a panel or for
    /// fewer rows than it holds they give nothing (the caller transposes), and either way
    /// the rows read value by value are the weight's.
    #[test]
    fn laid_out_panels_are_the_transposes() {
        let (rows, pairs, lanes) = (37, 11, 16);
        let w: Vec<f32> = (0..rows * pairs).map(|i| i as f32 + 1.0).collect();
        let laid = panels(&w, (rows, pairs), lanes).unwrap();
        assert_eq!(laid.len(), 3);
        for (i, panel) in laid.iter().enumerate() {
            let r0 = i * lanes;
            let mut want = vec![-1.0; pairs * lanes];
            panel_into(
                &w[r0 * pairs..],
                pairs,
                ((rows - r0).min(lanes), pairs),
                &mut want,
                lanes,
            );
            assert_eq!(panel, &want, "panel {i}");
        }
        let view = Weights::Panels {
            w: &w,
            ld: pairs,
            rows,
            panels: &laid,
            lanes,
            finite: true,
        };
        for r in [0, 1, 16, 32] {
            let v = view.rows_from(r);
            let whole = (rows - r).min(lanes);
            let got = v.laid_out(3, (whole, 5), lanes);
            if r % lanes == 0 {
                assert_eq!(
                    got,
                    Some(&laid[r / lanes][3 * lanes..8 * lanes]),
                    "from {r}"
                );
            } else {
                assert_eq!(got, None, "from {r}");
            }
            assert_eq!(
                v.laid_out(3, (whole - 1, 5), lanes),
                None,
                "from {r}, a row short"
            );
            assert_eq!(
                v.laid_out(3, (whole, 5), lanes / 2),
                None,
                "from {r}, half the lanes"
            );
            assert_eq!(v.column(2).0[pairs], w[(r + 1) * pairs + 2], "from {r}");
            assert!(v.holds(rows - r, pairs) && !v.holds(rows - r + 1, pairs));
            assert_eq!(v.known_finite(), r % lanes == 0, "from {r}");
        }
        assert!(!Weights::rows(&w, pairs).known_finite());
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
