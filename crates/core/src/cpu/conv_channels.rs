//! The direct products of `conv_direct::block` vectorized along output channels instead
//! of wide columns, for small output planes (forwards, and input gradients onto small
//! input planes). There the wide columns' blocks of 16 compute
//! many columns that are dropped: a 7² plane's rows are 9 wide columns (8 for a stride-2
//! layer's phase grid) and its 49 outputs take 64 columns, a 14² plane's 196 take 224.
//! Here a block is `P` kept output positions × `V` output channels: each (channel, tap)
//! pair loads `V` packed weights and broadcasts one input per position, read at that
//! position's own address, so only kept positions are computed (the last block repeats
//! its last position). The sums run over the pairs in the same order as in
//! `conv_direct::block`, with the same multiply-adds, so both give the same bits (the
//! skipped products below add zeros; only a sum that is exactly −0 could come out +0
//! there).
//!
//! On a 2-core Zen 3 (AVX2, batch 8, 2026-12-02, fastest of three rounds) the forwards
//! took: 512@7² 15.2 → 11.9 ms, 256@14² 12.3 → 10.9, 256@14² stride 2 onto 7² 8.0 → 7.0,
//! 256@28² stride 2 onto 14² 14.3 → 13.7. More than half of that came from finding a
//! chunk's farthest offset once rather than once per block of positions: without it,
//! 7² took 13.5 ms and 14² 12.4.
//!
//! Positions on a plane's border skip the taps that read padding, where the caller says
//! which those are ([`Border`]): a 3×3 kernel's outputs on a 7² plane read 19 real rows
//! of 21 along each axis, so a fifth of their products were zeros (oneDNN's direct
//! kernels skip them too, which is how PyTorch ran 512@7² in 7.7 ms against our 9.9).
//! Positions are grouped by the taps they read, so that a block's (the union of its
//! positions') leaves out as many as it can. Single-threaded at batch 4 on a Zen 4
//! (2026-12-03, fastest of four to six rounds): 512@7² 10.14 → 9.35 ms, 256@14² 8.91 →
//! 8.51, 256@14² stride 2 onto 7² 5.65 → 5.35; 256@28² stride 2 onto 14² unchanged
//! (9.65 against 9.67).
//! Blocks of 4 positions for each class's leftovers, instead of blocks shared across
//! classes, took 16% of the 7² forward's samples (`perf`) for a small share of its
//! products, and were dropped.
//!
//! On an Intel Xeon (Emerald Rapids: two 512-bit multiply-add units per core, about 160
//! GFLOP/s measured; 2026-12-03) the 12 × 16 block ran at about 105 GFLOP/s: per (channel,
//! tap) pair it loaded a weight vector, an offset, 12 inputs and three spilled addresses
//! for 12 multiply-adds, so the loads bound it before the multiply-adds did. With AVX-512
//! a block is now 6 positions × 2 vectors of 16 channels, written with intrinsics
//! (`accumulate_zmm`): 2 weight vectors, 6 inputs and an offset per 12 multiply-adds. The
//! weights are laid out for it by 16 × 16 transposes (`transpose.rs`). Value by value,
//! the compiler had made the writes scatters and the reads jumped a row (9 KiB or more)
//! each time. Single-threaded at batch 4 (fastest of five alternating rounds, PyTorch in
//! brackets): 512@7² 8.35 → 5.83 ms (6.11), 256@14² 7.54 → 6.02 (5.41), stride 2 onto 7²
//! 5.00 → 3.51 (3.22), stride 2 onto 14² 10.49 → 7.72 (5.98).
//!
//! Four vectors of 16 channels per position instead of two (24 sums in registers, 4
//! weight vectors and 6 inputs per 24 multiply-adds) sped up the strided layers, whose
//! phase grids spread a pair's inputs over four planes: single-threaded at batch 8
//! (Intel Xeon, 2026-12-03, the fastest of three sets of 3–4 alternating rounds, PyTorch
//! in brackets), stride 2 onto 14² 17.13 → 14.71 ms (12.52), onto 7² 7.45 → 6.77 (6.74);
//! 256@14² (12.65 → 12.47, 10.78) and 512@7² (11.80 → 11.19, 11.62) moved within the
//! noise. A 64-pair chunk instead of 128 was no faster with either width.

