//! Stride-1 convolutions of any rank (2-D ones are 3-D ones of depth 1) read straight from
//! the zero-padded input: no im2col.
//!
//! On the padded grid (`dp × hp × wp`), output position `(a, i, j)` and tap `(ta, ti, tj)`
//! read the input at `(a + ta·dd, i + ti·dh, j + tj·dw)`. Numbering positions row after
//! row at the padded width and plane after plane at the padded plane (the "wide" columns),
//! a tap reads the input at the output's number plus a constant offset. The `wp − ow`
//! wide columns past each row's end are computed and dropped (for a 3×3 kernel with
//! padding 1, 3.5% more products at 56², 13% at 14²), which [`applies`] bounds.
//!
//! The forward multiplies and adds straight from the grid, in registers
//! (`conv_direct::block`), for every channel count. It replaced one GEMM per tap, whose
//! operand was a strided view of the padded channels: on ResNet's and VGG's 3×3 layers
//! (64 to 512 channels, 14² to 224²) that ran at 130–165 GFLOP/s on a 2-core Zen 4, the
//! direct products at 165–200. Small planes (7², 14²) with 16 or more output channels
//! take `conv_channels.rs`'s products instead, which skip the dropped columns.
//!
//! The gradients are direct products as well: the input gradient
//! `conv_direct::grad_input` and the weight gradient `conv_weight_wide.rs`'s sums for
//! finite operands, and for 16+ input and output channels `conv_weight.rs`'s, which
//! compute only the definition's products and so take any values. They replaced GEMMs
//! on the same offsets, a short run of wide columns at a time (each tap's rows
//! gathered for the weight gradient's product, added back after the input gradient's),
//! which stay for a non-finite input or weight: there the dropped columns must be zeroed
//! before use, since 0·∞ would reach kept values. On ResNet-18's 3×3 layers at batch 8
//! (64 to 256 channels, 56² to 14², a 2-core Zen 5, 2026-12-02) the direct input gradient
//! took 5–22% less time than the GEMMs, the direct weight gradient 3–30% less
//! (`benches/RESULTS-3.md`).

use std::borrow::Cow;
use std::cell::RefCell;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::conv_channels::{self, Axis, Border, Plane};
use super::conv_direct;
use super::gemm::{gemm, Layout};
use super::panels_kept::{self, Laid, PanelsKept};
use super::per_image::{per_image, per_image_sum, per_images};
use super::{conv_weight, conv_weight_wide};
use crate::backend::{Conv2dParams, Conv3dParams};
use crate::host;
use crate::Result;

/// The fewest input channels per group for [`applies`]' gradients; thinner groups take
/// `conv_direct`'s (their weight gradient keeps per-lane partial sums, which only a small
/// weight affords). The threshold dates from the GEMMs those gradients replaced, whose
/// depth was the channel count.
pub(super) const MIN_CHANNELS: usize = 16;

/// Values of the forward's output block: with 64 output channels 1,024 wide columns
/// (256 KiB), which stay in the core's cache while every tap adds into them.
pub(super) const CHUNK_VALUES: usize = 1 << 16;

/// The fewest wide columns per forward run: with 512 channels, runs of 256 columns
/// were 4–8% slower than runs of 1,024 (the weights are read once per run).
pub(super) const FORWARD_COLS: usize = 1024;

/// A 2-D convolution as a 3-D one of depth 1.
pub(super) fn from_2d(p: &Conv2dParams) -> Conv3dParams {
    Conv3dParams {
        n: p.n,
        c_in: p.c_in,
        c_out: p.c_out,
        input: [1, p.h, p.w],
        output: [1, p.oh, p.ow],
        kernel: [1, p.kernel[0], p.kernel[1]],
        stride: [1, p.stride[0], p.stride[1]],
        padding: [0, p.padding[0], p.padding[1]],
        dilation: [1, p.dilation[0], p.dilation[1]],
        groups: p.groups,
    }
}

/// Whether the wide grid serves `p` at all: stride 1 and [`padded_fits`]. Gives the
/// padded width.
pub(super) fn grid_fits(p: &Conv3dParams) -> Option<usize> {
    if p.stride != [1, 1, 1] {
        return None;
    }
    padded_fits(p)
}

