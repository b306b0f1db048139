//! The products of stride-1 convolutions computed directly on the zero-padded input's
//! wide columns (see `conv_shifted.rs`): no im2col and no GEMM. Every such forward is
//! [`block`]'s products, and so are depthwise layers' on their phase grid
//! (`conv2d_depthwise.rs`), and so is the input gradient ([`grad_input`]) wherever the
//! grid's gradients serve (`conv_shifted::applies`, [`applies`] for thin groups, or
//! `conv_shifted::grad_input_applies` for 6² to 9² planes) and the weights are finite.
//! With few input channels per group (a network's first layers: LeNet's 1 and 6, an RGB
//! image's 3), the weight gradient is [`weight_block`]'s sums; with more,
//! `conv_weight.rs`'s (16+ output channels) or `conv_weight_wide.rs`'s.
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

use super::by_cpu;
use super::conv_channels::{self, Axis, Border, Plane};
use super::conv_shifted::{
    channel_blocks, grid_fits, images_per_run, rows_of, spread, wide, Runs, Wide, CHUNK_VALUES,
    FORWARD_COLS, MIN_CHANNELS,
};
use super::conv_weight_wide;
use super::per_image::{per_image_sum, per_images};
use super::reduce::all_finite;
use super::transpose::Weights;
use crate::backend::Conv3dParams;
use crate::host;
use crate::Result;

/// Widest block of output channels (with AVX-512: 8 × 32 accumulators, 16 registers).
pub(super) const MAX_OB: usize = 8;

/// (Channel, tap) pairs per pass over the columns: 8 rows of 128 weights are 4 KiB, and
/// the inputs of one chunk (14 channels of 3×3 taps) are what every block of channels
/// reads before the next chunk. Chunks of 64 or 256 pairs were no faster (2026-12-01).
const K_CHUNK: usize = 128;

/// Columns per block, the most any version uses: the padded input needs this many
/// readable values past its last one.
pub(super) const MAX_L: usize = 32;

// The image-level drivers of the direct products, on `conv_shifted.rs`'s wide grid (whose
// forward calls [`block`] itself).

/// Weights of at most this many values take the direct weight gradient, whose partial
/// sums are [`LANES`] times larger (4 MiB per thread here).
pub(super) const MAX_DIRECT_WEIGHT: usize = 1 << 16;

/// Whether the direct products serve `p` (the forward and both gradients): the grid fits,
/// fewer channels per group than the GEMMs need, at most half again as many columns as
/// the output has (LeNet's 5×5 layer on 14² computes 14 for 10),
/// and a weight of at most [`MAX_DIRECT_WEIGHT`] values. The gradients also need finite
/// inputs (weight gradient) or weights (input gradient), which their callers check.
pub(super) fn applies(p: &Conv3dParams) -> bool {
    grid_fits(p).is_some_and(|wp| {
        p.c_in / p.groups < MIN_CHANNELS
            && wp.saturating_mul(2) <= p.output[2].saturating_mul(3)
            && p.kernel
                .iter()
                .try_fold(p.c_out.saturating_mul(p.c_in / p.groups), |v, &k| {
                    v.checked_mul(k)
                })
                .is_some_and(|len| len <= MAX_DIRECT_WEIGHT)
    })
}

/// Each (channel, tap) pair's offset on a group's padded channels, in the weight's order:
/// where the direct products read.
pub(super) fn pair_offsets(wd: &Wide) -> Vec<usize> {
    (0..wd.cg)
        .flat_map(|c| wd.taps.iter().map(move |t| c * wd.channel + t))
        .collect()
}

