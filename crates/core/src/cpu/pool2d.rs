//! Max and average pooling (PyTorch's window and divisor rules).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::by_cpu;
use crate::backend::{Pool2dParams, Resize2dParams};
use crate::host;
use crate::Result;

/// Window `[start, end)` of output index `o` along an axis (taps 1 apart), clipped to the
/// input, and its length clipped to input + end padding, which `count_include_pad` divides
/// by.
#[inline]
fn window(
    o: usize,
    stride: usize,
    pad: usize,
    pad_end: usize,
    k: usize,
    len: usize,
) -> (usize, usize, usize) {
    let start = o as i128 * stride as i128 - pad as i128;
    let end_padded = (start + k as i128).min(len as i128 + pad_end as i128);
    let padded_len = (end_padded - start) as usize;
    let s = start.max(0) as usize;
    let e = end_padded.clamp(0, len as i128) as usize;
    (s, e.max(s), padded_len)
}

/// The input indices of output `o`'s taps along an axis (`dilation` apart), inside the
/// input. Only the taps that land inside are visited, so a window far wider than the
/// input (a kernel of 2^62 with as much padding) costs no more than the input.
#[inline]
fn taps(
    o: usize,
    stride: usize,
    pad: usize,
    k: usize,
    d: usize,
    len: usize,
) -> impl Iterator<Item = usize> {
    let start = o as i128 * stride as i128 - pad as i128;
    let d = d.max(1) as i128;
    // First tap at or after 0, last before len.
    let first = if start < 0 { (-start + d - 1) / d } else { 0 };
    let last = if (len as i128) > start {
        ((len as i128 - 1 - start) / d + 1).min(k as i128)
    } else {
        0
    };
    (first..last.max(first)).map(move |t| (start + t * d) as usize)
}

// The planes' loops run as baseline code unless they dispatch on the processor's vector
// width themselves, by name (`max_grad_plane`): a closure run through `simd` from here
// was not inlined into its AVX-512 copy.
//
// The planes go to the threads in jobs of at least [`JOB_VALUES`] values, each with one
// scratch from `init` (a max pooling's band): the sliding-window classifier's 10 816
// planes of 10 × 10 took 1.0 ms to pool, a fifth of it in allocating and freeing a band
// per plane.
fn planes_in_parallel<S>(
    out: &mut [f32],
    plane: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [f32]) + Sync,
) {
    if plane > 0 {
        out.par_chunks_mut(plane)
            .with_min_len(per_job(plane))
            .enumerate()
            .for_each_init(init, |s, (i, o)| f(s, i, o));
    }
}

/// Values a job of planes holds at least ([`planes_in_parallel`]).
const JOB_VALUES: usize = 1 << 14;

/// Planes of `plane` values per job.
fn per_job(plane: usize) -> usize {
    (JOB_VALUES / plane.max(1)).max(1)
}

/// `planes` planes of `plane` values that `f(scratch, i, plane)` accumulates into, each
/// cleared by the thread that then fills it, while it is cached, rather than the whole
/// gradient on one core first (`host::zeros`); jobs and scratch as in
/// [`planes_in_parallel`].
fn planes_from_zero<S>(
    planes: usize,
    plane: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [f32]) + Sync,
) -> Result<Vec<f32>> {
    let fill = |out: &mut [MaybeUninit<f32>]| {
        if plane > 0 {
            out.par_chunks_mut(plane)
                .with_min_len(per_job(plane))
                .enumerate()
                .for_each_init(init, |s, (i, o)| {
                    o.fill(MaybeUninit::new(0.0));
                    // SAFETY: every value of the chunk was just written.
                    f(s, i, unsafe {
                        &mut *(o as *mut [MaybeUninit<f32>] as *mut [f32])
                    })
                });
        }
    };
    // SAFETY: the chunks cover the output and each is cleared whole.
    unsafe { host::written(planes * plane, fill) }
}

/// Each output index's taps along an axis as (first input index, count), `d` apart:
/// computed once per call, not per output cell and plane, because [`taps`]' wide
/// arithmetic (128-bit divisions) took a tenth of a LeNet training step.
fn axis_taps(
    n_out: usize,
    stride: usize,
    pad: usize,
    k: usize,
    d: usize,
    len: usize,
) -> Vec<(usize, usize)> {
    (0..n_out)
        .map(|o| {
            let mut t = taps(o, stride, pad, k, d, len);
            t.next().map_or((0, 0), |first| (first, 1 + t.count()))
        })
        .collect()
}

