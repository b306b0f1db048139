//! Fused optimizer updates (the reference for `shaders/optim.wgsl`).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::PAR_CHUNK;
use crate::backend::{AdamStep, SgdStep};
use crate::host;
use crate::Result;

/// One Adam update (see [`AdamStep`]): the new parameter and moments.
pub fn adam_step(
    p: &[f32],
    g: &[f32],
    m: &[f32],
    v: &[f32],
    s: &AdamStep,
) -> Result<[Vec<f32>; 3]> {
    let o = &s.opts;
    let step_size = o.lr / s.bias_correction1;
    let bc2_sqrt = s.bias_correction2.sqrt();
    let decay = 1.0 - o.lr * o.weight_decay;
    let one = |i: usize| {
        let mut grad = g[i];
        let mut param = p[i];
        if o.weight_decay != 0.0 {
            if o.decoupled {
                param *= decay;
            } else {
                grad += param * o.weight_decay;
            }
        }
        let m1 = m[i] + (grad - m[i]) * (1.0 - o.beta1);
        let v1 = v[i] * o.beta2 + grad * grad * (1.0 - o.beta2);
        let denom = v1.sqrt() / bc2_sqrt + o.eps;
        (param - step_size * m1 / denom, m1, v1)
    };
    let n = p.len();
    let (mut p1, mut m1, mut v1) = (host::zeros(n)?, host::zeros(n)?, host::zeros(n)?);
    p1.par_chunks_mut(PAR_CHUNK)
        .zip(m1.par_chunks_mut(PAR_CHUNK))
        .zip(v1.par_chunks_mut(PAR_CHUNK))
        .enumerate()
        .for_each(|(c, ((pc, mc), vc))| {
            for j in 0..pc.len() {
                (pc[j], mc[j], vc[j]) = one(c * PAR_CHUNK + j);
            }
        });
    Ok([p1, m1, v1])
}

/// One SGD update (see [`SgdStep`]): the new parameter, and with momentum the new buffer.
pub fn sgd_step(
    p: &[f32],
    g: &[f32],
    buf: Option<&[f32]>,
    s: &SgdStep,
) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
    let o = &s.opts;
    let d = |i: usize| g[i] + p[i] * o.weight_decay;
    let n = p.len();
    // Every value of each new buffer is computed from its index alone.
    let from = |f: &(dyn Fn(usize) -> f32 + Sync)| {
        // SAFETY: `par_iter_mut` visits every element once, and each is written.
        unsafe {
            host::written(n, |out| {
                out.par_iter_mut()
                    .enumerate()
                    .for_each(|(i, o)| *o = MaybeUninit::new(f(i)))
            })
        }
    };
    if o.momentum == 0.0 {
        return Ok((from(&|i| p[i] - o.lr * d(i))?, None));
    }
    let b = from(&|i| match buf {
        Some(b) => b[i] * o.momentum + d(i),
        None => d(i),
    })?;
    let p1 = from(&|i| {
        let step = if o.nesterov {
            d(i) + o.momentum * b[i]
        } else {
            b[i]
        };
        p[i] - o.lr * step
    })?;
    Ok((p1, Some(b)))
}