use super::by_cpu;
use super::conv_direct::{self, Pairs, MAX_L};
use super::reduce::all_finite;
use super::transpose::Weights;

/// (Channel, tap) pairs per pass for panels of `lanes` channels: 512 for AVX-512's 64
/// (a 128 KiB panel: 57 channels of a 3×3 kernel), which stays in the second-level cache
/// while every block of positions reads it, else 128. Each pass loads and stores every
/// block's sums and starts its loops again. On a Zen 4 VM (two threads, batch 8,
/// 2026-12-05, fastest of 20–60 calls, three alternating rounds), 64 lanes at 128 pairs,
/// a panel in the first-level cache, were slower: 256@14² onto 512@7² at stride 2
/// 4.23–4.26 ms at 128 pairs, 4.11–4.16 at 256, 4.07–4.11 at 576, 4.07–4.22 at all 2304;
/// 256@28² onto 14² 8.52–9.13 at 128, 8.27–8.33 at 384 to 768; 128@28² onto 256@14²
/// 4.42–4.48 at 128, 4.30–4.32 at 576. With AVX2's 16 lanes (`FOVEA_CPU_LEVEL=avx2`)
/// 512 pairs were the slower: onto 7² 5.77–5.85 against 5.87–6.00, onto 14² 9.42–9.47
/// against 9.82–9.85, 512@7² at stride 1 10.30–10.62 against 10.61–10.69.
fn pass_len(lanes: usize) -> usize {
    if lanes >= 64 {
        MAX_PASS
    } else {
        128
    }
}

const MAX_PASS: usize = 512;

// Border blocks pick a pass's pairs by `u16` index.
const _: () = assert!(MAX_PASS <= 1 << 16);

/// An output plane on the wide grid: `oh` rows of `ow` kept columns, `wp` wide columns
/// apart, and where known, which taps of its positions read zero padding. Wide column
/// `c` of a run reads the input at its base plus `c`, or where `reads` is `[rs, cs]`,
/// the output at row `r`, column `q` reads at its image's base plus `r·rs + q·cs` (a
/// strided layer's padded input, read in place).
#[derive(Clone, Copy, Debug)]
pub(super) struct Plane {
    pub(super) wp: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    pub(super) border: Option<Border>,
    pub(super) reads: Option<[usize; 2]>,
}

/// Which taps of a product read real values: along each axis (depth, rows, columns),
/// tap `t` of the output at `q` reads `q·scale + shift + t·step`, which is real if it
/// lies in `0..n`; the plane is depth slice `a`. Pair `k` is tap `k mod taps` (the
/// weights' order).
#[derive(Clone, Copy, Debug)]
pub(super) struct Border {
    pub(super) axes: [Axis; 3],
    pub(super) a: usize,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Axis {
    pub(super) taps: usize,
    pub(super) n: usize,
    pub(super) scale: isize,
    pub(super) shift: isize,
    pub(super) step: isize,
}

impl Axis {
    /// The forward's: tap `t` reads `q·stride − padding + t·dilation` of `n` inputs.
    pub(super) fn forward(
        taps: usize,
        n: usize,
        (stride, padding, dilation): (usize, usize, usize),
    ) -> Axis {
        Axis {
            taps,
            n,
            scale: stride as isize,
            shift: -(padding as isize),
            step: dilation as isize,
        }
    }

    /// The input gradient's: tap `t` of input `q` reads output `q + padding − t·dilation`
    /// of `n`.
    pub(super) fn backward(taps: usize, n: usize, padding: usize, dilation: usize) -> Axis {
        Axis {
            taps,
            n,
            scale: 1,
            shift: padding as isize,
            step: -(dilation as isize),
        }
    }