/// The two axes' taps of a max pooling.
struct Windows {
    rows: Vec<(usize, usize)>,
    cols: Vec<(usize, usize)>,
    dilation: [usize; 2],
    w: usize,
}

impl Windows {
    fn new(p: &Pool2dParams) -> Windows {
        let axis = |a: usize, n_out: usize, len: usize| {
            axis_taps(
                n_out,
                p.stride[a],
                p.padding[a],
                p.kernel[a],
                p.dilation[a],
                len,
            )
        };
        Windows {
            rows: axis(0, p.oh, p.h),
            cols: axis(1, p.ow, p.w),
            dilation: [p.dilation[0].max(1), p.dilation[1].max(1)],
            w: p.w,
        }
    }

    /// Flat index (within the plane) of the window's maximum: the first one in scan
    /// order, or a NaN, as PyTorch does: the definition [`Windows::argmax_row`] is tested
    /// against, and its way for windows of more than u32::MAX rows.
    fn argmax(&self, x: &[f32], oi: usize, oj: usize) -> Option<usize> {
        let ((i0, ni), (j0, nj)) = (self.rows[oi], self.cols[oj]);
        if ni == 0 || nj == 0 {
            return None;
        }
        // Starting from the first tap rather than from "none yet" keeps the loop free of
        // an Option test per tap; the first tap then compares equal to itself.
        let mut best = i0 * self.w + j0;
        let mut best_v = x[best];
        for ti in 0..ni {
            let row = (i0 + ti * self.dilation[0]) * self.w;
            for tj in 0..nj {
                let at = row + j0 + tj * self.dilation[1];
                let v = x[at];
                if v > best_v || (v.is_nan() && !best_v.is_nan()) {
                    best = at;
                    best_v = v;
                }
            }
        }
        Some(best)
    }

    /// Calls `found(oj, flat index)` with the arg-max of each window of output row `oi`
    /// that holds an input cell, the same one as a scan of the window in row-major order
    /// (the first maximum, or the first NaN). The window rows are folded into a band
    /// first, a branch-free pass over whole rows that keeps each column's maximum and the
    /// first window row holding it; the columns' taps then compare (value, row). A scan per
    /// window, with a data-dependent branch per tap, took a fifth of a LeNet training step.
    #[inline(always)]
    fn argmax_row(
        &self,
        x: &[f32],
        oi: usize,
        band: &mut Band,
        mut found: impl FnMut(usize, usize),
    ) {
        let (i0, ni) = self.rows[oi];
        if ni == 0 {
            return;
        }
        if u32::try_from(ni).is_err() {
            for oj in 0..self.cols.len() {
                if let Some(i) = self.argmax(x, oi, oj) {
                    found(oj, i);
                }
            }
            return;
        }
        let w = self.w;
        band.value.copy_from_slice(&x[i0 * w..(i0 + 1) * w]);
        band.row.fill(0);
        for ti in 1..ni {
            let r = (i0 + ti * self.dilation[0]) * w;
            // Blended through bit masks: as `if`s the compiler branched, and random data
            // mispredicts half the branches.
            let ti = ti as u32;
            for ((bv, br), &v) in band.value.iter_mut().zip(&mut band.row).zip(&x[r..r + w]) {
                let take = (v > *bv) | (v.is_nan() & !bv.is_nan());
                let m = (take as u32).wrapping_neg();
                *bv = f32::from_bits((v.to_bits() & m) | (bv.to_bits() & !m));
                *br = (ti & m) | (*br & !m);
            }
        }
        let (value, row) = (&band.value, &band.row);
        let dw = self.dilation[1];
        for (oj, &(j0, nj)) in self.cols.iter().enumerate() {
            if nj == 0 {
                continue;
            }
            // The best so far stays in registers: reading `value[best]` back each tap made
            // every comparison wait for the previous one's load. Selects, not a branch:
            // with a branch on random data, the backward at ResNet's stem took 5-6 times
            // the forward's time, with selects 2.5-3.
            let (mut best, mut j) = (j0, j0);
            let (mut b, mut br) = (value[j0], row[j0]);
            for _ in 1..nj {
                j += dw;
                let (v, r) = (value[j], row[j]);
                let tie = (v == b) | (v.is_nan() & b.is_nan());
                let take = (v > b) | (v.is_nan() & !b.is_nan()) | (tie & (r < br));
                let (m, wide) = ((take as u32).wrapping_neg(), (take as usize).wrapping_neg());
                best = (j & wide) | (best & !wide);
                b = f32::from_bits((v.to_bits() & m) | (b.to_bits() & !m));
                br = (r & m) | (br & !m);
            }
            found(oj, (i0 + br as usize * self.dilation[0]) * w + best);
        }
    }
}

