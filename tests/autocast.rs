//! Autocast (`fovea::autocast`, PyTorch's `torch.autocast` with f16): matrix products and
//! convolutions multiply f16-rounded operands and sum in f32, on the CPU (the reference)
//! and on the GPU (operands rounded as the GEMM stages them); everything else stays f32;
//! an op's backward runs as its forward did, and data-parallel replicas inherit the scope.

mod common;

use std::sync::Arc;

use common::parity::{parity, randn};
use common::{rel_err, run_seed, Rng};
use fovea::kernels::OpenOptions;
use fovea::ops::{
    Conv1dOptions, Conv2dOptions, Conv3dOptions, ConvTranspose2dOptions, Pool2dOptions,
};
use fovea::optim::{GradScaler, GradScalerOptions, Optimizer, Sgd, SgdOptions};
use fovea::{autocast, DType, Device, Result, Tensor};

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
    // Products give f16; sums, softmax, exp, log, powers and reciprocals give f32, from
    // f16 inputs too; other elementwise ops keep their input's dtype.
    let h = t(&[0.5, 2.0], &[1, 2], dev).half().unwrap();
    let dtypes = autocast(|| -> Result<Vec<DType>> {
        Ok(vec![
            a.matmul(&b)?.dtype(),
            h.sum().dtype(),
            h.softmax(1)?.dtype(),
            h.log_softmax(1)?.dtype(),
            h.exp().dtype(),
            h.log().dtype(),
            h.powf(2.0).dtype(),
            h.pow(&h)?.dtype(),
            h.recip().dtype(),
            h.relu().dtype(),
            h.mul_scalar(2.0).dtype(),
        ])
    })
    .unwrap();
    let want = [
        DType::F16,
        DType::F32,
        DType::F32,
        DType::F32,
        DType::F32,
        DType::F32,
    ]
    .into_iter()
    .chain([DType::F32, DType::F32, DType::F32, DType::F16, DType::F16]);
    assert!(dtypes.into_iter().eq(want), "dtypes under autocast");
    assert_eq!(
        h.exp().dtype(),
        DType::F16,
        "outside autocast, f16 stays f16"
    );
    // Depthwise convolutions multiply in f32 (they are not GEMMs) and round the result:
    // (1 + 2⁻¹²)(1 + 2⁻¹¹) is 1 + 2⁻¹⁰ in f16, where the rounded operands' product is 1.
    let dw = t(&[FINE, 1.0], &[1, 2, 1, 1], dev);
    let w = t(&[1.0 + 1.0 / 2048.0, 1.0], &[2, 1, 1, 1], dev);
    let depthwise = autocast(|| {
        dw.conv2d(
            &w,
            None,
            Conv2dOptions {
                groups: 2,
                ..Default::default()
            },
        )
    });
    let depthwise = depthwise.unwrap();
    assert_eq!(depthwise.dtype(), DType::F16);
    assert_eq!(depthwise.to_vec().unwrap(), [1.0 + 1.0 / 1024.0, 1.0]);
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

/// A bilinear op of `x` and `w` with every value 1 + 2⁻¹², under autocast: its output and
/// both gradients (of the sum) must be those of the all-ones operands in f32, to the last
/// bit (sums of small integers are exact), and differ from the f32 op on the fine values.
/// On each GPU path (matmul; convolutions whose input gradient runs at stride 1, by
/// stride phases and through col2im) this shows that the forward and both backward
/// products rounded their operands.
fn gradients_are_rounded(
    dev: &Device,
    what: &str,
    shapes: [&[usize]; 2],
    f: &dyn Fn(&Tensor, &Tensor) -> Result<Tensor>,
) {
    let run = |value: f32, cast: bool| -> Vec<Vec<f32>> {
        let [x, w] = shapes.map(|s| {
            Tensor::from_vec(vec![value; s.iter().product()], s, dev)
                .unwrap()
                .requires_grad()
        });
        let y = if cast {
            autocast(|| f(&x, &w))
        } else {
            f(&x, &w)
        }
        .unwrap();
        y.sum().backward().unwrap();
        [y, x.grad().unwrap(), w.grad().unwrap()]
            .iter()
            .map(|t| t.to_vec().unwrap())
            .collect()
    };
    let (rounded, ones, fine) = (run(FINE, true), run(1.0, false), run(FINE, false));
    for (k, part) in ["output", "input gradient", "weight gradient"]
        .iter()
        .enumerate()
    {
        assert_eq!(rounded[k], ones[k], "{what} on {}: {part}", dev.name());
        assert_ne!(fine[k], ones[k], "{what} on {}: {part} in f32", dev.name());
    }
}

