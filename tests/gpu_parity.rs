//! Every op, forward and backward, on the wgpu backend against the CPU reference, on random
//! shapes that are not multiples of the tile sizes (fresh inputs each run; the seed is
//! printed and FOVEA_SEED replays it): forward ≤ 1e-4, gradients ≤ 1e-3 relative error.
//! Convolutions have their own file (tests/conv2d.rs), as do the fused optimizer updates
//! (tests/optim.rs); the comparison itself is tests/common/parity.rs.

// Inputs are handed over by clone for readability.
#![allow(clippy::cloned_ref_to_slice_refs)]

mod common;

use common::parity::{parity, randn};
use common::{distinct, run_seed, Rng};
use fovea::ops::{BatchNormOptions, Conv2dOptions, Pool2dOptions};
use std::sync::Arc;

use fovea::kernels::OpenOptions;
use fovea::{Device, Result, Tensor};

#[test]
fn elementwise_and_broadcasting() {
    let Some(gpu) = common::gpu("elementwise_and_broadcasting") else {
        return;
    };
    let mut r = Rng(run_seed("elementwise_and_broadcasting"));
    let s = [r.range(1, 5), r.range(1, 7), r.range(1, 300)];
    let x = randn(&s, r.next());
    let pos = Tensor::rand(&s, r.next(), &Device::cpu()).affine(2.0, 0.1);
    for (name, f) in [
        ("neg", Tensor::neg as fn(&Tensor) -> Tensor),
        ("exp", Tensor::exp),
        ("abs", Tensor::abs),
        ("relu", Tensor::relu),
        ("sigmoid", Tensor::sigmoid),
        ("tanh", Tensor::tanh),
        ("square", Tensor::square),
    ] {
        parity(&gpu, name, &[x.clone()], &|t| Ok(f(&t[0])));
    }
    let wide = x.mul_scalar(4.0);
    for (name, f) in [
        ("relu6", Tensor::relu6 as fn(&Tensor) -> Tensor),
        ("silu", Tensor::silu),
        ("hardswish", Tensor::hardswish),
        ("hardsigmoid", Tensor::hardsigmoid),
    ] {
        parity(&gpu, name, &[wide.clone()], &|t| Ok(f(&t[0])));
    }
    parity(&gpu, "hardtanh clamp", &[wide.clone()], &|t| {
        t[0].hardtanh(-1.5, 2.0).add(&t[0].clamp(-0.5, 3.0))
    });
    parity(&gpu, "log sqrt recip powf", &[pos.clone()], &|t| {
        t[0].log()
            .add(&t[0].sqrt())?
            .add(&t[0].recip())?
            .add(&t[0].powf(1.7))
    });
    parity(&gpu, "leaky_relu affine", &[x.clone()], &|t| {
        Ok(t[0].leaky_relu(0.2).affine(-3.0, 0.5))
    });
    let b = randn(&[s[1], 1], r.next());
    let c = randn(&[s[2]], r.next());
    parity(
        &gpu,
        "add sub mul div",
        &[x.clone(), b.clone(), c.clone()],
        &|t| {
            t[0].add(&t[1])?
                .mul(&t[2])?
                .sub(&t[1])?
                .div(&t[2].abs().add_scalar(0.5))
        },
    );
    parity(&gpu, "add_relu", &[x.clone(), b.clone()], &|t| {
        t[0].add_relu(&t[1])
    });
    let (d1, d2) = (
        distinct(&s, r.next(), &Device::cpu()),
        distinct(&[s[2]], r.next(), &Device::cpu()).add_scalar(0.05),
    );
    parity(&gpu, "maximum minimum", &[d1, d2], &|t| {
        t[0].maximum(&t[1])?.add(&t[0].minimum(&t[1])?)
    });
    parity(&gpu, "pow", &[pos, b], &|t| t[0].pow(&t[1]));
    // Large values: tanh must stay finite where exp(2x) overflows.
    let big =
        Tensor::from_vec(vec![-100.0, -20.0, 0.0, 20.0, 100.0], &[5], &Device::cpu()).unwrap();
    parity(&gpu, "tanh saturation", &[big], &|t| {
        t[0].tanh().add(&t[0].sigmoid())
    });
}

