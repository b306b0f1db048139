//! The products of a stride-1 convolution with few input channels per group (a network's
//! first layers: LeNet's 1 and 6, an RGB image's 3), computed directly on the zero-padded
//! input's wide columns (see `conv_shifted.rs`): no im2col and no GEMM. The forward and
//! the input gradient are [`block`]'s products, the weight gradient [`weight_block`]'s sums.
//!
//! Each output column of the wide grid reads the input at its own number plus one offset
//! per (channel, tap) pair, so a block of `OB` output channels × `L` consecutive columns
//! is `kdim` rank-1 updates: a vector of `L` input values times a broadcast weight each,
//! held in registers throughout. With so few channels, im2col expanded the input
//! `kdim`-fold and the GEMM then copied that expansion again to pack it, while its
//! 16-row micro-kernel ran a 6-channel layer at 6/16 of its width (two thirds of
//! LeNet's convolution time went on those copies).
//!
//! The loops are plain Rust, compiled three times: for AVX-512, for AVX2 with FMA, and
//! for the baseline, and the one the processor supports is picked at run time (the
//! project builds for baseline x86-64, which would otherwise leave 4-wide SSE here).

/// Widest block of output channels (with AVX-512: 8 × 32 accumulators, 16 registers).
pub(super) const MAX_OB: usize = 8;

/// (Channel, tap) pairs per pass over the columns: 8 rows of 256 weights are 8 KiB.
const K_CHUNK: usize = 256;

/// Columns per block, the most any version uses: the padded input needs this many
/// readable values past its last one.
pub(super) const MAX_L: usize = 32;

/// Runs `$inner::<…>($args)` compiled for AVX-512 (with FMA), for AVX2 with FMA, or for the
/// baseline, whichever the processor supports, each with its own const parameters (in
/// brackets: block sizes that fit its registers, and whether to fuse multiply and add).
macro_rules! by_cpu {
    ($inner:ident($($arg:ident: $ty:ty),*), avx512: [$($a:expr),*], avx2: [$($b:expr),*],
     base: [$($c:expr),*]) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx512($($arg: $ty),*) {
                $inner::<$($a),*>($($arg),*)
            }
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2($($arg: $ty),*) {
                $inner::<$($b),*>($($arg),*)
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the processor has AVX-512F; the caller's asserts keep every
                // access of the (bounds-checked) loops in range.
                return unsafe { avx512($($arg),*) };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: as above, with AVX2 and FMA.
                return unsafe { avx2($($arg),*) };
            }
        }
        $inner::<$($c),*>($($arg),*)
    }};
}

/// Adds the products of `og` output channels' weights (`w`, rows of `kdim`) and the
/// padded input `x` into `out` (`og` rows `ld` apart) for wide columns `0..cols`, where
/// (channel, tap) pair `k` reads `x` at `base + offs[k] + column`. Columns past `cols` up
/// to the next multiple of [`MAX_L`] are written too (with values of no use): `out`'s rows
/// (`ld` at least that multiple) and `x` must have room for them.
#[allow(clippy::too_many_arguments)]
pub(super) fn block(
    w: &[f32],
    kdim: usize,
    og: usize,
    x: &[f32],
    base: usize,
    offs: &[usize],
    cols: usize,
    out: &mut [f32],
    ld: usize,
) {
    assert_eq!(
        offs.len(),
        kdim,
        "conv_direct: one offset per weight column"
    );
    assert!(w.len() >= og * kdim, "conv_direct: weights too short");
    let reach = base + offs.iter().max().copied().unwrap_or(0) + cols.next_multiple_of(MAX_L);
    assert!(x.len() >= reach, "conv_direct: input without its slack");
    assert!(
        ld >= cols.next_multiple_of(MAX_L) && out.len() >= og * ld,
        "conv_direct: output rows too short"
    );
    by_cpu!(
        blocks(w: &[f32], kdim: usize, og: usize, x: &[f32], base: usize, offs: &[usize],
            cols: usize, out: &mut [f32], ld: usize),
        avx512: [MAX_OB, 32, true],
        avx2: [4, 16, true],
        base: [4, 8, false]
    )
}

