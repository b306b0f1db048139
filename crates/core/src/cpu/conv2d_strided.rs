//! The forward of strided convolutions (ResNet's and MobileNet's downsampling 3×3 layers
//! and their stems) as direct products on the input's phase grid
//! (`conv2d_depthwise::Grid`): each channel's padded plane split by stride phase, on which
//! every (channel, tap) pair reads at the output's wide column plus one offset, so that
//! `conv_direct::block` runs them as it runs stride-1 layers. im2col copied each input
//! value about `kh·kw / (sh·sw)` times (2.25 for 3×3 at stride 2) and its GEMM then
//! packed the copy again; the grid is one copy of the input. Where the products are
//! vectorized along channels (`conv_channels.rs`: small planes, or with AVX-512 128+
//! output channels, or 64+ on each side: see [`forward`]), each position's inputs are
//! read at its own address, so they read the padded input in place instead
//! ([`forward_in_place`]): two threads on an Intel Xeon (batch 8,
//! 2026-12-04, fastest of four alternating rounds), 256@28² onto 14² 7.20 → 6.69 ms
//! (PyTorch 6.32), 256@14² onto 512@7² 3.54 → 3.42 (3.10).
//!
//! With few input channels per group (the stems: 3), the weight gradient is direct too,
//! `conv_direct::weight_block`'s sums of the widened output gradient against the grid,
//! where im2col copied each input value about 12 times (7×7 at stride 2) for a GEMM only
//! 3 × 49 deep.
//!
//! The input gradient stays with im2col's GEMM and col2im. Run on the grid phase by phase
//! (each phase gathering the output gradient over its own taps), it took 15–18 ms against
//! 10.6–11.2 for 256 channels on 28² at stride 2, batch 8: each of its (output channel,
//! tap) pairs reads its own row of the output gradient, 256 rows per chunk of pairs,
//! which do not stay in the first-level cache as the forward's taps of one channel do.
//! As four stride-1 forwards through `conv2d::forward` (each phase's taps of the weight
//! gathered and turned, the output gradient zero-extended), the forward and backward of
//! 256@14² onto 512@7² took 16.9–20.5 ms against 14.5–16.1 (Zen 4 VM, 2026-12-05): the
//! four forwards alone took about as long as the GEMM and col2im, which already run at
//! the direct products' rate.

use super::conv2d_depthwise::{grid_fits, zeroed_once, Grid};
use super::conv_channels::{self, Axis, Border, Plane};
use super::conv_direct::{self, fold_lanes, weight_block, LANES, MAX_DIRECT_WEIGHT, MAX_L};
use super::conv_shifted::{
    channel_blocks, from_2d, images_per_span, thread_share, wide, with_padded, Runs, MIN_CHANNELS,
};
use super::panels_kept::{self, PanelsKept};
use super::per_image::{per_image_sum, per_images};
use super::transpose::Weights;
use crate::backend::{Conv2dParams, Conv3dParams};
use crate::host;
use crate::Result;

/// Wide columns per product: with 8 output channels at a time, 32 KiB of sums that stay
/// in the first-level cache while each chunk of pairs adds into them.
const RUN: usize = 1024;

/// Whether the grid serves `p`: an input plane of at least one value (an empty one, all
/// padding, has no planes to fill), a stride above 1, more than one tap (a strided 1×1
/// layer reads one phase of four, and its GEMM on the subsampled input copies less), a
/// grid within a few times the input and output, and wide rows at most half again as long
/// as the output's.
pub(super) fn applies(p: &Conv2dParams) -> bool {
    p.h * p.w > 0
        && p.stride.iter().any(|&s| s > 1)
        && p.kernel[0] * p.kernel[1] > 1
        && grid_fits(p)
        && Grid::of(p).wq.saturating_mul(2) <= p.ow.saturating_mul(3)
}

