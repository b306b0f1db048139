//! Autocast (`fovea::autocast`, PyTorch's `torch.autocast` with f16): matrix products and
//! convolutions multiply f16-rounded operands and sum in f32, on the CPU (the reference)
//! and on the GPU (f16 workgroup tiles); everything else stays f32; an op's backward runs
//! as its forward did; a GPU without f16 arithmetic is an error naming it.

mod common;

use std::sync::Arc;

use common::parity::{parity, randn};
use common::{rel_err, run_seed, Rng};
use fovea::kernels::OpenOptions;
use fovea::ops::{
    Conv1dOptions, Conv2dOptions, Conv3dOptions, ConvTranspose2dOptions, Pool2dOptions,
};
use fovea::optim::{GradScaler, GradScalerOptions, Optimizer, Sgd, SgdOptions};
use fovea::{autocast, Device, Result, Tensor};

/// 1 + 2⁻¹² is f32 but rounds to 1 in f16 (11 significant bits), so `[1 + 2⁻¹², −1] · [1, 1]`
/// is 2⁻¹² in f32 and 0 under autocast.
const FINE: f32 = 1.0 + 1.0 / 4096.0;

fn t(v: &[f32], shape: &[usize], dev: &Device) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape, dev).unwrap()
}

fn scalar(x: Tensor) -> f32 {
    x.to_vec().unwrap()[0]
}

/// What autocast rounds and what it leaves, on one device.
fn rounds_the_gemm_family_only(dev: &Device) {
    let a = t(&[FINE, -1.0], &[1, 2], dev);
    let b = t(&[1.0, 1.0], &[2, 1], dev);
    assert_eq!(scalar(a.matmul(&b).unwrap()), 1.0 / 4096.0);
    assert_eq!(scalar(autocast(|| a.matmul(&b)).unwrap()), 0.0);
    // A 1×1 convolution over two channels is the same product.
    let x = t(&[FINE, 1.0], &[1, 2, 1, 1], dev);
    let w = t(&[1.0, -1.0], &[1, 2, 1, 1], dev);
    let conv = || x.conv2d(&w, None, Conv2dOptions::default());
    assert_eq!(scalar(conv().unwrap()), 1.0 / 4096.0);
    assert_eq!(scalar(autocast(conv).unwrap()), 0.0);
    // Gram: ‖[1 + 2⁻¹²]‖² is 1 + 2⁻¹¹ in f32 (to its last bit), 1 under autocast.
    let f = t(&[FINE], &[1, 1, 1, 1], dev);
    assert_eq!(scalar(f.gram().unwrap()), 1.0 + 1.0 / 2048.0);
    assert_eq!(scalar(autocast(|| f.gram()).unwrap()), 1.0);
    // Elementwise ops and reductions stay f32.
    let sum = autocast(|| a.add_scalar(1.0).sum());
    assert_eq!(scalar(sum), FINE + 1.0 - 1.0 + 1.0);
    // Depthwise convolutions stay f32 (they are not GEMMs).
    let dw = t(&[FINE, 1.0], &[1, 2, 1, 1], dev);
    let ones = t(&[1.0, 1.0], &[2, 1, 1, 1], dev);
    let depthwise = autocast(|| {
        dw.conv2d(
            &ones,
            None,
            Conv2dOptions {
                groups: 2,
                ..Default::default()
            },
        )
    });
    assert_eq!(depthwise.unwrap().to_vec().unwrap(), [FINE, 1.0]);
}

#[test]
fn autocast_rounds_products_not_the_rest_on_the_cpu() {
    rounds_the_gemm_family_only(&Device::cpu());
}

#[test]
fn autocast_rounds_products_not_the_rest_on_the_gpu() {
    let Some(gpu) = common::gpu("autocast_rounds_products_not_the_rest_on_the_gpu") else {
        return;
    };
    rounds_the_gemm_family_only(&gpu);
}

/// The weight gradient of `y = x·w` is `xᵀ·gy`: with x = 1 + 2⁻¹² it shows whether the
/// backward multiplied in f16, which must follow where the forward ran, not where
/// `backward()` is called.
#[test]
fn backward_runs_as_its_forward_did() {
    let dev = Device::cpu();
    let grad_of = |forward_in_autocast: bool, backward_in_autocast: bool| {
        let x = t(&[FINE], &[1, 1], &dev);
        let w = t(&[1.0], &[1, 1], &dev).requires_grad();
        let y = if forward_in_autocast {
            autocast(|| x.matmul(&w)).unwrap()
        } else {
            x.matmul(&w).unwrap()
        };
        let loss = y.sum();
        if backward_in_autocast {
            autocast(|| loss.backward()).unwrap();
        } else {
            loss.backward().unwrap();
        }
        scalar(w.grad().unwrap())
    };
    assert_eq!(grad_of(true, false), 1.0);
    assert_eq!(grad_of(true, true), 1.0);
    assert_eq!(grad_of(false, true), FINE);
    assert_eq!(grad_of(false, false), FINE);
}

