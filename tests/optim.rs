//! L-BFGS: convergence on classic test functions, and its errors.

use fovea::optim::{Lbfgs, LbfgsOptions, LineSearch};
use fovea::{Device, Tensor};

fn rosenbrock(x: &Tensor) -> Tensor {
    let (a, b) = (x.narrow(0, 0, 1).unwrap(), x.narrow(0, 1, 1).unwrap());
    let t1 = a.neg().add_scalar(1.0).square();
    let t2 = b.sub(&a.square()).unwrap().square().mul_scalar(100.0);
    t1.add(&t2).unwrap().sum()
}

#[test]
fn lbfgs_with_backtracking_solves_rosenbrock() {
    let dev = Device::cpu();
    let x = Tensor::from_vec(vec![-1.5, 2.0], &[2], &dev)
        .unwrap()
        .requires_grad();
    let mut opt = Lbfgs::new(
        vec![x.clone()],
        LbfgsOptions {
            line_search: Some(LineSearch::Armijo),
            ..Default::default()
        },
    )
    .unwrap();
    let mut closure = || {
        x.zero_grad();
        let f = rosenbrock(&x);
        f.backward()?;
        Ok(f)
    };
    let first = opt.step(&mut closure).unwrap();
    for _ in 0..30 {
        opt.step(&mut closure).unwrap();
    }
    let v = x.to_vec().unwrap();
    assert!(first > 10.0, "start {first}");
    assert!(
        (v[0] - 1.0).abs() < 1e-3 && (v[1] - 1.0).abs() < 2e-3,
        "ended at {v:?} after {} evaluations",
        opt.func_evals()
    );
}

#[test]
fn lbfgs_with_fixed_steps_solves_a_quadratic() {
    // f(x) = ½ xᵀAx − bᵀx with A = MᵀM + I (well conditioned); the minimum is A⁻¹b.
    let dev = Device::cpu();
    let n = 12;
    let m: Vec<f32> = (0..n * n)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 23.0)
        .collect();
    let mut a = vec![0.0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            a[i * n + j] = (0..n).map(|k| m[k * n + i] * m[k * n + j]).sum::<f32>()
                + if i == j { 1.0 } else { 0.0 };
        }
    }
    let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7).sin()).collect();
    let at = Tensor::from_vec(a.clone(), &[n, n], &dev).unwrap();
    let bt = Tensor::from_vec(b.clone(), &[n, 1], &dev).unwrap();
    let x = Tensor::zeros(&[n, 1], &dev).requires_grad();
    let mut opt = Lbfgs::new(vec![x.clone()], LbfgsOptions::default()).unwrap();
    let mut closure = || {
        x.zero_grad();
        let quad = x.t()?.matmul(&at.matmul(&x)?)?.sum().mul_scalar(0.5);
        let f = quad.sub(&bt.mul(&x)?.sum())?;
        f.backward()?;
        Ok(f)
    };
    for _ in 0..5 {
        opt.step(&mut closure).unwrap();
    }
    // At the minimum the gradient Ax − b vanishes.
    let xv = x.to_vec().unwrap();
    let residual = (0..n)
        .map(|i| ((0..n).map(|j| a[i * n + j] * xv[j]).sum::<f32>() - b[i]).abs())
        .fold(0.0, f32::max);
    assert!(residual < 1e-4, "‖Ax − b‖∞ = {residual}");
}

#[test]
fn lbfgs_refuses_bad_settings_and_non_scalar_losses() {
    let dev = Device::cpu();
    let err = Lbfgs::new(vec![], LbfgsOptions::default()).err().unwrap();
    assert!(err.to_string().contains("LBFGS"), "{err}");
    let x = Tensor::zeros(&[3], &dev).requires_grad();
    let bad = LbfgsOptions {
        history_size: 0,
        ..Default::default()
    };
    assert!(Lbfgs::new(vec![x.clone()], bad).is_err());
    let mut opt = Lbfgs::new(vec![x.clone()], LbfgsOptions::default()).unwrap();
    let err = opt.step(&mut || Ok(x.add_scalar(1.0))).unwrap_err();
    assert!(err.to_string().contains("[3]"), "{err}");
}