/// Per image, every channel's plane is filled into its grid (zeros where padded), and per
/// group and block of output channels the direct products of the (channel, tap) pairs
/// fill runs of wide columns whose kept ones are copied out. `kept`: what `w`'s storage
/// keeps for the channel products, where `w` is its values.
pub(super) fn forward(
    x: &[f32],
    w: &[f32],
    p: &Conv2dParams,
    kept: Option<&PanelsKept>,
) -> Result<Vec<f32>> {
    let (hw, ohw) = (p.h * p.w, p.oh * p.ow);
    let (cg, og) = (p.c_in / p.groups, p.c_out / p.groups);
    let kdim = cg * p.kernel[0] * p.kernel[1];
    let mut out = host::zeros(p.output_len())?;
    if ohw == 0 || og == 0 {
        return Ok(out);
    }
    let g = Grid::of(p);
    // The channel products take the padded input as it is; the wide columns need the
    // grid. Where there are fewer images than threads, each thread takes a share of the
    // channels (`conv_shifted::channel_blocks`), and every share must be one the channel
    // products serve.
    let on_grid = Plane {
        wp: g.wq,
        oh: p.oh,
        ow: p.ow,
        border: None,
        reads: None,
    };
    let split = p.n < rayon::current_num_threads() && !super::threads::nested();
    let share = if split { thread_share(og) } else { og };
    // Read in place, the channel products also beat the grid's wide columns with 64
    // channels on each side where the rule for the grid wants 128 (AVX-512, two threads,
    // 2026-12-04, fastest of three rounds): 64@112² onto 128 channels at batch 1 2.71 →
    // 2.18 ms, 64@112² onto 64 at batch 8 10.52 → 9.04; not with fewer input channels
    // (32@56² onto 64 at batch 8 1.17 → 1.24, a 3-channel 7×7 stem 9.9 → 15.5).
    let wide_share = super::cpu_level() == super::Level::Avx512 && share >= 64 && cg >= 64;
    if conv_channels::applies(share, on_grid) || wide_share {
        return forward_in_place(x, w, p, out, kept);
    }
    let glen = g.len();
    let offs = pair_offsets(&g, cg);
    // Short grids (deep layers') take several images per product, as stride-1 layers do.
    let most = if g.span <= RUN {
        images_per_span(g.span, RUN)
    } else {
        1
    };
    let per_out = p.c_out * ohw;
    per_images(&mut out, per_out, p.n, most, |n0, count, y| {
        // The products read whole blocks of MAX_L columns past the last channel's span.
        let mut grid = host::zeros(count * p.c_in * glen + MAX_L)?;
        let x = &x[n0 * p.c_in * hw..][..count * p.c_in * hw];
        for (plane, dst) in x.chunks(hw).zip(grid.chunks_mut(glen)) {
            g.fill(p, plane, dst);
        }
        for gi in 0..p.groups {
            let w_g = &w[gi * og * kdim..][..og * kdim];
            let x_g = &grid[gi * cg * glen..];
            // `ob` channels from `o0`, into `y` (image 0's channel `o0` onwards, the next
            // image's `per_out` further).
            let products = |o0: usize, ob: usize, y: &mut [f32]| -> Result<()> {
                let mut acc = host::with_capacity(ob * Runs::row_len(count, RUN))?;
                for j in (0..g.span).step_by(RUN) {
                    let cols = RUN.min(g.span - j);
                    let r = Runs::new(count, cols, j);
                    acc.resize(ob * r.ld, 0.0);
                    let bases: Vec<usize> = (0..count).map(|i| i * p.c_in * glen + j).collect();
                    let w_b = Weights::rows(&w_g[o0 * kdim..], kdim);
                    conv_direct::block(w_b, kdim, ob, x_g, &bases, &offs, cols, &mut acc, r.ld);
                    r.keep(&acc, (g.wq, p.ow), y, ohw, |o, i| i * per_out + o * ohw);
                }
                Ok(())
            };
            channel_blocks(&mut y[gi * og * ohw..], count, og, ohw, products)?;
        }
        Ok(())
    })?;
    Ok(out)
}