    fn reads(&self, q: usize, t: usize) -> bool {
        let at = q as isize * self.scale + self.shift + t as isize * self.step;
        (0..self.n as isize).contains(&at)
    }
}

/// A position's taps as bits, every bit set where it reads every tap or the kernel has
/// more than 64.
type Taps = u64;

impl Border {
    /// Each output's taps that read real values, from masks made once per axis (a
    /// position's set is its row's, its column's and the slice's in common): made per
    /// position, tap by tap, they took a sixth of a batch-1 network's time.
    fn masks(&self, rows: usize, cols: usize) -> Masks {
        let [d, h, w] = self.axes;
        let all = d.taps * h.taps * w.taps;
        if all > Taps::BITS as usize {
            return Masks::default();
        }
        // Bit `(td·kh + th)·kw + tw` for each tap along `axis` that `q` reads for real.
        let along = |axis: usize, q: usize| -> Taps {
            let mut bits = 0;
            for t in 0..all {
                let at = [t / (h.taps * w.taps), t / w.taps % h.taps, t % w.taps];
                if self.axes[axis].reads(q, at[axis]) {
                    bits |= 1 << t;
                }
            }
            bits
        };
        Masks {
            slice: along(0, self.a),
            rows: (0..rows).map(|r| along(1, r)).collect(),
            cols: (0..cols).map(|c| along(2, c)).collect(),
            all: if all == Taps::BITS as usize {
                Taps::MAX
            } else {
                (1 << all) - 1
            },
        }
    }
}

/// [`Border::masks`]: per output row and column, and for the plane's slice, the taps read
/// for real along that axis; empty where every position counts as reading every tap.
#[derive(Default)]
struct Masks {
    slice: Taps,
    rows: Vec<Taps>,
    cols: Vec<Taps>,
    all: Taps,
}

impl Masks {
    /// The taps the output at row `r`, column `c` reads real values with ([`Taps::MAX`]
    /// for every tap).
    fn taps(&self, r: usize, c: usize) -> Taps {
        match (self.rows.get(r), self.cols.get(c)) {
            (Some(&rows), Some(&cols)) => {
                let bits = self.slice & rows & cols;
                if bits == self.all {
                    Taps::MAX
                } else {
                    bits
                }
            }
            _ => Taps::MAX,
        }
    }
}

impl Plane {
    /// Whether the plane's wide column `c` is an output's.
    fn keeps(&self, c: usize) -> bool {
        c % self.wp < self.ow
    }

    /// Each kept position's taps ([`Masks::taps`] by row and column).
    fn masks(&self) -> Masks {
        self.border
            .map_or_else(Masks::default, |b| b.masks(self.oh, self.ow))
    }

