//! Optimizers: Adam's and SGD's updates against PyTorch's rules written out in f64;
//! L-BFGS: convergence on classic test functions, and its errors; the fused updates on the
//! GPU against the CPU's.

mod common;

use common::parity::randn;
use common::{rel_err, run_seed, Rng};
use fovea::optim::{
    Adam, AdamOptions, Lbfgs, LbfgsOptions, LineSearch, Optimizer, Sgd, SgdOptions,
};
use fovea::{Device, Tensor};

/// PyTorch's single-tensor Adam (torch/optim/adam.py), in f64, over `steps` steps of the
/// loss ½ Σ (c·p)², whose gradient is c²·p.
fn adam_reference(p0: &[f32], c: &[f32], o: AdamOptions, steps: i32) -> Vec<f64> {
    let mut p: Vec<f64> = p0.iter().map(|&v| v as f64).collect();
    let (mut m, mut v) = (vec![0.0f64; p.len()], vec![0.0f64; p.len()]);
    let (b1, b2, lr, wd) = (
        o.beta1 as f64,
        o.beta2 as f64,
        o.lr as f64,
        o.weight_decay as f64,
    );
    for t in 1..=steps {
        for i in 0..p.len() {
            let mut g = (c[i] as f64).powi(2) * p[i];
            if o.decoupled {
                p[i] *= 1.0 - lr * wd;
            } else {
                g += wd * p[i];
            }
            m[i] += (g - m[i]) * (1.0 - b1);
            v[i] = v[i] * b2 + (1.0 - b2) * g * g;
            let denom = v[i].sqrt() / (1.0 - b2.powi(t)).sqrt() + o.eps as f64;
            p[i] -= lr / (1.0 - b1.powi(t)) * m[i] / denom;
        }
    }
    p
}

/// PyTorch's single-tensor SGD (torch/optim/sgd.py, no dampening), in f64, on the same
/// loss.
fn sgd_reference(p0: &[f32], c: &[f32], o: SgdOptions, steps: i32) -> Vec<f64> {
    let mut p: Vec<f64> = p0.iter().map(|&v| v as f64).collect();
    let mut buf: Option<Vec<f64>> = None;
    let (lr, mu, wd) = (o.lr as f64, o.momentum as f64, o.weight_decay as f64);
    for _ in 0..steps {
        let d: Vec<f64> = (0..p.len())
            .map(|i| (c[i] as f64).powi(2) * p[i] + wd * p[i])
            .collect();
        let mut step = d.clone();
        if mu != 0.0 {
            let b: Vec<f64> = match &buf {
                Some(b) => (0..p.len()).map(|i| mu * b[i] + d[i]).collect(),
                None => d.clone(),
            };
            step = if o.nesterov {
                (0..p.len()).map(|i| d[i] + mu * b[i]).collect()
            } else {
                b.clone()
            };
            buf = Some(b);
        }
        for i in 0..p.len() {
            p[i] -= lr * step[i];
        }
    }
    p
}

/// Five steps of the optimizer `make` builds, on ½ Σ (c·p)² from `p0`, on the CPU.
fn run_steps(p0: &[f32], c: &[f32], make: impl Fn(Tensor) -> Box<dyn Optimizer>) -> Vec<f32> {
    let dev = Device::cpu();
    let p = Tensor::from_vec(p0.to_vec(), &[p0.len()], &dev)
        .unwrap()
        .requires_grad();
    let cs = Tensor::from_vec(c.to_vec(), &[c.len()], &dev).unwrap();
    let mut opt = make(p.clone());
    for _ in 0..5 {
        opt.zero_grad();
        let loss = p.mul(&cs).unwrap().square().sum().mul_scalar(0.5);
        loss.backward().unwrap();
        opt.step().unwrap();
    }
    p.to_vec().unwrap()
}

fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{what}: parameter {i} is {g}, PyTorch's rule gives {w}"
        );
    }
}

