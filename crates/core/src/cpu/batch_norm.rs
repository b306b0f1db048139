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

/// `Σ a` and `Σ (a − ca)(b − cb)` of one plane, in [`LANES`] lanes; with a gate `(g, h)`,
/// `a` counts as zero where `b · g + h` is not positive (a fused ReLU's mask).
fn plane_sums(a: &[f32], b: Option<(&[f32], f32, f32)>, gate: Option<(f32, f32)>) -> (f64, f64) {
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
    match gate {
        None => centred(a, b, (ca, cb), None, |va, _| va),
        Some((g, h)) => centred(a, b, (ca, cb), gate, move |va, vb| {
            relu_mask(va, vb * g + h)
        }),
    }
}

/// The centred sums, `keep` applying the gate (if any) to each `a`: whole groups of lanes
/// with AVX where [`super::cpu_level`] allows, the rest (or all) by the plain loop.
#[inline(always)]
fn centred(
    a: &[f32],
    b: &[f32],
    centres: (f32, f32),
    gate: Option<(f32, f32)>,
    keep: impl Fn(f32, f32) -> f32,
) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if super::cpu_level() >= super::Level::Avx2 {
        // SAFETY: the processor has AVX2, hence AVX.
        let (s1, s2, done) = unsafe {
            match gate {
                Some(gate) => centred_lanes_avx::<true>(a, b, centres, gate),
                None => centred_lanes_avx::<false>(a, b, centres, (0.0, 0.0)),
            }
        };
        return rest_sums((s1, s2), &a[done..], &b[done..], centres, keep);
    }
    centred_sums(a, b, centres, keep)
}

/// `a` where the forward's value `y` was positive, else zero: ReLU's backward.
#[inline(always)]
fn relu_mask(a: f32, y: f32) -> f32 {
    if y > 0.0 {
        a
    } else {
        0.0
    }
}

/// ReLU as [`crate::backend::UnaryOp::Relu`] computes it.
#[inline(always)]
fn relu(y: f32) -> f32 {
    if y > 0.0 {
        y
    } else {
        0.0
    }
}

/// The centred sums with `keep` applied to each `a`, in [`LANES`] lanes.
#[inline(always)]
fn centred_sums(
    a: &[f32],
    b: &[f32],
    (ca, cb): (f32, f32),
    keep: impl Fn(f32, f32) -> f32,
) -> (f64, f64) {
    let (mut s1, mut s2) = ([0.0f64; LANES], [0.0f64; LANES]);
    let whole = a.len() / LANES * LANES;
    for (al, bl) in a[..whole].chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for l in 0..LANES {
            let va = keep(al[l], bl[l]);
            s1[l] += va as f64;
            s2[l] += ((va - ca) * (bl[l] - cb)) as f64;
        }
    }
    rest_sums((s1, s2), &a[whole..], &b[whole..], (ca, cb), keep)
}

/// The lanes' sums folded, plus the values past the last whole group of lanes.
#[inline(always)]
fn rest_sums(
    (s1, s2): ([f64; LANES], [f64; LANES]),
    a: &[f32],
    b: &[f32],
    (ca, cb): (f32, f32),
    keep: impl Fn(f32, f32) -> f32,
) -> (f64, f64) {
    let (mut t1, mut t2) = (fold_halves(s1), fold_halves(s2));
    for (&va, &vb) in a.iter().zip(b) {
        let va = keep(va, vb);
        t1 += va as f64;
        t2 += ((va - ca) * (vb - cb)) as f64;
    }
    (t1, t2)
}

