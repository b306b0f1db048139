//! Adaptive average pooling: output cell `i` averages input `[⌊i·H/OH⌋, ⌈(i+1)·H/OH⌉)`.

use rayon::prelude::*;

use crate::backend::Resize2dParams;
use crate::host;
use crate::Result;

#[inline]
fn bounds(i: usize, len: usize, out: usize) -> (usize, usize) {
    (i * len / out, ((i + 1) * len).div_ceil(out))
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
            let (h0, h1) = bounds(oi, p.h, p.oh);
            for oj in 0..p.ow {
                let (w0, w1) = bounds(oj, p.w, p.ow);
                let s: f32 = (h0..h1)
                    .flat_map(|i| xp[i * p.w + w0..i * p.w + w1].iter())
                    .sum();
                y[oi * p.ow + oj] = s / ((h1 - h0) * (w1 - w0)) as f32;
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
            let (h0, h1) = bounds(oi, p.h, p.oh);
            for oj in 0..p.ow {
                let (w0, w1) = bounds(oj, p.w, p.ow);
                let v = gp[oi * p.ow + oj] / ((h1 - h0) * (w1 - w0)) as f32;
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
