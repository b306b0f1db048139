//! Nearest-neighbour resizing: output cell `i` copies input `⌊i·H/OH⌋` (PyTorch's
//! `mode='nearest'`).

use rayon::prelude::*;

use crate::backend::Resize2dParams;
use crate::host;
use crate::Result;

#[inline]
fn src(i: usize, len: usize, out: usize) -> usize {
    (i * len / out).min(len - 1)
}

pub fn forward(x: &[f32], p: &Resize2dParams) -> Result<Vec<f32>> {
    let (hw, ohw) = (p.h * p.w, p.oh * p.ow);
    let mut out = host::zeros(p.planes * ohw)?;
    if ohw == 0 {
        return Ok(out);
    }
    out.par_chunks_mut(ohw).enumerate().for_each(|(pl, y)| {
        let xp = &x[pl * hw..(pl + 1) * hw];
        for oi in 0..p.oh {
            let row = src(oi, p.h, p.oh) * p.w;
            for oj in 0..p.ow {
                y[oi * p.ow + oj] = xp[row + src(oj, p.w, p.ow)];
            }
        }
    });
    Ok(out)
}

pub fn backward(gy: &[f32], p: &Resize2dParams) -> Result<Vec<f32>> {
    let (hw, ohw) = (p.h * p.w, p.oh * p.ow);
    let mut gx = host::zeros(p.planes * hw)?;
    if hw == 0 {
        return Ok(gx);
    }
    gx.par_chunks_mut(hw).enumerate().for_each(|(pl, g)| {
        let gp = &gy[pl * ohw..(pl + 1) * ohw];
        for oi in 0..p.oh {
            let row = src(oi, p.h, p.oh) * p.w;
            for oj in 0..p.ow {
                g[row + src(oj, p.w, p.ow)] += gp[oi * p.ow + oj];
            }
        }
    });
    Ok(gx)
}
