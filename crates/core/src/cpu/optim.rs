//! Fused optimizer updates (the reference for `shaders/optim.wgsl`).

use rayon::prelude::*;

use super::PAR_CHUNK;
use crate::backend::{AdamStep, SgdStep};

/// One Adam update (see [`AdamStep`]): the new parameter and moments.
pub fn adam_step(p: &[f32], g: &[f32], m: &[f32], v: &[f32], s: &AdamStep) -> [Vec<f32>; 3] {
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
    let (mut p1, mut m1, mut v1) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    p1.par_chunks_mut(PAR_CHUNK)
        .zip(m1.par_chunks_mut(PAR_CHUNK))
        .zip(v1.par_chunks_mut(PAR_CHUNK))
        .enumerate()
        .for_each(|(c, ((pc, mc), vc))| {
            for j in 0..pc.len() {
                (pc[j], mc[j], vc[j]) = one(c * PAR_CHUNK + j);
            }
        });
    [p1, m1, v1]
}

/// One SGD update (see [`SgdStep`]): the new parameter, and with momentum the new buffer.
pub fn sgd_step(
    p: &[f32],
    g: &[f32],
    buf: Option<&[f32]>,
    s: &SgdStep,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let o = &s.opts;
    let d = |i: usize| g[i] + p[i] * o.weight_decay;
    if o.momentum == 0.0 {
        return (
            p.par_iter()
                .enumerate()
                .map(|(i, &w)| w - o.lr * d(i))
                .collect(),
            None,
        );
    }
    let b: Vec<f32> = (0..p.len())
        .into_par_iter()
        .map(|i| match buf {
            Some(b) => b[i] * o.momentum + d(i),
            None => d(i),
        })
        .collect();
    let p1 = p
        .par_iter()
        .enumerate()
        .map(|(i, &w)| {
            let step = if o.nesterov {
                d(i) + o.momentum * b[i]
            } else {
                b[i]
            };
            w - o.lr * step
        })
        .collect();
    (p1, Some(b))
}