/// One output row's folded window rows: per input column, the maximum (or first NaN) and
/// the window row it was first met in (u32, the values' width, so the fold vectorises).
struct Band {
    value: Vec<f32>,
    row: Vec<u32>,
}

impl Band {
    fn new(w: usize) -> Band {
        Band {
            value: vec![0.0; w],
            row: vec![0; w],
        }
    }
}

pub fn max_forward(x: &[f32], p: &Pool2dParams) -> Result<Vec<f32>> {
    let (hw, ohw) = (p.h * p.w, p.oh * p.ow);
    let mut out = host::zeros(p.planes * ohw)?;
    let win = Windows::new(p);
    let [dh, dw] = win.dilation;
    // Each output row's window rows are folded into one band first, a vectorised pass
    // over whole rows; the columns' taps then read the band. A scan per window read every
    // value kh·kw times with a branch each.
    planes_in_parallel(
        &mut out,
        ohw,
        || vec![0.0; p.w],
        |band, pl, y| {
            let xp = &x[pl * hw..(pl + 1) * hw];
            for (oi, y_row) in y.chunks_mut(p.ow).enumerate() {
                let (i0, ni) = win.rows[oi];
                if ni == 0 {
                    y_row.fill(f32::NEG_INFINITY);
                    continue;
                }
                band.copy_from_slice(&xp[i0 * p.w..(i0 + 1) * p.w]);
                for ti in 1..ni {
                    let r = (i0 + ti * dh) * p.w;
                    band.iter_mut()
                        .zip(&xp[r..r + p.w])
                        .for_each(|(b, &v)| *b = nan_max(*b, v));
                }
                for (v, &(j0, nj)) in y_row.iter_mut().zip(&win.cols) {
                    *v = if nj == 0 {
                        f32::NEG_INFINITY
                    } else {
                        let taps = band[j0..].iter().step_by(dw).take(nj);
                        taps.fold(band[j0], |m, &t| nan_max(m, t))
                    };
                }
            }
        },
    );
    Ok(out)
}

/// The larger of two values, or NaN if either is one (PyTorch's max pooling propagates
/// NaN); a select, so whole rows of it vectorise.
#[inline]
fn nan_max(m: f32, v: f32) -> f32 {
    if v > m || v.is_nan() {
        v
    } else {
        m
    }
}

pub fn max_backward(x: &[f32], gy: &[f32], p: &Pool2dParams) -> Result<Vec<f32>> {
    let (hw, ohw) = (p.h * p.w, p.oh * p.ow);
    let win = Windows::new(p);
    planes_from_zero(
        p.planes,
        hw,
        || Band::new(p.w),
        |band, pl, g| {
            let (xp, gp) = (&x[pl * hw..(pl + 1) * hw], &gy[pl * ohw..(pl + 1) * ohw]);
            max_grad_plane(xp, gp, g, &win, band);
        },
    )
}

fn max_grad_plane(xp: &[f32], gp: &[f32], g: &mut [f32], win: &Windows, band: &mut Band) {
    by_cpu!(
        max_grad_plane_body(xp: &[f32], gp: &[f32], g: &mut [f32], win: &Windows, band: &mut Band),
        avx512: [],
        avx2: [],
        base: []
    )
}

/// One plane of [`max_backward`]: each output gradient added at its window's arg-max.
#[inline(always)]
fn max_grad_plane_body(xp: &[f32], gp: &[f32], g: &mut [f32], win: &Windows, band: &mut Band) {
    let ow = win.cols.len();
    for oi in 0..win.rows.len() {
        let gr = &gp[oi * ow..(oi + 1) * ow];
        win.argmax_row(xp, oi, band, |oj, i| g[i] += gr[oj]);
    }
}

/// Average pooling's windows per axis, `(start, end, padded length)` for each output
/// index, computed once per call (see [`axis_taps`]).
struct AvgWindows {
    rows: Vec<(usize, usize, usize)>,
    cols: Vec<(usize, usize, usize)>,
    count_include_pad: bool,
}

