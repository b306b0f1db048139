//! The direct products of `conv_direct::block` vectorized along output channels instead
//! of wide columns, for small output planes (forwards, and input gradients onto small
//! input planes). There the wide columns' blocks of 16 compute
//! many columns that are dropped: a 7² plane's rows are 9 wide columns (8 for a stride-2
//! layer's phase grid) and its 49 outputs take 64 columns, a 14² plane's 196 take 224.
//! Here a block is `P` kept output positions × `V` output channels: each (channel, tap)
//! pair loads `V` packed weights and broadcasts one input per position, read at that
//! position's own address, so only kept positions are computed (the last block repeats
//! its last position). The sums run over the pairs in the same order as in
//! `conv_direct::block`, with the same multiply-adds, so both give the same bits.
//!
//! On a 2-core Zen 3 (AVX2, batch 8, 2026-12-02, fastest of three rounds) the forwards
//! took: 512@7² 15.2 → 11.9 ms, 256@14² 12.3 → 10.9, 256@14² stride 2 onto 7² 8.0 → 7.0,
//! 256@28² stride 2 onto 14² 14.3 → 13.7. More than half of that came from finding a
//! chunk's farthest offset once rather than once per block of positions: without it,
//! 7² took 13.5 ms and 14² 12.4.

use super::by_cpu;
use super::conv_direct::{self, Pairs, MAX_L};

/// (Channel, tap) pairs per pass: `V` weights each (8 KiB with 16), and with 3×3 taps
/// the inputs of 14 channels, which stay in the first-level cache while every block of
/// positions reads them.
const K_CHUNK: usize = 128;

/// An output plane on the wide grid: `oh` rows of `ow` kept columns, `wp` wide columns
/// apart.
#[derive(Clone, Copy, Debug)]
pub(super) struct Plane {
    pub(super) wp: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
}

impl Plane {
    /// Whether the plane's wide column `c` is an output's.
    fn keeps(&self, c: usize) -> bool {
        c % self.wp < self.ow
    }

    /// Wide columns up to the last output.
    fn span(&self) -> usize {
        (self.oh.max(1) - 1) * self.wp + self.ow
    }
}

/// Whether a block of `og` output channels over `plane` takes these products: at least
/// 16 channels (a panel's width with AVX2), and the wide columns' blocks of 16 computing
/// at least a tenth more columns than the plane keeps (7² and 14² planes, not 28² or
/// larger).
fn applies(og: usize, plane: Plane) -> bool {
    og >= 16 && plane.span().next_multiple_of(16) * 10 >= plane.oh * plane.ow * 11
}

/// The forward's products for runs of `cols` wide columns from column `j` of `plane`
/// (the arguments and layout of `out` as in `conv_direct::block`): these products where
/// [`applies`], which write only the kept columns, else the wide columns'.
#[allow(clippy::too_many_arguments)]
pub(super) fn products(
    w: &[f32],
    kdim: usize,
    og: usize,
    x: &[f32],
    bases: &[usize],
    offs: &[usize],
    (cols, j, plane): (usize, usize, Plane),
    out: &mut [f32],
    ld: usize,
) {
    if applies(og, plane) {
        block(w, kdim, og, x, bases, offs, (cols, j, plane), out, ld);
    } else {
        conv_direct::block(w, kdim, og, x, bases, offs, cols, out, ld);
    }
}

