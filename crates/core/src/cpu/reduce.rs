//! Reductions of the middle axis of `[outer, len, inner]`. Sums accumulate in f64 so that
//! batch-norm statistics over large batches stay accurate.

use rayon::prelude::*;

use crate::backend::{ReduceOp, ReduceParams};
use crate::host;
use crate::Result;

fn sum_contiguous(x: &[f32]) -> f64 {
    if x.len() >= 1 << 16 {
        // Partial sums collected in order and added in order: rayon's own `sum` groups
        // them by work stealing, which makes the result differ from run to run.
        let partial: Vec<f64> = x
            .par_chunks(1 << 14)
            .map(|c| c.iter().map(|&v| v as f64).sum::<f64>())
            .collect();
        partial.iter().sum()
    } else {
        x.iter().map(|&v| v as f64).sum()
    }
}

fn max_contiguous(x: &[f32]) -> f32 {
    x.iter().fold(
        f32::NEG_INFINITY,
        |m, &v| if v > m || v.is_nan() { v } else { m },
    )
}

pub fn reduce(x: &[f32], p: &ReduceParams, op: ReduceOp) -> Result<Vec<f32>> {
    let ReduceParams { outer, len, inner } = *p;
    let mut out = host::zeros(outer * inner)?;
    if out.is_empty() {
        return Ok(out);
    }
    if inner == 1 {
        out.par_iter_mut().enumerate().for_each(|(o, v)| {
            let row = &x[o * len..(o + 1) * len];
            *v = match op {
                ReduceOp::Sum => sum_contiguous(row) as f32,
                ReduceOp::Max => max_contiguous(row),
            };
        });
        return Ok(out);
    }
    out.par_chunks_mut(inner).enumerate().for_each(|(o, orow)| {
        let base = o * len * inner;
        match op {
            ReduceOp::Sum => {
                let mut acc = vec![0.0f64; inner];
                for l in 0..len {
                    let row = &x[base + l * inner..base + (l + 1) * inner];
                    acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v as f64);
                }
                orow.iter_mut().zip(&acc).for_each(|(o, &a)| *o = a as f32);
            }
            ReduceOp::Max => {
                orow.fill(f32::NEG_INFINITY);
                for l in 0..len {
                    let row = &x[base + l * inner..base + (l + 1) * inner];
                    orow.iter_mut().zip(row).for_each(|(m, &v)| {
                        if v > *m || v.is_nan() {
                            *m = v
                        }
                    });
                }
            }
        }
    });
    Ok(out)
}