/// The input gradient of a stride-1 convolution as the forward's direct products run
/// backwards, for finite weights (an ∞ one would meet the zeros around the output gradient
/// as 0·∞; for one, `None` sends the caller another way). Padded input position `q`
/// gathers `w[o][c][t] · gy` at wide output column `q − off_t` over every (output
/// channel, tap): with the output gradient placed `far`
/// (the last tap's offset) into a zeroed buffer, at each output position's padded-input
/// number, that is a read at `q + far − off_t`, one more product of [`block`] with the
/// weight transposed to rows of input channels. As in the forward, runs of wide columns
/// over the input's rows keep a block of sums in cache while every pair adds into it, and
/// the padded border's columns are computed and dropped; onto small input planes (14²,
/// and 6² to 9² from 256 positions on) the products are `conv_channels.rs`'s,
/// which compute only the kept ones (256@14² at batch 8 on a Zen 4, 2026-12-03: the input
/// gradient about 10% faster).
pub(super) fn grad_input(gy: &[f32], w: &[f32], p: &Conv3dParams) -> Result<Option<Vec<f32>>> {
    if !all_finite(w) {
        return Ok(None);
    }
    let wd = wide(p);
    let (taps, far) = (wd.taps.len(), wd.taps.iter().max().copied().unwrap_or(0));
    let ldg = far + wd.channel;
    let pairs = wd.og * taps;
    let offs: Vec<usize> = (0..wd.og)
        .flat_map(|o| wd.taps.iter().map(move |off| o * ldg + far - off))
        .collect();
    let [_, h, iw] = p.input;
    // Where each input plane's first value sits in its padded channel, and how many wide
    // columns reach its last.
    let firsts: Vec<usize> = rows_of(p, &wd, true).step_by(h.max(1)).collect();
    let span = (h - 1) * wd.wp + iw;
    let cols = (CHUNK_VALUES / wd.cg.max(1)).max(FORWARD_COLS);
    let border = Border {
        axes: [0, 1, 2]
            .map(|a| Axis::backward(p.kernel[a], p.output[a], p.padding[a], p.dilation[a])),
        a: 0,
    };
    let plane = Plane {
        wp: wd.wp,
        oh: h,
        ow: iw,
        reads: None,
        border: Some(border),
    };
    let (per_in, per_out) = (p.c_in * wd.in_len, p.c_out * wd.out_len);
    let most = images_per_run(p.input, wd.wp, cols);
    let mut gx = host::zeros(p.input_len())?;
    per_images(&mut gx, per_in, p.n, most, |n0, count, gx| {
        let gy = &gy[n0 * per_out..][..count * per_out];
        let some = Conv3dParams { n: count, ..*p };
        let ext = conv_weight_wide::widened(gy, &some, &wd, far, wd.plane, ldg, MAX_L)?;
        for gi in 0..p.groups {
            let w_g = Weights::Swapped {
                w: &w[gi * wd.og * wd.cg * taps..][..wd.og * wd.cg * taps],
                taps,
                ld: wd.cg * taps,
            };
            let ext_g = &ext[gi * wd.og * ldg..];
            // `cb` channels from `c0`, into `gx` (image 0's channel `c0` onwards, the next
            // image's `per_in` further).
            let products = |c0: usize, cb: usize, gx: &mut [f32]| -> Result<()> {
                let mut out = host::with_capacity(cb * Runs::row_len(count, cols))?;
                for (a, &first) in firsts.iter().enumerate() {
                    for j in (0..span).step_by(cols) {
                        let n = cols.min(span - j);
                        let r = Runs::new(count, n, j);
                        out.resize(cb * r.ld, 0.0);
                        let bases: Vec<usize> =
                            (0..count).map(|i| i * p.c_out * ldg + first + j).collect();
                        let w_b = w_g.rows_from(c0);
                        let border = Some(Border { a, ..border });
                        let run = (n, j, Plane { border, ..plane });
                        conv_channels::products(
                            w_b, pairs, cb, ext_g, &bases, &offs, run, &mut out, r.ld,
                        );
                        r.keep(&out, (wd.wp, iw), gx, h * iw, |c, i| {
                            i * per_in + c * wd.in_len + a * h * iw
                        });
                    }
                }
                Ok(())
            };
            let gx_g = &mut gx[gi * wd.cg * wd.in_len..];
            channel_blocks(gx_g, count, wd.cg, wd.in_len, products)?;
        }
        super::recycle_scratch(ext);
        Ok(())
    })?;
    Ok(Some(gx))
}

