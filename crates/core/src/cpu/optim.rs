//! Fused optimizer updates (the reference for `shaders/optim.wgsl`).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{simd, PAR_CHUNK};
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
            simd(|| {
                for j in 0..pc.len() {
                    (pc[j], mc[j], vc[j]) = one(c * PAR_CHUNK + j);
                }
            })
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
    let n = p.len();
    // The writes below zip the outputs with these inputs: a shorter input would leave
    // values unwritten, so lengths are checked here, not trusted.
    assert!(
        g.len() == n && buf.is_none_or(|b| b.len() == n),
        "sgd_step: parameter, gradient and buffer lengths differ"
    );
    let chunks = || {
        p.par_chunks(PAR_CHUNK)
            .zip(g.par_chunks(PAR_CHUNK))
            .enumerate()
    };
    if o.momentum == 0.0 {
        // SAFETY: the chunks of the output pair one for one with those of `p` and `g`, and
        // every value is written.
        let p1 = unsafe {
            host::written(n, |out| {
                out.par_chunks_mut(PAR_CHUNK)
                    .zip(chunks())
                    .for_each(|(pc, (_, (p, g)))| {
                        simd(|| {
                            for ((o1, &p), &g) in pc.iter_mut().zip(p).zip(g) {
                                *o1 = MaybeUninit::new(p - o.lr * (g + p * o.weight_decay));
                            }
                        })
                    })
            })
        }?;
        return Ok((p1, None));
    }
    // One pass writes both the new buffer and the new parameter.
    // SAFETY: as above, for both outputs.
    let (p1, b1) = unsafe {
        host::written_pair(n, |pout, bout| {
            pout.par_chunks_mut(PAR_CHUNK)
                .zip(bout.par_chunks_mut(PAR_CHUNK))
                .zip(chunks())
                .for_each(|((pc, bc), (c, (p, g)))| {
                    let old = buf.map(|b| &b[c * PAR_CHUNK..][..p.len()]);
                    simd(|| {
                        for j in 0..p.len() {
                            let d = g[j] + p[j] * o.weight_decay;
                            let b = old.map_or(d, |old| old[j] * o.momentum + d);
                            let step = if o.nesterov { d + o.momentum * b } else { b };
                            bc[j] = MaybeUninit::new(b);
                            pc[j] = MaybeUninit::new(p[j] - o.lr * step);
                        }
                    })
                })
        })
    }?;
    Ok((p1, Some(b1)))
}
