//! 3-D convolutions with kernels three taps wide, stride 1, by Winograd's F(3, 3) along
//! the rows of the zero-padded volume (`conv2d_winograd_rows.rs`'s transforms and
//! product): the forward, and the input gradient (a convolution of the output gradient
//! by the kernels turned end to end along every axis, input and output channels
//! swapped).
//!
//! Each padded slice is laid out as rows of `wp` columns, `wp` the padded width rounded up
//! to a multiple of three, and numbered position after position; a tile is three
//! consecutive positions, which never straddle two rows. Each (depth, height) tap pair
//! of the kernel is one chunk of three taps, and reads, for output tile `t` of slice `d`,
//! window `t + th·wp/3` of padded slice `d + td`: so every window of a slice is
//! transformed once and serves every chunk and output slice that reads it, and one
//! product per transformed position multiplies them by the transformed kernels, the
//! chunks' windows read in place (the tiles past each row's outputs are computed and
//! dropped: 2 of 20 per row at 56² with padding 1). That is 5 multiply-adds per three
//! outputs, channel pair and chunk where the direct products do 9.
//!
//! The transformed slices live in a ring of `kd` slots: output slice `d` needs input
//! slices `d..d + kd` (of the padded volume), each transformed when it is first needed.
//! Slices that are padding only are skipped, with their chunks.
//!
//! A result that is not all finite is computed again by the other paths (`None`).

use rayon::prelude::*;

use super::conv2d_winograd::{finished, Kernels};
use super::conv2d_winograd_rows::{
    self as rows, blocks, grow, kernels, products, windows_of, Segment, Shape, POINTS, ROWS,
};
use super::threads::{self, SendPtr};
use super::transpose::transpose_into;
use super::{recycle_scratch, Level};
use crate::backend::{Conv2dParams, Conv3dParams};
use crate::host;
use crate::Result;

/// Whether the forward of `p` runs here: a kernel three taps wide and more than one
/// deep, padding under the kernel on every axis, stride and dilation 1, one group, 32+
/// channels each side, output rows of at least six columns, and 64+ tiles per output
/// slice. Each slice's product reads all the transformed kernels; over few tiles that
/// read outweighs the products: 512 channels on 4 × 7² (21 tiles, batch 4) took 55.5 ms
/// here against 54.6–59.2 by the direct products, 128 on 8 × 14² (84 tiles) 16.4–16.7
/// against 19.4–19.6 (PyTorch 34.1–35.0 and 18.4–18.6; Intel Xeon, 2026-12-05).
pub(super) fn applies(p: &Conv3dParams) -> bool {
    p.kernel[2] == 3
        && p.kernel[0] >= 2
        && (0..3).all(|a| p.padding[a] < p.kernel[a])
        // A stride set to 1 where its axis has one output leaves the sizes of another.
        && (0..3).all(|a| {
            let padded = p.padding[a].checked_mul(2).and_then(|d| d.checked_add(p.input[a]));
            padded == p.output[a].checked_add(p.kernel[a] - 1)
        })
        && p.stride == [1; 3]
        && p.dilation == [1; 3]
        && p.groups == 1
        && p.c_in >= 32
        && p.c_out >= 32
        && p.output[2] >= 6
        && Grid::new(p).tiles >= 64
        && super::cpu_level() != Level::Base
}

/// Whether the input gradient of `p` runs here: [`applies`] to the convolution of the
/// output gradient that it is.
pub(super) fn grad_input_applies(p: &Conv3dParams) -> bool {
    (0..3).all(|a| p.padding[a] < p.kernel[a]) && applies(&backward(p))
}

/// The convolution that gives `p`'s input gradient from its output gradient: the
/// kernels turned end to end, padding `k − 1 − p` on each axis.
fn backward(p: &Conv3dParams) -> Conv3dParams {
    Conv3dParams {
        c_in: p.c_out,
        c_out: p.c_in,
        input: p.output,
        output: p.input,
        padding: std::array::from_fn(|a| (p.kernel[a] - 1).saturating_sub(p.padding[a])),
        ..*p
    }
}

/// `p`'s forward here where [`applies`], else by the wide grid (`conv_shifted.rs`), as is a
/// result here that is not all finite.
pub(super) fn try_forward(x: &[f32], w: &[f32], p: &Conv3dParams) -> Result<Vec<f32>> {
    if applies(p) {
        if let Some(y) = forward(x, w, p)? {
            return Ok(y);
        }
    }
    super::conv_shifted::forward(x, w, p, None)
}

