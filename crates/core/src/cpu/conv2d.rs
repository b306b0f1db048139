//! Convolution on the CPU: im2col over chunks of output rows (bounded scratch memory)
//! followed by GEMM, one image per rayon task, or several images in one GEMM where the
//! weight is large (see [`images_per_gemm`]); depthwise convolutions go to
//! `conv2d_depthwise.rs`, and stride-1 ones to the zero-padded input's wide grid where its
//! padding costs little: the forward by direct products (`conv_shifted::forward_applies`),
//! the gradients by direct products too, where the grid's dropped columns are few
//! (`conv_shifted::applies`) or the channels are (`conv_direct::applies`). The weight
//! gradient of 16 or more input and output channels per group is `conv_weight.rs`'s at
//! any stride and plane size (it computes no dropped column).
//! Strided ones with more than one tap take direct products on the input's phase grid
//! (`conv2d_strided.rs`): the forward, and the weight gradient for fewer than 16 input
//! channels per group.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::conv_direct;
use super::conv_shifted;
use super::conv_taps;
use super::conv_weight;
use super::gemm::{gemm, gemm_into, Layout};
use super::panels_kept::PanelsKept;
use super::per_image::{per_image, per_image_sum};
use super::reduce::all_finite;
use super::{conv2d_depthwise, conv2d_strided, conv2d_winograd, threads};
use crate::backend::Conv2dParams;
use crate::host;
use crate::Result;

/// Floats in one im2col scratch buffer (4 MiB): large enough for long GEMMs, small enough
/// to stay in cache-friendly territory and not to balloon memory on big images.
const COL_BUDGET: usize = 1 << 20;

/// Weights of at least this many floats (256 KiB) are worth packing once for several
/// images (see [`images_per_gemm`]).
const SHARED_WEIGHT: usize = 1 << 16;

#[derive(Clone, Copy)]
struct Geo {
    cg: usize,
    og: usize,
    kdim: usize,
    hw: usize,
    ohw: usize,
    rows_per_chunk: usize,
}

fn geo(p: &Conv2dParams) -> Geo {
    let cg = p.c_in / p.groups;
    let kdim = cg * p.kernel[0] * p.kernel[1];
    Geo {
        cg,
        og: p.c_out / p.groups,
        kdim,
        hw: p.h * p.w,
        ohw: p.oh * p.ow,
        rows_per_chunk: (COL_BUDGET / kdim.saturating_mul(p.ow).max(1)).clamp(1, p.oh.max(1)),
    }
}

/// A 1×1 conv whose output grid is its input grid: the input planes are the im2col
/// matrix already. (Output padding, or a stride set to 1 over a longer input, differ.)
fn is_pointwise(p: &Conv2dParams) -> bool {
    p.kernel == [1, 1] && p.stride == [1, 1] && p.padding == [0, 0] && p.oh == p.h && p.ow == p.w
}

/// For kernel column `kj`: the output columns `lo..hi` whose input column
/// `oj·sw + kj·dw − pw` lies inside the image. Hoisting the bounds out of the inner
/// loops lets them vectorise.
#[inline]
fn col_range(p: &Conv2dParams, kj: usize) -> (usize, usize) {
    let (sw, off) = (p.stride[1], kj * p.dilation[1]);
    let lo = p.padding[1].saturating_sub(off).div_ceil(sw);
    let hi = if p.w + p.padding[1] > off {
        (p.w + p.padding[1] - off - 1) / sw + 1
    } else {
        0
    };
    (lo.min(p.ow), hi.min(p.ow).max(lo.min(p.ow)))
}

/// For each kernel column `kj`: the valid output range `lo..hi` and the input column of
/// `lo` (the others follow at the column stride), or `None` when no column is valid.
/// Computed once per call: per output row, its divisions took a third of LeNet's im2col.
pub(super) fn col_spans(p: &Conv2dParams) -> Vec<Option<(usize, usize, usize)>> {
    (0..p.kernel[1])
        .map(|kj| {
            let (lo, hi) = col_range(p, kj);
            (lo < hi).then(|| (lo, hi, lo * p.stride[1] + kj * p.dilation[1] - p.padding[1]))
        })
        .collect()
}

