//! Batch norm's per-channel primitives: the sums behind its statistics and gradients, and
//! the affine map that normalises (forward) or forms the input gradient (backward). Each
//! is one pass over memory where the composed form took four to ten.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::reduce::fold_halves;
use super::{simd, PAR_CHUNK};
use crate::backend::ChannelParams;
use crate::host;
use crate::Result;

/// Planes (one `inner` run of one channel of one batch entry) per rayon task: tasks of at
/// least `PAR_CHUNK` values, whatever the split between planes and their length.
fn planes_per_task(p: &ChannelParams) -> usize {
    (PAR_CHUNK / p.inner.max(1)).max(1)
}

/// Interleaved f64 sums per plane: one running sum waits out each add's latency; eight
/// independent ones vectorise (sixteen measured no faster: the pass is memory-bound).
const LANES: usize = 8;

/// `Σ a` and `Σ (a − ca)(b − cb)` of one plane, in [`LANES`] lanes.
fn plane_sums(a: &[f32], b: Option<(&[f32], f32, f32)>) -> (f64, f64) {
    let mut s1 = [0.0f64; LANES];
    let a_lanes = a.chunks_exact(LANES);
    let a_rest = a_lanes.remainder();
    let Some((b, ca, cb)) = b else {
        for c in a_lanes {
            s1.iter_mut().zip(c).for_each(|(s, &v)| *s += v as f64);
        }
        return (
            fold_halves(s1) + a_rest.iter().map(|&v| v as f64).sum::<f64>(),
            0.0,
        );
    };
    let mut s2 = [0.0f64; LANES];
    let b_lanes = b.chunks_exact(LANES);
    let b_rest = b_lanes.remainder();
    for (al, bl) in a_lanes.zip(b_lanes) {
        for l in 0..LANES {
            s1[l] += al[l] as f64;
            s2[l] += ((al[l] - ca) * (bl[l] - cb)) as f64;
        }
    }
    let (mut t1, mut t2) = (fold_halves(s1), fold_halves(s2));
    for (&va, &vb) in a_rest.iter().zip(b_rest) {
        t1 += va as f64;
        t2 += ((va - ca) * (vb - cb)) as f64;
    }
    (t1, t2)
}

/// See [`crate::backend::Backend::channel_sums`].
pub fn channel_sums(a: &[f32], b: Option<(&[f32], &[f32])>, p: &ChannelParams) -> Result<Vec<f32>> {
    let (c, inner) = (p.channels, p.inner);
    let per = planes_per_task(p);
    let task = per * inner.max(1);
    // Per-plane partial sums, in plane order, then added per channel in batch order: the
    // same result whatever the thread count.
    let partial: Vec<Vec<(f64, f64)>> = a
        .par_chunks(task)
        .enumerate()
        .map(|(t, at)| {
            at.chunks(inner.max(1))
                .enumerate()
                .map(|(j, ap)| {
                    let q = t * per + j;
                    let ch = q % c;
                    let bp = b.map(|(b, centers)| {
                        (&b[q * inner..][..inner], centers[ch], centers[c + ch])
                    });
                    simd(|| plane_sums(ap, bp))
                })
                .collect()
        })
        .collect();
    let mut sums = vec![(0.0f64, 0.0f64); c];
    for (q, &(s1, s2)) in partial.iter().flatten().enumerate() {
        let s = &mut sums[q % c];
        s.0 += s1;
        s.1 += s2;
    }
    let mut out = host::with_capacity(if b.is_some() { 2 * c } else { c })?;
    out.extend(sums.iter().map(|s| s.0 as f32));
    if b.is_some() {
        out.extend(sums.iter().map(|s| s.1 as f32));
    }
    Ok(out)
}

/// See [`crate::backend::Backend::channel_affine`].
pub fn channel_affine(
    a: &[f32],
    b: Option<&[f32]>,
    coef: &[f32],
    p: &ChannelParams,
) -> Result<Vec<f32>> {
    let (c, inner) = (p.channels, p.inner.max(1));
    let per = planes_per_task(p);
    let task = per * inner;
    // The planes of task `t`.
    let planes = |t: usize, ot: &mut [MaybeUninit<f32>]| {
        for (j, op) in ot.chunks_mut(inner).enumerate() {
            let q = t * per + j;
            let (ch, at) = (q % c, &a[q * inner..][..op.len()]);
            match b {
                None => {
                    let (k, s) = (coef[ch], coef[c + ch]);
                    for (o, &v) in op.iter_mut().zip(at) {
                        *o = MaybeUninit::new(v * k + s);
                    }
                }
                Some(b) => {
                    let (ka, kb) = (coef[ch], coef[c + ch]);
                    let (cb, s) = (coef[2 * c + ch], coef[3 * c + ch]);
                    let bt = &b[q * inner..][..op.len()];
                    for ((o, &va), &vb) in op.iter_mut().zip(at).zip(bt) {
                        *o = MaybeUninit::new(va * ka + (vb - cb) * kb + s);
                    }
                }
            }
        }
    };
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(task)
            .enumerate()
            .for_each(|(t, ot)| simd(|| planes(t, ot)))
    };
    // SAFETY: the tasks' chunks cover the output and each plane's values are all written.
    unsafe { host::written(p.len(), fill) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(outer: usize, channels: usize, inner: usize) -> ChannelParams {
        ChannelParams {
            outer,
            channels,
            inner,
        }
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 250.0 - 1.5
            })
            .collect()
    }

    /// Plain loops over `[outer, C, inner]`, for shapes whose planes are split across
    /// tasks (inner = 1), span several tasks (long planes) and leave a remainder of lanes.
    #[test]
    fn sums_and_affine_match_plain_loops() {
        for (outer, c, inner) in [(3, 5, 1), (2, 3, 20_001), (4, 7, 13), (1, 2, 9)] {
            let p = params(outer, c, inner);
            let (a, b) = (values(p.len(), 1), values(p.len(), 7));
            let centers = values(2 * c, 3);
            let at = |v: &[f32], n: usize, ch: usize, i: usize| v[(n * c + ch) * inner + i];
            let sums = channel_sums(&a, Some((&b, &centers)), &p).unwrap();
            let plain = channel_sums(&a, None, &p).unwrap();
            let coef = values(4 * c, 5);
            let y2 = channel_affine(&a, None, &coef[..2 * c], &p).unwrap();
            let y3 = channel_affine(&a, Some(&b), &coef, &p).unwrap();
            for ch in 0..c {
                let (mut s1, mut s2) = (0.0f64, 0.0f64);
                for n in 0..outer {
                    for i in 0..inner {
                        let (va, vb) = (at(&a, n, ch, i), at(&b, n, ch, i));
                        s1 += va as f64;
                        s2 += ((va - centers[ch]) * (vb - centers[c + ch])) as f64;
                        let want2 = va * coef[ch] + coef[c + ch];
                        let want3 = va * coef[ch]
                            + (vb - coef[2 * c + ch]) * coef[c + ch]
                            + coef[3 * c + ch];
                        assert_eq!(at(&y2, n, ch, i), want2);
                        assert_eq!(at(&y3, n, ch, i), want3);
                    }
                }
                let close = |x: f32, y: f64| (x as f64 - y).abs() <= 1e-5 * (1.0 + y.abs());
                assert!(
                    close(sums[ch], s1) && close(plain[ch], s1),
                    "{p:?} sum {ch}"
                );
                assert!(close(sums[c + ch], s2), "{p:?} centred sum {ch}");
            }
            assert_eq!((sums.len(), plain.len()), (2 * c, c));
        }
    }
}