/// Whether reading `p`'s taps from a zero-padded copy of the input pays, at any stride: a
/// kernel of more than one tap, and a padded grid no larger than a few times the input
/// and output (large padding with large dilation can make it vastly larger; im2col then
/// stays cheaper). Gives the padded width.
pub(super) fn padded_fits(p: &Conv3dParams) -> Option<usize> {
    // Dimension by dimension: an empty batch's other dimensions may multiply past a usize.
    let nonempty = [p.n, p.c_in, p.c_out]
        .iter()
        .chain(&p.input)
        .chain(&p.output)
        .all(|&d| d > 0);
    let groups_fit =
        p.groups > 0 && p.c_in.is_multiple_of(p.groups) && p.c_out.is_multiple_of(p.groups);
    let strided = p.stride.iter().all(|&s| s > 0);
    if !nonempty || !groups_fit || !strided || p.kernel.iter().product::<usize>() < 2 {
        return None;
    }
    let padded = (0..3).try_fold(1usize, |acc, a| {
        let side = p.padding[a].checked_mul(2)?.checked_add(p.input[a])?;
        acc.checked_mul(side)
    });
    let (per_in, per_out) = (
        p.input.iter().product::<usize>(),
        p.output.iter().product::<usize>(),
    );
    // Each padded side fits a usize where `padded` does; their products may not.
    let wp = p.input[2].saturating_add(p.padding[2].saturating_mul(2));
    padded
        .is_some_and(|g| g <= (per_in + per_out).saturating_mul(4))
        .then_some(wp)
}

/// Whether the grid's gradients serve `p` (`conv_direct::grad_input` and
/// `conv_weight_wide.rs`, or the GEMMs below for non-finite operands): the grid fits, enough
/// channels per group, and at most a fifth more columns than the output has (at 7², 9
/// wide columns for 7, both direct gradients were slower than im2col's GEMMs when this
/// was measured; since the channel products, the input gradient there is faster direct
/// from 256 positions on, [`grad_input_applies`]).
pub(super) fn applies(p: &Conv3dParams) -> bool {
    grid_fits(p).is_some_and(|wp| {
        p.c_in / p.groups >= MIN_CHANNELS && wp.saturating_mul(5) <= p.output[2].saturating_mul(6)
    })
}

/// Whether `conv_direct::grad_input` serves a layer of 16+ channels per group whose wide
/// rows are a fifth to a third longer than the output's (6² to 9² planes at padding 1),
/// which [`applies`] leaves to im2col's GEMM, for at least 256 output positions in all:
/// the channel products compute only kept positions there, but each call lays out
/// the whole weight again, which few positions do not repay. 512@7², two threads, Intel
/// Xeon (2026-12-03, fastest of 3–4 alternating rounds), this against the GEMM: batch 8
/// 8.35 ms against 10.29, batch 4 7.03 against 6.77, batch 2 5.22 against 4.77, batch 1
/// 2.68 against 2.06. The caller checks that the weight is finite.
pub(super) fn grad_input_applies(p: &Conv3dParams) -> bool {
    grid_fits(p).is_some_and(|wp| {
        p.c_in / p.groups >= MIN_CHANNELS
            && wp.saturating_mul(3) <= p.output[2].saturating_mul(4)
            && p.output
                .iter()
                .try_fold(p.n, |v, &d| v.checked_mul(d))
                .is_none_or(|positions| positions >= 256)
    })
}

/// Whether [`forward`] serves `p`: the grid fits, and at most half again as many columns
/// as the output has. The direct products outrun im2col's GEMM by more than the dropped
/// columns cost: at 7², 512 channels (9 columns for 7) took 14.7–14.9 ms at batch 8
/// against im2col's 16.8–17.1, and 2.0–2.1 against 2.8–3.3 at batch 1. A plane whose
/// wide columns fit one block of the products goes there too however many are dropped:
/// a 3² map of 256 channels (13 columns for 9) took 0.34–0.37 ms in the face ResNet
/// against im2col's 0.45–0.49, whose GEMM copies the whole 2.4 MB weight to pack it for
/// 9 columns.
pub(super) fn forward_applies(p: &Conv3dParams) -> bool {
    grid_fits(p).is_some_and(|wp| {
        let span = (p.output[1] - 1)
            .saturating_mul(wp)
            .saturating_add(p.output[2]);
        wp.saturating_mul(2) <= p.output[2].saturating_mul(3)
            || (p.output[0] == 1 && span <= conv_direct::MAX_L)
    })
}