impl AvgWindows {
    fn new(p: &Pool2dParams) -> AvgWindows {
        let axis = |a: usize, n_out: usize, len: usize| -> Vec<_> {
            (0..n_out)
                .map(|o| {
                    window(
                        o,
                        p.stride[a],
                        p.padding[a],
                        p.padding_end[a],
                        p.kernel[a],
                        len,
                    )
                })
                .collect()
        };
        AvgWindows {
            rows: axis(0, p.oh, p.h),
            cols: axis(1, p.ow, p.w),
            count_include_pad: p.count_include_pad,
        }
    }

    /// The window's bounds and divisor for output `(oi, oj)`.
    #[inline]
    fn at(&self, oi: usize, oj: usize) -> (usize, usize, usize, usize, f32) {
        let ((h0, h1, ph), (w0, w1, pw)) = (self.rows[oi], self.cols[oj]);
        let div = if self.count_include_pad {
            ph as f64 * pw as f64
        } else {
            ((h1 - h0) * (w1 - w0)) as f64
        };
        (h0, h1, w0, w1, div.max(1.0) as f32)
    }
}

pub fn avg_forward(x: &[f32], p: &Pool2dParams) -> Result<Vec<f32>> {
    let (hw, ohw) = (p.h * p.w, p.oh * p.ow);
    let mut out = host::zeros(p.planes * ohw)?;
    let win = AvgWindows::new(p);
    planes_in_parallel(
        &mut out,
        ohw,
        || (),
        |_, pl, y| {
            let xp = &x[pl * hw..(pl + 1) * hw];
            for oi in 0..p.oh {
                for oj in 0..p.ow {
                    let (h0, h1, w0, w1, div) = win.at(oi, oj);
                    let s: f32 = (h0..h1)
                        .flat_map(|i| xp[i * p.w + w0..i * p.w + w1].iter())
                        .sum();
                    y[oi * p.ow + oj] = s / div;
                }
            }
        },
    );
    Ok(out)
}

pub fn avg_backward(gy: &[f32], p: &Pool2dParams) -> Result<Vec<f32>> {
    let (hw, ohw) = (p.h * p.w, p.oh * p.ow);
    let win = AvgWindows::new(p);
    planes_from_zero(
        p.planes,
        hw,
        || (),
        |_, pl, g| {
            let gp = &gy[pl * ohw..(pl + 1) * ohw];
            for oi in 0..p.oh {
                for oj in 0..p.ow {
                    let (h0, h1, w0, w1, div) = win.at(oi, oj);
                    let v = gp[oi * p.ow + oj] / div;
                    for i in h0..h1 {
                        g[i * p.w + w0..i * p.w + w1]
                            .iter_mut()
                            .for_each(|d| *d += v);
                    }
                }
            }
        },
    )
}

/// Max pooling's values and arg-max indices (flat within the plane, as f32).
pub fn max_with_indices(x: &[f32], p: &Pool2dParams) -> Result<(Vec<f32>, Vec<f32>)> {
    let (hw, ohw) = (p.h * p.w, p.oh * p.ow);
    let mut idx = host::zeros(p.planes * ohw)?;
    let win = Windows::new(p);
    planes_in_parallel(
        &mut idx,
        ohw,
        || Band::new(p.w),
        |band, pl, ix| {
            let xp = &x[pl * hw..(pl + 1) * hw];
            // Every window holds at least one input cell (the op checks the padding).
            for (oi, ix_row) in ix.chunks_mut(p.ow).enumerate() {
                win.argmax_row(xp, oi, band, |oj, i| ix_row[oj] = i as f32);
            }
        },
    );
    let mut y = host::zeros(idx.len())?;
    y.par_chunks_mut(ohw.max(1))
        .zip(idx.par_chunks(ohw.max(1)))
        .enumerate()
        .for_each(|(pl, (yp, ix))| {
            yp.iter_mut()
                .zip(ix)
                .for_each(|(v, &i)| *v = x[pl * hw + i as usize])
        });
    Ok((y, idx))
}

/// Writes each input value of a plane at its index in the zeroed output plane.
pub fn unpool(x: &[f32], idx: &[f32], p: &Resize2dParams) -> Result<Vec<f32>> {
    let (hw, ohw) = (p.h * p.w, p.oh * p.ow);
    let mut out = host::zeros(p.planes * ohw)?;
    planes_in_parallel(
        &mut out,
        ohw,
        || (),
        |_, pl, y| {
            for q in pl * hw..(pl + 1) * hw {
                y[idx[q] as usize] = x[q];
            }
        },
    );
    Ok(out)
}

