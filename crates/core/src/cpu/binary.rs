//! Broadcasting binary ops.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::PAR_CHUNK;
use crate::backend::{BinaryOp, BinaryParams};
use crate::host;
use crate::shape::{contiguous_strides, numel};
use crate::Result;

/// Offsets of `a` and `b` for the first element of output row `row` (rows run over all
/// dimensions but the last).
fn row_offsets(row: usize, p: &BinaryParams, out_strides: &[usize]) -> (usize, usize) {
    let mut rem = row * *p.shape.last().unwrap_or(&1);
    let (mut oa, mut ob) = (0, 0);
    for ((&os, &sa), &sb) in out_strides.iter().zip(&p.a_strides).zip(&p.b_strides) {
        let idx = rem / os;
        rem %= os;
        oa += idx * sa;
        ob += idx * sb;
    }
    (oa, ob)
}

fn apply(
    a: &[f32],
    b: &[f32],
    p: &BinaryParams,
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> Result<Vec<f32>> {
    let n = numel(&p.shape);
    // SAFETY: `fill` writes every output value: each branch covers `out` by chunks.
    unsafe { host::written(n, |out| fill(out, a, b, p, f)) }
}

/// Writes `f(a, b)` with broadcasting into every value of `out`.
fn fill(
    out: &mut [MaybeUninit<f32>],
    a: &[f32],
    b: &[f32],
    p: &BinaryParams,
    f: impl Fn(f32, f32) -> f32 + Sync,
) {
    let n = out.len();
    if n == 0 {
        return;
    }
    if a.len() == n && b.len() == n {
        out.par_chunks_mut(PAR_CHUNK)
            .zip(a.par_chunks(PAR_CHUNK).zip(b.par_chunks(PAR_CHUNK)))
            .for_each(|(o, (a, b))| {
                for i in 0..o.len() {
                    o[i] = MaybeUninit::new(f(a[i], b[i]));
                }
            });
        return;
    }
    if b.len() == 1 && a.len() == n {
        let s = b[0];
        out.par_chunks_mut(PAR_CHUNK)
            .zip(a.par_chunks(PAR_CHUNK))
            .for_each(|(o, a)| {
                o.iter_mut()
                    .zip(a)
                    .for_each(|(o, &v)| *o = MaybeUninit::new(f(v, s)))
            });
        return;
    }
    let inner = *p.shape.last().unwrap_or(&1);
    let (sa, sb) = (
        *p.a_strides.last().unwrap_or(&0),
        *p.b_strides.last().unwrap_or(&0),
    );
    let out_strides = contiguous_strides(&p.shape);
    let rows_per_chunk = (PAR_CHUNK / inner).max(1);
    out.par_chunks_mut(inner * rows_per_chunk)
        .enumerate()
        .for_each(|(chunk, o)| {
            for (r, orow) in o.chunks_mut(inner).enumerate() {
                let (oa, ob) = row_offsets(chunk * rows_per_chunk + r, p, &out_strides);
                let len = orow.len();
                // The common broadcasts (a bias along rows, a per-row scale) as plain
                // slices, so the loops vectorise; strided reads otherwise.
                match (sa, sb) {
                    (1, 1) => {
                        let (ar, br) = (&a[oa..oa + len], &b[ob..ob + len]);
                        for j in 0..len {
                            orow[j] = MaybeUninit::new(f(ar[j], br[j]));
                        }
                    }
                    (1, 0) => {
                        let (ar, bv) = (&a[oa..oa + len], b[ob]);
                        orow.iter_mut()
                            .zip(ar)
                            .for_each(|(o, &x)| *o = MaybeUninit::new(f(x, bv)));
                    }
                    (0, 1) => {
                        let (av, br) = (a[oa], &b[ob..ob + len]);
                        orow.iter_mut()
                            .zip(br)
                            .for_each(|(o, &y)| *o = MaybeUninit::new(f(av, y)));
                    }
                    _ => {
                        for (j, v) in orow.iter_mut().enumerate() {
                            *v = MaybeUninit::new(f(a[oa + j * sa], b[ob + j * sb]));
                        }
                    }
                }
            }
        });
}

pub fn binary(a: &[f32], b: &[f32], p: &BinaryParams, op: BinaryOp) -> Result<Vec<f32>> {
    match op {
        BinaryOp::Add => apply(a, b, p, |x, y| x + y),
        BinaryOp::Sub => apply(a, b, p, |x, y| x - y),
        BinaryOp::Mul => apply(a, b, p, |x, y| x * y),
        BinaryOp::Div => apply(a, b, p, |x, y| x / y),
        BinaryOp::Maximum => apply(a, b, p, |x, y| if x >= y || x.is_nan() { x } else { y }),
        BinaryOp::Minimum => apply(a, b, p, |x, y| if x <= y || x.is_nan() { x } else { y }),
        BinaryOp::Pow => apply(a, b, p, f32::powf),
        BinaryOp::Ge => apply(a, b, p, |x, y| if x >= y { 1.0 } else { 0.0 }),
        BinaryOp::Eq => apply(a, b, p, |x, y| if x == y { 1.0 } else { 0.0 }),
    }
}