fn every_product_rounds(dev: &Device) {
    gradients_are_rounded(dev, "matmul", [&[3, 5], &[5, 4]], &|x, w| x.matmul(w));
    let conv = |stride: usize, dilation: usize| {
        move |x: &Tensor, w: &Tensor| {
            x.conv2d(
                w,
                None,
                Conv2dOptions {
                    stride: [stride; 2],
                    padding: [1, 1],
                    dilation: [dilation; 2],
                    ..Default::default()
                },
            )
        }
    };
    for (what, c, s, d, k) in [
        ("conv2d 3x3", 4, 1, 1, 3),
        ("conv2d 3x3 stride 2", 4, 2, 1, 3),
        ("conv2d 3x3 dilation 2", 4, 1, 2, 3),
        ("conv2d 5x5 stride 3", 20, 3, 1, 5),
    ] {
        gradients_are_rounded(dev, what, [&[2, c, 9, 8], &[6, c, k, k]], &conv(s, d));
    }
}

#[test]
fn products_and_their_gradients_round_and_nothing_else_on_the_cpu() {
    rounds_the_gemm_family_only(&Device::cpu());
    every_product_rounds(&Device::cpu());
}

#[test]
fn products_and_their_gradients_round_and_nothing_else_on_the_gpu() {
    let test = "products_and_their_gradients_round_and_nothing_else_on_the_gpu";
    let Some(gpu) = common::gpu(test) else {
        return;
    };
    rounds_the_gemm_family_only(&gpu);
    every_product_rounds(&gpu);
}

/// Data-parallel replicas run on threads of their own; autocast reaches them. Each of two
/// replicas takes one row x = 1 + 2⁻¹² of `y = x·w`: the summed weight gradient is 1 under
/// autocast and 1 + 2⁻¹² without.
#[test]
fn autocast_reaches_data_parallel_replicas() {
    use fovea::nn::{Linear, Module};
    use fovea::parallel::DataParallel;
    let devs = [Device::cpu(), Device::cpu_with_memory_limit(usize::MAX)];
    let dp = DataParallel::new(&devs, |d| Ok(Linear::new(1, 1, false, 0, d))).unwrap();
    let x = t(&[FINE, FINE], &[2, 1], &devs[0]);
    let loss = |m: &Linear, part: &[Tensor]| Ok(m.forward(&part[0])?.sum());
    let grad = |cast: bool| {
        let step = || dp.forward_backward(&[&x], loss);
        if cast { autocast(step) } else { step() }.unwrap();
        scalar(dp.parameters(0)[0].grad().unwrap())
    };
    assert_eq!(grad(false), FINE);
    assert_eq!(grad(true), 1.0);
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
    // autocast's GEMM needs, its 64×64 tiles run on them; elsewhere (lavapipe) the
    // rounded f32 tiles run again.
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

/// A small CNN's weights after three SGD steps with loss scaling, under autocast or not.
fn trained_under_autocast(dev: &Device, cast: bool) -> Vec<Vec<f32>> {
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
        let forward = || -> Result<Tensor> {
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
        };
        let loss = if cast { autocast(forward) } else { forward() }.unwrap();
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
        trained_under_autocast(&Device::cpu(), true),
        trained_under_autocast(&gpu, true),
    );
    let full = trained_under_autocast(&Device::cpu(), false);
    for (i, ((c, g), f)) in c.iter().zip(&g).zip(&full).enumerate() {
        // Rounding moves the weights (by about 1e-5 here); the GPU must be much nearer the
        // CPU's autocast than the CPU's f32 is.
        let (err, apart) = (rel_err(g, c), rel_err(f, c));
        assert!(apart > 0.0, "weight {i}: autocast changed nothing");
        assert!(
            err <= 1e-4 && err * 10.0 <= apart,
            "weight {i}: rel. error {err:.2e}, f32 against autocast {apart:.2e}"
        );
    }
}