    /// Wide columns up to the last output.
    fn span(&self) -> usize {
        (self.oh.max(1) - 1) * self.wp + self.ow
    }
}

/// The lanes of [`split`]'s widest panels on this processor (its `V·W`).
pub(super) fn widest_lanes() -> usize {
    match super::cpu_level() {
        super::Level::Avx512 => 64,
        super::Level::Avx2 => 16,
        super::Level::Base => 8,
    }
}

/// Whether a block of `og` output channels over `plane` takes these products: at least
/// 16 channels (a panel's width with AVX2), and the wide columns' blocks of 16 computing
/// at least a tenth more columns than the plane keeps (7² and 14² planes, not 28² or
/// larger), or with AVX-512 a twentieth (28² too, 8% there); with AVX-512, also a block
/// of 128 or more channels on a plane of more than one row, whatever it drops. A block
/// is a layer's channels where each thread has images of its own, and a thread's share
/// of them where there are fewer images than threads (`conv_shifted::channel_blocks`).
///
/// With AVX-512 on an Intel Xeon (2026-12-03, fastest of 6–8 alternating rounds), these
/// products beat the wide columns' at 28² (128 channels, batch 4, single-threaded: forward
/// 6.58 ms against 7.29, input gradient 6.96 against 7.93; two threads at batch 8, 6.85
/// against 7.49), tied at 56² (7.55 against 7.18) and lost on a 1-D signal of 4096
/// (22.9 against 18.9), where the wide columns drop no column at all. With four vectors
/// of channels per position they won on large planes too once there were 128 channels
/// or more (two threads, fastest of three rounds; forward, or forward and backward):
/// 256@56² batch 8 125.5 → 111.3 ms (PyTorch 102.7), 128@112² batch 8 132.4 → 117.2,
/// 512@64² batch 1 97.5 → 66.3 (61.5), 256@128² batch 1 forward and backward 268 → 215
/// (232); with blocks of 64 channels they lost (64@224² batch 2 32.9 → 41.6) or tied,
/// and on a 1-D signal of 128 channels they were no faster (44.2 against 41.3).
pub(super) fn applies(og: usize, plane: Plane) -> bool {
    let avx512 = super::cpu_level() == super::Level::Avx512;
    let per_cent = if avx512 { 105 } else { 110 };
    og >= 16
        && (avx512 && og >= 128 && plane.oh > 1
            || plane.span().next_multiple_of(16) * 100 >= plane.oh * plane.ow * per_cent)
}

/// The forward's products for runs of `cols` wide columns from column `j` of `plane`
/// (the arguments and layout of `out` as in `conv_direct::block`): these products where
/// [`applies`], which write only the kept columns, else the wide columns'.
#[allow(clippy::too_many_arguments)]
pub(super) fn products(
    w: Weights,
    kdim: usize,
    og: usize,
    x: &[f32],
    bases: &[usize],
    offs: &[usize],
    (cols, j, plane): (usize, usize, Plane),
    out: &mut [f32],
    ld: usize,
) {
    if plane.reads.is_some() || applies(og, plane) {
        let to = (ld, cols.next_multiple_of(MAX_L));
        block(w, kdim, og, x, bases, offs, (cols, j, plane), out, to);
    } else {
        conv_direct::block(w, kdim, og, x, bases, offs, cols, out, ld);
    }
}

/// These products for a plane whose every wide column is an output's (a strided layer's
/// padded input read in place), written straight into the output planes: image `i`'s
/// column `c` of the run (from column `j`) of output channel `o` at
/// `out[o·ld + i·image + c]`, `out` starting at column `j` of image 0's first channel.
/// Through a block of runs (`products`), clearing the block and copying it out took
/// 1.5% of the stride-2 forward onto 512@7²'s samples.
#[allow(clippy::too_many_arguments)]
pub(super) fn into_planes(
    w: Weights,
    kdim: usize,
    og: usize,
    x: &[f32],
    bases: &[usize],
    offs: &[usize],
    run: (usize, usize, Plane),
    out: &mut [f32],
    (ld, image): (usize, usize),
) {
    let (cols, _, plane) = run;
    assert_eq!(
        plane.wp, plane.ow,
        "conv_channels: a plane with dropped columns"
    );
    assert!(
        ld >= cols && image >= og * ld,
        "conv_channels: output planes overlap"
    );
    block(w, kdim, og, x, bases, offs, run, out, (ld, image));
}

/// As `conv_direct::block`, but only the kept columns are written; the others are left
/// as they were. Image `i`'s column `c` of output channel `o` lands at `out[o·ld +
/// i·image + c]`.
#[allow(clippy::too_many_arguments)]
fn block(
    w: Weights,
    kdim: usize,
    og: usize,
    x: &[f32],
    bases: &[usize],
    offs: &[usize],
    run: (usize, usize, Plane),
    out: &mut [f32],
    to: (usize, usize),
) {
    let ((cols, _, plane), (ld, image)) = (run, to);
    assert_eq!(
        offs.len(),
        kdim,
        "conv_channels: one offset per weight column"
    );
    assert!(w.holds(og, kdim), "conv_channels: weights too short");
    assert!(plane.wp > 0, "conv_channels: empty rows");
    let far = bases.iter().max().copied().unwrap_or(0) + offs.iter().max().copied().unwrap_or(0);
    let reach = match plane.reads {
        None => cols,
        Some([rs, cs]) => (plane.oh.max(1) - 1) * rs + (plane.ow.max(1) - 1) * cs + 1,
    };
    assert!(x.len() >= far + reach, "conv_channels: input too short");
    let last = |n: usize, step: usize| n.saturating_sub(1) * step;
    assert!(
        og == 0 || bases.is_empty() || out.len() >= last(og, ld) + last(bases.len(), image) + cols,
        "conv_channels: output rows too short"
    );
    by_cpu!(
        split(w: Weights, kdim: usize, og: usize, x: &[f32], bases: &[usize], offs: &[usize],
            run: (usize, usize, Plane), out: &mut [f32], to: (usize, usize)),
        // 6 positions × 4 vectors of 16 channels (`accumulate_zmm`), then 6 × 2 and
        // 12 × 1 for what is left. 12 × 1 loads a weight vector and 12 inputs per 12
        // multiply-adds, which on a core with two 512-bit multiply-add units (Intel's)
        // leaves the loads the limit; 6 × 2 loads 8, 6 × 4 loads 10 per 24.
        avx512: [6, 12, 16, 4, true],
        // 6 × 2 sums of 8 in 12 of the 16 registers, as the wide columns' block
        avx2: [6, 6, 16, 1, true],
        base: [4, 4, 8, 1, false]
    )
}

/// [`panels`] of `V·W` output channels over blocks of `P` positions, then of `2·V` for
/// what is left, then of `V` over blocks of `P1`; each width takes a last, partly empty
/// panel only where it lacks fewer than `V` channels (a wider one would be mostly zero
/// weights).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn split<const P: usize, const P1: usize, const V: usize, const W: usize, const FMA: bool>(
    w: Weights,
    kdim: usize,
    og: usize,
    x: &[f32],
    bases: &[usize],
    offs: &[usize],
    run: (usize, usize, Plane),
    out: &mut [f32],
    to: (usize, usize),
) {
    let ld = to.0;
    // The channels that panels of `lanes` take out of `n`.
    let take = |n: usize, lanes: usize| {
        if n % lanes > lanes - V {
            n
        } else {
            n - n % lanes
        }
    };
    let wide = if W > 2 { take(og, V * W) } else { 0 };
    let pair = if W > 1 { take(og - wide, 2 * V) } else { 0 };
    if wide > 0 {
        panels::<P, V, W, FMA>(w, kdim, wide, x, bases, offs, run, out, to);
    }
    if pair > 0 {
        let (w, out) = (w.rows_from(wide), &mut out[wide * ld..]);
        panels::<P, V, 2, FMA>(w, kdim, pair, x, bases, offs, run, out, to);
    }
    let o = wide + pair;
    if o < og {
        let (w, out) = (w.rows_from(o), &mut out[o * ld..]);
        panels::<P1, V, 1, FMA>(w, kdim, og - o, x, bases, offs, run, out, to);
    }
}

