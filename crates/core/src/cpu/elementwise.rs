//! Elementwise unary ops.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{simd, PAR_CHUNK};
use crate::backend::UnaryOp;
use crate::host;
use crate::Result;

/// Where an op's values go: a new buffer ([`Fresh`]) or back over the input ([`Over`]).
/// Each op's function is written once ([`by_op`]) for both.
trait Apply {
    type Out;
    fn apply(self, f: impl Fn(f32) -> f32 + Sync) -> Self::Out;
}

struct Fresh<'a>(&'a [f32]);

impl Apply for Fresh<'_> {
    type Out = Result<Vec<f32>>;
    fn apply(self, f: impl Fn(f32) -> f32 + Sync) -> Result<Vec<f32>> {
        let x = self.0;
        // SAFETY: the chunks of `out` and `x` pair up one for one, and each value is
        // written.
        unsafe {
            host::written(x.len(), |out| {
                out.par_chunks_mut(PAR_CHUNK)
                    .zip(x.par_chunks(PAR_CHUNK))
                    .for_each(|(o, i)| each(o, i, &f));
            })
        }
    }
}

struct Over<'a>(&'a mut [f32]);

impl Apply for Over<'_> {
    type Out = ();
    fn apply(self, f: impl Fn(f32) -> f32 + Sync) {
        self.0
            .par_chunks_mut(PAR_CHUNK)
            .for_each(|c| simd(|| c.iter_mut().for_each(|v| *v = f(*v))));
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

/// `f` of every value, into a new buffer, in parallel chunks with the widest vectors.
pub(super) fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Result<Vec<f32>> {
    Fresh(x).apply(f)
}

pub fn unary(x: &[f32], op: UnaryOp) -> Result<Vec<f32>> {
    by_op(op, Fresh(x))
}

/// [`unary`] written over `x`.
pub fn unary_in_place(x: &mut [f32], op: UnaryOp) {
    by_op(op, Over(x))
}

/// `a[k] += b[k]`, in parallel chunks with the widest vectors.
pub fn add_in_place(a: &mut [f32], b: &[f32]) {
    a.par_chunks_mut(PAR_CHUNK)
        .zip(b.par_chunks(PAR_CHUNK))
        .for_each(|(a, b)| simd(|| a.iter_mut().zip(b).for_each(|(a, &b)| *a += b)));
}

fn by_op<A: Apply>(op: UnaryOp, x: A) -> A::Out {
    match op {
        UnaryOp::Neg => x.apply(|v| -v),
        UnaryOp::Exp => x.apply(f32::exp),
        UnaryOp::Log => x.apply(f32::ln),
        UnaryOp::Sqrt => x.apply(f32::sqrt),
        UnaryOp::Abs => x.apply(f32::abs),
        UnaryOp::Relu => x.apply(|v| if v > 0.0 { v } else { 0.0 }),
        UnaryOp::LeakyRelu(s) => x.apply(move |v| if v > 0.0 { v } else { s * v }),
        UnaryOp::Sigmoid => x.apply(|v| 1.0 / (1.0 + (-v).exp())),
        UnaryOp::Tanh => x.apply(f32::tanh),
        UnaryOp::Affine { mul, add } => x.apply(move |v| mul * v + add),
        // Squares (batch norm's variance, squared errors) and their gradients' first
        // powers are the common cases: a multiply is exact and far cheaper than powf,
        // which took an eighth of a small detector's training step.
        UnaryOp::Powf(2.0) => x.apply(|v| v * v),
        UnaryOp::Powf(1.0) => x.apply(|v| v),
        UnaryOp::Powf(p) => x.apply(move |v| v.powf(p)),
        UnaryOp::Step => x.apply(|v| if v > 0.0 { 1.0 } else { 0.0 }),
        UnaryOp::Sign => x.apply(|v| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                0.0
            }
        }),
        UnaryOp::Recip => x.apply(|v| 1.0 / v),
        UnaryOp::RDiv(c) => x.apply(move |v| c / v),
        // max then min, as PyTorch's clamp: a NaN stays NaN.
        UnaryOp::Clamp { min, max } => {
            x.apply(move |v| if v.is_nan() { v } else { v.max(min).min(max) })
        }
        UnaryOp::Between { lo, hi } => x.apply(move |v| if v > lo && v < hi { 1.0 } else { 0.0 }),
        UnaryOp::Silu => x.apply(|v| v / (1.0 + (-v).exp())),
        UnaryOp::SiluGrad => x.apply(|v| {
            let s = 1.0 / (1.0 + (-v).exp());
            s * (1.0 + v * (1.0 - s))
        }),
        UnaryOp::Hardswish => x.apply(|v| v * (v + 3.0).clamp(0.0, 6.0) / 6.0),
        UnaryOp::HardswishGrad => x.apply(|v| {
            if v < -3.0 {
                0.0
            } else if v <= 3.0 {
                v / 3.0 + 0.5
            } else {
                1.0
            }
        }),
        UnaryOp::Hardsigmoid => x.apply(|v| (v + 3.0).clamp(0.0, 6.0) / 6.0),
        UnaryOp::NonFinite => x.apply(|v| if v.is_finite() { 0.0 } else { 1.0 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_place_matches_a_fresh_buffer_bit_for_bit_for_every_op() {
        let ops = [
            UnaryOp::Neg,
            UnaryOp::Exp,
            UnaryOp::Log,
            UnaryOp::Sqrt,
            UnaryOp::Abs,
            UnaryOp::Relu,
            UnaryOp::LeakyRelu(0.1),
            UnaryOp::Sigmoid,
            UnaryOp::Tanh,
            UnaryOp::Affine {
                mul: 2.5,
                add: -1.0,
            },
            UnaryOp::Powf(2.0),
            UnaryOp::Powf(1.0),
            UnaryOp::Powf(0.5),
            UnaryOp::Step,
            UnaryOp::Sign,
            UnaryOp::Recip,
            UnaryOp::RDiv(3.0),
            UnaryOp::Clamp { min: 0.0, max: 6.0 },
            UnaryOp::Between { lo: -1.0, hi: 1.0 },
            UnaryOp::Silu,
            UnaryOp::SiluGrad,
            UnaryOp::Hardswish,
            UnaryOp::HardswishGrad,
            UnaryOp::Hardsigmoid,
            UnaryOp::NonFinite,
        ];
        // More than one parallel chunk, with the values that tell ops apart at the edges.
        let special = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            3.0,
            -3.0,
        ];
        let x: Vec<f32> = (0..PAR_CHUNK * 2 + 77)
            .map(|i| match special.get(i % 97) {
                Some(&s) => s,
                None => (i as f32 * 0.37).sin() * 8.0,
            })
            .collect();
        for op in ops {
            let fresh = unary(&x, op).unwrap();
            let mut over = x.clone();
            unary_in_place(&mut over, op);
            let same = fresh
                .iter()
                .zip(&over)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{op:?} in place differs from a fresh buffer");
        }
    }
}