/// As `conv_direct::block`, but only the kept columns are written; the others are left
/// as they were.
#[allow(clippy::too_many_arguments)]
fn block(
    w: &[f32],
    kdim: usize,
    og: usize,
    x: &[f32],
    bases: &[usize],
    offs: &[usize],
    run: (usize, usize, Plane),
    out: &mut [f32],
    ld: usize,
) {
    let (cols, _, plane) = run;
    assert_eq!(
        offs.len(),
        kdim,
        "conv_channels: one offset per weight column"
    );
    assert!(w.len() >= og * kdim, "conv_channels: weights too short");
    assert!(plane.wp > 0, "conv_channels: empty rows");
    let far = bases.iter().max().copied().unwrap_or(0) + offs.iter().max().copied().unwrap_or(0);
    assert!(x.len() >= far + cols, "conv_channels: input too short");
    assert!(
        ld >= bases.len() * cols.next_multiple_of(MAX_L) && out.len() >= og * ld,
        "conv_channels: output rows too short"
    );
    by_cpu!(
        panels(w: &[f32], kdim: usize, og: usize, x: &[f32], bases: &[usize], offs: &[usize],
            run: (usize, usize, Plane), out: &mut [f32], ld: usize),
        // 12 sums of 16. The compiler keeps the sums in vector registers for this shape
        // only: as 8 × 32, 6 × 32, 12 × 32, 4 × 32, 8 × 16 or 16 × 16 it left them in
        // memory and ran the loop one value at a time, and on a Zen 4 (2026-12-03,
        // batch 8) 256@14² took 140–490 ms against 10 this way (AVX2's 6 × 16: 12).
        // Three positions' addresses go to the stack: one reload per 4 products.
        avx512: [12, 16, true],
        // 6 × 2 sums of 8 in 12 of the 16 registers, as the wide columns' block
        avx2: [6, 16, true],
        base: [4, 8, false]
    )
}

/// Every panel of `V` output channels (the last padded with zero weights, its padding
/// not stored) over every block of `P` kept positions, chunk by chunk of pairs; a panel's
/// partial sums for all positions stay in a buffer between chunks.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn panels<const P: usize, const V: usize, const FMA: bool>(
    w: &[f32],
    kdim: usize,
    og: usize,
    x: &[f32],
    bases: &[usize],
    offs: &[usize],
    (cols, j, plane): (usize, usize, Plane),
    out: &mut [f32],
    ld: usize,
) {
    let run = cols.next_multiple_of(MAX_L);
    // Each kept position's first input and its column in `out`.
    let mut at: Vec<(usize, usize)> = bases
        .iter()
        .enumerate()
        .flat_map(|(r, &base)| {
            (0..cols)
                .filter(move |&c| plane.keeps(j + c))
                .map(move |c| (base + c, r * run + c))
        })
        .collect();
    let Some(&last) = at.last() else {
        return;
    };
    at.resize(at.len().next_multiple_of(P), last);
    let mut part = vec![[[0.0f32; V]; P]; at.len() / P];
    let mut packed = vec![0.0f32; K_CHUNK.min(kdim) * V];
    for o0 in (0..og).step_by(V) {
        let ov = V.min(og - o0);
        for k0 in (0..kdim).step_by(K_CHUNK) {
            let chunk = &offs[k0..kdim.min(k0 + K_CHUNK)];
            let wk = &mut packed[..chunk.len() * V];
            for (k, row) in wk.chunks_exact_mut(V).enumerate() {
                for (o, v) in row.iter_mut().enumerate() {
                    *v = if o < ov {
                        w[(o0 + o) * kdim + k0 + k]
                    } else {
                        0.0
                    };
                }
            }
            let pairs = Pairs::new(chunk);
            for (acc, at) in part.iter_mut().zip(at.chunks_exact(P)) {
                sums::<P, V, FMA>(acc, wk, x, at, &pairs, k0 == 0);
            }
        }
        for (acc, at) in part.iter().zip(at.chunks_exact(P)) {
            for (sums, &(_, col)) in acc.iter().zip(at) {
                for (o, &s) in sums[..ov].iter().enumerate() {
                    out[(o0 + o) * ld + col] = s;
                }
            }
        }
    }
}