/// The kept positions in blocks of `P` slots (first input, column in `out`: image `r`'s
/// column `c` of the run at `r·image + c`; the last block repeating its last position), with each block's class: `None` where one of its
/// positions reads every tap, else an index into the classes' taps (those that any of
/// its positions reads real values with). Sorted by their taps, as bits from the
/// kernel's first tap up, positions reading every tap come first and the border's
/// follow with their subsets nearby (a 3×3 kernel's left column after its top row, the
/// top-left corner after that), so that most blocks hold one class and those across two
/// rarely need every tap.
struct Blocks {
    slots: Vec<(usize, usize)>,
    class: Vec<Option<usize>>,
    classes: Vec<Taps>,
    /// the kernel's taps (pair `k` is tap `k mod taps`), where there are classes
    taps: usize,
}

fn blocks<const P: usize>(
    bases: &[usize],
    (cols, j, plane): (usize, usize, Plane),
    image: usize,
) -> Blocks {
    let masks = plane.masks();
    let wp = plane.wp;
    let mut at: Vec<(Taps, usize, usize)> = bases
        .iter()
        .enumerate()
        .flat_map(|(r, &base)| {
            (0..cols)
                .filter(move |&c| plane.keeps(j + c))
                .map(move |c| {
                    let (row, col) = ((j + c) / wp, (j + c) % wp);
                    let x = plane
                        .reads
                        .map_or(base + c, |[rs, cs]| base + row * rs + col * cs);
                    (row, col, x, r * image + c)
                })
        })
        .map(|(row, col, x, out)| (masks.taps(row, col), x, out))
        .collect();
    // Stable, so that a class's positions keep their order.
    at.sort_by_key(|&(taps, ..)| std::cmp::Reverse(taps));
    if let Some(&last) = at.last() {
        at.resize(at.len().next_multiple_of(P), last);
    }
    let mut classes: Vec<Taps> = Vec::new();
    let class = at
        .chunks_exact(P)
        .map(|block| {
            let taps = block.iter().fold(0, |t, b| t | b.0);
            // A block whose positions together read every tap runs over every pair, on
            // the loop without the index list.
            (taps != Taps::MAX && taps != masks.all).then(|| {
                classes.iter().position(|&c| c == taps).unwrap_or_else(|| {
                    classes.push(taps);
                    classes.len() - 1
                })
            })
        })
        .collect();
    Blocks {
        slots: at.iter().map(|&(_, x, c)| (x, c)).collect(),
        class,
        classes,
        taps: (masks.all.count_ones() as usize).max(1),
    }
}

