//! Dynamic loss scaling (`fovea::optim::GradScaler`, PyTorch's `GradScaler` rules): while
//! no gradient overflows, training through the scaler equals training without it; a step
//! whose gradients hold an inf or a NaN is skipped (weights and optimizer state untouched)
//! and the scale backs off; it grows after `growth_interval` clean steps; the bookkeeping
//! errors. The same on the GPU, where the non-finite check runs as a kernel.

mod common;

use fovea::optim::{Adam, AdamOptions, GradScaler, GradScalerOptions, Optimizer};
use fovea::{Device, Tensor};

/// A least-squares problem: `w` (trainable, 5×3) maps `x` (8×5) towards `y` (8×3).
fn problem(seed: u64, dev: &Device) -> (Tensor, Tensor, Tensor) {
    let w = Tensor::randn(&[5, 3], seed, dev).requires_grad();
    let x = Tensor::randn(&[8, 5], seed + 1, dev);
    let y = Tensor::randn(&[8, 3], seed + 2, dev);
    (w, x, y)
}

fn loss(w: &Tensor, x: &Tensor, y: &Tensor) -> Tensor {
    x.matmul(w).unwrap().sub(y).unwrap().square().mean()
}

fn adam(w: &Tensor) -> Adam {
    Adam::new(
        vec![w.clone()],
        AdamOptions {
            lr: 0.01,
            ..Default::default()
        },
    )
}

fn scaler(growth_interval: u64) -> GradScaler {
    GradScaler::new(GradScalerOptions {
        growth_interval,
        ..Default::default()
    })
    .unwrap()
}

/// Five steps through the scaler and five without: a power-of-two scale multiplies and
/// divides exactly, so the weights agree to the last bit.
fn scaled_training_equals_plain(dev: &Device) {
    let (w1, x, y) = problem(3, dev);
    let w2 = Tensor::from_vec(w1.to_vec().unwrap(), &[5, 3], dev)
        .unwrap()
        .requires_grad();
    let (mut o1, mut o2) = (adam(&w1), adam(&w2));
    let mut s = scaler(2000);
    for _ in 0..5 {
        o1.zero_grad();
        loss(&w1, &x, &y).backward().unwrap();
        o1.step().unwrap();

        o2.zero_grad();
        s.scale(&loss(&w2, &x, &y)).backward().unwrap();
        assert!(s.step(&mut o2).unwrap(), "a clean step was skipped");
        s.update().unwrap();
    }
    assert_eq!(w1.to_vec().unwrap(), w2.to_vec().unwrap());
    assert_eq!(s.get_scale(), 65536.0);
    assert_eq!(s.growth_tracker(), 5);
}

/// An optimizer's saved counters and its buffers' values, by name.
type Snapshot = (Vec<(String, String)>, Vec<(String, Vec<f32>)>);

/// An optimizer's saved counters and buffers, as plain values.
fn snapshot(opt: &dyn Optimizer) -> Snapshot {
    let st = opt.state();
    let mut values: Vec<(String, String)> = st.values.into_iter().collect();
    values.sort();
    let tensors = st
        .tensors
        .into_iter()
        .map(|(n, t)| (n, t.to_vec().unwrap()))
        .collect();
    (values, tensors)
}

/// A gradient with `bad` in it: the step is skipped, nothing moves, the scale halves.
fn injected_non_finite_is_skipped(dev: &Device, bad: f32) {
    let (w, x, y) = problem(5, dev);
    let mut opt = adam(&w);
    let mut s = scaler(2000);
    // One clean step first, so that the optimizer has state to leave alone.
    s.scale(&loss(&w, &x, &y)).backward().unwrap();
    assert!(s.step(&mut opt).unwrap());
    s.update().unwrap();
    let (before, state) = (w.to_vec().unwrap(), snapshot(&opt));

    opt.zero_grad();
    s.scale(&loss(&w, &x, &y)).backward().unwrap();
    let mut g = w.grad().unwrap().to_vec().unwrap();
    g[7] = bad;
    w.set_grad(Some(Tensor::from_vec(g, &[5, 3], dev).unwrap()))
        .unwrap();
    assert!(!s.step(&mut opt).unwrap(), "a step with {bad} was taken");
    s.update().unwrap();
    assert_eq!(
        w.to_vec().unwrap(),
        before,
        "weights moved on a skipped step"
    );
    assert!(
        snapshot(&opt) == state,
        "Adam's state moved on a skipped step"
    );
    assert_eq!(s.get_scale(), 32768.0);
    assert_eq!(s.growth_tracker(), 0);

    // The next clean step goes through at the lower scale.
    opt.zero_grad();
    s.scale(&loss(&w, &x, &y)).backward().unwrap();
    assert!(s.step(&mut opt).unwrap());
    s.update().unwrap();
    assert_ne!(w.to_vec().unwrap(), before);
}

#[test]
fn scaled_training_equals_plain_training_on_the_cpu() {
    scaled_training_equals_plain(&Device::cpu());
}