/// Wide columns per product in the gradients' GEMMs (taken for non-finite operands only).
/// There, a GEMM per tap would have an output
/// of only `og × cg` (weight gradient) or a depth of only `og` (input gradient), which
/// ran 10–40% slower than one product over every tap's rows (`kdim` of them, measured on
/// the 1-D and 3-D benchmark shapes); those rows are contiguous runs of the padded
/// channels, so moving them for a short run of columns is a cache-resident copy.
const SPAN_COLS: usize = 256;

/// The padded grid, the taps' offsets on it and the per-group sizes.
pub(super) struct Wide {
    pub(super) cg: usize,
    pub(super) og: usize,
    pub(super) kdim: usize,
    /// input and output values per channel
    pub(super) in_len: usize,
    pub(super) out_len: usize,
    pub(super) wp: usize,
    /// padded plane (`hp·wp`) and padded channel (`dp·hp·wp`)
    pub(super) plane: usize,
    pub(super) channel: usize,
    /// offset of each tap, in the weight's order
    pub(super) taps: Vec<usize>,
    /// wide columns per forward product
    pub(super) forward_cols: usize,
}

pub(super) fn wide(p: &Conv3dParams) -> Wide {
    let [kd, kh, kw] = p.kernel;
    let [dp, hp, wp] = [0, 1, 2].map(|a| p.input[a] + 2 * p.padding[a]);
    let plane = hp * wp;
    let taps = (0..kd * kh * kw)
        .map(|t| {
            let (ta, ti, tj) = (t / (kh * kw), t / kw % kh, t % kw);
            ta * p.dilation[0] * plane + ti * p.dilation[1] * wp + tj * p.dilation[2]
        })
        .collect();
    let (cg, og) = (p.c_in / p.groups, p.c_out / p.groups);
    Wide {
        cg,
        og,
        kdim: cg * kd * kh * kw,
        in_len: p.input.iter().product(),
        out_len: p.output.iter().product(),
        wp,
        plane,
        channel: dp * plane,
        taps,
        forward_cols: (CHUNK_VALUES / og.max(1)).max(FORWARD_COLS),
    }
}

/// A run of `cols` wide columns of output plane `a`, from column `j` of the plane: its
/// first column among the padded input's (`at_in`) and the widened output's (`at_out`).
struct Span {
    a: usize,
    j: usize,
    at_in: usize,
    at_out: usize,
    cols: usize,
}

impl Wide {
    /// Runs of at most `width` wide columns covering each output plane's, which end at
    /// the last row's output width, so no tap reads past a channel.
    fn spans<'a>(&'a self, p: &'a Conv3dParams, width: usize) -> impl Iterator<Item = Span> + 'a {
        let [od, oh, ow] = p.output;
        let span = (oh - 1) * self.wp + ow;
        (0..od).flat_map(move |a| {
            (0..span).step_by(width).map(move |j| Span {
                a,
                j,
                at_in: a * self.plane + j,
                at_out: a * oh * self.wp + j,
                cols: width.min(span - j),
            })
        })
    }

    /// The columns of run `s` (counted from its start) that fall past a row's output
    /// width: computed and dropped, and in the gradients zeroed before use, since a
    /// non-finite input or weight there would otherwise reach kept values as 0·∞.
    fn dropped(&self, s: &Span, ow: usize) -> impl Iterator<Item = (usize, usize)> {
        let (wp, j, cols) = (self.wp, s.j, s.cols);
        (j / wp..=(j + cols - 1) / wp).filter_map(move |r| {
            let lo = (r * wp + ow).max(j);
            let hi = ((r + 1) * wp).min(j + cols);
            (lo < hi).then(|| (lo - j, hi - j))
        })
    }

    /// Wide columns of one output channel.
    fn widened_len(&self, p: &Conv3dParams) -> usize {
        p.output[0] * p.output[1] * self.wp
    }
}