#[test]
fn reductions_and_softmax() {
    let Some(gpu) = common::gpu("reductions_and_softmax") else {
        return;
    };
    let mut r = Rng(run_seed("reductions_and_softmax"));
    let s = [r.range(1, 4), r.range(1, 9), r.range(1, 40), r.range(1, 33)];
    let x = randn(&s, r.next());
    let d = distinct(&s, r.next(), &Device::cpu());
    // Whole sums of zero-mean values may cancel to near zero (0.06 from 2,128 values
    // whose magnitudes add to 3,367), where f32 rounding that is tiny against the values
    // is large against the result. Shifted values keep the comparison well-conditioned.
    let shifted = x.add_scalar(1.0);
    parity(&gpu, "sum (long axis)", &[shifted.clone()], &|t| {
        Ok(t[0].sum())
    });
    parity(&gpu, "mean_dims", &[shifted], &|t| {
        t[0].mean_dims(&[0, 2, 3], true)
    });
    parity(&gpu, "sum_dims", &[x.clone()], &|t| {
        t[0].sum_dims(&[1], false)
    });
    parity(&gpu, "max_dims", &[d.clone()], &|t| {
        t[0].max_dims(&[-1], false)
    });
    parity(&gpu, "max", &[d], &|t| t[0].max());
    parity(&gpu, "softmax", &[x.clone()], &|t| t[0].softmax(1));
    parity(&gpu, "log_softmax", &[x.clone()], &|t| t[0].log_softmax(-1));
    let big = randn(&[3, 70_001], r.next());
    parity(&gpu, "sum over 70k", &[big], &|t| {
        t[0].sum_dims(&[1], false)
    });
    // Axes of several 8,192-value chunks (two passes), with an inner axis, and a whole
    // tensor at once.
    let long = distinct(&[2, 20_001, 3], r.next(), &Device::cpu());
    parity(&gpu, "sum over chunks", &[long.clone()], &|t| {
        t[0].sum_dims(&[1], false)
    });
    parity(&gpu, "max over chunks", &[long.clone()], &|t| {
        t[0].max_dims(&[1], false)
    });
    // Shifted as above: the ramp alone sums to -6,000 from magnitudes adding to 3.6e8.
    let shifted = long.add_scalar(7000.0);
    parity(&gpu, "sum of 120k", &[shifted], &|t| Ok(t[0].sum()));
    // Few outputs over a middle axis under 256 long: threads per output and chunk of 17
    // values (four at a time, then the rest), then a second pass over the 12 chunks.
    let cols = distinct(&[3, 203, 50], r.next(), &Device::cpu());
    parity(&gpu, "sum over column chunks", &[cols.clone()], &|t| {
        t[0].sum_dims(&[1], false)
    });
    parity(&gpu, "max over column chunks", &[cols], &|t| {
        t[0].max_dims(&[1], false)
    });
}

#[test]
fn layout_ops() {
    let Some(gpu) = common::gpu("layout_ops") else {
        return;
    };
    let mut r = Rng(run_seed("layout_ops"));
    let s = [r.range(1, 4), r.range(1, 5), r.range(1, 9), r.range(1, 7)];
    let x = randn(&s, r.next());
    parity(&gpu, "permute", &[x.clone()], &|t| {
        t[0].permute(&[3, 1, 0, 2])
    });
    parity(&gpu, "narrow", &[x.clone()], &|t| {
        t[0].narrow(2, s[2] / 2, s[2] - s[2] / 2)
    });
    parity(&gpu, "pad", &[x.clone()], &|t| {
        t[0].pad(&[1, 2, 3, 0], -1.0)
    });
    parity(&gpu, "expand", &[x.clone()], &|t| {
        t[0].narrow(1, 0, 1)?.expand(&[2, s[0], 3, s[2], s[3]])
    });
    let y = randn(&[s[0], r.range(1, 4), s[2], s[3]], r.next());
    parity(&gpu, "cat", &[x.clone(), y], &|t| {
        Tensor::cat(&[&t[0], &t[1], &t[0]], 1)
    });
    parity(&gpu, "stack", &[x.clone(), x.clone()], &|t| {
        Tensor::stack(&[&t[0], &t[1]], 2)
    });
    // The view ops built on the kernels above, chained.
    parity(
        &gpu,
        "transpose, slice, flatten, squeeze and friends",
        &[x.clone()],
        &|t| {
            t[0].transpose(0, 2)?
                .slice(1, 0, 1)?
                .squeeze(1)?
                .unsqueeze(0)?
                .flatten(1)?
                .t()
        },
    );
}