/// Every panel of `V·W` output channels (the last padded with zero weights, its padding
/// not stored) over every block of kept positions, chunk by chunk of pairs; a panel's
/// partial sums for all positions stay in a buffer between chunks. A border block runs
/// over only the pairs whose taps read real values, unless the chunk's weights are not
/// all finite (an infinite weight times the padding's zero is NaN, as with every tap).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn panels<const P: usize, const V: usize, const W: usize, const FMA: bool>(
    w: Weights,
    kdim: usize,
    og: usize,
    x: &[f32],
    bases: &[usize],
    offs: &[usize],
    run: (usize, usize, Plane),
    out: &mut [f32],
    (ld, image): (usize, usize),
) {
    let Blocks {
        slots,
        class,
        classes,
        taps,
    } = blocks::<P>(bases, run, image);
    if slots.is_empty() {
        return;
    }
    let lanes = V * W;
    let pass = pass_len(lanes);
    // Per chunk, each class's pairs (indices into the chunk).
    let chunks: Vec<(Pairs, Vec<Vec<u16>>)> = (0..kdim)
        .step_by(pass)
        .map(|k0| {
            let chunk = &offs[k0..kdim.min(k0 + pass)];
            let picked = classes
                .iter()
                .map(|&c| {
                    (0..chunk.len() as u16)
                        .filter(|&k| c >> ((k0 + k as usize) % taps) & 1 == 1)
                        .collect()
                })
                .collect();
            (Pairs::new(chunk), picked)
        })
        .collect();
    let mut part = vec![[[0.0f32; V]; W]; slots.len()];
    let mut packed = vec![0.0f32; pass.min(kdim) * lanes];
    for o0 in (0..og).step_by(lanes) {
        let ov = lanes.min(og - o0);
        for (ci, (pairs, picked)) in chunks.iter().enumerate() {
            let k0 = ci * pass;
            let kc = pairs.offs().len();
            let from = w.rows_from(o0);
            let wk = match from.laid_out(k0, (ov, kc), lanes) {
                Some(wk) => wk,
                None => {
                    let wk = &mut packed[..kc * lanes];
                    from.panel_into(k0, (ov, kc), wk, lanes);
                    &*wk
                }
            };
            // Only border blocks ask; the others run over every pair anyway.
            let skip = !classes.is_empty() && (from.known_finite() || all_finite(wk));
            let blocks = part
                .chunks_exact_mut(P)
                .zip(slots.chunks_exact(P))
                .zip(&class);
            for ((acc, at), &class) in blocks {
                let acc = <&mut [[[f32; V]; W]; P]>::try_from(acc).expect("P slots");
                let some = class.filter(|_| skip).map(|c| &picked[c][..]);
                sums::<P, V, W, FMA>(acc, wk, x, at, pairs, some, ci == 0);
            }
        }
        for (sums, &(_, col)) in part.iter().zip(&slots) {
            for (o, &s) in sums.as_flattened()[..ov].iter().enumerate() {
                out[(o0 + o) * ld + col] = s;
            }
        }
    }
}