#[test]
fn sgd_with_momentum_nesterov_and_decay_follows_pytorchs_update_rule() {
    let p0 = [0.5f32, -1.0, 2.0, 0.0, 3.0, -0.25];
    let c = [1.0f32, 2.0, 0.5, 3.0, 0.1, 1.5];
    for o in [
        SgdOptions {
            lr: 0.05,
            weight_decay: 0.1,
            ..Default::default()
        },
        SgdOptions {
            lr: 0.05,
            momentum: 0.9,
            ..Default::default()
        },
        SgdOptions {
            lr: 0.05,
            momentum: 0.8,
            nesterov: true,
            weight_decay: 0.1,
        },
    ] {
        let got = run_steps(&p0, &c, |p| Box::new(Sgd::new(vec![p], o)));
        assert_close(&format!("{o:?}"), &got, &sgd_reference(&p0, &c, o, 5));
    }
}

#[test]
fn adam_and_adamw_follow_pytorchs_update_rule() {
    let p0 = [0.5f32, -1.0, 2.0, 0.0, 3.0, -0.25];
    let c = [1.0f32, 2.0, 0.5, 3.0, 0.1, 1.5];
    let configs = [
        AdamOptions {
            lr: 0.1,
            ..Default::default()
        },
        AdamOptions {
            lr: 0.05,
            weight_decay: 0.1,
            ..Default::default()
        },
        AdamOptions {
            lr: 0.05,
            weight_decay: 0.5,
            ..AdamOptions::adamw()
        },
    ];
    for o in configs {
        let got = run_steps(&p0, &c, |p| Box::new(Adam::new(vec![p], o)));
        assert_close(&format!("{o:?}"), &got, &adam_reference(&p0, &c, o, 5));
    }
}

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

/// The fused optimizer updates (one kernel per parameter) against the CPU's, over a few
/// steps of each form: Adam plain, with an L2 term and decoupled (AdamW); SGD plain with
/// decay, with momentum, and Nesterov with decay. Parameters of several workgroups,
/// gradients fresh each step; the saved state (moments, momentum buffers) compared too.
#[test]
fn fused_optimizer_updates() {
    let Some(gpu) = common::gpu("fused_optimizer_updates") else {
        return;
    };
    let mut r = Rng(run_seed("fused_optimizer_updates"));
    type Make = Box<dyn Fn(Tensor) -> Box<dyn Optimizer>>;
    let adam = |o: AdamOptions| -> Make { Box::new(move |p| Box::new(Adam::new(vec![p], o))) };
    let sgd = |o: SgdOptions| -> Make { Box::new(move |p| Box::new(Sgd::new(vec![p], o))) };
    let forms = [
        ("Adam", adam(AdamOptions::default()), 2),
        (
            "Adam, L2",
            adam(AdamOptions {
                weight_decay: 0.1,
                ..Default::default()
            }),
            2,
        ),
        (
            "AdamW",
            adam(AdamOptions {
                lr: 0.05,
                weight_decay: 0.5,
                ..AdamOptions::adamw()
            }),
            2,
        ),
        (
            "SGD, decay",
            sgd(SgdOptions {
                lr: 0.05,
                weight_decay: 0.1,
                ..Default::default()
            }),
            0,
        ),
        (
            "SGD, momentum",
            sgd(SgdOptions {
                lr: 0.05,
                momentum: 0.9,
                ..Default::default()
            }),
            1,
        ),
        (
            "SGD, Nesterov, decay",
            sgd(SgdOptions {
                lr: 0.05,
                momentum: 0.8,
                nesterov: true,
                weight_decay: 0.1,
            }),
            1,
        ),
    ];
    for (what, make, buffers) in forms {
        let shape = [r.range(1, 3), r.range(200, 700)];
        let p0 = randn(&shape, r.next());
        let on = |dev: &Device| p0.to_device(dev).unwrap().detach().requires_grad();
        let (pc, pg) = (on(&Device::cpu()), on(&gpu));
        let (mut oc, mut og) = (make(pc.clone()), make(pg.clone()));
        for _ in 0..3 {
            let c = randn(&shape, r.next());
            for (p, opt) in [(&pc, &mut oc), (&pg, &mut og)] {
                opt.zero_grad();
                let c = c.to_device(p.device()).unwrap();
                p.mul(&c).unwrap().square().sum().backward().unwrap();
                opt.step().unwrap();
            }
        }
        let err = rel_err(&pg.to_vec().unwrap(), &pc.to_vec().unwrap());
        assert!(err <= 1e-5, "{what}: parameters differ by {err:.2e}");
        let (sc, sg) = (oc.state(), og.state());
        assert_eq!(sc.tensors.len(), buffers, "{what}: saved buffers");
        assert_eq!(
            sg.tensors.len(),
            buffers,
            "{what}: saved buffers on the GPU"
        );
        for ((name, c), (_, g)) in sc.tensors.iter().zip(&sg.tensors) {
            let err = rel_err(&g.to_vec().unwrap(), &c.to_vec().unwrap());
            assert!(err <= 1e-5, "{what}: {name} differs by {err:.2e}");
        }
    }
}