#[test]
fn matmul_and_linear() {
    let Some(gpu) = common::gpu("matmul_and_linear") else {
        return;
    };
    let mut r = Rng(run_seed("matmul_and_linear"));
    let (m, k, n, b) = (
        r.range(1, 130),
        r.range(1, 100),
        r.range(1, 70),
        r.range(1, 3),
    );
    parity(
        &gpu,
        "matmul 2d",
        &[randn(&[m, k], r.next()), randn(&[k, n], r.next())],
        &|t| t[0].matmul(&t[1]),
    );
    parity(
        &gpu,
        "matmul batched",
        &[randn(&[b, m, k], r.next()), randn(&[b, k, n], r.next())],
        &|t| t[0].matmul(&t[1]),
    );
    parity(
        &gpu,
        "matmul shared",
        &[randn(&[b, m, k], r.next()), randn(&[k, n], r.next())],
        &|t| t[0].matmul(&t[1]),
    );
    // Batched products that reach each tile and load width (the gradients run the
    // transposed layouts): (what, batch, m, k, n). Edges are not multiples of the tile
    // unless the case is about vec4 loads.
    let (sm, sk) = (r.range(33, 65), r.range(17, 40));
    let cases = [
        // 128×128 tiles (32 × 4 of them), forward and both transposed products.
        (
            "big tiles",
            32,
            r.range(129, 140),
            r.range(65, 80),
            r.range(129, 140),
        ),
        // Tall and wide: 64×128 and 128×64 tiles (one side at most 64, 96 tiles).
        ("64-row tiles", 32, sm, sk, 300),
        ("64-column tiles", 32, 300, sk, sm),
        // Few rows: 8×512 (256 of them; 16×256 on an adapter without their 33 KiB of
        // workgroup memory, such as lavapipe), 16×256 and 32×256 tiles.
        ("8-row tiles", 128, r.range(1, 9), sk, 600),
        ("16-row tiles", 32, r.range(1, 17), sk, 600),
        ("32-row tiles", 32, r.range(17, 33), sk, 600),
        // Every dimension a multiple of 4: the vec4 entries, in three tile sizes.
        ("aligned", 2, 68, 36, 132),
        ("aligned big tiles", 32, 132, 76, 136),
        ("aligned 16-row tiles", 32, 12, 36, 520),
    ];
    for (what, batch, m, k, n) in cases {
        parity(
            &gpu,
            &format!("matmul {what}"),
            &[
                randn(&[batch, m, k], r.next()),
                randn(&[batch, k, n], r.next()),
            ],
            &|t| t[0].matmul(&t[1]),
        );
    }
    parity(
        &gpu,
        "linear",
        &[
            randn(&[m, k], r.next()),
            randn(&[n, k], r.next()),
            randn(&[n], r.next()),
        ],
        &|t| t[0].linear(&t[1], Some(&t[2])),
    );
    parity(
        &gpu,
        "gram",
        &[randn(
            &[b, r.range(1, 70), r.range(1, 9), r.range(1, 9)],
            r.next(),
        )],
        &|t| t[0].gram(),
    );
    parity(
        &gpu,
        "gram big tiles",
        &[randn(
            &[2, r.range(128, 200), r.range(1, 9), r.range(1, 9)],
            r.next(),
        )],
        &|t| t[0].gram(),
    );
}