/// The weight gradient of a thin-group convolution ([`applies`]) by the direct sums
/// ([`weight_block`]), for an input whose values are all finite (a non-finite one would
/// reach, as 0·∞, sums of output columns that are dropped). The output gradient is
/// widened plane by plane, each plane's row a multiple of the sums' blocks long with zeros
/// past its columns, so the blocks' reads past a plane's last column add nothing. The
/// partial sums take [`LANES`] times the weight's size per thread, so
/// [`applies`] bounds the weight.
pub(super) fn grad_weight(x: &[f32], gy: &[f32], p: &Conv3dParams) -> Result<Vec<f32>> {
    let wd = wide(p);
    let offs = pair_offsets(&wd);
    let [od, oh, ow] = p.output;
    let span = (oh - 1) * wd.wp + ow;
    let per_plane = span.next_multiple_of(MAX_L);
    let ld = od * per_plane;
    let lanes = per_image_sum(
        p.n,
        p.weight_len() * LANES,
        || Ok(()),
        |ni, acc, _| {
            let x_n = &x[ni * p.c_in * wd.in_len..][..p.c_in * wd.in_len];
            let gy_n = &gy[ni * p.c_out * wd.out_len..][..p.c_out * wd.out_len];
            let xp = spread(x_n, p, &wd, true, MAX_L)?;
            let one = Conv3dParams { n: 1, ..*p };
            let gyw = conv_weight_wide::widened(gy_n, &one, &wd, 0, per_plane, ld, 0)?;
            let per_group = wd.og * wd.kdim * LANES;
            for (gi, acc_g) in acc.chunks_mut(per_group).enumerate() {
                let (x_g, gy_g) = (&xp[gi * wd.cg * wd.channel..], &gyw[gi * wd.og * ld..]);
                for a in 0..od {
                    let (gbase, xbase) = (a * per_plane, a * wd.plane);
                    weight_block(gy_g, ld, gbase, wd.og, x_g, xbase, &offs, span, acc_g);
                }
            }
            Ok(())
        },
    )?;
    let mut gw = host::zeros(p.weight_len())?;
    fold_lanes(&lanes, &mut gw);
    Ok(gw)
}

/// Adds the products of `og` output channels' weights (`w`: `og` rows of `kdim` pairs) and the
/// padded input `x` into `out` (`og` rows `ld` apart) for runs of wide columns `0..cols`,
/// one run per entry of `bases`, where (channel, tap) pair `k` reads `x` at
/// `bases[r] + offs[k] + column`; run `r`'s sums start at column `r · run` of `out`'s
/// rows, `run` being `cols` rounded up to a multiple of [`MAX_L`]. Columns past `cols` up
/// to that multiple are written too (with values of no use): `out`'s rows (`ld` at least
/// `bases.len() · run`) and `x` must have room for them. Runs of several images share one
/// call, so that each chunk of weights is laid out for the products once for all of them:
/// at 7² with 512 channels and batch 8 (64 columns per image), one image per call took
/// 10.7 ms for the forward and four 9.6 (fastest of six runs each, 2026-12-02).
#[allow(clippy::too_many_arguments)]
pub(super) fn block(
    w: Weights,
    kdim: usize,
    og: usize,
    x: &[f32],
    bases: &[usize],
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
    assert!(w.holds(og, kdim), "conv_direct: weights too short");
    let run = cols.next_multiple_of(MAX_L);
    let far = bases.iter().max().copied().unwrap_or(0) + offs.iter().max().copied().unwrap_or(0);
    assert!(x.len() >= far + run, "conv_direct: input without its slack");
    assert!(
        ld >= bases.len() * run && out.len() >= og * ld,
        "conv_direct: output rows too short"
    );
    by_cpu!(
        blocks(w: Weights, kdim: usize, og: usize, x: &[f32], bases: &[usize], offs: &[usize],
            cols: usize, out: &mut [f32], ld: usize),
        avx512: [MAX_OB, 32, true],
        // AVX2: 6 × 2 sums of 8 (12 of its 16 registers) against 4 × 2 before (2026-12-02)
        avx2: [6, 16, true],
        base: [4, 8, false]
    )
}