/// One block's sums over one chunk of pairs (or those of its pairs that `some` picks):
/// position `p` reads `x[at[p].0 + chunk[k]]` times pair `k`'s weights `w[k·V·W..]`
/// (`W` vectors of `V`); the first chunk starts from zero, the others from `part`.
#[inline(always)]
pub(super) fn sums<const P: usize, const V: usize, const W: usize, const FMA: bool>(
    part: &mut [[[f32; V]; W]; P],
    w: &[f32],
    x: &[f32],
    at: &[(usize, usize)],
    pairs: &Pairs,
    some: Option<&[u16]>,
    first: bool,
) {
    let chunk = pairs.offs();
    assert_eq!(
        w.len(),
        V * W * chunk.len(),
        "conv_channels: V·W weights per pair"
    );
    let wk = |k: usize| &w[k * V * W..][..V * W];
    #[cfg(target_arch = "x86_64")]
    if FMA && V == 16 && (W == 2 || W == 4) && super::cpu_level() == super::Level::Avx512 {
        // SAFETY: the same layout (`V` is 16, `W` 2 or 4), and fused multiply-adds as
        // asked; the processor has AVX-512F;
        // each offset is one of the chunk's, at most `far` (`Pairs::new`), and each
        // weight slice `V·W` long.
        unsafe {
            let part = &mut *(part as *mut [[[f32; V]; W]; P]).cast::<[[[f32; 16]; W]; P]>();
            let far = pairs.far();
            match some {
                None => accumulate_zmm(
                    part,
                    x,
                    at,
                    far,
                    first,
                    chunk.iter().copied().zip(w.chunks_exact(V * W)),
                ),
                Some(ks) => accumulate_zmm(
                    part,
                    x,
                    at,
                    far,
                    first,
                    ks.iter().map(|&k| (chunk[k as usize], wk(k as usize))),
                ),
            }
        }
        return;
    }
    let vectors = |wk: &[f32]| -> &[[f32; V]; W] {
        assert_eq!(wk.len(), V * W, "conv_channels: V·W weights");
        // SAFETY: `V·W` floats, as `[[f32; V]; W]` is, with `f32`'s alignment.
        unsafe { &*wk.as_ptr().cast::<[[f32; V]; W]>() }
    };
    match some {
        // SAFETY: each offset is one of the chunk's, at most `far` (`Pairs::new`).
        None => unsafe {
            accumulate::<P, V, W, FMA>(
                part,
                x,
                at,
                pairs.far(),
                first,
                chunk
                    .iter()
                    .zip(w.chunks_exact(V * W))
                    .map(|(&off, wk)| (off, vectors(wk))),
            )
        },
        // SAFETY: as above; `chunk[k]` is checked.
        Some(ks) => unsafe {
            accumulate::<P, V, W, FMA>(
                part,
                x,
                at,
                pairs.far(),
                first,
                ks.iter()
                    .map(|&k| (chunk[k as usize], vectors(wk(k as usize)))),
            )
        },
    }
}

