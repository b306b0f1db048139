//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod fixtures;
pub mod parity;

use fovea::kernels::{OpenOptions, WgpuBackend};
use fovea::{Device, DeviceExt, Result, Tensor};

/// ‖a − b‖ / ‖b‖ (or ‖a − b‖ when b is all zeros), in f64.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    let norm: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum();
    if norm == 0.0 {
        diff.sqrt()
    } else {
        (diff / norm).sqrt()
    }
}

/// A small deterministic generator for shapes and parameters (SplitMix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.range(0, xs.len() - 1)]
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
}

/// A per-run seed (fresh each run, printed so a failure can be replayed with FOVEA_SEED).
pub fn run_seed(test: &str) -> u64 {
    let seed = std::env::var("FOVEA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
    eprintln!("{test}: seed {seed} (replay with FOVEA_SEED={seed})");
    seed
}

/// A `[C]` batch norm bias that keeps every normalised value of `x` (`[N, C, …]`, scaled by
/// `weight`) off ReLU's kink, and the distance kept (the smallest over the channels): each
/// channel's bias puts zero in the middle of the widest gap between its sorted values,
/// values on both sides. The statistics are the batch's (biased variance), or `stats`
/// (running mean and variance) in eval mode.
pub fn bias_off_relu_kink(
    x: &Tensor,
    weight: &[f32],
    stats: Option<(&[f32], &[f32])>,
    eps: f32,
) -> (Vec<f32>, f64) {
    let (shape, v) = (x.shape().to_vec(), x.to_vec().unwrap());
    let (c, inner) = (shape[1], shape[2..].iter().product::<usize>());
    let (mut bias, mut kept) = (vec![0.0f32; c], f64::INFINITY);
    for ch in 0..c {
        let vals: Vec<f64> = (0..shape[0])
            .flat_map(|n| v[(n * c + ch) * inner..][..inner].iter().map(|&x| x as f64))
            .collect();
        let (mean, var) = match stats {
            Some((m, s)) => (m[ch] as f64, s[ch] as f64),
            None => {
                let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                let var = vals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / vals.len() as f64;
                (mean, var)
            }
        };
        let k = weight[ch] as f64 / (var + eps as f64).sqrt();
        let mut z: Vec<f64> = vals.iter().map(|x| (x - mean) * k).collect();
        z.sort_by(f64::total_cmp);
        let (lo, hi) = z
            .windows(2)
            .map(|w| (w[0], w[1]))
            .max_by(|a, b| (a.1 - a.0).total_cmp(&(b.1 - b.0)))
            .expect("two values or more per channel");
        bias[ch] = (-(lo + hi) / 2.0) as f32;
        kept = kept.min((hi - lo) / 2.0);
    }
    (bias, kept)
}

/// Values in `(-1, 1)` whose magnitude is at least `gap`: keeps finite differences away
/// from the kinks of relu/abs/max at 0.
pub fn away_from_zero(shape: &[usize], seed: u64, gap: f32, dev: &Device) -> Tensor {
    let u = Tensor::rand(shape, seed, dev).to_vec().unwrap();
    let v: Vec<f32> = u
        .iter()
        .map(|&u| {
            let s = if u < 0.5 { -1.0 } else { 1.0 };
            s * (gap + (1.0 - gap) * (2.0 * (u - 0.5)).abs())
        })
        .collect();
    Tensor::from_vec(v, shape, dev).unwrap()
}

/// Distinct values on a 0.1 grid (a shuffled ramp): max pooling then has a unique arg-max
/// per window, separated by more than any finite-difference step. Adding 0.05 to one of
/// two such tensors keeps every pair of their elements at least 0.05 apart.
pub fn distinct(shape: &[usize], seed: u64, dev: &Device) -> Tensor {
    let n: usize = shape.iter().product();
    let keys = Tensor::rand(&[n], seed, dev).to_vec().unwrap();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]));
    let mut v = vec![0.0; n];
    for (rank, &i) in order.iter().enumerate() {
        v[i] = (rank as f32 - (n / 2) as f32) * 0.1;
    }
    Tensor::from_vec(v, shape, dev).unwrap()
}