#[inline]
pub(super) fn in_row(p: &Conv2dParams, oi: usize, ki: usize) -> Option<usize> {
    let ih = (oi * p.stride[0] + ki * p.dilation[0]).checked_sub(p.padding[0])?;
    (ih < p.h).then_some(ih)
}

/// Whether per-channel work on `len` values should spread over the pool: not inside a
/// per-image task (the images already keep the cores busy), and not for small buffers,
/// where the hand-off costs more than the copy. At batch 1 (style transfer, inference)
/// the column buffer's fill and scatter would otherwise run on one core between
/// GEMMs that use all of them.
fn spread(len: usize) -> bool {
    !threads::nested() && len >= 1 << 16
}

/// Runs `f(c, chunk)` over the `cg` per-channel chunks of `buf`, each `per` long: in
/// parallel where [`spread`] says so. Each channel owns its chunk, so the result does not
/// depend on the schedule.
fn per_channel(buf: &mut [f32], per: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if per == 0 {
        return;
    }
    if spread(buf.len()) {
        buf.par_chunks_mut(per)
            .enumerate()
            .for_each(|(c, b)| f(c, b));
    } else {
        buf.chunks_mut(per).enumerate().for_each(|(c, b)| f(c, b));
    }
}

/// Where im2col writes: rows `ld` apart, from column `off` on, `images` consecutive
/// images side by side (each `(r1 − r0)·ow` columns wide). One image alone fills whole
/// rows ([`Place::whole`]); several share the rows of one GEMM operand.
#[derive(Clone, Copy)]
struct Place {
    ld: usize,
    off: usize,
    images: usize,
}

impl Place {
    fn whole(cols: usize) -> Place {
        Place {
            ld: cols,
            off: 0,
            images: 1,
        }
    }
}

/// Fills `kdim` rows of `col` (at `at`) from one group's input planes for output rows
/// `r0..r1`; with several images (`groups` = 1 only), `x_g` holds them one after another.
/// Channels run in parallel, each with every image, so many small images still use
/// every core.
fn im2col(
    x_g: &[f32],
    p: &Conv2dParams,
    g: &Geo,
    rows: (usize, usize),
    at: Place,
    col: &mut [f32],
) {
    let (r0, r1) = rows;
    let cols = (r1 - r0) * p.ow;
    let [kh, kw] = p.kernel;
    let per = kh * kw * at.ld;
    let spans = col_spans(p);
    per_channel(&mut col[..g.cg * per], per, |c, rows| {
        for i in 0..at.images {
            let plane = &x_g[i * p.c_in * g.hw + c * g.hw..][..g.hw];
            let off = at.off + i * cols;
            im2col_plane(plane, p, (r0, r1), &spans, at.ld, &mut rows[off..]);
        }
    });
}