/// `f` under autocast on the GPU against the CPU under autocast (forward ≤ 1e-4, gradients
/// ≤ 1e-3: the same roundings, summed in other orders), and against the CPU in f32, which
/// it must differ from (it rounded) by no more than f16's precision allows (≤ 1e-2).
fn autocast_parity(
    gpu: &Device,
    name: &str,
    inputs: &[Tensor],
    f: &dyn Fn(&[Tensor]) -> Result<Tensor>,
) {
    parity(gpu, name, inputs, &|x| autocast(|| f(x)));
    let on = |dev: &Device| -> Vec<Tensor> {
        inputs.iter().map(|t| t.to_device(dev).unwrap()).collect()
    };
    let half = autocast(|| f(&on(gpu))).unwrap().to_vec().unwrap();
    let full = f(&on(&Device::cpu())).unwrap().to_vec().unwrap();
    let err = rel_err(&half, &full);
    assert!(
        (1e-6..=1e-2).contains(&err),
        "{name}: autocast against f32, rel. error {err:.2e}"
    );
}

/// Every GEMM-backed op under autocast on the GPU, on sizes that are not multiples of the
/// tiles: matmul in each transposition, Linear, Gram, convolutions (strided, padded,
/// grouped, dilated, 1-D, 3-D, transposed), forward and both gradients.
#[test]
fn autocast_gpu_matches_the_cpu() {
    let Some(gpu) = common::gpu("autocast_gpu_matches_the_cpu") else {
        return;
    };
    gpu_matches_the_cpu(&gpu);
    // Again on a device opened with cooperative matrices: where the adapter has what
    // autocast's GEMM needs, its 64×64 tiles run on them; elsewhere (lavapipe) the f16
    // tiles run again.
    let options = OpenOptions {
        cooperative_matrix: true,
        ..Default::default()
    };
    let backend = common::reopen(&gpu, options, "with cooperative matrices");
    eprintln!(
        "autocast_gpu_matches_the_cpu: cooperative matrices on {}: {:?} (subgroup size)",
        gpu.name(),
        backend.ctx().cooperative_matrix()
    );
    gpu_matches_the_cpu(&Device::from_backend(Arc::new(backend)));
}

fn gpu_matches_the_cpu(gpu: &Device) {
    let gpu = gpu.clone();
    let mut r = Rng(run_seed("autocast_gpu_matches_the_cpu"));
    let mut seed = || r.next() % 10_000;
    for (m, k, n) in [(37, 70, 29), (64, 128, 96), (5, 300, 130)] {
        autocast_parity(
            &gpu,
            &format!("matmul {m}x{k}x{n}"),
            &[randn(&[m, k], seed()), randn(&[k, n], seed())],
            &|x| x[0].matmul(&x[1]),
        );
        autocast_parity(
            &gpu,
            &format!("matmul with A and B transposed {m}x{k}x{n}"),
            &[randn(&[k, m], seed()), randn(&[n, k], seed())],
            &|x| x[0].transpose(0, 1)?.matmul(&x[1].transpose(0, 1)?),
        );
    }
    autocast_parity(
        &gpu,
        "linear",
        &[
            randn(&[9, 50], seed()),
            randn(&[33, 50], seed()),
            randn(&[33], seed()),
        ],
        &|x| x[0].linear(&x[1], Some(&x[2])),
    );
    autocast_parity(&gpu, "gram", &[randn(&[2, 21, 9, 11], seed())], &|x| {
        x[0].gram()
    });
    let convs: [(&str, [usize; 4], [usize; 4], Conv2dOptions); 3] = [
        (
            "3x3",
            [2, 5, 13, 11],
            [7, 5, 3, 3],
            Conv2dOptions {
                padding: [1, 1],
                ..Default::default()
            },
        ),
        (
            "strided, dilated",
            [2, 6, 17, 15],
            [10, 6, 3, 3],
            Conv2dOptions {
                stride: [2, 2],
                padding: [2, 1],
                dilation: [2, 1],
                ..Default::default()
            },
        ),
        (
            "grouped",
            [1, 8, 9, 9],
            [12, 4, 3, 3],
            Conv2dOptions {
                padding: [1, 1],
                groups: 2,
                ..Default::default()
            },
        ),
    ];
    for (what, xs, ws, opts) in convs {
        autocast_parity(
            &gpu,
            &format!("conv2d {what}"),
            &[
                randn(&xs, seed()),
                randn(&ws, seed()),
                randn(&[ws[0]], seed()),
            ],
            &|x| x[0].conv2d(&x[1], Some(&x[2]), opts),
        );
    }
    autocast_parity(
        &gpu,
        "conv_transpose2d stride 2",
        &[randn(&[2, 6, 7, 5], seed()), randn(&[6, 4, 3, 3], seed())],
        &|x| {
            x[0].conv_transpose2d(
                &x[1],
                None,
                ConvTranspose2dOptions {
                    stride: [2, 2],
                    padding: [1, 1],
                    output_padding: [1, 0],
                    ..Default::default()
                },
            )
        },
    );
    autocast_parity(
        &gpu,
        "conv1d",
        &[randn(&[2, 6, 61], seed()), randn(&[9, 6, 5], seed())],
        &|x| {
            x[0].conv1d(
                &x[1],
                None,
                Conv1dOptions {
                    padding: 2,
                    ..Default::default()
                },
            )
        },
    );
    autocast_parity(
        &gpu,
        "conv3d",
        &[
            randn(&[1, 3, 6, 7, 5], seed()),
            randn(&[5, 3, 3, 3, 3], seed()),
        ],
        &|x| {
            x[0].conv3d(
                &x[1],
                None,
                Conv3dOptions {
                    padding: [1, 1, 1],
                    ..Default::default()
                },
            )
        },
    );
}