/// [`forward`] where its products are vectorized along channels
/// (`conv_channels::applies`), which read each position's inputs at their own addresses
/// and so need no phase grid: the input zero-padded, each output reading it at `stride`
/// steps. Filling the phase grid took 7.5% of a 256@28² forward's samples (`perf`); the
/// padded copy takes about as long (6.4%), but a block of positions reads each channel's
/// taps from three rows of one plane instead of six rows of four, and the products ran at
/// about 149 GFLOP/s a core against 138.
fn forward_in_place(
    x: &[f32],
    w: &[f32],
    p: &Conv2dParams,
    mut out: Vec<f32>,
    kept: Option<&PanelsKept>,
) -> Result<Vec<f32>> {
    let p3 = from_2d(p);
    let wd = wide(&p3);
    let offs = conv_direct::pair_offsets(&wd);
    let ohw = p.oh * p.ow;
    let (per_in, per_out) = (p.c_in * wd.in_len, p.c_out * ohw);
    let plane = Plane {
        wp: p.ow,
        oh: p.oh,
        ow: p.ow,
        border: Some(Border {
            axes: [
                Axis::forward(1, 1, (1, 0, 1)),
                Axis::forward(p.kernel[0], p.h, (p.stride[0], p.padding[0], p.dilation[0])),
                Axis::forward(p.kernel[1], p.w, (p.stride[1], p.padding[1], p.dilation[1])),
            ],
            a: 0,
        }),
        reads: Some([p.stride[0] * wd.wp, p.stride[1]]),
    };
    let most = if ohw <= RUN {
        images_per_span(ohw, RUN)
    } else {
        1
    };
    let kept = kept.filter(|_| panels_kept::read_whole(p.n, wd.og));
    let laid = kept.and_then(|k| k.read(w, (p.groups, wd.og, wd.kdim)));
    per_images(&mut out, per_out, p.n, most, |n0, count, y| {
        let some = Conv3dParams { n: count, ..p3 };
        let x = &x[n0 * per_in..][..count * per_in];
        with_padded(x, &some, &wd, 0, |xp| {
            let per_padded = p.c_in * wd.channel;
            for gi in 0..p.groups {
                let w_g = &w[gi * wd.og * wd.kdim..][..wd.og * wd.kdim];
                let x_g = &xp[gi * wd.cg * wd.channel..];
                let products = |o0: usize, ob: usize, y: &mut [f32]| -> Result<()> {
                    let bases: Vec<usize> = (0..count).map(|i| i * per_padded).collect();
                    let w_b = panels_kept::rows(laid.as_deref(), w_g, (gi, o0, wd.kdim));
                    for j in (0..ohw).step_by(RUN) {
                        let run = (RUN.min(ohw - j), j, plane);
                        let (y, to) = (&mut y[j..], (ohw, per_out));
                        conv_channels::into_planes(
                            w_b, wd.kdim, ob, x_g, &bases, &offs, run, y, to,
                        );
                    }
                    Ok(())
                };
                channel_blocks(&mut y[gi * wd.og * ohw..], count, wd.og, ohw, products)?;
            }
            Ok(())
        })
    })?;
    Ok(out)
}

/// Whether [`grad_weight`] serves `p`: [`applies`], groups thinner than the GEMMs need
/// (as `conv_direct::applies`), and a weight of at most `MAX_DIRECT_WEIGHT` values (the
/// partial sums are `LANES` times its size per thread). The caller checks that the input
/// is finite.
pub(super) fn grad_weight_applies(p: &Conv2dParams) -> bool {
    applies(p) && p.c_in / p.groups < MIN_CHANNELS && p.weight_len() <= MAX_DIRECT_WEIGHT
}