/// One input plane's `kh·kw` rows of im2col, `ld` apart in `rows` (which starts at the
/// plane's first column).
fn im2col_plane(
    plane: &[f32],
    p: &Conv2dParams,
    (r0, r1): (usize, usize),
    spans: &[Option<(usize, usize, usize)>],
    ld: usize,
    rows: &mut [f32],
) {
    let cols = (r1 - r0) * p.ow;
    let kw = p.kernel[1];
    for ki in 0..p.kernel[0] {
        for (kj, &span) in spans.iter().enumerate() {
            let row = &mut rows[(ki * kw + kj) * ld..][..cols];
            let Some((lo, hi, s0)) = span else {
                row.fill(0.0);
                continue;
            };
            for r in r0..r1 {
                let dst = &mut row[(r - r0) * p.ow..(r - r0 + 1) * p.ow];
                let Some(ih) = in_row(p, r, ki) else {
                    dst.fill(0.0);
                    continue;
                };
                let src = &plane[ih * p.w..(ih + 1) * p.w];
                dst[..lo].fill(0.0);
                dst[hi..].fill(0.0);
                if p.stride[1] == 1 {
                    dst[lo..hi].copy_from_slice(&src[s0..s0 + hi - lo]);
                } else {
                    // An iterator over the strided columns, not an index per column:
                    // no bounds check per value.
                    let taps = src[s0..].iter().step_by(p.stride[1]);
                    dst[lo..hi].iter_mut().zip(taps).for_each(|(d, &v)| *d = v);
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds `col`'s rows (at `at`) back into the group's
/// input-gradient planes.
fn col2im(
    col: &[f32],
    p: &Conv2dParams,
    g: &Geo,
    rows: (usize, usize),
    at: Place,
    gx_g: &mut [f32],
) {
    let (r0, r1) = rows;
    let cols = (r1 - r0) * p.ow;
    let [kh, kw] = p.kernel;
    let per = kh * kw * at.ld;
    let spans = col_spans(p);
    per_channel(&mut gx_g[..g.cg * g.hw], g.hw, |c, plane| {
        let rows = &col[c * per..(c + 1) * per];
        let stride = p.stride[1];
        for ki in 0..kh {
            // An input row at a time, each tap along it added in turn, so the row's
            // place is found once for the kernel's width.
            for r in r0..r1 {
                let Some(ih) = in_row(p, r, ki) else { continue };
                let dst = &mut plane[ih * p.w..(ih + 1) * p.w];
                for (kj, &span) in spans.iter().enumerate() {
                    let Some((lo, hi, s0)) = span else {
                        continue;
                    };
                    let row = &rows[(ki * kw + kj) * at.ld + at.off..][..cols];
                    let src = &row[(r - r0) * p.ow..][lo..hi];
                    if stride == 1 {
                        // Whole spans at unit stride, so the adds vectorise.
                        let dst = &mut dst[s0..s0 + src.len()];
                        dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
                    } else {
                        let dst = &mut dst[s0..][..(src.len() - 1) * stride + 1];
                        for (i, &s) in src.iter().enumerate() {
                            dst[i * stride] += s;
                        }
                    }
                }
            }
        }
    });
}

/// An im2col buffer with room for the largest chunk of rows, allocated fallibly: with a
/// wide output and a deep kernel one row alone can outgrow [`COL_BUDGET`].
fn scratch(p: &Conv2dParams, g: &Geo) -> Result<Vec<f32>> {
    if is_pointwise(p) {
        return Ok(Vec::new());
    }
    host::with_capacity(g.kdim.saturating_mul(g.rows_per_chunk.saturating_mul(p.ow)))
}

/// Adds `bias[c]` to each plane of `plane` values of channel c in `[N, C, plane]` `y`.
pub fn add_bias(y: &mut [f32], bias: &[f32], plane: usize) {
    if plane == 0 || bias.is_empty() {
        return;
    }
    y.par_chunks_mut(plane * bias.len()).for_each(|image| {
        for (values, b) in image.chunks_mut(plane).zip(bias) {
            values.iter_mut().for_each(|v| *v += b);
        }
    });
}

/// How many images one GEMM takes. Per image, the GEMM packs the whole weight again;
/// where a weight row is longer than an image's output plane (the deep layers, `kdim` >
/// `oh·ow`, so packing the weight costs more than an image's share of the product per
/// output channel) and the weight too large to stay in cache (256 KiB and up), that
/// packing rivals the product, so images whose columns fit the scratch budget share one GEMM, for the
/// price of copying its output back into images. Small weights (LeNet's) stay with one
/// image per task: measured, sharing made LeNet's step 15% slower.
fn images_per_gemm(p: &Conv2dParams, g: &Geo) -> usize {
    let empty = g.ohw == 0 || p.c_out == 0 || p.c_in * g.hw == 0;
    let small = g.og * g.kdim < SHARED_WEIGHT;
    if empty || small || p.groups != 1 || is_pointwise(p) || g.kdim <= g.ohw {
        return 1;
    }
    (COL_BUDGET / g.kdim.saturating_mul(g.ohw).max(1)).clamp(1, p.n.max(1))
}

/// The im2col columns of images `n0..n1` side by side: `[kdim, (n1 − n0)·oh·ow]`.
fn side_by_side_columns(
    x: &[f32],
    p: &Conv2dParams,
    g: &Geo,
    (n0, n1): (usize, usize),
    col: &mut Vec<f32>,
) {
    let (image_in, cols) = (p.c_in * g.hw, (n1 - n0) * g.ohw);
    col.resize(g.kdim * cols, 0.0);
    let at = Place {
        ld: cols,
        off: 0,
        images: n1 - n0,
    };
    im2col(&x[n0 * image_in..n1 * image_in], p, g, (0, p.oh), at, col);
}

/// [`forward`] with `nb` images side by side in each im2col buffer and GEMM.
fn forward_batched(x: &[f32], w: &[f32], p: &Conv2dParams, g: &Geo, nb: usize) -> Result<Vec<f32>> {
    let image_out = p.c_out * g.ohw;
    let mut out = host::zeros(p.output_len())?;
    let mut col = host::with_capacity(g.kdim * nb * g.ohw)?;
    let mut y = host::with_capacity(p.c_out * nb * g.ohw)?;
    for n0 in (0..p.n).step_by(nb) {
        let n1 = (n0 + nb).min(p.n);
        let cols = (n1 - n0) * g.ohw;
        side_by_side_columns(x, p, g, (n0, n1), &mut col);
        let (lw, lc) = (Layout::rows(g.kdim), Layout::rows(cols));
        // SAFETY: `gemm_into` writes all `c_out × cols` values.
        unsafe {
            refill(&mut y, p.c_out * cols, |y| {
                gemm_into(p.c_out, g.kdim, cols, w, lw, &col, lc, y, lc)
            })
        };
        into_images(&y, p, g, &mut out[n0 * image_out..n1 * image_out]);
    }
    Ok(out)
}

/// The inverse of [`side_by_side`]: `side` (`[c_out, k·oh·ow]`) back into the `k` images
/// of `[c_out, oh·ow]` that `images` holds.
fn into_images(side: &[f32], p: &Conv2dParams, g: &Geo, images: &mut [f32]) {
    let cols = images.len() / p.c_out;
    images
        .par_chunks_mut(p.c_out * g.ohw)
        .enumerate()
        .for_each(|(i, y_n)| {
            for (o, plane) in y_n.chunks_mut(g.ohw).enumerate() {
                plane.copy_from_slice(&side[o * cols + i * g.ohw..][..g.ohw]);
            }
        });
}

/// Output-gradient images `n0..n1` side by side: `[c_out, (n1 − n0)·oh·ow]`, the layout
/// of a shared GEMM's output.
fn side_by_side(
    gy: &[f32],
    p: &Conv2dParams,
    g: &Geo,
    (n0, n1): (usize, usize),
    dst: &mut Vec<f32>,
) {
    let cols = (n1 - n0) * g.ohw;
    let fill = |rows: &mut [MaybeUninit<f32>]| {
        rows.par_chunks_mut(cols).enumerate().for_each(|(o, row)| {
            for (i, plane) in row.chunks_mut(g.ohw).enumerate() {
                let src = &gy[((n0 + i) * p.c_out + o) * g.ohw..][..g.ohw];
                for (d, &v) in plane.iter_mut().zip(src) {
                    d.write(v);
                }
            }
        })
    };
    // SAFETY: each of the `c_out` rows of `cols` values is written, plane by plane.
    unsafe { refill(dst, p.c_out * cols, fill) };
}

/// `buf` holding the `len` values `fill` writes, without clearing them first (a GEMM's
/// output, a copy): clearing the input gradient's columns took 1% of a stride-2 layer's
/// forward and backward, on one thread.
///
/// # Safety
/// `fill` must write every value of the slice it is given.
unsafe fn refill(buf: &mut Vec<f32>, len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) {
    buf.clear();
    buf.reserve(len);
    fill(&mut buf.spare_capacity_mut()[..len]);
    // SAFETY: `fill` wrote all `len` values (the caller's promise).
    unsafe { buf.set_len(len) };
}

/// [`grad_input`] with `nb` images in each GEMM (see [`images_per_gemm`]).
fn grad_input_batched(
    gy: &[f32],
    w: &[f32],
    p: &Conv2dParams,
    g: &Geo,
    nb: usize,
) -> Result<Vec<f32>> {
    let image_in = p.c_in * g.hw;
    let mut gx = host::zeros(p.input_len())?;
    let mut gy_b = host::with_capacity(p.c_out * nb * g.ohw)?;
    let mut col = host::with_capacity(g.kdim * nb * g.ohw)?;
    for n0 in (0..p.n).step_by(nb) {
        let n1 = (n0 + nb).min(p.n);
        let cols = (n1 - n0) * g.ohw;
        side_by_side(gy, p, g, (n0, n1), &mut gy_b);
        let (lw, lc) = (Layout::trans(g.kdim), Layout::rows(cols));
        // SAFETY: `gemm_into` writes all `kdim × cols` values.
        unsafe {
            refill(&mut col, g.kdim * cols, |c| {
                gemm_into(g.kdim, p.c_out, cols, w, lw, &gy_b, lc, c, lc)
            })
        };
        let images = &mut gx[n0 * image_in..n1 * image_in];
        images
            .par_chunks_mut(image_in)
            .enumerate()
            .for_each(|(i, gx_n)| {
                let at = Place {
                    ld: cols,
                    off: i * g.ohw,
                    images: 1,
                };
                col2im(&col, p, g, (0, p.oh), at, gx_n);
            });
    }
    Ok(gx)
}

/// [`grad_weight`] with `nb` images in each GEMM: one product over all their columns
/// instead of one accumulation into the weight-sized gradient per image.
fn grad_weight_batched(
    x: &[f32],
    gy: &[f32],
    p: &Conv2dParams,
    g: &Geo,
    nb: usize,
) -> Result<Vec<f32>> {
    let mut acc = host::zeros(p.weight_len())?;
    let mut gy_b = host::with_capacity(p.c_out * nb * g.ohw)?;
    let mut col = host::with_capacity(g.kdim * nb * g.ohw)?;
    for n0 in (0..p.n).step_by(nb) {
        let n1 = (n0 + nb).min(p.n);
        let cols = (n1 - n0) * g.ohw;
        side_by_side(gy, p, g, (n0, n1), &mut gy_b);
        side_by_side_columns(x, p, g, (n0, n1), &mut col);
        gemm(
            p.c_out,
            cols,
            g.kdim,
            &gy_b,
            Layout::rows(cols),
            &col,
            Layout::trans(cols),
            1.0,
            &mut acc,
            Layout::rows(g.kdim),
        );
    }
    Ok(acc)
}

pub fn forward(x: &[f32], w: &[f32], p: &Conv2dParams) -> Result<Vec<f32>> {
    forward_kept(x, w, p, None)
}

/// [`forward`], with what `w`'s storage keeps for the channel products where `w` is its
/// values (`panels_kept.rs`).
pub(super) fn forward_kept(
    x: &[f32],
    w: &[f32],
    p: &Conv2dParams,
    kept: Option<&PanelsKept>,
) -> Result<Vec<f32>> {
    let g = geo(p);
    if g.kdim == 0 || p.output_len() == 0 {
        // No outputs, or no input channels (each output an empty sum): nothing to read.
        return host::zeros(p.output_len());
    }
    if p.is_depthwise() {
        return conv2d_depthwise::forward(x, w, p);
    }
    if let Some((q, lo)) = conv_taps::cropped(p) {
        return forward(x, &conv_taps::crop_weight(w, p, &q, lo)?, &q);
    }
    if let Some(y) = conv2d_winograd::try_forward(x, w, p)? {
        return Ok(y);
    }
    let p3 = conv_shifted::from_2d(p);
    if conv_shifted::forward_applies(&p3) {
        return conv_shifted::forward(x, w, &p3, kept);
    }
    if conv2d_strided::applies(p) {
        return conv2d_strided::forward(x, w, p, kept);
    }
    if is_pointwise(p) {
        return pointwise(x, w, p, &g);
    }
    let nb = images_per_gemm(p, &g);
    if nb > 1 {
        return forward_batched(x, w, p, &g, nb);
    }
    let mut out = host::zeros(p.output_len())?;
    per_image(&mut out, p.c_out * g.ohw, p.n, |ni, y_n| {
        let mut col = scratch(p, &g)?;
        for gi in 0..p.groups {
            let x_g = &x[(ni * p.c_in + gi * g.cg) * g.hw..][..g.cg * g.hw];
            let w_g = &w[gi * g.og * g.kdim..][..g.og * g.kdim];
            let y_g = &mut y_n[gi * g.og * g.ohw..][..g.og * g.ohw];
            for r0 in (0..p.oh).step_by(g.rows_per_chunk) {
                let r1 = (r0 + g.rows_per_chunk).min(p.oh);
                let cols = (r1 - r0) * p.ow;
                col.resize(g.kdim * cols, 0.0);
                im2col(x_g, p, &g, (r0, r1), Place::whole(cols), &mut col);
                let y = &mut y_g[r0 * p.ow..];
                gemm(
                    g.og,
                    g.kdim,
                    cols,
                    w_g,
                    Layout::rows(g.kdim),
                    &col,
                    Layout::rows(cols),
                    0.0,
                    y,
                    Layout { rs: g.ohw, cs: 1 },
                );
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// A 1×1 layer's forward: per image and group, one GEMM on the input as it is, into an
/// output allocated unwritten (every value is the GEMMs'). Cleared first, on the calling
/// thread, it cost 8 × 256@56² → 64 3.93 ms against 3.71 now, and 8 × 64@56² → 256 (a
/// 25.7 MB output) 3.94 against 2.87 (two threads, an Intel Xeon, 2026-12-04, fastest of
/// four alternating rounds).
fn pointwise(x: &[f32], w: &[f32], p: &Conv2dParams, g: &Geo) -> Result<Vec<f32>> {
    let one = |ni: usize, y_n: &mut [MaybeUninit<f32>]| -> Result<()> {
        for gi in 0..p.groups {
            let x_g = &x[(ni * p.c_in + gi * g.cg) * g.hw..][..g.cg * g.hw];
            let w_g = &w[gi * g.og * g.cg..][..g.og * g.cg];
            let y_g = &mut y_n[gi * g.og * g.ohw..][..g.og * g.ohw];
            let (lw, lx, ly) = (Layout::rows(g.cg), Layout::rows(g.hw), Layout::rows(g.ohw));
            gemm_into(g.og, g.cg, g.ohw, w_g, lw, x_g, lx, y_g, ly);
        }
        Ok(())
    };
    // SAFETY: every image's every group is one product that writes all of its values
    // (`gemm_into`); `one` cannot fail.
    unsafe {
        host::written(p.output_len(), |out| {
            let done = per_image(out, p.c_out * g.ohw, p.n, one);
            debug_assert!(done.is_ok());
        })
    }
}

pub fn grad_input(gy: &[f32], w: &[f32], p: &Conv2dParams) -> Result<Vec<f32>> {
    let g = geo(p);
    if p.output_len() == 0 || p.input_len() == 0 {
        // Nothing flows back (and an empty batch's planes, which may be vast, are never
        // laid out).
        return host::zeros(p.input_len());
    }
    if p.is_depthwise() {
        return conv2d_depthwise::grad_input(gy, w, p);
    }
    if let Some((q, lo)) = conv_taps::cropped(p) {
        return grad_input(gy, &conv_taps::crop_weight(w, p, &q, lo)?, &q);
    }
    if let Some(gx) = conv2d_winograd::try_grad_input(gy, w, p)? {
        return Ok(gx);
    }
    let p3 = conv_shifted::from_2d(p);
    if conv_shifted::applies(&p3) {
        return conv_shifted::grad_input(gy, w, &p3);
    }
    if conv_direct::applies(&p3) || conv_shifted::grad_input_applies(&p3) {
        if let Some(gx) = conv_direct::grad_input(gy, w, &p3)? {
            return Ok(gx);
        }
    }
    let nb = images_per_gemm(p, &g);
    if nb > 1 {
        return grad_input_batched(gy, w, p, &g, nb);
    }
    let mut gx = host::zeros(p.input_len())?;
    per_image(&mut gx, p.c_in * g.hw, p.n, |ni, gx_n| {
        let mut col = scratch(p, &g)?;
        for gi in 0..p.groups {
            let gy_g = &gy[(ni * p.c_out + gi * g.og) * g.ohw..][..g.og * g.ohw];
            let w_g = &w[gi * g.og * g.kdim..][..g.og * g.kdim];
            let gx_g = &mut gx_n[gi * g.cg * g.hw..][..g.cg * g.hw];
            if is_pointwise(p) {
                gemm(
                    g.cg,
                    g.og,
                    g.hw,
                    w_g,
                    Layout::trans(g.cg),
                    gy_g,
                    Layout::rows(g.ohw),
                    0.0,
                    gx_g,
                    Layout::rows(g.hw),
                );
                continue;
            }
            for r0 in (0..p.oh).step_by(g.rows_per_chunk) {
                let r1 = (r0 + g.rows_per_chunk).min(p.oh);
                let cols = (r1 - r0) * p.ow;
                col.resize(g.kdim * cols, 0.0);
                let gy_rows = &gy_g[r0 * p.ow..];
                gemm(
                    g.kdim,
                    g.og,
                    cols,
                    w_g,
                    Layout::trans(g.kdim),
                    gy_rows,
                    Layout { rs: g.ohw, cs: 1 },
                    0.0,
                    &mut col,
                    Layout::rows(cols),
                );
                col2im(&col, p, &g, (r0, r1), Place::whole(cols), gx_g);
            }
        }
        Ok(())
    })?;
    Ok(gx)
}

/// Adds image `ni`'s contribution to the weight gradient into `acc`.
fn grad_weight_image(
    x: &[f32],
    gy: &[f32],
    p: &Conv2dParams,
    g: &Geo,
    ni: usize,
    acc: &mut [f32],
    col: &mut Vec<f32>,
) {
    for gi in 0..p.groups {
        let x_g = &x[(ni * p.c_in + gi * g.cg) * g.hw..][..g.cg * g.hw];
        let gy_g = &gy[(ni * p.c_out + gi * g.og) * g.ohw..][..g.og * g.ohw];
        let gw_g = &mut acc[gi * g.og * g.kdim..][..g.og * g.kdim];
        if is_pointwise(p) {
            gemm(
                g.og,
                g.ohw,
                g.cg,
                gy_g,
                Layout::rows(g.ohw),
                x_g,
                Layout::trans(g.hw),
                1.0,
                gw_g,
                Layout::rows(g.cg),
            );
            continue;
        }
        for r0 in (0..p.oh).step_by(g.rows_per_chunk) {
            let r1 = (r0 + g.rows_per_chunk).min(p.oh);
            let cols = (r1 - r0) * p.ow;
            col.resize(g.kdim * cols, 0.0);
            im2col(x_g, p, g, (r0, r1), Place::whole(cols), col);
            let gy_rows = &gy_g[r0 * p.ow..];
            gemm(
                g.og,
                cols,
                g.kdim,
                gy_rows,
                Layout { rs: g.ohw, cs: 1 },
                col,
                Layout::trans(cols),
                1.0,
                gw_g,
                Layout::rows(g.kdim),
            );
        }
    }
}

pub fn grad_weight(x: &[f32], gy: &[f32], p: &Conv2dParams) -> Result<Vec<f32>> {
    let g = geo(p);
    let len = p.weight_len();
    if p.output_len() == 0 || p.input_len() == 0 {
        // Nothing flows into the weight (and no empty image need be visited).
        return host::zeros(len);
    }
    if p.is_depthwise() {
        return conv2d_depthwise::grad_weight(x, gy, p);
    }
    if let Some((q, lo)) = conv_taps::cropped(p) {
        return conv_taps::uncrop_weight(&grad_weight(x, gy, &q)?, p, &q, lo);
    }
    let p3 = conv_shifted::from_2d(p);
    if conv_weight::applies(&p3) || conv_shifted::applies(&p3) {
        return conv_shifted::grad_weight(x, gy, &p3);
    }
    if conv_direct::applies(&p3) && all_finite(x) {
        return conv_direct::grad_weight(x, gy, &p3);
    }
    if conv2d_strided::grad_weight_applies(p) && all_finite(x) {
        return conv2d_strided::grad_weight(x, gy, p);
    }
    let nb = images_per_gemm(p, &g);
    if nb > 1 {
        return grad_weight_batched(x, gy, p, &g, nb);
    }
    per_image_sum(
        p.n,
        len,
        || scratch(p, &g),
        |ni, acc, col| {
            grad_weight_image(x, gy, p, &g, ni, acc, col);
            Ok(())
        },
    )
}

#[cfg(test)]
#[path = "conv2d_tests.rs"]
mod tests;
#[cfg(test)]
pub(super) use tests::definition;