/// One block's sums over one chunk of pairs: position `p` reads `x[at[p].0 + chunk[k]]`
/// times pair `k`'s weights `w[k·V..]`; the first chunk starts from zero, the others
/// from `part`.
#[inline(always)]
pub(super) fn sums<const P: usize, const V: usize, const FMA: bool>(
    part: &mut [[f32; V]; P],
    w: &[f32],
    x: &[f32],
    at: &[(usize, usize)],
    pairs: &Pairs,
    first: bool,
) {
    let (chunk, far) = (pairs.offs(), pairs.far());
    assert_eq!(
        w.len(),
        V * chunk.len(),
        "conv_channels: V weights per pair"
    );
    let xs: [&[f32]; P] = std::array::from_fn(|p| &x[at[p].0..][..far + 1]);
    let mut acc = if first { [[0.0f32; V]; P] } else { *part };
    let w = w
        .chunks_exact(V)
        .map(|wk| <&[f32; V]>::try_from(wk).expect("V values"));
    for (wk, &off) in w.zip(chunk) {
        for (acc, xs) in acc.iter_mut().zip(&xs) {
            // SAFETY: `off` is at most `far` (`Pairs::new`), and each `xs` holds `far + 1`
            // values.
            let v = unsafe { *xs.get_unchecked(off) };
            for (a, &wv) in acc.iter_mut().zip(wk) {
                *a = if FMA { wv.mul_add(v, *a) } else { *a + wv * v };
            }
        }
    }
    *part = acc;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same bits as the wide columns' products in every kept column, for channel
    /// counts around the panels' widths, runs of several images, rows that keep all or
    /// part of their columns and a last block of positions that is partial; the dropped
    /// columns untouched.
    #[test]
    fn kept_columns_match_the_wide_products_bit_for_bit() {
        let channel = 150;
        let taps = [0, 1, 7, 20, 41];
        let offs: Vec<usize> = (0..3)
            .flat_map(|c| taps.iter().map(move |t| c * channel + t))
            .collect();
        let kdim = offs.len();
        let x: Vec<f32> = (0..3 * channel + 2 * MAX_L + 128)
            .map(|i| ((i * 29 % 17) as f32 - 8.0) / 4.0)
            .collect();
        for og in [1, 5, 8, 16, 17, 33] {
            let w: Vec<f32> = (0..og * kdim)
                .map(|i| ((i * 13 % 11) as f32 - 5.0) / 8.0)
                .collect();
            // (bases, columns, first column, plane): `oh` matters only to the rule.
            let plane = |wp, ow| Plane { wp, oh: 1, ow };
            let runs: [(&[usize], usize, usize, Plane); 5] = [
                (&[0], 1, 0, plane(1, 1)),
                (&[3], 37, 0, plane(9, 7)),
                (&[5], 64, 3, plane(8, 8)),
                (&[0, 40, 7], 37, 0, plane(16, 14)),
                (&[9, 2], 55, 0, plane(8, 7)),
            ];
            for (bases, cols, j, plane) in runs {
                let ld = bases.len() * cols.next_multiple_of(MAX_L) + 3;
                let mut want = vec![f32::NAN; og * ld];
                conv_direct::block(&w, kdim, og, &x, bases, &offs, cols, &mut want, ld);
                let mut got = vec![-7.0; og * ld];
                block(
                    &w,
                    kdim,
                    og,
                    &x,
                    bases,
                    &offs,
                    (cols, j, plane),
                    &mut got,
                    ld,
                );
                let run = cols.next_multiple_of(MAX_L);
                for (i, (&g, &v)) in got.iter().zip(&want).enumerate() {
                    let c = i % ld;
                    let (r, c) = (c / run, c % run);
                    let kept_here = r < bases.len() && c < cols && plane.keeps(j + c);
                    let want = if kept_here { v } else { -7.0 };
                    assert_eq!(
                        g.to_bits(),
                        want.to_bits(),
                        "og {og}, bases {bases:?}, cols {cols} from {j}, {plane:?}: row {} column {c} of run {r}",
                        i / ld
                    );
                }
            }
        }
    }
}
