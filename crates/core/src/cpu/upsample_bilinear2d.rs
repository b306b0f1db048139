//! Bilinear resizing (PyTorch's `mode='bilinear'`): each output cell mixes the four input
//! cells its row and column taps name ([`Bilinear2dParams::taps`]).

use rayon::prelude::*;

use crate::backend::Bilinear2dParams;
use crate::host;
use crate::Result;

/// One axis's taps for every output index: the two input cells and their weights. They
/// depend only on the index, so they are computed once per call, not per plane.
fn axis(p: &Bilinear2dParams, out: usize, len: usize, scale: f32) -> Vec<(usize, usize, f32, f32)> {
    (0..out)
        .map(|i| {
            let (i0, i1, l) = p.taps(i, len, scale);
            (i0, i1, 1.0 - l, l)
        })
        .collect()
}

pub fn forward(x: &[f32], p: &Bilinear2dParams) -> Result<Vec<f32>> {
    let (hw, ohw) = (p.h * p.w, p.oh * p.ow);
    let mut out = host::zeros(p.planes * ohw)?;
    // No planes: the taps of a vast plane are never laid out.
    if ohw == 0 || p.planes == 0 {
        return Ok(out);
    }
    let rows = axis(p, p.oh, p.h, p.scale[0]);
    let cols = axis(p, p.ow, p.w, p.scale[1]);
    out.par_chunks_mut(ohw).enumerate().for_each(|(pl, y)| {
        let xp = &x[pl * hw..(pl + 1) * hw];
        for (oi, &(i0, i1, a0, a1)) in rows.iter().enumerate() {
            let (r0, r1) = (&xp[i0 * p.w..(i0 + 1) * p.w], &xp[i1 * p.w..(i1 + 1) * p.w]);
            for (oj, &(j0, j1, b0, b1)) in cols.iter().enumerate() {
                y[oi * p.ow + oj] =
                    a0 * (b0 * r0[j0] + b1 * r0[j1]) + a1 * (b0 * r1[j0] + b1 * r1[j1]);
            }
        }
    });
    Ok(out)
}

/// The adjoint of [`forward`]: each output gradient is scattered to its four taps.
pub fn backward(gy: &[f32], p: &Bilinear2dParams) -> Result<Vec<f32>> {
    let (hw, ohw) = (p.h * p.w, p.oh * p.ow);
    let mut gx = host::zeros(p.planes * hw)?;
    if hw == 0 || p.planes == 0 {
        return Ok(gx);
    }
    let rows = axis(p, p.oh, p.h, p.scale[0]);
    let cols = axis(p, p.ow, p.w, p.scale[1]);
    gx.par_chunks_mut(hw).enumerate().for_each(|(pl, g)| {
        let gp = &gy[pl * ohw..(pl + 1) * ohw];
        for (oi, &(i0, i1, a0, a1)) in rows.iter().enumerate() {
            for (oj, &(j0, j1, b0, b1)) in cols.iter().enumerate() {
                let v = gp[oi * p.ow + oj];
                g[i0 * p.w + j0] += a0 * b0 * v;
                g[i0 * p.w + j1] += a0 * b1 * v;
                g[i1 * p.w + j0] += a1 * b0 * v;
                g[i1 * p.w + j1] += a1 * b1 * v;
            }
        }
    });
    Ok(gx)
}