/// A setting PyTorch's optimizers refuse (a NaN or negative learning rate, a beta of 1,
/// Nesterov without momentum), or one a schedule set, is an error at the step that would
/// use it, naming the optimizer and the setting, and the weights stay as they were.
#[test]
fn bad_settings_are_refused_before_any_weight_moves() {
    let dev = Device::cpu();
    let adam = |o: AdamOptions| -> Box<dyn Optimizer> {
        let p = Tensor::from_vec(vec![1.0, 2.0], &[2], &dev)
            .unwrap()
            .requires_grad();
        Box::new(Adam::new(vec![p], o))
    };
    let sgd = |o: SgdOptions| -> Box<dyn Optimizer> {
        let p = Tensor::from_vec(vec![1.0, 2.0], &[2], &dev)
            .unwrap()
            .requires_grad();
        Box::new(Sgd::new(vec![p], o))
    };
    let a = AdamOptions::default();
    let s = SgdOptions::default();
    let cases: Vec<(&str, Box<dyn Optimizer>)> = vec![
        ("learning rate", adam(AdamOptions { lr: f32::NAN, ..a })),
        ("learning rate", adam(AdamOptions { lr: -1e-3, ..a })),
        ("beta1", adam(AdamOptions { beta1: 1.0, ..a })),
        ("beta2", adam(AdamOptions { beta2: -0.1, ..a })),
        ("eps", adam(AdamOptions { eps: -1.0, ..a })),
        (
            "weight decay",
            adam(AdamOptions {
                weight_decay: f32::NAN,
                ..a
            }),
        ),
        (
            "learning rate",
            sgd(SgdOptions {
                lr: f32::INFINITY,
                ..s
            }),
        ),
        (
            "momentum",
            sgd(SgdOptions {
                momentum: -0.9,
                ..s
            }),
        ),
        (
            "Nesterov",
            sgd(SgdOptions {
                nesterov: true,
                ..s
            }),
        ),
    ];
    for (setting, mut opt) in cases {
        let p = opt.params()[0].clone();
        p.mul_scalar(3.0).sum().backward().unwrap();
        let err = opt.step().expect_err(setting).to_string();
        assert!(err.contains(setting), "{setting}: {err}");
        assert_eq!(
            p.to_vec().unwrap(),
            [1.0, 2.0],
            "{setting}: the weights moved"
        );
    }
    // A schedule that sets a NaN rate is caught at the next step too.
    let mut opt = adam(a);
    opt.set_lr(f32::NAN);
    assert!(opt.step().is_err());
    // L-BFGS checks its settings when it is made.
    for lr in [f32::NAN, f32::INFINITY, 0.0, -1.0] {
        let p = Tensor::from_vec(vec![1.0], &[1], &dev)
            .unwrap()
            .requires_grad();
        let o = LbfgsOptions {
            lr,
            ..Default::default()
        };
        let err = Lbfgs::new(vec![p], o).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("lr")), "L-BFGS lr {lr}");
    }
}