/// The weight gradient of a thin strided convolution ([`grad_weight_applies`]) for a
/// finite input: per image, the output gradient widened to the grid's columns (zeros in
/// the dropped ones and past the span, so the sums' reads there add nothing) against the
/// input's grid.
pub(super) fn grad_weight(x: &[f32], gy: &[f32], p: &Conv2dParams) -> Result<Vec<f32>> {
    let (hw, ohw) = (p.h * p.w, p.oh * p.ow);
    let (cg, og) = (p.c_in / p.groups, p.c_out / p.groups);
    let kdim = cg * p.kernel[0] * p.kernel[1];
    let g = Grid::of(p);
    let glen = g.len();
    let offs = pair_offsets(&g, cg);
    let ld = g.span.next_multiple_of(MAX_L);
    let lanes = per_image_sum(
        p.n,
        p.weight_len() * LANES,
        || Ok((Vec::new(), Vec::new())),
        |ni, acc, (grid, wide)| {
            zeroed_once(grid, p.c_in * glen + MAX_L);
            let x_n = &x[ni * p.c_in * hw..][..p.c_in * hw];
            for (plane, dst) in x_n.chunks(hw).zip(grid.chunks_mut(glen)) {
                g.fill(p, plane, dst);
            }
            zeroed_once(wide, p.c_out * ld);
            g.widen(p, &gy[ni * p.c_out * ohw..][..p.c_out * ohw], wide, ld);
            for (gi, acc_g) in acc.chunks_mut(og * kdim * LANES).enumerate() {
                let (gy_g, x_g) = (&wide[gi * og * ld..], &grid[gi * cg * glen..]);
                weight_block(gy_g, ld, 0, og, x_g, 0, &offs, g.span, acc_g);
            }
            Ok(())
        },
    )?;
    let mut gw = host::zeros(p.weight_len())?;
    fold_lanes(&lanes, &mut gw);
    Ok(gw)
}