/// [`centred_sums`] (with the ReLU gate if `GATE`) over whole groups of [`LANES`] values,
/// in the same lanes and order (the same sums to the bit), and how many values that
/// covered. Written with AVX intrinsics: compiled from the plain loop, the gate's select
/// became one masked load per value (the gated sums took three times the plain ones), and
/// the plain loop itself, as baseline code, ran at less than half this speed (0.9 against
/// 0.4 ms for 64 channels of 56² at batch 8).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn centred_lanes_avx<const GATE: bool>(
    a: &[f32],
    b: &[f32],
    (ca, cb): (f32, f32),
    (g, h): (f32, f32),
) -> ([f64; LANES], [f64; LANES], usize) {
    use std::arch::x86_64::*;
    const _: () = assert!(LANES == 8, "one 8-wide vector per group of lanes");
    let whole = a.len().min(b.len()) / LANES * LANES;
    let (vca, vcb) = (_mm256_set1_ps(ca), _mm256_set1_ps(cb));
    let (vg, vh, zero) = (_mm256_set1_ps(g), _mm256_set1_ps(h), _mm256_setzero_ps());
    let [mut s1lo, mut s1hi, mut s2lo, mut s2hi] = [_mm256_setzero_pd(); 4];
    for i in (0..whole).step_by(LANES) {
        // SAFETY: i + LANES <= whole, within both slices.
        let (va, vb) = unsafe {
            (
                _mm256_loadu_ps(a.as_ptr().add(i)),
                _mm256_loadu_ps(b.as_ptr().add(i)),
            )
        };
        // b · g + h as the forward computed it (a product, then a sum: no fused step).
        let kept = if GATE {
            let y = _mm256_add_ps(_mm256_mul_ps(vb, vg), vh);
            _mm256_and_ps(va, _mm256_cmp_ps::<_CMP_GT_OQ>(y, zero))
        } else {
            va
        };
        let d = _mm256_mul_ps(_mm256_sub_ps(kept, vca), _mm256_sub_ps(vb, vcb));
        s1lo = _mm256_add_pd(s1lo, _mm256_cvtps_pd(_mm256_castps256_ps128(kept)));
        s1hi = _mm256_add_pd(s1hi, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(kept)));
        s2lo = _mm256_add_pd(s2lo, _mm256_cvtps_pd(_mm256_castps256_ps128(d)));
        s2hi = _mm256_add_pd(s2hi, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(d)));
    }
    let (mut s1, mut s2) = ([0.0f64; LANES], [0.0f64; LANES]);
    // SAFETY: each array holds two vectors of four.
    unsafe {
        _mm256_storeu_pd(s1.as_mut_ptr(), s1lo);
        _mm256_storeu_pd(s1.as_mut_ptr().add(4), s1hi);
        _mm256_storeu_pd(s2.as_mut_ptr(), s2lo);
        _mm256_storeu_pd(s2.as_mut_ptr().add(4), s2hi);
    }
    (s1, s2, whole)
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
                    let gate = match b {
                        Some((_, centers)) if p.relu => {
                            Some((centers[2 * c + ch], centers[3 * c + ch]))
                        }
                        _ => None,
                    };
                    simd(|| plane_sums(ap, bp, gate))
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
            let (k, s) = (coef[ch], coef[c + ch]);
            let Some(b) = b else {
                if p.relu {
                    affine(op, at, |v| relu(v * k + s));
                } else {
                    affine(op, at, |v| v * k + s);
                }
                continue;
            };
            let (cb, s) = (coef[2 * c + ch], coef[3 * c + ch]);
            let (ka, kb) = (k, coef[c + ch]);
            let bt = &b[q * inner..][..op.len()];
            if p.relu {
                let (g, h) = (coef[4 * c + ch], coef[5 * c + ch]);
                affine2(op, at, bt, |va, vb| {
                    relu_mask(va, vb * g + h) * ka + (vb - cb) * kb + s
                });
            } else {
                affine2(op, at, bt, |va, vb| va * ka + (vb - cb) * kb + s);
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

#[inline(always)]
fn affine(out: &mut [MaybeUninit<f32>], a: &[f32], f: impl Fn(f32) -> f32) {
    for (o, &v) in out.iter_mut().zip(a) {
        *o = MaybeUninit::new(f(v));
    }
}

#[inline(always)]
fn affine2(out: &mut [MaybeUninit<f32>], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    for ((o, &va), &vb) in out.iter_mut().zip(a).zip(b) {
        *o = MaybeUninit::new(f(va, vb));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(outer: usize, channels: usize, inner: usize, relu: bool) -> ChannelParams {
        ChannelParams {
            outer,
            channels,
            inner,
            relu,
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
    /// tasks (inner = 1), span several tasks (long planes) and leave a remainder of lanes;
    /// with and without the fused ReLU (its gate and its clamp).
    #[test]
    fn sums_and_affine_match_plain_loops() {
        let shapes = [(3, 5, 1), (2, 3, 20_001), (4, 7, 13), (1, 2, 9)];
        for ((outer, c, inner), relu) in shapes.into_iter().flat_map(|s| [(s, false), (s, true)]) {
            let p = params(outer, c, inner, relu);
            let (a, b) = (values(p.len(), 1), values(p.len(), 7));
            let centers = values(4 * c, 3);
            let at = |v: &[f32], n: usize, ch: usize, i: usize| v[(n * c + ch) * inner + i];
            let gated = if relu {
                &centers[..]
            } else {
                &centers[..2 * c]
            };
            let sums = channel_sums(&a, Some((&b, gated)), &p).unwrap();
            let plain = channel_sums(&a, None, &p).unwrap();
            let coef = values(6 * c, 5);
            let y2 = channel_affine(&a, None, &coef[..2 * c], &p).unwrap();
            let y3 =
                channel_affine(&a, Some(&b), &coef[..if relu { 6 } else { 4 } * c], &p).unwrap();
            // Where the gate closes: the forward's value b·g + h not positive.
            let (mut open, mut closed) = (0, 0);
            for ch in 0..c {
                let (mut s1, mut s2, mut s0) = (0.0f64, 0.0f64, 0.0f64);
                for n in 0..outer {
                    for i in 0..inner {
                        let (va, vb) = (at(&a, n, ch, i), at(&b, n, ch, i));
                        s0 += va as f64;
                        let ga = vb * centers[2 * c + ch] + centers[3 * c + ch] > 0.0;
                        let va_s = if relu && !ga { 0.0 } else { va };
                        s1 += va_s as f64;
                        s2 += ((va_s - centers[ch]) * (vb - centers[c + ch])) as f64;
                        let y = va * coef[ch] + coef[c + ch];
                        let want2 = if relu { y.max(0.0) } else { y };
                        let gb = vb * coef[4 * c + ch] + coef[5 * c + ch] > 0.0;
                        let va_a = if relu && !gb { 0.0 } else { va };
                        let want3 = va_a * coef[ch]
                            + (vb - coef[2 * c + ch]) * coef[c + ch]
                            + coef[3 * c + ch];
                        assert_eq!(at(&y2, n, ch, i), want2);
                        assert_eq!(at(&y3, n, ch, i), want3);
                        (open, closed) = if gb {
                            (open + 1, closed)
                        } else {
                            (open, closed + 1)
                        };
                    }
                }
                let close = |x: f32, y: f64| (x as f64 - y).abs() <= 1e-5 * (1.0 + y.abs());
                assert!(
                    close(sums[ch], s1) && close(plain[ch], s0),
                    "{p:?} sum {ch}"
                );
                assert!(close(sums[c + ch], s2), "{p:?} centred sum {ch}");
            }
            assert!(
                open > 0 && closed > 0,
                "{p:?}: the gate both opens and closes"
            );
            assert_eq!((sums.len(), plain.len()), (2 * c, c));
        }
    }

    /// Without the gate every value of `a` counts, whatever `b` holds: an infinite or NaN
    /// `b` (an input that overflowed) leaves `Σ a` whole, in the vector lanes and the rest.
    #[test]
    fn ungated_sums_keep_every_value_beside_non_finite_inputs() {
        let p = params(1, 1, 19, false);
        let a = vec![1.0f32; 19];
        let mut b = values(19, 2);
        for i in [0, 9, 17] {
            b[i] = f32::INFINITY;
        }
        b[18] = f32::NAN;
        let sums = channel_sums(&a, Some((&b, &[0.0, 0.0])), &p).unwrap();
        assert_eq!(sums[0], 19.0);
    }
}