/// The gradient of [`unpool`]: the output gradient read at each input's index.
pub fn unpool_backward(gy: &[f32], idx: &[f32], p: &Resize2dParams) -> Result<Vec<f32>> {
    let (hw, ohw) = (p.h * p.w, p.oh * p.ow);
    let mut gx = host::zeros(p.planes * hw)?;
    planes_in_parallel(
        &mut gx,
        hw,
        || (),
        |_, pl, g| {
            let gp = &gy[pl * ohw..(pl + 1) * ohw];
            for (q, d) in g.iter_mut().enumerate() {
                *d = gp[idx[pl * hw + q] as usize];
            }
        },
    );
    Ok(gx)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Max pooling's definition: each window's value at its arg-max (a NaN wins).
    fn by_window(x: &[f32], p: &Pool2dParams) -> Vec<f32> {
        let (hw, win) = (p.h * p.w, Windows::new(p));
        let mut out = Vec::new();
        for pl in 0..p.planes {
            let xp = &x[pl * hw..(pl + 1) * hw];
            for oi in 0..p.oh {
                for oj in 0..p.ow {
                    out.push(win.argmax(xp, oi, oj).map_or(f32::NEG_INFINITY, |i| xp[i]));
                }
            }
        }
        out
    }

    #[test]
    fn banded_max_pooling_and_its_gradient_match_the_window_scan() {
        // (h, w, kernel, stride, padding, padding_end, dilation)
        let cases = [
            (9, 11, [3, 3], [2, 2], [1, 1], [1, 1], [1, 1]),
            (8, 8, [2, 2], [2, 2], [0, 0], [0, 0], [1, 1]),
            (10, 7, [3, 2], [1, 3], [1, 0], [2, 1], [2, 1]),
            (5, 6, [2, 3], [3, 2], [0, 1], [1, 2], [1, 2]),
            (4, 4, [4, 4], [1, 1], [2, 2], [2, 2], [1, 1]),
        ];
        for (h, w, kernel, stride, padding, padding_end, dilation) in cases {
            let out = |len: usize, a: usize| {
                (len + padding[a] + padding_end[a] - dilation[a] * (kernel[a] - 1) - 1) / stride[a]
                    + 1
            };
            let p = Pool2dParams {
                planes: 3,
                h,
                w,
                oh: out(h, 0),
                ow: out(w, 1),
                kernel,
                stride,
                padding,
                padding_end,
                dilation,
                count_include_pad: false,
            };
            // Spread values with two NaNs in the window of several outputs, then values
            // with ties everywhere (0 and -0 compare equal), where the first maximum in
            // scan order must win.
            let mut spread: Vec<f32> = (0..3 * h * w)
                .map(|i| ((i * 37 + 11) % 23) as f32 - 11.0)
                .collect();
            spread[h * w + 4] = f32::NAN;
            spread[h * w + w + 5] = f32::NAN;
            spread[2 * h * w + w + 2] = f32::NAN;
            let ties: Vec<f32> = (0..3 * h * w)
                .map(|i| [0.0, -0.0, 1.0, 1.0, -2.0][(i * 7 + i / w) % 5])
                .collect();
            for x in [spread, ties] {
                let got = max_forward(&x, &p).unwrap();
                let want = by_window(&x, &p);
                assert_eq!(got.len(), want.len());
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        g == e || (g.is_nan() && e.is_nan()),
                        "{p:?} output {i}: {g} against {e}"
                    );
                }
                // The gradient goes to the scan's arg-max, and the indices are that one.
                let (hw, ohw) = (h * w, p.oh * p.ow);
                let gy: Vec<f32> = (0..3 * ohw).map(|i| 1.0 + i as f32).collect();
                let mut want_gx = vec![0.0; 3 * hw];
                let mut want_idx = Vec::new();
                let win = Windows::new(&p);
                for pl in 0..3 {
                    for oi in 0..p.oh {
                        for oj in 0..p.ow {
                            let at = win.argmax(&x[pl * hw..(pl + 1) * hw], oi, oj).unwrap();
                            want_gx[pl * hw + at] += gy[pl * ohw + oi * p.ow + oj];
                            want_idx.push(at as f32);
                        }
                    }
                }
                assert_eq!(max_backward(&x, &gy, &p).unwrap(), want_gx, "{p:?}");
                assert_eq!(max_with_indices(&x, &p).unwrap().1, want_idx, "{p:?}");
            }
        }
    }
}
