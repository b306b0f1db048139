//! Broadcasting binary ops.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{simd, PAR_CHUNK};
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

/// `p` with size-1 dimensions dropped and each pair of neighbouring dimensions merged
/// where both inputs step through them as through one (contiguous together, or both
/// broadcast): a weight `[O, I, 3, 3]` times a per-channel `[O, 1, 1, 1]` scale becomes
/// `[O, 9·I]` times `[O, 1]`, one vectorised row per channel instead of a row of three
/// values, each with its own offset arithmetic (a fifth of a ResNet-18 inference, where
/// batch norm is folded into the convolution's weight, went on those offsets).
fn coalesce(p: &BinaryParams) -> BinaryParams {
    let mut out = BinaryParams {
        shape: Vec::with_capacity(p.shape.len()),
        a_strides: Vec::with_capacity(p.shape.len()),
        b_strides: Vec::with_capacity(p.shape.len()),
    };
    for ((&n, &sa), &sb) in p.shape.iter().zip(&p.a_strides).zip(&p.b_strides) {
        if n == 1 {
            continue;
        }
        match (
            out.shape.last_mut(),
            out.a_strides.last_mut(),
            out.b_strides.last_mut(),
        ) {
            (Some(last), Some(la), Some(lb)) if *la == sa * n && *lb == sb * n => {
                *last *= n;
                *la = sa;
                *lb = sb;
            }
            _ => {
                out.shape.push(n);
                out.a_strides.push(sa);
                out.b_strides.push(sb);
            }
        }
    }
    out
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
                simd(|| {
                    for i in 0..o.len() {
                        o[i] = MaybeUninit::new(f(a[i], b[i]));
                    }
                })
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
    let coalesced = coalesce(p);
    let p = &coalesced;
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
        BinaryOp::ReluBackward => apply(a, b, p, |g, y| if y > 0.0 { g } else { 0.0 }),
        BinaryOp::AddRelu => apply(a, b, p, |x, y| {
            let s = x + y;
            if s > 0.0 {
                s
            } else {
                0.0
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(shape: &[usize], a: &[usize], b: &[usize]) -> BinaryParams {
        BinaryParams {
            shape: shape.to_vec(),
            a_strides: a.to_vec(),
            b_strides: b.to_vec(),
        }
    }

    #[test]
    fn neighbouring_dimensions_merge_only_where_both_inputs_allow() {
        // A per-output-channel scale of a convolution weight: one row per channel.
        let c = coalesce(&params(&[4, 3, 3, 3], &[27, 9, 3, 1], &[1, 0, 0, 0]));
        assert_eq!(
            (c.shape, c.a_strides, c.b_strides),
            (vec![4, 27], vec![27, 1], vec![1, 0])
        );
        // A per-channel bias of NCHW activations: the channel axis stays apart.
        let c = coalesce(&params(&[2, 5, 7, 7], &[245, 49, 7, 1], &[0, 1, 0, 0]));
        assert_eq!(
            (c.shape, c.a_strides, c.b_strides),
            (vec![2, 5, 49], vec![245, 49, 1], vec![0, 1, 0])
        );
        // A transposed read stays as it is; size-1 dimensions go.
        let c = coalesce(&params(&[3, 1, 4], &[1, 0, 3], &[4, 4, 1]));
        assert_eq!(
            (c.shape, c.a_strides, c.b_strides),
            (vec![3, 4], vec![1, 3], vec![4, 1])
        );
    }

    /// The broadcasting paths against an index-by-index reference, shapes where
    /// coalescing merges some dimensions and not others.
    #[test]
    fn broadcasts_match_the_definition() {
        let cases = [
            (vec![4, 3, 3, 3], vec![4, 1, 1, 1]),
            (vec![2, 5, 7, 7], vec![1, 5, 1, 1]),
            (vec![3, 1, 4], vec![1, 2, 1]),
            (vec![6, 5], vec![6, 1]),
        ];
        for (sa, sb) in cases {
            let shape: Vec<usize> = sa.iter().zip(&sb).map(|(&x, &y)| x.max(y)).collect();
            let strides = |s: &[usize]| -> Vec<usize> {
                let full = contiguous_strides(s);
                s.iter()
                    .zip(full)
                    .map(|(&n, st)| if n == 1 { 0 } else { st })
                    .collect()
            };
            let p = params(&shape, &strides(&sa), &strides(&sb));
            let a: Vec<f32> = (0..numel(&sa)).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..numel(&sb)).map(|i| i as f32 + 1.0).collect();
            let got = binary(&a, &b, &p, BinaryOp::Sub).unwrap();
            let out_strides = contiguous_strides(&shape);
            for (i, &g) in got.iter().enumerate() {
                let (mut ia, mut ib, mut rem) = (0, 0, i);
                let strides = out_strides.iter().zip(&p.a_strides).zip(&p.b_strides);
                for ((&os, &sa), &sb) in strides {
                    let idx = rem / os;
                    rem %= os;
                    ia += idx * sa;
                    ib += idx * sb;
                }
                assert_eq!(g, a[ia] - b[ib], "{sa:?} - {sb:?} at {i}");
            }
        }
    }

    /// The fused sum and ReLU gives what the sum and then ReLU give, bit for bit, with a
    /// broadcast operand, signed zeros, infinities and NaN (which ReLU maps to 0).
    #[test]
    fn add_relu_is_relu_of_the_sum() {
        let special = [
            0.0,
            -0.0,
            1.5,
            -1.5,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        let a: Vec<f32> = special.iter().flat_map(|&x| [x; 7]).collect();
        let p = params(&[7, 7], &[7, 1], &[0, 1]);
        let got = binary(&a, &special, &p, BinaryOp::AddRelu).unwrap();
        let sum = binary(&a, &special, &p, BinaryOp::Add).unwrap();
        for (i, (&g, &s)) in got.iter().zip(&sum).enumerate() {
            let want = if s > 0.0 { s } else { 0.0 };
            assert_eq!(g.to_bits(), want.to_bits(), "{} + {}", a[i], special[i % 7]);
        }
    }
}