/// Every `OB × L` block of the product; the last channels in blocks of 4, 2 and 1.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn blocks<const OB: usize, const L: usize, const FMA: bool>(
    w: &[f32],
    kdim: usize,
    og: usize,
    x: &[f32],
    base: usize,
    offs: &[usize],
    cols: usize,
    out: &mut [f32],
    ld: usize,
) {
    let mut o = 0;
    while o < og {
        let left = og - o;
        let (w, out) = (&w[o * kdim..], &mut out[o * ld..]);
        o += if left >= OB {
            columns::<OB, L, FMA>(w, kdim, x, base, offs, cols, out, ld);
            OB
        } else if left >= 4 {
            columns::<4, L, FMA>(w, kdim, x, base, offs, cols, out, ld);
            4
        } else if left >= 2 {
            columns::<2, L, FMA>(w, kdim, x, base, offs, cols, out, ld);
            2
        } else {
            columns::<1, L, FMA>(w, kdim, x, base, offs, cols, out, ld);
            1
        };
    }
}

/// `OB` output channels over all column blocks.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn columns<const OB: usize, const L: usize, const FMA: bool>(
    w: &[f32],
    kdim: usize,
    x: &[f32],
    base: usize,
    offs: &[usize],
    cols: usize,
    out: &mut [f32],
    ld: usize,
) {
    // Pairs in chunks whose weights (OB rows of them) stay in the first-level cache
    // while every column block reads them; each chunk after the first adds to the block
    // the chunks before it stored.
    for k0 in (0..offs.len()).step_by(K_CHUNK) {
        let chunk = &offs[k0..offs.len().min(k0 + K_CHUNK)];
        for c0 in (0..cols).step_by(L) {
            let mut acc = [[0.0f32; L]; OB];
            if k0 > 0 {
                for (o, acc) in acc.iter_mut().enumerate() {
                    acc.copy_from_slice(&out[o * ld + c0..][..L]);
                }
            }
            for (k, &off) in chunk.iter().enumerate() {
                let at = base + off + c0;
                let xv: &[f32; L] = x[at..at + L].try_into().expect("L values");
                for (o, acc) in acc.iter_mut().enumerate() {
                    let wv = w[o * kdim + k0 + k];
                    for (a, &v) in acc.iter_mut().zip(xv) {
                        *a = if FMA { wv.mul_add(v, *a) } else { *a + wv * v };
                    }
                }
            }
            for (o, acc) in acc.iter().enumerate() {
                out[o * ld + c0..][..L].copy_from_slice(acc);
            }
        }
    }
}

/// Partial sums kept per weight-gradient value (`lanes` of [`weight_block`]): one per
/// vector lane, added across only once at the end ([`fold_lanes`]); a short run of columns
/// per call (one image's) would otherwise spend as much on adding lanes as on products.
pub(super) const LANES: usize = 16;

/// Adds `gy[o·ld + gbase + col] · x[xbase + offs[k] + col]` over wide columns `0..cols`
/// into the partial sums `lanes[(o·kdim + k)·LANES..]` of `og` output channels (the weight
/// gradient's products, `kdim = offs.len()`). Reads go on to the next multiple of
/// [`MAX_L`] columns: `gy` must hold zeros there and `x` finite values (or zeros).
#[allow(clippy::too_many_arguments)]
pub(super) fn weight_block(
    gy: &[f32],
    ld: usize,
    gbase: usize,
    og: usize,
    x: &[f32],
    xbase: usize,
    offs: &[usize],
    cols: usize,
    lanes: &mut [f32],
) {
    let (kdim, reach) = (offs.len(), cols.next_multiple_of(MAX_L));
    let far = offs.iter().max().copied().unwrap_or(0);
    assert!(
        x.len() >= xbase + far + reach,
        "conv_direct: input without its slack"
    );
    assert!(
        og == 0 || gy.len() >= (og - 1) * ld + gbase + reach,
        "conv_direct: output gradient too short"
    );
    assert!(
        lanes.len() >= og * kdim * LANES,
        "conv_direct: partial sums too short"
    );
    by_cpu!(
        weight_blocks(gy: &[f32], ld: usize, gbase: usize, og: usize, x: &[f32], xbase: usize,
            offs: &[usize], cols: usize, lanes: &mut [f32]),
        avx512: [4, 16, true],
        avx2: [2, 8, true],
        base: [2, 8, false]
    )
}