/// Checks the analytic gradient of `sum(f(inputs) · gy)` against central differences
/// (loss values accumulated in f64) for every input that `check[i]` selects. Elements are
/// sampled when an input is large.
pub fn gradcheck(
    name: &str,
    inputs: &[Tensor],
    check: &[bool],
    f: &dyn Fn(&[Tensor]) -> Result<Tensor>,
) {
    let dev = Device::cpu();
    let leaves: Vec<Tensor> = inputs
        .iter()
        .zip(check)
        .map(|(t, &c)| {
            let t = t.detach();
            if c {
                t.requires_grad()
            } else {
                t
            }
        })
        .collect();
    let y = f(&leaves).unwrap_or_else(|e| panic!("{name}: forward failed: {e}"));
    let gy = Tensor::randn(y.shape(), 99, &dev);
    let gy_host = gy.to_vec().unwrap();
    // The differences' rounding noise: each f32 output is off by up to half an ulp (taken
    // 8 times over for the op's own rounding), at random, in both evaluations. A gradient
    // that is one sum of zero-mean terms can cancel to within that noise for some seed,
    // where a relative comparison alone would fail a correct gradient: below 100 times the
    // noise, the error is measured against that level instead.
    let terms: f64 = (y.to_vec().unwrap().iter().zip(&gy_host))
        .map(|(&a, &b)| (a as f64 * b as f64).powi(2))
        .sum();
    let eps = 1e-2f32;
    let noise = 8.0 * f32::EPSILON as f64 / 2.0 * terms.sqrt() / eps as f64;
    y.mul(&gy).unwrap().sum().backward().unwrap();
    let loss = |xs: &[Tensor]| -> f64 {
        let out = fovea::no_grad(|| f(xs)).unwrap().to_vec().unwrap();
        out.iter()
            .zip(&gy_host)
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum()
    };
    for (i, leaf) in leaves.iter().enumerate() {
        if !check[i] {
            continue;
        }
        let analytic = leaf
            .grad()
            .unwrap_or_else(|| panic!("{name}: input {i} got no gradient"))
            .to_vec()
            .unwrap();
        let base = leaf.to_vec().unwrap();
        let n = base.len();
        let picks: Vec<usize> = if n <= 64 {
            (0..n).collect()
        } else {
            (0..64).map(|j| (j * 7919 + 13) % n).collect()
        };
        let (mut num, mut ana) = (Vec::new(), Vec::new());
        for &j in &picks {
            let eval = |delta: f32| {
                let mut v = base.clone();
                v[j] += delta;
                let mut xs = leaves.clone();
                xs[i] = Tensor::from_vec(v, leaf.shape(), &dev).unwrap();
                loss(&xs)
            };
            num.push(((eval(eps) - eval(-eps)) / (2.0 * eps as f64)) as f32);
            ana.push(analytic[j]);
        }
        let diff = ana
            .iter()
            .zip(&num)
            .map(|(&a, &b)| (a as f64 - b as f64).powi(2));
        let size = num.iter().map(|&b| (b as f64).powi(2)).sum::<f64>().sqrt();
        let floor = 100.0 * noise * (num.len() as f64).sqrt();
        let err = diff.sum::<f64>().sqrt() / size.max(floor).max(f64::MIN_POSITIVE);
        assert!(
            err < 1e-2,
            "{name}: gradient of input {i} (shape {:?}) differs from finite differences: rel. error {err:.2e}\n analytic {:?}\n numeric  {:?}",
            leaf.shape(),
            &ana[..ana.len().min(8)],
            &num[..num.len().min(8)]
        );
    }
}

/// The GPU device, or `None` with the reason printed. With `FOVEA_REQUIRE_GPU=1` (CI sets
/// it) a missing adapter fails the test instead.
pub fn gpu(test: &str) -> Option<Device> {
    match Device::gpu() {
        Ok(d) => {
            eprintln!("{test}: running on {}", d.name());
            Some(d)
        }
        Err(e) if std::env::var("FOVEA_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("{test}: FOVEA_REQUIRE_GPU=1 but no GPU device: {e}")
        }
        Err(e) => {
            eprintln!("{test}: SKIPPED, no GPU device: {e}");
            None
        }
    }
}

/// Another device on the adapter the default GPU device uses (`FOVEA_ADAPTER` as there),
/// opened with `options`; `what` names the options in a failure.
pub fn reopen(default: &Device, options: OpenOptions, what: &str) -> WgpuBackend {
    let filter = std::env::var("FOVEA_ADAPTER").ok();
    WgpuBackend::open_with_options(filter.as_deref(), options)
        .unwrap_or_else(|e| panic!("{} {what}: {e}", default.name()))
}