/// Where each row of one channel starts: the input's rows inside its padded channel, or
/// the output's inside its widened one.
pub(super) fn rows_of(p: &Conv3dParams, wd: &Wide, padded: bool) -> impl Iterator<Item = usize> {
    let ([d, h, _], pad) = if padded {
        (p.input, p.padding)
    } else {
        (p.output, [0; 3])
    };
    let (wp, plane_rows) = (wd.wp, if padded { wd.plane / wd.wp } else { h });
    (0..d).flat_map(move |a| {
        (0..h).map(move |i| ((a + pad[0]) * plane_rows + i + pad[1]) * wp + pad[2])
    })
}

/// Runs `f(first, block)` over blocks of whole channels of `buf` (`len` values each), one
/// block per thread where the images run one after another (fewer images than threads:
/// batch 1 in style transfer and inference); where they run one per thread, each image is
/// a single block. Each block writes only its own channels, so the result does not depend
/// on the schedule.
pub(super) fn per_block<T: Send>(
    buf: &mut [T],
    len: usize,
    f: impl Fn(usize, &mut [T]) -> Result<()> + Sync,
) -> Result<()> {
    let channels = buf.len() / len.max(1);
    if channels == 0 {
        return Ok(());
    }
    if super::threads::nested() {
        return f(0, buf);
    }
    let per = thread_share(channels);
    buf.par_chunks_mut(per * len)
        .enumerate()
        .try_for_each(|(b, block)| f(b * per, block))
}

/// The channels each thread takes of `channels` where [`per_block`] splits them.
pub(super) fn thread_share(channels: usize) -> usize {
    channels.div_ceil(rayon::current_num_threads().clamp(1, channels.max(1)))
}

/// One image's input channels zero-padded (the image itself where nothing is padded).
fn padded<'a>(x_n: &'a [f32], p: &Conv3dParams, wd: &Wide) -> Result<Cow<'a, [f32]>> {
    if p.padding == [0; 3] {
        return Ok(Cow::Borrowed(x_n));
    }
    Ok(Cow::Owned(spread(x_n, p, wd, true, 0)?))
}

/// One image's output gradient on the wide columns, zeros in the dropped ones.
fn widened(gy_n: &[f32], p: &Conv3dParams, wd: &Wide) -> Result<Vec<f32>> {
    spread(gy_n, p, wd, false, 0)
}

/// Compact channels (the input's with `padded`, else the output's) copied row by row to
/// where [`rows_of`] puts them, zeros elsewhere and in `slack` values past the end.
pub(super) fn spread(
    src: &[f32],
    p: &Conv3dParams,
    wd: &Wide,
    padded: bool,
    slack: usize,
) -> Result<Vec<f32>> {
    let (compact, wide) = if padded {
        (wd.in_len, wd.channel)
    } else {
        (wd.out_len, wd.widened_len(p))
    };
    let channels = src.len() / compact.max(1);
    channels_made(channels, wide, slack, |c, dst| {
        place_rows(src, c, (p, wd, padded), dst)
    })
}

/// Compact channel `c` of `src` copied row by row into `dst`, a cleared channel, where
/// [`rows_of`] puts its rows (the input's with `padded`, else the output's).
fn place_rows(
    src: &[f32],
    c: usize,
    (p, wd, padded): (&Conv3dParams, &Wide, bool),
    dst: &mut [f32],
) {
    let (compact, row) = if padded {
        (wd.in_len, p.input[2])
    } else {
        (wd.out_len, p.output[2])
    };
    let values = &src[c * compact..][..compact];
    for (values, at) in values.chunks(row).zip(rows_of(p, wd, padded)) {
        dst[at..at + row].copy_from_slice(values);
    }
}

/// The most values of a padded input a thread keeps between calls ([`with_padded`]):
/// 4 MiB, what four images of 256 channels at 28² take (3.7 MB); the buffer stays with
/// its thread for the process's life, outside the pool's accounting.
const MAX_KEPT_PADDED: usize = 1 << 20;