/// `p`'s input gradient as [`try_forward`] gives its forward.
pub(super) fn try_grad_input(gy: &[f32], w: &[f32], p: &Conv3dParams) -> Result<Vec<f32>> {
    if grad_input_applies(p) {
        if let Some(gx) = grad_input(gy, w, p)? {
            return Ok(gx);
        }
    }
    super::conv_shifted::grad_input(gy, w, p)
}

/// The output of `p`'s convolution of `x` by `w`, or None where an output is not finite.
pub(super) fn forward(x: &[f32], w: &[f32], p: &Conv3dParams) -> Result<Option<Vec<f32>>> {
    run(x, w, p, Kernels::Forward)
}

/// `p`'s input gradient from the output gradient `gy`, or None as for [`forward`].
pub(super) fn grad_input(gy: &[f32], w: &[f32], p: &Conv3dParams) -> Result<Option<Vec<f32>>> {
    assert!(
        (0..3).all(|a| p.padding[a] < p.kernel[a]),
        "conv3d_winograd: padding past the kernel"
    );
    run(gy, w, &backward(p), Kernels::Backward)
}

/// The sizes one image's pass works with.
struct Grid {
    /// Padded rows' width, a multiple of 3, and the padded slices' height.
    wp: usize,
    hp: usize,
    /// Windows per padded slice (and per slot of the ring).
    slot: usize,
    /// Tiles per output slice (`oh` rows of `wp / 3`), and kept tiles per row.
    tiles: usize,
    kept: usize,
}

impl Grid {
    fn new(p: &Conv3dParams) -> Grid {
        let wp = (p.input[2] + 2 * p.padding[2]).next_multiple_of(3);
        let hp = p.input[1] + 2 * p.padding[1];
        Grid {
            wp,
            hp,
            slot: hp * wp / 3,
            tiles: p.output[1] * wp / 3,
            kept: p.output[2].div_ceil(3),
        }
    }
}

/// The convolution `p` (kernels three taps wide, stride 1) of `x` by the kernels `which`
/// makes of `w`.
fn run(x: &[f32], w: &[f32], p: &Conv3dParams, which: Kernels) -> Result<Option<Vec<f32>>> {
    let [kd, kh, kw] = p.kernel;
    assert!(
        kw == 3 && x.len() >= p.input_len(),
        "conv3d_winograd: not a kernel three wide, or input too short: {p:?}"
    );
    let shape = Shape::new(p.c_in, p.c_out, kd * kh);
    let u = kernels(w, &shape, kd * kh * kw, which)?;
    let len = p.output_len();
    let mut out = host::with_capacity(len)?;
    let y = SendPtr(out.as_mut_ptr());
    let per_in = p.c_in * p.input.iter().product::<usize>();
    let threads = rayon::current_num_threads().max(1);
    // Images split between the threads where there are enough of them; else each
    // image's blocks of tiles are.
    let nested = threads::nested();
    let by_image = p.n >= threads && !nested;
    let one = |n: usize| -> Result<bool> {
        // SAFETY: each image writes its own outputs only.
        unsafe {
            image(
                &x[n * per_in..][..per_in],
                n,
                p,
                (&u, &shape),
                y,
                !by_image && !nested,
            )
        }
    };
    let finite = if by_image {
        (0..p.n)
            .into_par_iter()
            .map(one)
            .collect::<Result<Vec<_>>>()?
    } else {
        (0..p.n).map(one).collect::<Result<Vec<_>>>()?
    };
    // SAFETY: every image wrote each output slice's kept tiles in every output channel,
    // which are all its outputs.
    Ok(unsafe { finished(out, u, len, &finite) })
}