/// The weight gradient from [`weight_block`]'s partial sums: each value's lanes added.
pub(super) fn fold_lanes(lanes: &[f32], gw: &mut [f32]) {
    for (g, l) in gw.iter_mut().zip(lanes.chunks(LANES)) {
        *g = l.iter().sum();
    }
}

/// Every block of `B` output channels × 4 (channel, tap) pairs; channels and pairs left
/// over one at a time.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn weight_blocks<const B: usize, const L: usize, const FMA: bool>(
    gy: &[f32],
    ld: usize,
    gbase: usize,
    og: usize,
    x: &[f32],
    xbase: usize,
    offs: &[usize],
    cols: usize,
    lanes: &mut [f32],
) {
    let kdim = offs.len();
    let (whole_o, whole_k) = (og - og % B, kdim - kdim % 4);
    let mut o0 = 0;
    while o0 < og {
        let step = if o0 < whole_o { B } else { 1 };
        let g = &gy[o0 * ld + gbase..];
        let mut k0 = 0;
        while k0 < kdim {
            let kb = if k0 < whole_k { 4 } else { 1 };
            let (s, offs) = (&mut lanes[(o0 * kdim + k0) * LANES..], &offs[k0..k0 + kb]);
            match (step == B, kb == 4) {
                (true, true) => sums::<B, 4, L, FMA>(g, ld, x, xbase, offs, cols, s, kdim),
                (true, false) => sums::<B, 1, L, FMA>(g, ld, x, xbase, offs, cols, s, kdim),
                (false, true) => sums::<1, 4, L, FMA>(g, ld, x, xbase, offs, cols, s, kdim),
                (false, false) => sums::<1, 1, L, FMA>(g, ld, x, xbase, offs, cols, s, kdim),
            }
            k0 += kb;
        }
        o0 += step;
    }
}