#[test]
fn pooling_resizing_and_normalisation() {
    let Some(gpu) = common::gpu("pooling_resizing_and_normalisation") else {
        return;
    };
    let mut r = Rng(run_seed("pooling_resizing_and_normalisation"));
    for _ in 0..4 {
        let kernel = [r.range(1, 4), r.range(1, 3)];
        let opts = Pool2dOptions {
            kernel,
            stride: [r.range(1, 3), r.range(1, 3)],
            padding: [r.range(0, kernel[0] / 2), r.range(0, kernel[1] / 2)],
            ceil_mode: r.chance(0.5),
            same: r.chance(0.3),
            ..Default::default()
        };
        let dilation = [r.range(1, 3), r.range(1, 2)];
        // Planes at least as large as the dilated window, so every case has an output.
        let s = [
            r.range(1, 3),
            r.range(1, 4),
            r.range(dilation[0] * (kernel[0] - 1) + 1, 13),
            r.range(dilation[1] * (kernel[1] - 1) + 1, 11),
        ];
        let dilated = Pool2dOptions { dilation, ..opts };
        let distinct_x = distinct(&s, r.next(), &Device::cpu());
        parity(
            &gpu,
            &format!("max_pool2d {dilated:?}"),
            &[distinct_x.clone()],
            &|t| t[0].max_pool2d(dilated),
        );
        // The indices are exact integers: equal on both devices.
        let (_, idx_cpu) = distinct_x.max_pool2d_with_indices(dilated).unwrap();
        let (_, idx_gpu) = distinct_x
            .to_device(&gpu)
            .unwrap()
            .max_pool2d_with_indices(dilated)
            .unwrap();
        assert_eq!(
            idx_cpu.to_vec().unwrap(),
            idx_gpu.to_vec().unwrap(),
            "indices {dilated:?}"
        );
        parity(
            &gpu,
            &format!("max_pool2d_with_indices then max_unpool2d {opts:?}"),
            &[distinct_x.clone()],
            &|t| {
                let (y, idx) = t[0].max_pool2d_with_indices(opts)?;
                y.mul_scalar(2.0).max_unpool2d(&idx, [s[2], s[3]])
            },
        );
        let include = r.chance(0.5);
        parity(
            &gpu,
            &format!("avg_pool2d {opts:?} {include}"),
            &[randn(&s, r.next())],
            &|t| t[0].avg_pool2d_with(opts, include),
        );
        let out = [r.range(1, 6), r.range(1, 6)];
        parity(
            &gpu,
            &format!("adaptive_avg_pool2d {out:?}"),
            &[randn(&s, r.next())],
            &|t| t[0].adaptive_avg_pool2d(out),
        );
        let up = [r.range(1, 25), r.range(1, 25)];
        parity(
            &gpu,
            &format!("upsample_nearest2d {up:?}"),
            &[randn(&s, r.next())],
            &|t| t[0].upsample_nearest2d(up),
        );
    }
    let c = r.range(1, 6);
    let s = [r.range(2, 4), c, r.range(2, 9), r.range(1, 9)];
    let bn = BatchNormOptions {
        training: true,
        ..Default::default()
    };
    parity(
        &gpu,
        "batch_norm",
        &[
            randn(&s, r.next()),
            randn(&[c], r.next()),
            randn(&[c], r.next()),
        ],
        &|t| t[0].batch_norm(None, None, Some(&t[1]), Some(&t[2]), bn),
    );
    parity(
        &gpu,
        "batch_norm_relu",
        &bn_relu_inputs(&s, &mut r, None),
        &|t| t[0].batch_norm_relu(None, None, Some(&t[1]), Some(&t[2]), bn),
    );
    parity(&gpu, "dropout", &[randn(&s, r.next())], &|t| {
        t[0].dropout(0.4, true, 11)
    });
    let targets: Vec<usize> = (0..5).map(|_| r.range(0, 6)).collect();
    parity(&gpu, "cross_entropy", &[randn(&[5, 7], r.next())], &|t| {
        t[0].cross_entropy(&targets)
    });
    parity(
        &gpu,
        "mse_loss",
        &[randn(&s, r.next()), randn(&s, r.next())],
        &|t| t[0].mse_loss(&t[1]),
    );
    parity(&gpu, "nll_loss", &[randn(&[5, 7], r.next())], &|t| {
        t[0].log_softmax(1)?.nll_loss(&targets)
    });
    parity(
        &gpu,
        "bce_with_logits",
        &[randn(&s, r.next()), randn(&s, r.next()).sigmoid()],
        &|t| t[0].bce_with_logits(&t[1]),
    );
    parity(&gpu, "upsample2d", &[randn(&s, r.next())], &|t| {
        t[0].upsample2d(2)
    });
}

/// Input, weight and bias of batch norm + ReLU with every value before the ReLU off its kink
/// (see `bias_off_relu_kink`), so the devices' rounding cannot put one on either side. The
/// weights' magnitudes are 0.75 to 1.5: a weight near zero shrinks every distance from the
/// kink with it (one seed in about 40 left less than 1e-4).
fn bn_relu_inputs(s: &[usize], r: &mut Rng, stats: Option<(&[f32], &[f32])>) -> [Tensor; 3] {
    for _ in 0..100 {
        let x = randn(s, r.next()).affine(3.0, 10.0);
        let w = common::away_from_zero(&[s[1]], r.next(), 0.5, &Device::cpu()).mul_scalar(1.5);
        let (b, kept) = common::bias_off_relu_kink(&x, &w.to_vec().unwrap(), stats, 1e-5);
        assert!(kept > 1e-4, "{s:?}: values {kept:.1e} from the kink");
        let inputs = [x, w, Tensor::from_vec(b, &[s[1]], &Device::cpu()).unwrap()];
        let clear = stats.is_some()
            || weight_gradient_clear(&inputs, &|t| {
                t[0].batch_norm_relu(None, None, Some(&t[1]), Some(&t[2]), TRAINING)
            });
        if clear {
            return inputs;
        }
    }
    panic!("{s:?}: no batch norm + ReLU inputs whose weight gradient stays clear of zero");
}