thread_local! {
    /// This thread's padded input from its last [`with_padded`].
    static PADDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `f` given the compact input channels `src` zero-padded as [`spread`] makes them (with
/// `slack` zeros after), in a buffer this thread keeps for its next call. From the shared
/// pool of freed buffers, a thread was often handed the one the other thread had just
/// filled, and its first writes waited for that core's lines: the stride-2 forward onto
/// 512@7² at batch 8 spent 6.8% of its samples in the copy's `memcpy` that way, 1.3% with
/// each thread's own buffer (`perf`, Zen 4, 2026-12-05).
pub(super) fn with_padded<R>(
    src: &[f32],
    p: &Conv3dParams,
    wd: &Wide,
    slack: usize,
    f: impl FnOnce(&[f32]) -> Result<R>,
) -> Result<R> {
    let channels = src.len() / wd.in_len.max(1);
    let body = channels * wd.channel;
    let len = body + slack;
    if len > MAX_KEPT_PADDED {
        let xp = spread(src, p, wd, true, slack)?;
        let r = f(&xp);
        super::recycle_scratch(xp);
        return r;
    }
    // Taken, not borrowed: a nested call on this thread finds it empty and makes its own.
    let mut xp = PADDED.take();
    if xp.capacity() < len {
        drop(std::mem::take(&mut xp));
        xp = host::with_capacity(len)?;
    }
    // Grown with zeros only where it was shorter; every channel is cleared below.
    xp.resize(len, 0.0);
    xp[body..].fill(0.0);
    per_block(&mut xp[..body], wd.channel.max(1), |c0, block| {
        for (c, channel) in block.chunks_mut(wd.channel.max(1)).enumerate() {
            channel.fill(0.0);
            place_rows(src, c0 + c, (p, wd, true), channel);
        }
        Ok(())
    })?;
    let r = f(&xp);
    PADDED.set(xp);
    r
}

/// `channels` channels of `len` values and `slack` zeros after them, each channel
/// cleared and then given its values by `fill(c, channel)`, in blocks of channels split
/// between the threads ([`per_block`]). A channel is cleared just before it is filled,
/// while it is in the cache: clearing each whole buffer first (in the weight gradient on
/// the calling thread alone) took 3.2% of conv1d's forward + backward beside the copies'
/// 4.7% (`perf`, 2026-12-03).
pub(super) fn channels_made(
    channels: usize,
    len: usize,
    slack: usize,
    fill: impl Fn(usize, &mut [f32]) + Sync,
) -> Result<Vec<f32>> {
    let body = channels * len;
    // SAFETY: every value is written: the slack here, each channel by `clear` before
    // `fill` sees it. A failed `per_block` can only come from `fill`, which cannot fail.
    unsafe {
        host::written(body + slack, |buf| {
            let (made, rest) = buf.split_at_mut(body);
            rest.fill(MaybeUninit::new(0.0));
            let done = per_block(made, len.max(1), |c0, block| {
                for (c, channel) in block.chunks_mut(len.max(1)).enumerate() {
                    fill(c0 + c, clear(channel));
                }
                Ok(())
            });
            debug_assert!(done.is_ok());
        })
    }
}

/// `values` set to zero, as initialized values.
pub(super) fn clear(values: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    values.fill(MaybeUninit::new(0.0));
    // SAFETY: every value was just written; `MaybeUninit<f32>` has `f32`'s layout.
    unsafe { &mut *(values as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// `kept`: what `w`'s storage keeps for the channel products, where `w` is its values.
pub(super) fn forward(
    x: &[f32],
    w: &[f32],
    p: &Conv3dParams,
    kept: Option<&PanelsKept>,
) -> Result<Vec<f32>> {
    let wd = wide(p);
    let offs = conv_direct::pair_offsets(&wd);
    let mut out = host::zeros(p.output_len())?;
    let (per_in, per_out) = (p.c_in * wd.in_len, p.c_out * wd.out_len);
    let most = images_per_run(p.output, wd.wp, wd.forward_cols);
    let channels = conv_channels::applies(wd.og, plane(p, &wd));
    let kept = kept.filter(|_| channels && panels_kept::read_whole(p.n, wd.og));
    let laid = kept.and_then(|k| k.read(w, (p.groups, wd.og, wd.kdim)));
    per_images(&mut out, per_out, p.n, most, |n0, count, y| {
        let x = &x[n0 * per_in..][..count * per_in];
        // The direct products read whole blocks of columns past the last one.
        with_padded(x, p, &wd, conv_direct::MAX_L, |xp| {
            forward_images(xp, count, (w, laid.as_deref()), p, &wd, &offs, y)
        })
    })?;
    Ok(out)
}

/// The output plane of a forward's channel products, with its border.
fn plane(p: &Conv3dParams, wd: &Wide) -> Plane {
    let border = Border {
        axes: [0, 1, 2].map(|a| {
            let geometry = (p.stride[a], p.padding[a], p.dilation[a]);
            Axis::forward(p.kernel[a], p.input[a], geometry)
        }),
        a: 0,
    };
    Plane {
        wp: wd.wp,
        oh: p.output[1],
        ow: p.output[2],
        reads: None,
        border: Some(border),
    }
}

/// How many images' planes one call of the direct products may take: as many as fill
/// `cols` wide columns where a plane's are one short run (deep layers' 7² and 14²), else
/// one.
pub(super) fn images_per_run(output: [usize; 3], wp: usize, cols: usize) -> usize {
    let [od, oh, ow] = output;
    if od == 1 {
        images_per_span(oh.saturating_sub(1) * wp + ow, cols)
    } else {
        1
    }
}

/// How many images' runs of `span` wide columns fit in `cols`, at least one.
pub(super) fn images_per_span(span: usize, cols: usize) -> usize {
    (cols / span.next_multiple_of(conv_direct::MAX_L)).max(1)
}

/// Values past each row of a block of sums, so that rows of 1024 columns (4 KiB apart)
/// do not all fall in one set of the first-level cache: `conv_channels.rs` stores each
/// position's sums down a column of the rows, and at 56² with 64 channels (batch 4,
/// single-threaded, Intel Xeon, 2026-12-03) its forward took 10.87 ms with rows 4 KiB
/// apart and 7.55 with them 16 values further (512@7² at batch 8, rows of 512: 11.68 and
/// 11.09, within this machine's noise).
const ROW_PAD: usize = 16;

/// Where a product over several images put its sums: one run of `cols` wide columns per
/// image, `run` apart, in rows `ld` apart, each from wide column `j` of its image's plane.
pub(super) struct Runs {
    pub(super) ld: usize,
    run: usize,
    cols: usize,
    j: usize,
}

impl Runs {
    /// The values of one channel's row for `images` runs of at most `cols` columns: room
    /// enough for any [`Runs::new`] of them.
    pub(super) fn row_len(images: usize, cols: usize) -> usize {
        images * cols.next_multiple_of(conv_direct::MAX_L) + ROW_PAD
    }

    pub(super) fn new(images: usize, cols: usize, j: usize) -> Runs {
        let run = cols.next_multiple_of(conv_direct::MAX_L);
        Runs {
            ld: Runs::row_len(images, cols),
            run,
            cols,
            j,
        }
    }

    /// Copies each run's kept columns (of rows `wp` wide, `ow` of them kept) out of
    /// `block` into `y`: row `o` of image `i` to the plane of `len` values at `at(o, i)`.
    pub(super) fn keep(
        &self,
        block: &[f32],
        (wp, ow): (usize, usize),
        y: &mut [f32],
        len: usize,
        at: impl Fn(usize, usize) -> usize,
    ) {
        for (o, row) in block.chunks(self.ld).enumerate() {
            let runs = &row[..row.len().min(self.ld - ROW_PAD)];
            for (i, wide) in runs.chunks(self.run).enumerate() {
                keep_columns(
                    &wide[..self.cols],
                    self.j,
                    wp,
                    ow,
                    &mut y[at(o, i)..][..len],
                );
            }
        }
    }
}

/// `products(first, count, y)` over the `channels` channels (`len` values each) of `y`:
/// for one image, in blocks split between the threads ([`per_block`]); for several (one
/// thread's share already, their channels an image apart), all at once.
pub(super) fn channel_blocks(
    y: &mut [f32],
    images: usize,
    channels: usize,
    len: usize,
    products: impl Fn(usize, usize, &mut [f32]) -> Result<()> + Sync,
) -> Result<()> {
    if images == 1 {
        per_block(&mut y[..channels * len], len, |c0, b| {
            products(c0, b.len() / len, b)
        })
    } else {
        products(0, channels, y)
    }
}

/// `count` images' output from their padded input `xp`: per group and run of wide
/// columns, the direct products of the (channel, tap) pairs at offsets `offs` fill a
/// block (the images' runs side by side) whose kept columns are then copied out.
fn forward_images(
    xp: &[f32],
    count: usize,
    (w, laid): (&[f32], Option<&Laid>),
    p: &Conv3dParams,
    wd: &Wide,
    offs: &[usize],
    y: &mut [f32],
) -> Result<()> {
    let [_, oh, ow] = p.output;
    let (per_in, per_out) = (p.c_in * wd.channel, p.c_out * wd.out_len);
    for gi in 0..p.groups {
        let w_g = &w[gi * wd.og * wd.kdim..][..wd.og * wd.kdim];
        let x_g = &xp[gi * wd.cg * wd.channel..];
        // `ob` channels from `o0`, into `y` (image 0's channel `o0` onwards, the next
        // image's `per_out` further).
        let plane = plane(p, wd);
        let border = plane.border.expect("a forward's plane has a border");
        let products = |o0: usize, ob: usize, y: &mut [f32]| -> Result<()> {
            let mut block = host::with_capacity(ob * Runs::row_len(count, wd.forward_cols))?;
            for s in wd.spans(p, wd.forward_cols) {
                let r = Runs::new(count, s.cols, s.j);
                block.resize(ob * r.ld, 0.0);
                let bases: Vec<usize> = (0..count).map(|i| i * per_in + s.at_in).collect();
                let w_b = panels_kept::rows(laid, w_g, (gi, o0, wd.kdim));
                let border = Some(Border { a: s.a, ..border });
                let run = (s.cols, s.j, Plane { border, ..plane });
                conv_channels::products(w_b, wd.kdim, ob, x_g, &bases, offs, run, &mut block, r.ld);
                r.keep(&block, (wd.wp, ow), y, oh * ow, |o, i| {
                    i * per_out + o * wd.out_len + s.a * oh * ow
                });
            }
            Ok(())
        };
        let y_g = &mut y[gi * wd.og * wd.out_len..];
        channel_blocks(y_g, count, wd.og, wd.out_len, products)?;
    }
    Ok(())
}

/// Copies the kept columns of a run of wide columns (`wide`, from column `j` of a plane
/// `wp` wide) into the output plane `y` (`ow` wide); the others are dropped.
pub(super) fn keep_columns(wide: &[f32], j: usize, wp: usize, ow: usize, y: &mut [f32]) {
    let Some(end) = (j + wide.len()).checked_sub(1) else {
        return;
    };
    for r in j / wp..=end / wp {
        let lo = (r * wp).max(j);
        let hi = (r * wp + ow).min(j + wide.len());
        if lo < hi {
            let dst = r * ow + lo - r * wp;
            y[dst..dst + hi - lo].copy_from_slice(&wide[lo - j..hi - j]);
        }
    }
}

pub(super) fn grad_input(gy: &[f32], w: &[f32], p: &Conv3dParams) -> Result<Vec<f32>> {
    if let Some(gx) = conv_direct::grad_input(gy, w, p)? {
        return Ok(gx);
    }
    let wd = wide(p);
    let mut gx = host::zeros(p.input_len())?;
    per_image(&mut gx, p.c_in * wd.in_len, p.n, |ni, gx_n| {
        grad_input_image(
            &gy[ni * p.c_out * wd.out_len..][..p.c_out * wd.out_len],
            w,
            p,
            &wd,
            gx_n,
        )
    })?;
    Ok(gx)
}

/// One image's input gradient: per chunk of wide columns, `Wᵀ · gy` gives every tap's
/// rows, each added into the padded channels at its tap's offset; then the padding is
/// dropped.
fn grad_input_image(
    gy_n: &[f32],
    w: &[f32],
    p: &Conv3dParams,
    wd: &Wide,
    gx_n: &mut [f32],
) -> Result<()> {
    let gyw = widened(gy_n, p, wd)?;
    let mut gxp = host::zeros(p.c_in * wd.channel)?;
    let (len, taps) = (wd.widened_len(p), wd.taps.len());
    for gi in 0..p.groups {
        let w_g = &w[gi * wd.og * wd.kdim..][..wd.og * wd.kdim];
        let gy_g = &gyw[gi * wd.og * len..][..wd.og * len];
        let gx_g = &mut gxp[gi * wd.cg * wd.channel..][..wd.cg * wd.channel];
        per_block(gx_g, wd.channel, |c0, gx_b| {
            // This block's channels' rows of Wᵀ: `taps` per channel.
            let m = gx_b.len() / wd.channel * taps;
            let mut rows = host::with_capacity(m * SPAN_COLS)?;
            for s in wd.spans(p, SPAN_COLS) {
                rows.resize(m * s.cols, 0.0);
                gemm(
                    m,
                    wd.og,
                    s.cols,
                    &w_g[c0 * taps..],
                    Layout::trans(wd.kdim),
                    &gy_g[s.at_out..],
                    Layout { rs: len, cs: 1 },
                    0.0,
                    &mut rows,
                    Layout::rows(s.cols),
                );
                for row in rows.chunks_mut(s.cols) {
                    for (lo, hi) in wd.dropped(&s, p.output[2]) {
                        row[lo..hi].fill(0.0);
                    }
                }
                let mut src = rows.chunks(s.cols);
                for channel in gx_b.chunks_mut(wd.channel) {
                    for &off in &wd.taps {
                        let dst = &mut channel[s.at_in + off..][..s.cols];
                        let src = src.next().expect("taps rows per channel");
                        dst.iter_mut().zip(src).for_each(|(d, v)| *d += v);
                    }
                }
            }
            Ok(())
        })?;
    }
    let w = p.input[2];
    per_block(gx_n, wd.in_len, |c0, block| {
        let src = gxp[c0 * wd.channel..].chunks(wd.channel);
        for (dst, src) in block.chunks_mut(wd.in_len).zip(src) {
            for (row, at) in dst.chunks_mut(w).zip(rows_of(p, wd, true)) {
                row.copy_from_slice(&src[at..at + w]);
            }
        }
        Ok(())
    })
}

/// The weight gradient on the padded grid: with 16+ input and output channels per group
/// `conv_weight.rs`'s sums, with fewer output channels `conv_weight_wide.rs`'s over the
/// wide columns, and for a non-finite input there the GEMMs below.
pub(super) fn grad_weight(x: &[f32], gy: &[f32], p: &Conv3dParams) -> Result<Vec<f32>> {
    if conv_weight::applies(p) {
        return conv_weight::grad_weight(x, gy, p);
    }
    let wd = wide(p);
    if let Some(gw) = conv_weight_wide::grad_weight(x, gy, p)? {
        return Ok(gw);
    }
    per_image_sum(
        p.n,
        p.weight_len(),
        || host::with_capacity(wd.kdim * SPAN_COLS),
        |ni, acc, rows| {
            let x_n = &x[ni * p.c_in * wd.in_len..][..p.c_in * wd.in_len];
            let gy_n = &gy[ni * p.c_out * wd.out_len..][..p.c_out * wd.out_len];
            grad_weight_image(x_n, gy_n, p, &wd, acc, rows)
        },
    )
}

/// Adds one image's weight gradient into `acc`: per chunk of wide columns, `gy` times
/// the taps' rows of the padded input (the dropped columns carry zero gradient).
fn grad_weight_image(
    x_n: &[f32],
    gy_n: &[f32],
    p: &Conv3dParams,
    wd: &Wide,
    acc: &mut [f32],
    rows: &mut Vec<f32>,
) -> Result<()> {
    let xp = padded(x_n, p, wd)?;
    let gyw = widened(gy_n, p, wd)?;
    let len = wd.widened_len(p);
    for gi in 0..p.groups {
        let x_g = &xp[gi * wd.cg * wd.channel..][..wd.cg * wd.channel];
        let gy_g = &gyw[gi * wd.og * len..][..wd.og * len];
        let gw_g = &mut acc[gi * wd.og * wd.kdim..][..wd.og * wd.kdim];
        for s in wd.spans(p, SPAN_COLS) {
            rows.resize(wd.kdim * s.cols, 0.0);
            let mut dst = rows.chunks_mut(s.cols);
            for channel in x_g.chunks(wd.channel) {
                for &off in &wd.taps {
                    let row = dst.next().expect("kdim rows");
                    row.copy_from_slice(&channel[s.at_in + off..][..s.cols]);
                    for (lo, hi) in wd.dropped(&s, p.output[2]) {
                        row[lo..hi].fill(0.0);
                    }
                }
            }
            gemm(
                wd.og,
                s.cols,
                wd.kdim,
                &gy_g[s.at_out..],
                Layout { rs: len, cs: 1 },
                rows,
                Layout::trans(s.cols),
                1.0,
                gw_g,
                Layout::rows(wd.kdim),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "conv_shifted_tests.rs"]
pub(super) mod tests;