#[test]
fn steps_with_inf_or_nan_gradients_are_skipped_on_the_cpu() {
    for bad in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
        injected_non_finite_is_skipped(&Device::cpu(), bad);
    }
}

/// A scale that overflows a finite gradient on the way back (a scale below 1 divides into
/// a larger number) counts as non-finite too.
#[test]
fn unscaling_that_overflows_is_caught() {
    let dev = Device::cpu();
    let (w, _, _) = problem(7, &dev);
    let mut opt = adam(&w);
    let mut s = GradScaler::new(GradScalerOptions {
        init_scale: 1e-3,
        ..Default::default()
    })
    .unwrap();
    let mut g = vec![1.0f32; 15];
    g[2] = 1e36;
    w.set_grad(Some(Tensor::from_vec(g, &[5, 3], &dev).unwrap()))
        .unwrap();
    assert!(!s.step(&mut opt).unwrap());
}

#[test]
fn the_scale_grows_after_the_interval_and_stays_finite() {
    let dev = Device::cpu();
    let (w, x, y) = problem(9, &dev);
    let mut opt = adam(&w);
    let mut s = scaler(3);
    for step in 1..=7 {
        opt.zero_grad();
        s.scale(&loss(&w, &x, &y)).backward().unwrap();
        s.step(&mut opt).unwrap();
        s.update().unwrap();
        let want = 65536.0 * 2f32.powi(step / 3);
        assert_eq!(s.get_scale(), want, "after step {step}");
    }
    // Growing past f32's range keeps the old scale, as PyTorch does.
    let mut big = scaler(1);
    big.load_state(f32::MAX / 1.5, 0).unwrap();
    opt.zero_grad();
    big.scale(&loss(&w, &x, &y).mul_scalar(0.0))
        .backward()
        .unwrap();
    big.step(&mut opt).unwrap();
    big.update().unwrap();
    assert_eq!(big.get_scale(), f32::MAX / 1.5);
}

#[test]
fn misuse_is_an_error_naming_the_call() {
    let dev = Device::cpu();
    let (w, x, y) = problem(11, &dev);
    let mut opt = adam(&w);
    let mut s = scaler(2000);
    let e = s.update().unwrap_err().to_string();
    assert!(e.contains("grad_scaler.update"), "{e}");
    s.scale(&loss(&w, &x, &y)).backward().unwrap();
    s.unscale(&opt).unwrap();
    let e = s.unscale(&opt).unwrap_err().to_string();
    assert!(
        e.contains("grad_scaler.unscale") && e.contains("already"),
        "{e}"
    );
    s.step(&mut opt).unwrap();
    let e = s.step(&mut opt).unwrap_err().to_string();
    assert!(
        e.contains("grad_scaler.step") && e.contains("already"),
        "{e}"
    );
    s.update().unwrap();
    for (o, what) in [
        (
            GradScalerOptions {
                init_scale: f32::INFINITY,
                ..Default::default()
            },
            "init_scale",
        ),
        (
            GradScalerOptions {
                growth_factor: 1.0,
                ..Default::default()
            },
            "growth_factor",
        ),
        (
            GradScalerOptions {
                backoff_factor: 1.5,
                ..Default::default()
            },
            "backoff_factor",
        ),
        (
            GradScalerOptions {
                growth_interval: 0,
                ..Default::default()
            },
            "growth_interval",
        ),
    ] {
        let e = GradScaler::new(o).err().expect(what).to_string();
        assert!(e.contains("grad_scaler") && e.contains(what), "{e}");
    }
    let e = s.load_state(-1.0, 0).unwrap_err().to_string();
    assert!(e.contains("grad_scaler.load_state"), "{e}");
}

/// `non_finite_mask` on the GPU against the CPU on every kind of value, and the scaler's
/// two behaviours on the GPU.
#[test]
fn non_finite_mask_and_scaler_on_the_gpu() {
    let Some(gpu) = common::gpu("non_finite_mask_and_scaler_on_the_gpu") else {
        return;
    };
    let values = [
        0.0,
        -0.0,
        1.5,
        -2.0e-39, // subnormal
        f32::MIN_POSITIVE,
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        1e30,
    ];
    // More than one workgroup's worth, the odd values spread through it.
    let v: Vec<f32> = (0..1000).map(|i| values[(i * 7) % values.len()]).collect();
    let mask = |dev: &Device| {
        Tensor::from_vec(v.clone(), &[1000], dev)
            .unwrap()
            .non_finite_mask()
            .to_vec()
            .unwrap()
    };
    let (cpu, on_gpu) = (mask(&Device::cpu()), mask(&gpu));
    assert_eq!(cpu, on_gpu);
    let want: Vec<f32> = v
        .iter()
        .map(|x| if x.is_finite() { 0.0 } else { 1.0 })
        .collect();
    assert_eq!(cpu, want);

    scaled_training_equals_plain(&gpu);
    injected_non_finite_is_skipped(&gpu, f32::NAN);
}