const TRAINING: BatchNormOptions = BatchNormOptions {
    training: true,
    momentum: 0.1,
    eps: 1e-5,
};

/// Whether every channel's weight gradient of `f` (on the CPU, with the output gradient
/// `parity` sends back) is at least 2% of the root of its values per channel. A sum that
/// cancels further leaves the devices' rounding of the statistics (about 1e-7 of the
/// input's offset, times the output gradient's sum) above parity's 1e-3 relative error:
/// one run in about 200 failed that way, on a channel of 12 values.
fn weight_gradient_clear(inputs: &[Tensor; 3], f: &dyn Fn(&[Tensor]) -> Result<Tensor>) -> bool {
    let t: Vec<Tensor> = inputs.iter().map(|t| t.detach().requires_grad()).collect();
    let y = f(&t).unwrap();
    let gy = Tensor::randn(y.shape(), common::parity::GY_SEED, &Device::cpu());
    y.backward_with(&gy).unwrap();
    let per = (y.numel() / t[1].numel()) as f64;
    let gw = t[1].grad().unwrap().to_vec().unwrap();
    gw.iter().all(|g| g.abs() as f64 >= 0.02 * per.sqrt())
}

/// Input, weight and bias for batch norm's parity whose weight gradient in training stays
/// clear of zero ([`weight_gradient_clear`]), the input's mean offset from zero.
fn bn_inputs(s: &[usize], r: &mut Rng) -> [Tensor; 3] {
    let c = s[1];
    for _ in 0..100 {
        let x = randn(s, r.next()).affine(3.0, 10.0);
        let inputs = [x, randn(&[c], r.next()), randn(&[c], r.next())];
        if weight_gradient_clear(&inputs, &|t| {
            t[0].batch_norm(None, None, Some(&t[1]), Some(&t[2]), TRAINING)
        }) {
            return inputs;
        }
    }
    panic!("{s:?}: no batch norm inputs whose weight gradient stays clear of zero");
}

/// Batch norm's fused kernels: channels whose values span several workgroup chunks of the
/// sums (more than 4,096 per channel), inputs of rank 2, 3 and 5, an offset mean (the
/// statistics are centred, not sums of squares), training and eval, with and without the
/// affine parameters and with a ReLU fused in; the running statistics agree after a
/// training step.
#[test]
fn batch_norm_across_chunks_ranks_and_modes() {
    let Some(gpu) = common::gpu("batch_norm_across_chunks_ranks_and_modes") else {
        return;
    };
    let mut r = Rng(run_seed("batch_norm_across_chunks_ranks_and_modes"));
    // 2·46² = 4,232 values per channel at the least: always two chunks or more.
    let long = [
        r.range(2, 4),
        r.range(2, 5),
        r.range(46, 60),
        r.range(46, 60),
    ];
    // At least three values per channel: with two, the normalised values are ±1 whatever
    // the input, its gradient is zero and the comparison would be of rounding noise.
    let shapes: [&[usize]; 4] = [
        &long,
        &[r.range(3, 9), r.range(1, 7)],
        &[r.range(3, 4), r.range(1, 5), r.range(1, 30)],
        &[
            2,
            r.range(1, 4),
            r.range(1, 4),
            r.range(2, 5),
            r.range(1, 5),
        ],
    ];
    for s in shapes {
        let c = s[1];
        let [x, w, b] = bn_inputs(s, &mut r);
        for training in [true, false] {
            let opts = BatchNormOptions {
                training,
                ..Default::default()
            };
            let (rm, rv) = (
                randn(&[c], r.next()),
                randn(&[c], r.next()).abs().add_scalar(0.5),
            );
            let name = format!("batch_norm {s:?} training {training}");
            parity(&gpu, &name, &[x.clone(), w.clone(), b.clone()], &|t| {
                let (rm, rv) = (rm.to_device(t[0].device())?, rv.to_device(t[0].device())?);
                t[0].batch_norm(Some(&rm), Some(&rv), Some(&t[1]), Some(&t[2]), opts)
            });
            parity(&gpu, &format!("{name} no affine"), &[x.clone()], &|t| {
                let (rm, rv) = (rm.to_device(t[0].device())?, rv.to_device(t[0].device())?);
                t[0].batch_norm(Some(&rm), Some(&rv), None, None, opts)
            });
            let (m, v) = (rm.to_vec().unwrap(), rv.to_vec().unwrap());
            let stats = (!training).then_some((&m[..], &v[..]));
            let inputs = bn_relu_inputs(s, &mut r, stats);
            parity(&gpu, &format!("{name} relu"), &inputs, &|t| {
                let (rm, rv) = (rm.to_device(t[0].device())?, rv.to_device(t[0].device())?);
                t[0].batch_norm_relu(Some(&rm), Some(&rv), Some(&t[1]), Some(&t[2]), opts)
            });
        }
        let opts = BatchNormOptions {
            training: true,
            ..Default::default()
        };
        let running = |dev: &Device| {
            let (rm, rv) = (Tensor::zeros(&[c], dev), Tensor::ones(&[c], dev));
            x.to_device(dev)
                .unwrap()
                .batch_norm(Some(&rm), Some(&rv), None, None, opts)
                .unwrap();
            [rm.to_vec().unwrap(), rv.to_vec().unwrap()]
        };
        for (g, c) in running(&gpu).iter().zip(running(&Device::cpu()).iter()) {
            let err = common::rel_err(g, c);
            assert!(
                err <= 1e-5,
                "running statistics of {s:?}: rel. error {err:.2e}"
            );
        }
    }
}