/// Each (channel, tap) pair's offset on a group's grids (`cg` channels), in the weight's
/// order.
fn pair_offsets(g: &Grid, cg: usize) -> Vec<usize> {
    let glen = g.len();
    (0..cg)
        .flat_map(|c| g.offs.iter().map(move |off| c * glen + off))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::conv2d::{self, definition};
    use super::super::conv_shifted::tests::{assert_close, assert_same, operands};
    use super::*;

    /// ((h, w), c_in, c_out, groups, kernel, stride, padding, dilation)
    #[rustfmt::skip]
    type Case = ([usize; 2], usize, usize, usize, [usize; 2], [usize; 2], [usize; 2], [usize; 2]);

    /// Three images of a [`Case`].
    fn params((hw, c_in, c_out, groups, k, stride, padding, dilation): Case) -> Conv2dParams {
        let [h, w] = hw;
        let size = |a: usize, len: usize| {
            (len + 2 * padding[a] - dilation[a] * (k[a] - 1) - 1) / stride[a] + 1
        };
        Conv2dParams {
            n: 3,
            c_in,
            h,
            w,
            c_out,
            oh: size(0, h),
            ow: size(1, w),
            kernel: k,
            stride,
            padding,
            dilation,
            groups,
        }
    }

    /// The forward and the weight gradient against the definition for strides that
    /// split rows and columns into phases, padding, dilation, groups, odd sizes, a 7×7
    /// stem-like kernel (147 pairs: more than one chunk of the direct products) and
    /// outputs of one row or column; then with an infinite input in a row's last column,
    /// which only dropped wide columns and the kept ones the definition names read (and
    /// which sends the weight gradient elsewhere). Three images: with two threads (or
    /// one), a product takes two (or three) images' short grids at once.
    #[test]
    fn matches_the_definition() {
        let cases = [
            ([9, 11], 3, 5, 1, [3, 3], [2, 2], [1, 1], [1, 1]),
            ([14, 14], 4, 9, 1, [3, 3], [2, 2], [1, 1], [1, 1]),
            ([15, 13], 3, 4, 1, [7, 7], [2, 2], [3, 3], [1, 1]),
            ([9, 11], 4, 6, 2, [3, 2], [3, 2], [1, 0], [2, 1]),
            ([8, 10], 2, 3, 1, [2, 2], [2, 2], [0, 0], [1, 1]),
            ([10, 9], 5, 17, 1, [3, 3], [1, 2], [1, 1], [1, 1]),
            ([3, 12], 2, 2, 1, [3, 3], [2, 2], [0, 1], [1, 1]),
            // onto 7²: the products vectorized along channels (`conv_channels.rs`)
            ([14, 14], 4, 40, 1, [3, 3], [2, 2], [1, 1], [1, 1]),
            // there, border positions skip the taps that read padding: on every side, and
            // with dilation
            ([15, 13], 3, 20, 1, [5, 5], [2, 2], [2, 2], [1, 1]),
            ([12, 12], 4, 24, 1, [3, 3], [2, 2], [2, 2], [2, 2]),
            // 128+ channels with AVX-512: those products on any plane, the input read in
            // place (`forward_in_place`), onto 14² and onto a plane of more than one run
            ([28, 28], 3, 130, 1, [3, 3], [2, 2], [1, 1], [1, 1]),
            ([70, 66], 2, 128, 1, [3, 3], [2, 2], [1, 1], [1, 1]),
            // and in place onto 7²-sized planes: two groups of 20, no padding, strides 3
            // and 2, more pairs (135) than one chunk
            ([14, 14], 8, 40, 2, [3, 3], [2, 2], [1, 1], [1, 1]),
            ([15, 15], 3, 20, 1, [3, 3], [2, 2], [0, 0], [1, 1]),
            ([20, 23], 3, 24, 1, [3, 3], [3, 2], [1, 1], [1, 1]),
            ([14, 14], 15, 32, 1, [3, 3], [2, 2], [1, 1], [1, 1]),
        ];
        for case in cases {
            let p = params(case);
            assert!(applies(&p), "{p:?} takes the grid");
            assert!(
                grad_weight_applies(&p),
                "{p:?} takes the direct weight gradient"
            );
            let (mut x, wt, gy) = operands(&p);
            let [y0, _, gw0] = definition(&x, &wt, &gy, &p);
            assert_close(
                &format!("{p:?}: y"),
                &forward(&x, &wt, &p, None).unwrap(),
                &y0,
            );
            let gw = grad_weight(&x, &gy, &p).unwrap();
            assert_close(&format!("{p:?}: gw"), &gw, &gw0);
            x[p.w - 1] = f32::INFINITY;
            let [y0, _, gw0] = definition(&x, &wt, &gy, &p);
            let what = format!("{p:?} with an ∞ input");
            assert_same(
                &format!("{what}: y"),
                &forward(&x, &wt, &p, None).unwrap(),
                &y0,
            );
            // The grid's weight gradient would meet the ∞ as 0·∞ in dropped columns; the
            // dispatcher leaves such inputs to im2col.
            let gw = conv2d::grad_weight(&x, &gy, &p).unwrap();
            assert_same(&format!("{what}: gw"), &gw, &gw0);
        }
    }

    /// 64 channels each side on a plane the grid's rule leaves to the wide columns (32²):
    /// with AVX-512 these too read the padded input in place.
    #[test]
    fn wide_shares_match_the_definition() {
        let p = params(([64, 63], 64, 66, 1, [3, 3], [2, 2], [1, 1], [1, 1]));
        assert_eq!((p.oh, p.ow), (32, 32));
        assert!(applies(&p), "{p:?} takes the grid");
        let (x, wt, gy) = operands(&p);
        let [y0, ..] = definition(&x, &wt, &gy, &p);
        assert_close(
            &format!("{p:?}: y"),
            &forward(&x, &wt, &p, None).unwrap(),
            &y0,
        );
    }
}