/// `sums` over the pairs `pairs` yields (offset, weights). The compiler keeps the sums
/// in vector registers for one vector per position (12 × 16 with AVX-512, 6 × 16 as two
/// halves with AVX2), not for two or more: as `[f32; 32]` rows (8, 6, 12 or 4 of them),
/// 8 × 16 or 16 × 16, and as 6 × 2 vectors of 16 in this loop, it left them in memory
/// and ran the loop one value at a time (on a Zen 4, 2026-12-03, batch 8, 256@14² took
/// 140–490 ms against 10 this way); `accumulate_zmm` does 6 × 2 by hand.
///
/// # Safety
/// Every offset is at most `far` (the positions' reads up to `far` are checked here).
#[inline(always)]
unsafe fn accumulate<'w, const P: usize, const V: usize, const W: usize, const FMA: bool>(
    part: &mut [[[f32; V]; W]; P],
    x: &[f32],
    at: &[(usize, usize)],
    far: usize,
    first: bool,
    pairs: impl Iterator<Item = (usize, &'w [[f32; V]; W])>,
) {
    let xs: [&[f32]; P] = std::array::from_fn(|p| &x[at[p].0..][..far + 1]);
    let mut acc = if first { [[[0.0f32; V]; W]; P] } else { *part };
    for (off, wk) in pairs {
        for (acc, xs) in acc.iter_mut().zip(&xs) {
            // SAFETY: `off` is at most `far` (the caller's contract), and each `xs` holds
            // `far + 1` values.
            let v = unsafe { *xs.get_unchecked(off) };
            for (acc, wk) in acc.iter_mut().zip(wk) {
                for (a, &wv) in acc.iter_mut().zip(wk) {
                    *a = if FMA { wv.mul_add(v, *a) } else { *a + wv * v };
                }
            }
        }
    }
    *part = acc;
}

/// [`accumulate`] for `W` (2 or 4) vectors of 16 channels, in AVX-512's registers by
/// hand: the compiler kept the 6 × 2 sums in memory and ran them one value at a time (20
/// times as long), as it did every shape of more than one vector per position.
///
/// # Safety
/// As [`accumulate`], on a processor with AVX-512F; each weight slice holds `16·W` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn accumulate_zmm<'w, const P: usize, const W: usize>(
    part: &mut [[[f32; 16]; W]; P],
    x: &[f32],
    at: &[(usize, usize)],
    far: usize,
    first: bool,
    pairs: impl Iterator<Item = (usize, &'w [f32])>,
) {
    use std::arch::x86_64::*;
    let xs: [*const f32; P] = std::array::from_fn(|p| x[at[p].0..][..far + 1].as_ptr());
    let mut acc = [[_mm512_setzero_ps(); W]; P];
    if !first {
        for (acc, part) in acc.iter_mut().zip(part.iter()) {
            for (a, v) in acc.iter_mut().zip(part) {
                // SAFETY: 16 values.
                *a = unsafe { _mm512_loadu_ps(v.as_ptr()) };
            }
        }
    }
    for (off, wk) in pairs {
        debug_assert_eq!(wk.len(), 16 * W);
        // SAFETY: `16·W` weights (the caller's contract); `off` is at most `far` and each
        // `xs[p]` starts `far + 1` values.
        unsafe {
            let w: [__m512; W] = std::array::from_fn(|v| _mm512_loadu_ps(wk.as_ptr().add(16 * v)));
            for (acc, xs) in acc.iter_mut().zip(&xs) {
                let v = _mm512_set1_ps(*xs.add(off));
                for (a, w) in acc.iter_mut().zip(&w) {
                    *a = _mm512_fmadd_ps(*w, v, *a);
                }
            }
        }
    }
    for (acc, part) in acc.iter().zip(part.iter_mut()) {
        for (a, v) in acc.iter().zip(part) {
            // SAFETY: 16 values.
            unsafe { _mm512_storeu_ps(v.as_mut_ptr(), *a) };
        }
    }
}

#[cfg(test)]
#[path = "conv_channels_tests.rs"]
mod tests;