#[test]
fn running_statistics_and_pool_reach_a_steady_state() {
    let Some(shared) = common::gpu("running_statistics_and_pool_reach_a_steady_state") else {
        return;
    };
    // A private device: the other tests of this binary run in parallel on the shared one
    // and would move its counters.
    let filter = std::env::var("FOVEA_ADAPTER").ok();
    let backend = fovea::kernels::WgpuBackend::open(filter.as_deref())
        .expect("the shared GPU device opened, so this one does");
    let gpu = Device::from_backend(std::sync::Arc::new(backend));
    assert_eq!(gpu.name(), shared.name());
    let w = Tensor::randn(&[4, 3, 3, 3], 1, &gpu).requires_grad();
    let step = |i: u64| {
        let x = Tensor::randn(&[2, 3, 8, 8], i, &gpu);
        let y = x
            .conv2d(&w, None, Conv2dOptions::default())
            .unwrap()
            .relu()
            .mean();
        y.backward().unwrap();
        fovea::no_grad(|| w.assign(&w.sub(&w.grad().unwrap().mul_scalar(0.01)).unwrap())).unwrap();
        w.zero_grad();
        y.item().unwrap()
    };
    for i in 0..3 {
        step(i);
    }
    let after_warmup = gpu.stats();
    for i in 3..40 {
        step(i);
    }
    let later = gpu.stats();
    assert_eq!(
        later.buffers_allocated, after_warmup.buffers_allocated,
        "a training loop must reuse pooled buffers: {after_warmup:?} -> {later:?}"
    );
    // Ops and uploads are recorded, not submitted one by one: the loss read-back at the
    // end of each step is its only submission.
    let per_step = (later.submissions - after_warmup.submissions) as f64 / 37.0;
    assert!(per_step <= 1.0, "{per_step} submissions per training step");
}

