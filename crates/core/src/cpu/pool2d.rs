//! Max and average pooling (PyTorch's window and divisor rules).

use rayon::prelude::*;

use crate::backend::Pool2dParams;
use crate::host;
use crate::Result;

/// Window `[start, end)` of output index `o` along an axis, clipped to the input, and the
/// unclipped-to-input length used by `count_include_pad` (clipped to input + padding).
#[inline]
fn window(o: usize, stride: usize, pad: usize, k: usize, len: usize) -> (usize, usize, usize) {
    let start = (o * stride) as isize - pad as isize;
    let end_padded = (start + k as isize).min((len + pad) as isize);
    let padded_len = (end_padded - start) as usize;
    let s = start.max(0) as usize;
    let e = (end_padded.min(len as isize)).max(0) as usize;
    (s, e.max(s), padded_len)
}

fn planes_in_parallel(out: &mut [f32], plane: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if plane > 0 {
        out.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(i, o)| f(i, o));
    }
}

/// Flat index (within the plane) of the window's maximum: the first one in scan order,
/// or a NaN, as PyTorch does.
fn argmax(x: &[f32], p: &Pool2dParams, oi: usize, oj: usize) -> Option<usize> {
    let (h0, h1, _) = window(oi, p.stride[0], p.padding[0], p.kernel[0], p.h);
    let (w0, w1, _) = window(oj, p.stride[1], p.padding[1], p.kernel[1], p.w);
    let mut best: Option<usize> = None;
    let mut best_v = f32::NEG_INFINITY;
    for i in h0..h1 {
        for j in w0..w1 {
            let v = x[i * p.w + j];
            if best.is_none() || v > best_v || (v.is_nan() && !best_v.is_nan()) {
                best = Some(i * p.w + j);
                best_v = v;
            }
        }
    }
    best
}

pub fn max_forward(x: &[f32], p: &Pool2dParams) -> Result<Vec<f32>> {
    let (hw, ohw) = (p.h * p.w, p.oh * p.ow);
    let mut out = host::zeros(p.planes * ohw)?;
    planes_in_parallel(&mut out, ohw, |pl, y| {
        let xp = &x[pl * hw..(pl + 1) * hw];
        for oi in 0..p.oh {
            for oj in 0..p.ow {
                y[oi * p.ow + oj] = argmax(xp, p, oi, oj).map_or(f32::NEG_INFINITY, |i| xp[i]);
            }
        }
    });
    Ok(out)
}

pub fn max_backward(x: &[f32], gy: &[f32], p: &Pool2dParams) -> Result<Vec<f32>> {
    let (hw, ohw) = (p.h * p.w, p.oh * p.ow);
    let mut gx = host::zeros(p.planes * hw)?;
    planes_in_parallel(&mut gx, hw, |pl, g| {
        let xp = &x[pl * hw..(pl + 1) * hw];
        let gp = &gy[pl * ohw..(pl + 1) * ohw];
        for oi in 0..p.oh {
            for oj in 0..p.ow {
                if let Some(i) = argmax(xp, p, oi, oj) {
                    g[i] += gp[oi * p.ow + oj];
                }
            }
        }
    });
    Ok(gx)
}

/// The windows' bounds and divisor for output `(oi, oj)`.
#[inline]
fn avg_window(p: &Pool2dParams, oi: usize, oj: usize) -> (usize, usize, usize, usize, f32) {
    let (h0, h1, ph) = window(oi, p.stride[0], p.padding[0], p.kernel[0], p.h);
    let (w0, w1, pw) = window(oj, p.stride[1], p.padding[1], p.kernel[1], p.w);
    let div = if p.count_include_pad {
        ph * pw
    } else {
        (h1 - h0) * (w1 - w0)
    };
    (h0, h1, w0, w1, div.max(1) as f32)
}

pub fn avg_forward(x: &[f32], p: &Pool2dParams) -> Result<Vec<f32>> {
    let (hw, ohw) = (p.h * p.w, p.oh * p.ow);
    let mut out = host::zeros(p.planes * ohw)?;
    planes_in_parallel(&mut out, ohw, |pl, y| {
        let xp = &x[pl * hw..(pl + 1) * hw];
        for oi in 0..p.oh {
            for oj in 0..p.ow {
                let (h0, h1, w0, w1, div) = avg_window(p, oi, oj);
                let s: f32 = (h0..h1)
                    .flat_map(|i| xp[i * p.w + w0..i * p.w + w1].iter())
                    .sum();
                y[oi * p.ow + oj] = s / div;
            }
        }
    });
    Ok(out)
}

pub fn avg_backward(gy: &[f32], p: &Pool2dParams) -> Result<Vec<f32>> {
    let (hw, ohw) = (p.h * p.w, p.oh * p.ow);
    let mut gx = host::zeros(p.planes * hw)?;
    planes_in_parallel(&mut gx, hw, |pl, g| {
        let gp = &gy[pl * ohw..(pl + 1) * ohw];
        for oi in 0..p.oh {
            for oj in 0..p.ow {
                let (h0, h1, w0, w1, div) = avg_window(p, oi, oj);
                let v = gp[oi * p.ow + oj] / div;
                for i in h0..h1 {
                    g[i * p.w + w0..i * p.w + w1]
                        .iter_mut()
                        .for_each(|d| *d += v);
                }
            }
        }
    });
    Ok(gx)
}