/// Column blocks per group (see [`blocks`]).
const GROUP: usize = 8;

/// Every `OB × L` block of the product; the last channels in blocks of 4, 2 and 1.
/// Pairs go in chunks, outermost: every block of channels runs over one chunk's inputs
/// while they are still cached. With the channels outermost, each block of 8 channels
/// read the whole image again, which cost most where the image, the weights and the sums
/// together outgrow the second-level cache: a stride-2 layer of 256 channels on 28²
/// (four phase planes, 2.4 MB of weights) took 7.7 ms at batch 8 that way, 6.0 this way.
/// Inside a chunk, the columns go in groups of [`GROUP`] blocks and every block of
/// channels runs over one group before the next: a group's inputs (a chunk's 14 channels
/// × 3 rows of a 3×3 kernel, 128 columns: 22 KB) then stay in the first-level cache for
/// all of them, where a whole run's (83 KB at 224²) came from the second level again for
/// each block of channels. On a 2-core Zen 3 (2026-12-02, fastest of 36 runs each) 64
/// channels at 224² and batch 8 took 206 ms against 213, 256 at 14² the same 12.7 ms; the
/// style-transfer step 3.33 s against 3.50 (fastest of four). Groups of 4 and 16 blocks
/// were no better.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn blocks<const OB: usize, const L: usize, const FMA: bool>(
    w: Weights,
    kdim: usize,
    og: usize,
    x: &[f32],
    bases: &[usize],
    offs: &[usize],
    cols: usize,
    out: &mut [f32],
    ld: usize,
) {
    let run = cols.next_multiple_of(MAX_L);
    let starts: Vec<(usize, usize)> = bases
        .iter()
        .enumerate()
        .flat_map(|(r, &base)| (0..cols).step_by(L).map(move |c| (base + c, r * run + c)))
        .collect();
    let mut channels = Vec::with_capacity(og / OB + 3);
    let mut o = 0;
    while o < og {
        let ob = match og - o {
            left if left >= OB => OB,
            left if left >= 4 => 4,
            left if left >= 2 => 2,
            _ => 1,
        };
        channels.push((o, ob));
        o += ob;
    }
    let mut packed = vec![0.0f32; og * K_CHUNK.min(kdim)];
    for k0 in (0..kdim).step_by(K_CHUNK) {
        let chunk = &offs[k0..kdim.min(k0 + K_CHUNK)];
        let kc = chunk.len();
        // The chunk's weights laid out block by block, pair by pair, so that the loop
        // reads one pair's weights without a bounds check each (read in place, the checks
        // took as many instructions as the products).
        for &(o0, ob) in &channels {
            let dst = &mut packed[o0 * kc..][..ob * kc];
            for (k, wk) in dst.chunks_exact_mut(ob).enumerate() {
                let (col, rs) = w.column(k0 + k);
                for (o, v) in wk.iter_mut().enumerate() {
                    *v = col[(o0 + o) * rs];
                }
            }
        }
        let (first, pairs) = (k0 == 0, Pairs::new(chunk));
        for group in starts.chunks(GROUP) {
            for &(o0, ob) in &channels {
                let (wb, out) = (&packed[o0 * kc..][..ob * kc], &mut out[o0 * ld..]);
                if ob == OB {
                    columns::<OB, L, FMA>(wb, x, group, &pairs, first, out, ld);
                } else if ob == 4 {
                    columns::<4, L, FMA>(wb, x, group, &pairs, first, out, ld);
                } else if ob == 2 {
                    columns::<2, L, FMA>(wb, x, group, &pairs, first, out, ld);
                } else {
                    columns::<1, L, FMA>(wb, x, group, &pairs, first, out, ld);
                }
            }
        }
    }
}