/// Adapters without immediates take each dispatch's parameters from a uniform buffer
/// instead: the same kernels agree with the CPU that way too (the GEMM shaders in all three
/// convolution modes, a two-pass reduction, pooling, softmax and elementwise ops).
#[test]
fn parameters_through_a_uniform_buffer() {
    let Some(default) = common::gpu("parameters_through_a_uniform_buffer") else {
        return;
    };
    let options = OpenOptions {
        immediates: false,
        ..Default::default()
    };
    let backend = common::reopen(&default, options, "without immediates");
    assert!(!backend.ctx().immediates());
    let gpu = Device::from_backend(Arc::new(backend));
    let mut r = Rng(run_seed("parameters_through_a_uniform_buffer"));
    let opts = Conv2dOptions {
        stride: [2, 1],
        padding: [1, 1],
        ..Default::default()
    };
    parity(
        &gpu,
        "conv2d",
        &[
            randn(&[2, 5, 11, 12], r.next()),
            randn(&[7, 5, 3, 3], r.next()),
            randn(&[7], r.next()),
        ],
        &|t| t[0].conv2d(&t[1], Some(&t[2]), opts),
    );
    parity(
        &gpu,
        "matmul",
        &[randn(&[3, 20, 9], r.next()), randn(&[3, 9, 70], r.next())],
        &|t| t[0].matmul(&t[1]),
    );
    parity(
        &gpu,
        "sum over chunks",
        &[randn(&[2, 9000], r.next())],
        &|t| t[0].sum_dims(&[1], false),
    );
    let pool = Pool2dOptions {
        kernel: [2, 2],
        stride: [2, 2],
        ..Default::default()
    };
    parity(
        &gpu,
        "max_pool2d, softmax",
        &[randn(&[2, 3, 8, 9], r.next())],
        &|t| Ok(t[0].max_pool2d(pool)?.softmax(1)?.mul_scalar(3.0).exp()),
    );
}

/// Bilinear interpolation by size and by scale factor, both corner conventions, up and
/// down, including one-cell inputs and outputs (where the scale is 0 or the taps clamp).
#[test]
fn bilinear_interpolation() {
    let Some(gpu) = common::gpu("bilinear_interpolation") else {
        return;
    };
    let mut r = Rng(run_seed("bilinear_interpolation"));
    for round in 0..6 {
        let s = [r.range(1, 2), r.range(1, 3), r.range(1, 9), r.range(1, 11)];
        let size = if round == 0 {
            [1, r.range(1, 3)]
        } else {
            [r.range(1, 23), r.range(1, 23)]
        };
        let align = r.chance(0.5);
        parity(
            &gpu,
            &format!("interpolate_bilinear {s:?} -> {size:?} align_corners {align}"),
            &[randn(&s, r.next())],
            &|t| t[0].interpolate_bilinear(size, align),
        );
        let factor = [
            r.pick(&[0.5, 1.5, 2.0, 2.5, 3.0]),
            r.pick(&[0.75, 1.25, 2.0, 4.0]),
        ];
        let s = [1, 2, r.range(2, 8), r.range(2, 8)];
        parity(
            &gpu,
            &format!("interpolate_bilinear_scale {s:?} x {factor:?} align_corners {align}"),
            &[randn(&s, r.next())],
            &|t| t[0].interpolate_bilinear_scale(factor, align),
        );
    }
}

/// Per-pixel cross-entropy (class weights, an ignore index outside and inside the classes,
/// every reduction) and BCE with a positive weight.
#[test]
fn pixel_losses() {
    use fovea::ops::{CrossEntropy2dOptions, PixelTargets, Reduction};
    let Some(gpu) = common::gpu("pixel_losses") else {
        return;
    };
    let mut r = Rng(run_seed("pixel_losses"));
    let (n, c, h, w) = (2, r.range(2, 6), r.range(3, 9), r.range(3, 11));
    for (ignore, reduction) in [
        (-100, Reduction::Mean),
        (255, Reduction::Sum),
        (1, Reduction::None),
    ] {
        let ids: Vec<i64> = (0..n * h * w)
            .map(|i| {
                if i % 5 == 0 {
                    ignore
                } else {
                    r.range(0, c - 1) as i64
                }
            })
            .collect();
        let target = PixelTargets::new(ids, [n, h, w]).unwrap();
        let opts = CrossEntropy2dOptions {
            weight: Some((0..c).map(|i| 0.5 + i as f32 * 0.25).collect()),
            ignore_index: ignore,
            reduction,
        };
        parity(
            &gpu,
            &format!("cross_entropy2d {opts:?}"),
            &[randn(&[n, c, h, w], r.next()).mul_scalar(3.0)],
            &|t| t[0].cross_entropy2d(&target, &opts),
        );
    }
    let s = [n, 1, h, w];
    let labels: Vec<f32> = (0..n * h * w).map(|i| (i % 3 == 0) as u8 as f32).collect();
    let labels = Tensor::from_vec(labels, &s, &Device::cpu()).unwrap();
    parity(
        &gpu,
        "bce_with_logits_weighted",
        &[randn(&s, r.next()).mul_scalar(4.0)],
        &|t| t[0].bce_with_logits_weighted(&labels.to_device(t[0].device())?, 2.5),
    );
}