/// Image `n`'s output (its input `x`), slice by slice; whether it was all finite.
///
/// # Safety
/// `y` points to the output of `p`, and no other thread writes image `n`'s.
unsafe fn image(
    x: &[f32],
    n: usize,
    p: &Conv3dParams,
    (u, shape): (&[f32], &Shape),
    y: SendPtr,
    split: bool,
) -> Result<bool> {
    let [kd, kh, _] = p.kernel;
    let [od, oh, ow] = p.output;
    let (pd, d) = (p.padding[0], p.input[0]);
    let g = Grid::new(p);
    let ci = p.c_in;
    // The ring: per position, `kd` slots of windows, then a block of rows' worth of zeros
    // that the last block's rounded-up rows read.
    let per_e = (kd * g.slot + ROWS) * ci;
    let mut v = host::zeros(POINTS * per_e)?;
    let mut held = vec![usize::MAX; kd];
    let mut columns = Vec::new();
    // The output as the rows' `outputs` sees it: one image row per (image, slice, row).
    let flat = Conv2dParams {
        n: p.n,
        c_in: ci,
        h: od * oh,
        w: ow,
        c_out: p.c_out,
        oh: od * oh,
        ow,
        kernel: [1, 3],
        stride: [1, 1],
        padding: [0, 0],
        dilation: [1, 1],
        groups: 1,
    };
    let parts = if split {
        rayon::current_num_threads()
    } else {
        1
    };
    let blocks = blocks(g.tiles, ci + p.c_out, parts);
    let mut finite = true;
    for dd in 0..od {
        let mut taps = Vec::with_capacity(kd * kh);
        for td in 0..kd {
            let s = dd + td;
            if s < pd || s >= pd + d {
                continue;
            }
            let slot = s % kd;
            if held[slot] != s {
                slice(x, p, &g, (s - pd, slot), &mut columns, (&mut v, per_e))?;
                held[slot] = s;
            }
            taps.extend((0..kh).map(|th| (td * kh + th, slot * g.slot + th * g.wp / 3)));
        }
        let v = (&v[..], per_e);
        let block = |&(t0, t1): &(usize, usize)| -> Result<bool> {
            threads::task(|| {
                let taps: Vec<(usize, usize)> = taps.iter().map(|&(j, o)| (j, o + t0)).collect();
                let rows_b = (t1 - t0).next_multiple_of(ROWS);
                rows::with_scratch(|s| {
                    let m_len = POINTS * rows_b * shape.cp;
                    grow(&mut s.m, m_len)?;
                    products(v, &taps, u, shape, &mut s.m[..m_len]);
                    let (wq, mut ok) = (g.wp / 3, true);
                    for hh in t0 / wq..=(t1 - 1) / wq {
                        let (q0, q1) = (
                            t0.max(hh * wq) - hh * wq,
                            t1.min(hh * wq + g.kept) - hh * wq,
                        );
                        if q0 >= q1.min(g.kept) {
                            continue;
                        }
                        let off = hh * wq + q0 - t0;
                        let seg = Segment {
                            row: (n * od + dd) * oh + hh,
                            q0,
                            q1,
                            off,
                        };
                        let bufs = (&mut s.ys, &mut s.yt);
                        // SAFETY: this image's slice `dd`, row `hh`: written by this block
                        // alone (the caller's contract covers the image).
                        ok &= unsafe {
                            rows::outputs(&s.m, (rows_b, shape.cp), &flat, &seg, bufs, y)?
                        };
                    }
                    Ok(ok)
                })
            })
        };
        let done = if split && blocks.len() > 1 {
            blocks.par_iter().map(block).collect::<Result<Vec<_>>>()?
        } else {
            blocks.iter().map(block).collect::<Result<Vec<_>>>()?
        };
        finite &= done.iter().all(|&f| f);
    }
    recycle_scratch(v);
    Ok(finite)
}

/// Input slice `src` of the image `x`, zero-padded, transformed window by window into
/// slot `slot` of the ring `v` (`per_e` values per position).
fn slice(
    x: &[f32],
    p: &Conv3dParams,
    g: &Grid,
    (src, slot): (usize, usize),
    columns: &mut Vec<f32>,
    (v, per_e): (&mut [f32], usize),
) -> Result<()> {
    let ci = p.c_in;
    let [d, h, w] = p.input;
    let [_, ph, pw] = p.padding;
    // The padded slice's positions (and two past its end, zeros), channels side by side.
    let len = (g.hp * g.wp + 2) * ci;
    grow(columns, len)?;
    let columns = &mut columns[..len];
    columns.fill(0.0);
    for hh in 0..h {
        let from = &x[(src * h + hh) * w..];
        let to = &mut columns[((hh + ph) * g.wp + pw) * ci..];
        transpose_into(from, d * h * w, (ci, w), to, ci);
    }
    windows_of(columns, ci, (g.slot, slot * g.slot, per_e / ci), v);
    Ok(())
}

#[cfg(test)]
#[path = "conv3d_winograd_tests.rs"]
mod tests;