/// `OB` output channels over the column blocks `starts` (each one's first input and
/// output column), for one chunk of pairs (`pairs`, their weights in `w` pair by pair):
/// the first chunk stores its sums, each later one adds to what the chunks before it
/// stored.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn columns<const OB: usize, const L: usize, const FMA: bool>(
    w: &[f32],
    x: &[f32],
    starts: &[(usize, usize)],
    pairs: &Pairs,
    first: bool,
    out: &mut [f32],
    ld: usize,
) {
    let (chunk, far) = (pairs.offs(), pairs.far());
    assert_eq!(
        w.len(),
        OB * chunk.len(),
        "conv_direct: one weight per pair"
    );
    let w = w
        .chunks_exact(OB)
        .map(|wk| <&[f32; OB]>::try_from(wk).expect("OB values"));
    for &(at, c0) in starts {
        let mut acc = [[0.0f32; L]; OB];
        if !first {
            for (o, acc) in acc.iter_mut().enumerate() {
                acc.copy_from_slice(&out[o * ld + c0..][..L]);
            }
        }
        let xs = &x[at..][..far + L];
        for (wk, &off) in w.clone().zip(chunk) {
            // SAFETY: `off` is at most `far` (`Pairs::new`), and `xs` holds `far + L`
            // values. Checked, each pair's read took four more instructions beside its 12
            // multiply-adds (AVX2), in a loop the front end already nearly bounds.
            let xv: &[f32; L] = unsafe { &*xs.as_ptr().add(off).cast::<[f32; L]>() };
            for (o, acc) in acc.iter_mut().enumerate() {
                let wv = wk[o];
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

/// A chunk of (channel, tap) pairs' offsets and the farthest of them, found once per
/// chunk: the products' unchecked reads rely on it, and finding it again for every block
/// of positions cost `conv_channels.rs` a seventh of its time (7² forward 13.5 ms against
/// 11.6).
pub(super) struct Pairs<'a> {
    offs: &'a [usize],
    far: usize,
}

impl<'a> Pairs<'a> {
    pub(super) fn new(offs: &'a [usize]) -> Self {
        let far = offs.iter().max().copied().unwrap_or(0);
        Pairs { offs, far }
    }

    pub(super) fn offs(&self) -> &'a [usize] {
        self.offs
    }

    pub(super) fn far(&self) -> usize {
        self.far
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
        outer_products::<OB, KB, L, FMA>(&mut acc, &g, &xv);
    }
    for (o, acc) in acc.iter().enumerate() {
        for (k, a) in acc.iter().enumerate() {
            lanes[(o * kdim + k) * LANES..][..L].copy_from_slice(a);
        }
    }
}

/// `acc[o][k] += g[o] · xv[k]` lane by lane: one step of the weight gradient's sums.
#[inline(always)]
pub(super) fn outer_products<const OB: usize, const KB: usize, const L: usize, const FMA: bool>(
    acc: &mut [[[f32; L]; KB]; OB],
    g: &[[f32; L]; OB],
    xv: &[[f32; L]; KB],
) {
    for (acc, g) in acc.iter_mut().zip(g) {
        for (a, xv) in acc.iter_mut().zip(xv) {
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

#[cfg(test)]
mod tests {
    use super::super::conv2d::{self, definition};
    use super::super::conv_shifted::tests::{
        assert_close, assert_same, definition_3d, stride_1, value,
    };
    use super::super::conv_shifted::{self, from_2d};
    use super::*;

    /// Thin groups (fewer than 16 channels) take the direct products in the forward and
    /// both gradients: 1, 3 and 6 channels, groups, dilation, asymmetric and no
    /// padding, 1-D, 3-D, and outputs that leave a partial block of columns and of output
    /// channels.
    #[test]
    fn thin_groups_direct_products_match_the_definition() {
        // (n, c_in, h, w, c_out, kernel, padding, dilation, groups)
        let cases = [
            (3, 1, 28, 28, 6, [5, 5], [2, 2], [1, 1], 1),
            (2, 6, 14, 14, 16, [5, 5], [0, 0], [1, 1], 1),
            (1, 3, 17, 19, 11, [3, 3], [1, 1], [1, 1], 1),
            (2, 6, 9, 12, 10, [3, 2], [1, 0], [2, 1], 2),
            (1, 4, 1, 100, 7, [1, 9], [0, 4], [1, 1], 1),
            (1, 15, 40, 33, 3, [3, 3], [1, 1], [1, 2], 1),
        ];
        for case in cases {
            let (p, mut x, wt, gy) = stride_1(case);
            let p3 = from_2d(&p);
            assert!(
                !conv_shifted::applies(&p3) && applies(&p3),
                "{p:?} takes the direct path"
            );
            let [y, gx, gw] = definition(&x, &wt, &gy, &p);
            let name = format!("{p:?}");
            assert_close(&name, &conv2d::forward(&x, &wt, &p).unwrap(), &y);
            assert_close(&name, &conv2d::grad_input(&gy, &wt, &p).unwrap(), &gx);
            assert_close(&name, &conv2d::grad_weight(&x, &gy, &p).unwrap(), &gw);
            // An infinite input value in an image's last column, which only dropped wide
            // columns read with the other taps: the weight gradient leaves the direct sums
            // and still matches the definition.
            let last = p.w - 1;
            x[last] = f32::INFINITY;
            let [_, _, gw] = definition(&x, &wt, &gy, &p);
            let got = conv2d::grad_weight(&x, &gy, &p).unwrap();
            assert_same(&format!("{name} with ∞"), &got, &gw);
            // An infinite weight: the input gradient leaves the direct products (whose
            // zeros around the output gradient would meet it) and matches the definition.
            let mut wt = wt;
            wt[0] = f32::INFINITY;
            let [_, gx, _] = definition(&x, &wt, &gy, &p);
            let got = conv2d::grad_input(&gy, &wt, &p).unwrap();
            assert_same(&format!("{name} with an ∞ weight"), &got, &gx);
        }
        let p = Conv3dParams {
            n: 2,
            c_in: 3,
            c_out: 5,
            input: [4, 6, 9],
            output: [4, 6, 9],
            kernel: [3, 3, 3],
            stride: [1; 3],
            padding: [1; 3],
            dilation: [1; 3],
            groups: 1,
        };
        assert!(applies(&p));
        let x: Vec<f32> = (0..p.input_len()).map(|i| value(i, 1)).collect();
        let wt: Vec<f32> = (0..p.weight_len()).map(|i| value(i, 2)).collect();
        let gy: Vec<f32> = (0..p.output_len()).map(|i| value(i, 3)).collect();
        let [y, gx, gw] = definition_3d(&x, &wt, &gy, &p);
        assert_close(
            "3-D",
            &conv_shifted::forward(&x, &wt, &p, None).unwrap(),
            &y,
        );
        let got = grad_input(&gy, &wt, &p).unwrap().expect("finite weights");
        assert_close("3-D", &got, &gx);
        let mut inf = wt.clone();
        inf[7] = f32::INFINITY;
        assert!(grad_input(&gy, &inf, &p).unwrap().is_none(), "an ∞ weight");
        assert_close("3-D", &grad_weight(&x, &gy, &p).unwrap(), &gw);
    }

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
            let wl = Weights::rows(&w, kdim);
            let runs: [(&[usize], usize); 6] = [
                (&[0], 1),
                (&[3], 37),
                (&[5], 64),
                (&[0], 70),
                (&[0, 40, 7], 37),
                (&[9, 2], 33),
            ];
            for (bases, cols) in runs {
                let run = cols.next_multiple_of(MAX_L);
                let ld = bases.len() * run + 3;
                let mut out = vec![f32::NAN; og * ld];
                block(wl, kdim, og, &x, bases, &offs, cols, &mut out, ld);
                for (r, &base) in bases.iter().enumerate() {
                    for o in 0..og {
                        for c in 0..cols {
                            let want: f64 = (0..kdim)
                                .map(|k| w[o * kdim + k] as f64 * x[base + offs[k] + c] as f64)
                                .sum();
                            let got = out[o * ld + r * run + c] as f64;
                            assert!(
                                (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                                "og {og}, bases {bases:?}, cols {cols}: run {r} [{o}][{c}] {got} against {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
