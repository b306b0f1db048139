//! Counter-based random numbers: element `i` of a seeded stream depends only on
//! `(seed, i)`, so results do not depend on thread count or backend, and a GPU kernel can
//! reproduce them with 32-bit integer arithmetic alone.

fn pcg_hash(x: u32) -> u32 {
    let state = x.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

fn stream_key(seed: u64) -> u32 {
    pcg_hash((seed as u32) ^ pcg_hash((seed >> 32) as u32 ^ 0x9e37_79b9))
}

/// 24 random bits for element `i` of stream `key`.
fn bits24(key: u32, i: u32) -> u32 {
    pcg_hash(pcg_hash(i) ^ key) >> 8
}

/// `n` uniform values in `[0, 1)`.
pub fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut out = vec![0.0; n];
    fill_uniform(&mut out, seed);
    out
}

/// Writes the first `out.len()` values of the uniform stream `seed` into `out`.
pub fn fill_uniform(out: &mut [f32], seed: u64) {
    let key = stream_key(seed);
    for (i, v) in out.iter_mut().enumerate() {
        *v = bits24(key, i as u32) as f32 * (1.0 / 16_777_216.0);
    }
}

/// A permutation of `0..n` (Fisher–Yates over the stream `seed`).
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let u = uniform(n, seed);
    for i in (1..n).rev() {
        let j = ((u[i] as f64) * (i + 1) as f64) as usize;
        order.swap(i, j.min(i));
    }
    order
}

/// `n` standard normal values (Box–Muller over pairs of uniforms).
pub fn normal(n: usize, seed: u64) -> Vec<f32> {
    let mut out = vec![0.0; n];
    fill_normal(&mut out, seed);
    out
}

/// Writes the first `out.len()` values of the normal stream `seed` into `out`.
pub fn fill_normal(out: &mut [f32], seed: u64) {
    let key = stream_key(seed);
    for (i, v) in out.iter_mut().enumerate() {
        let j = (i / 2) as u32;
        // (bits + 1) / 2^24 lies in (0, 1], so the log is finite.
        let u1 = (bits24(key, 2 * j) as f64 + 1.0) / 16_777_216.0;
        let u2 = bits24(key, 2 * j + 1) as f64 / 16_777_216.0;
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        *v = (if i % 2 == 0 { r * t.cos() } else { r * t.sin() }) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_has_the_right_moments_and_depends_on_seed() {
        let u = uniform(100_000, 7);
        let mean = u.iter().map(|&v| v as f64).sum::<f64>() / u.len() as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        assert!(u.iter().all(|&v| (0.0..1.0).contains(&v)));
        assert_ne!(uniform(10, 7), uniform(10, 8));
        assert_eq!(uniform(10, 7), uniform(10, 7));
    }

    #[test]
    fn normal_has_unit_variance() {
        let z = normal(100_000, 3);
        let mean = z.iter().map(|&v| v as f64).sum::<f64>() / z.len() as f64;
        let var = z.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / z.len() as f64;
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.02,
            "mean {mean} var {var}"
        );
    }
}