/// A small CNN's weights after three SGD steps under autocast with loss scaling.
fn trained_under_autocast(dev: &Device) -> Vec<Vec<f32>> {
    let cpu = Device::cpu();
    let on = |t: Tensor| t.to_device(dev).unwrap();
    let w1 = on(Tensor::randn(&[8, 3, 3, 3], 1, &cpu).mul_scalar(0.3)).requires_grad();
    let w2 = on(Tensor::randn(&[5, 8 * 4 * 4], 2, &cpu).mul_scalar(0.1)).requires_grad();
    let x = on(Tensor::randn(&[4, 3, 8, 8], 3, &cpu));
    let y = on(Tensor::randn(&[4, 5], 4, &cpu));
    let mut opt = Sgd::new(
        vec![w1.clone(), w2.clone()],
        SgdOptions {
            lr: 0.05,
            momentum: 0.9,
            ..Default::default()
        },
    );
    let mut scaler = GradScaler::new(GradScalerOptions::default()).unwrap();
    for _ in 0..3 {
        opt.zero_grad();
        let loss = autocast(|| -> Result<Tensor> {
            let h = x
                .conv2d(
                    &w1,
                    None,
                    Conv2dOptions {
                        padding: [1, 1],
                        ..Default::default()
                    },
                )?
                .relu()
                .avg_pool2d(Pool2dOptions::square(2))?
                .reshape(&[4, 8 * 4 * 4])?;
            // The loss in f32, as autocast leaves it.
            Ok(h.linear(&w2, None)?.sub(&y)?.square().mean())
        })
        .unwrap();
        scaler.scale(&loss).backward().unwrap();
        assert!(scaler.step(&mut opt).unwrap(), "a clean step was skipped");
        scaler.update().unwrap();
    }
    [w1, w2].iter().map(|w| w.to_vec().unwrap()).collect()
}

/// A training step under autocast with a `GradScaler` gives the same weights on the GPU as
/// on the CPU.
#[test]
fn autocast_training_steps_agree_across_backends() {
    let Some(gpu) = common::gpu("autocast_training_steps_agree_across_backends") else {
        return;
    };
    let (c, g) = (
        trained_under_autocast(&Device::cpu()),
        trained_under_autocast(&gpu),
    );
    for (i, (c, g)) in c.iter().zip(&g).enumerate() {
        let err = rel_err(g, c);
        assert!(err <= 1e-4, "weight {i}: rel. error {err:.2e}");
    }
}

/// A device opened without f16 arithmetic: autocast's products are an error naming the op,
/// the device and the way out; outside autocast the same product runs.
#[test]
fn autocast_without_f16_is_an_error_naming_the_device() {
    let Some(default) = common::gpu("autocast_without_f16_is_an_error_naming_the_device") else {
        return;
    };
    let options = OpenOptions {
        f16: false,
        ..Default::default()
    };
    let backend = common::reopen(&default, options, "without f16");
    assert!(!backend.ctx().f16());
    let gpu = Device::from_backend(Arc::new(backend));
    let a = Tensor::randn(&[3, 4], 1, &gpu);
    let b = Tensor::randn(&[4, 2], 2, &gpu);
    let e = autocast(|| a.matmul(&b)).unwrap_err().to_string();
    assert!(
        e.contains("matmul") && e.contains(&gpu.name()) && e.contains("f16") && e.contains("f32"),
        "{e}"
    );
    assert!(a.matmul(&b).is_ok());
}