/// `OB` output channels × `KB` pairs, `L` partial sums each, held in registers over the
/// columns.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn sums<const OB: usize, const KB: usize, const L: usize, const FMA: bool>(
    gy: &[f32],
    ld: usize,
    x: &[f32],
    xbase: usize,
    offs: &[usize],
    cols: usize,
    lanes: &mut [f32],
    kdim: usize,
) {
    let mut acc = [[[0.0f32; L]; KB]; OB];
    for (o, acc) in acc.iter_mut().enumerate() {
        for (k, a) in acc.iter_mut().enumerate() {
            a.copy_from_slice(&lanes[(o * kdim + k) * LANES..][..L]);
        }
    }
    // Each row's columns as whole blocks, checked once: the loop below then loads each
    // block of `gy` and `x` once into registers (read in place, each was loaded again for
    // every product, two loads per multiply-add).
    let blocks = cols.div_ceil(L);
    let g_rows: [&[f32]; OB] = std::array::from_fn(|o| &gy[o * ld..][..blocks * L]);
    let x_rows: [&[f32]; KB] = std::array::from_fn(|k| &x[xbase + offs[k]..][..blocks * L]);
    for b in 0..blocks {
        let g: [[f32; L]; OB] =
            std::array::from_fn(|o| g_rows[o][b * L..][..L].try_into().expect("L values"));
        let xv: [[f32; L]; KB] =
            std::array::from_fn(|k| x_rows[k][b * L..][..L].try_into().expect("L values"));
        for (acc, g) in acc.iter_mut().zip(&g) {
            for (a, xv) in acc.iter_mut().zip(&xv) {
                for l in 0..L {
                    a[l] = if FMA {
                        g[l].mul_add(xv[l], a[l])
                    } else {
                        a[l] + g[l] * xv[l]
                    };
                }
            }
        }
    }
    for (o, acc) in acc.iter().enumerate() {
        for (k, a) in acc.iter().enumerate() {
            lanes[(o * kdim + k) * LANES..][..L].copy_from_slice(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_sums_match_for_every_channel_and_pair_count() {
        let channel = 150;
        let taps = [0, 1, 7, 20, 41];
        let x: Vec<f32> = (0..3 * channel + MAX_L + 64)
            .map(|i| ((i * 29 % 17) as f32 - 8.0) / 4.0)
            .collect();
        for cg in [1, 2, 3] {
            let offs: Vec<usize> = (0..cg)
                .flat_map(|c| taps.iter().map(move |t| c * channel + t))
                .collect();
            let kdim = offs.len();
            for og in [1, 5, 6, 9] {
                for (gbase, xbase, cols) in [(0, 0, 1usize), (2, 3, 37), (0, 5, 64), (1, 0, 70)] {
                    // Rows of the output gradient with zeros past `cols`, as the widened
                    // gradient has them.
                    let ld = gbase + cols.next_multiple_of(MAX_L) + 5;
                    let gy: Vec<f32> = (0..og * ld)
                        .map(|i| {
                            let c = i % ld;
                            if c >= gbase && c < gbase + cols {
                                ((i * 13 % 11) as f32 - 5.0) / 8.0
                            } else {
                                0.0
                            }
                        })
                        .collect();
                    // Partial sums already holding 0.5 in all, added to by a second call.
                    let mut lanes = vec![0.5 / LANES as f32; og * kdim * LANES];
                    weight_block(&gy, ld, gbase, og, &x, xbase, &offs, cols, &mut lanes);
                    let mut gw = vec![f32::NAN; og * kdim];
                    fold_lanes(&lanes, &mut gw);
                    for o in 0..og {
                        for k in 0..kdim {
                            let want: f64 = 0.5
                                + (0..cols)
                                    .map(|c| {
                                        gy[o * ld + gbase + c] as f64
                                            * x[xbase + offs[k] + c] as f64
                                    })
                                    .sum::<f64>();
                            let got = gw[o * kdim + k] as f64;
                            assert!(
                                (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                "cg {cg}, og {og}, cols {cols}: [{o}][{k}] {got} against {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn blocks_match_the_sum_for_every_channel_count_and_tail() {
        // A padded input of 3 channels, 5 taps each at scattered offsets.
        let channel = 150;
        let taps = [0, 1, 7, 20, 41];
        let offs: Vec<usize> = (0..3)
            .flat_map(|c| taps.iter().map(move |t| c * channel + t))
            .collect();
        let kdim = offs.len();
        let x: Vec<f32> = (0..3 * channel + MAX_L + 64)
            .map(|i| ((i * 29 % 17) as f32 - 8.0) / 4.0)
            .collect();
        for og in [1, 3, 6, 8, 11, 16] {
            let w: Vec<f32> = (0..og * kdim)
                .map(|i| ((i * 13 % 11) as f32 - 5.0) / 8.0)
                .collect();
            for (base, cols) in [(0, 1usize), (3, 37), (5, 64), (0, 70)] {
                let ld = cols.next_multiple_of(MAX_L) + 3;
                let mut out = vec![f32::NAN; og * ld];
                block(&w, kdim, og, &x, base, &offs, cols, &mut out, ld);
                for o in 0..og {
                    for c in 0..cols {
                        let want: f64 = (0..kdim)
                            .map(|k| w[o * kdim + k] as f64 * x[base + offs[k] + c] as f64)
                            .sum();
                        let got = out[o * ld + c] as f64;
                        assert!(
                            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "og {og}, base {base}, cols {cols}: [{o}][{c}] {got} against {want}"
                        );
                    }
                }
            }
        }
    }
}
