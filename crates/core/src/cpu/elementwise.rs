//! Elementwise unary ops.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{simd, PAR_CHUNK};
use crate::backend::UnaryOp;
use crate::host;
use crate::Result;

fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Result<Vec<f32>> {
    // SAFETY: the chunks of `out` and `x` pair up one for one, and each value is written.
    unsafe {
        host::written(x.len(), |out| {
            out.par_chunks_mut(PAR_CHUNK)
                .zip(x.par_chunks(PAR_CHUNK))
                .for_each(|(o, i)| each(o, i, &f));
        })
    }
}

/// `o[k] = f(i[k])`, with the processor's widest vectors ([`simd`]).
fn each<F: Fn(f32) -> f32>(o: &mut [MaybeUninit<f32>], i: &[f32], f: &F) {
    simd(|| {
        o.iter_mut()
            .zip(i)
            .for_each(|(o, &v)| *o = MaybeUninit::new(f(v)))
    })
}

pub fn unary(x: &[f32], op: UnaryOp) -> Result<Vec<f32>> {
    match op {
        UnaryOp::Neg => map(x, |v| -v),
        UnaryOp::Exp => map(x, f32::exp),
        UnaryOp::Log => map(x, f32::ln),
        UnaryOp::Sqrt => map(x, f32::sqrt),
        UnaryOp::Abs => map(x, f32::abs),
        UnaryOp::Relu => map(x, |v| if v > 0.0 { v } else { 0.0 }),
        UnaryOp::LeakyRelu(s) => map(x, move |v| if v > 0.0 { v } else { s * v }),
        UnaryOp::Sigmoid => map(x, |v| 1.0 / (1.0 + (-v).exp())),
        UnaryOp::Tanh => map(x, f32::tanh),
        UnaryOp::Affine { mul, add } => map(x, move |v| mul * v + add),
        // Squares (batch norm's variance, squared errors) and their gradients' first
        // powers are the common cases: a multiply is exact and far cheaper than powf,
        // which took an eighth of a small detector's training step.
        UnaryOp::Powf(2.0) => map(x, |v| v * v),
        UnaryOp::Powf(1.0) => map(x, |v| v),
        UnaryOp::Powf(p) => map(x, move |v| v.powf(p)),
        UnaryOp::Step => map(x, |v| if v > 0.0 { 1.0 } else { 0.0 }),
        UnaryOp::Sign => map(x, |v| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                0.0
            }
        }),
        UnaryOp::Recip => map(x, |v| 1.0 / v),
        UnaryOp::RDiv(c) => map(x, move |v| c / v),
        // max then min, as PyTorch's clamp: a NaN stays NaN.
        UnaryOp::Clamp { min, max } => {
            map(x, move |v| if v.is_nan() { v } else { v.max(min).min(max) })
        }
        UnaryOp::Between { lo, hi } => map(x, move |v| if v > lo && v < hi { 1.0 } else { 0.0 }),
        UnaryOp::Silu => map(x, |v| v / (1.0 + (-v).exp())),
        UnaryOp::SiluGrad => map(x, |v| {
            let s = 1.0 / (1.0 + (-v).exp());
            s * (1.0 + v * (1.0 - s))
        }),
        UnaryOp::Hardswish => map(x, |v| v * (v + 3.0).clamp(0.0, 6.0) / 6.0),
        UnaryOp::HardswishGrad => map(x, |v| {
            if v < -3.0 {
                0.0
            } else if v <= 3.0 {
                v / 3.0 + 0.5
            } else {
                1.0
            }
        }),
        UnaryOp::Hardsigmoid => map(x, |v| (v + 3.0).clamp(0.0, 6.0) / 6.0),
        UnaryOp::NonFinite => map(x, |v| if v.is_finite() { 0.0 } else { 1.0 }),
    }
}
