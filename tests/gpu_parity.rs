//! Every op, forward and backward, on the wgpu backend against the CPU reference, on random
//! shapes that are not multiples of the tile sizes (fresh inputs each run; the seed is
//! printed and FOVEA_SEED replays it): forward ≤ 1e-4, gradients ≤ 1e-3 relative error.

// Inputs are handed over by clone for readability.
#![allow(clippy::cloned_ref_to_slice_refs)]

mod common;

use common::{distinct, rel_err, run_seed, Rng};
use fovea::ops::{BatchNormOptions, Conv2dOptions, ConvTranspose2dOptions, Pool2dOptions};
use std::sync::Arc;

use fovea::kernels::{OpenOptions, WgpuBackend};
use fovea::optim::{Adam, AdamOptions, Optimizer, Sgd, SgdOptions};
use fovea::{Device, Result, Tensor};

/// Runs `f` on CPU and GPU copies of `inputs` (all requiring grad) and compares the
/// outputs and every input's gradient.
fn parity(gpu: &Device, name: &str, inputs: &[Tensor], f: &dyn Fn(&[Tensor]) -> Result<Tensor>) {
    let cpu = Device::cpu();
    let on = |dev: &Device| -> Vec<Tensor> {
        inputs
            .iter()
            .map(|t| t.to_device(dev).unwrap().detach().requires_grad())
            .collect()
    };
    let (xc, xg) = (on(&cpu), on(gpu));
    let yc = f(&xc).unwrap_or_else(|e| panic!("{name} on cpu: {e}"));
    let yg = f(&xg).unwrap_or_else(|e| panic!("{name} on gpu: {e}"));
    assert_eq!(yc.shape(), yg.shape(), "{name}: output shapes");
    let err = rel_err(&yg.to_vec().unwrap(), &yc.to_vec().unwrap());
    assert!(
        err <= 1e-4,
        "{name}: forward rel. error {err:.2e} (shape {:?})",
        yc.shape()
    );
    let gy = Tensor::randn(yc.shape(), 17, &cpu);
    yc.backward_with(&gy).unwrap();
    yg.backward_with(&gy.to_device(gpu).unwrap()).unwrap();
    for (i, (c, g)) in xc.iter().zip(&xg).enumerate() {
        let (gc, gg) = (c.grad(), g.grad());
        assert_eq!(
            gc.is_some(),
            gg.is_some(),
            "{name}: input {i} gradient presence"
        );
        if let (Some(gc), Some(gg)) = (gc, gg) {
            let err = rel_err(&gg.to_vec().unwrap(), &gc.to_vec().unwrap());
            assert!(
                err <= 1e-3,
                "{name}: gradient of input {i} (shape {:?}) rel. error {err:.2e}",
                c.shape()
            );
        }
    }
}

fn randn(s: &[usize], seed: u64) -> Tensor {
    Tensor::randn(s, seed, &Device::cpu())
}

macro_rules! gpu_or_skip {
    ($name:expr) => {
        match common::gpu($name) {
            Some(g) => g,
            None => return,
        }
    };
}

#[test]
fn elementwise_and_broadcasting() {
    let gpu = gpu_or_skip!("elementwise_and_broadcasting");
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
    let gpu = gpu_or_skip!("reductions_and_softmax");
    let mut r = Rng(run_seed("reductions_and_softmax"));
    let s = [r.range(1, 4), r.range(1, 9), r.range(1, 40), r.range(1, 33)];
    let x = randn(&s, r.next());
    let d = distinct(&s, r.next(), &Device::cpu());
    parity(&gpu, "sum (long axis)", &[x.clone()], &|t| Ok(t[0].sum()));
    parity(&gpu, "mean_dims", &[x.clone()], &|t| {
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
    parity(&gpu, "sum of 120k", &[long], &|t| Ok(t[0].sum()));
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
    let gpu = gpu_or_skip!("layout_ops");
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
    let gpu = gpu_or_skip!("matmul_and_linear");
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
fn convolutions() {
    let gpu = gpu_or_skip!("convolutions");
    let mut r = Rng(run_seed("convolutions"));
    for round in 0..6 {
        let groups = [1, 1, 2, 3, 5, 1][round];
        let cin = groups * r.range(1, 3);
        let cout = groups * r.range(1, 3);
        let k = [r.range(1, 5), r.range(1, 4)];
        let opts = Conv2dOptions {
            stride: [r.range(1, 3), r.range(1, 2)],
            padding: [r.range(0, 2), r.range(0, 2)],
            dilation: [r.range(1, 2), r.range(1, 3)],
            groups,
        };
        // At least the dilated kernel's extent (5 rows at dilation 2, 4 columns at 3), so
        // every draw is a valid convolution even without padding.
        let x = randn(
            &[r.range(1, 3), cin, r.range(9, 19), r.range(10, 17)],
            r.next(),
        );
        let w = randn(&[cout, cin / groups, k[0], k[1]], r.next());
        let b = randn(&[cout], r.next());
        parity(
            &gpu,
            &format!("conv2d {opts:?} k{k:?}"),
            &[x.clone(), w, b],
            &|t| t[0].conv2d(&t[1], Some(&t[2]), opts),
        );
        let wt = randn(&[cin, cout / groups, k[0], k[1]], r.next());
        let stride = [r.range(1, 3), r.range(1, 2)];
        let topts = ConvTranspose2dOptions {
            stride,
            padding: [r.range(0, 1), 0],
            output_padding: [r.range(0, stride[0] - 1), 0],
            dilation: [1, r.range(1, 2)],
            groups,
        };
        parity(
            &gpu,
            &format!("conv_transpose2d {topts:?}"),
            &[x, wt],
            &|t| t[0].conv_transpose2d(&t[1], None, topts),
        );
    }
    let pad1 = Conv2dOptions {
        padding: [1, 1],
        ..Default::default()
    };
    let s2 = Conv2dOptions {
        stride: [2, 2],
        ..pad1
    };
    let s3 = Conv2dOptions {
        stride: [3, 2],
        padding: [2, 1],
        dilation: [2, 1],
        ..Default::default()
    };
    let dil = Conv2dOptions {
        padding: [2, 3],
        dilation: [2, 3],
        ..Default::default()
    };
    // One case per kernel path: (what it reaches, x shape, w shape, options).
    let cases = [
        (
            "larger than one 64×64 tile in every GEMM dimension",
            [2, 70, 11, 13],
            [67, 70, 3, 3],
            pad1,
        ),
        // 126 and 130 channels over 8,000-odd pixels; edges not multiples of the tile.
        // (With 66 input channels, half of the input gradient's 128-row tiles would be
        // empty, and it would go through col2im instead.)
        (
            "128×128 tiles, forward and input gradient",
            [2, 126, 63, 65],
            [130, 126, 3, 3],
            pad1,
        ),
        // At most 64 channels over 8,000-odd pixels (60 outputs, 5 inputs: the input
        // gradient's 5 rows take 16×256 tiles).
        ("64×128 tiles", [2, 5, 64, 66], [60, 5, 3, 3], pad1),
        // 24 channels over 16,000 pixels: 32×256 tiles, the input gradient in 16×256 ones.
        ("32×256 tiles", [1, 3, 128, 130], [24, 3, 3, 3], pad1),
        // 3 and 4 channels over 131,072 pixels: 8×512 tiles (256 of them), forward and
        // input gradient, where the adapter offers their 33 KiB of workgroup memory
        // (NVIDIA, AMD); 16×256 tiles on lavapipe, DX12 and Apple GPUs (32 KiB).
        ("8×512 tiles", [2, 3, 256, 256], [4, 3, 3, 3], pad1),
        // 9 to 16 channels each way: 16×256 tiles, forward and both gradients (the
        // weight gradient's 108 columns in one tile, split along K).
        ("16×256 tiles", [2, 12, 20, 21], [13, 12, 3, 3], pad1),
        (
            "stride-2 phases with more than a tile of channels",
            [2, 70, 33, 35],
            [66, 70, 3, 3],
            s2,
        ),
        // The phased input gradient, with 16 input channels per group (fewer would send
        // these through col2im, below).
        (
            "stride-3 dilated phases with two, one and no taps (6 outputs: a K step carries several taps)",
            [2, 16, 14, 11],
            [6, 16, 4, 3],
            s3,
        ),
        (
            "phases with 18 outputs (positions wrap inside a four-value load)",
            [1, 16, 41, 30],
            [18, 16, 4, 3],
            s3,
        ),
        (
            "phases with 16 outputs (a step of 16 carries straight into the taps)",
            [1, 16, 12, 13],
            [16, 16, 3, 3],
            s2,
        ),
        (
            "phases, two groups of 16",
            [1, 32, 9, 10],
            [32, 16, 3, 3],
            Conv2dOptions { groups: 2, ..s2 },
        ),
        // Few input channels beside a large kernel: the input gradient through a column
        // buffer (col2im), whose GEMM has no padded taps.
        (
            "col2im, LeNet's C3 (6 to 16 channels, 5×5, no padding)",
            [3, 6, 14, 14],
            [16, 6, 5, 5],
            Conv2dOptions::default(),
        ),
        (
            "col2im, two groups, dilated and padded",
            [2, 4, 11, 10],
            [64, 2, 3, 3],
            Conv2dOptions {
                padding: [2, 1],
                dilation: [2, 1],
                groups: 2,
                ..Default::default()
            },
        ),
        // Strided: col2im keeps the output pixels a tap lands on exactly.
        (
            "col2im at stride 2 (3 to 32 channels)",
            [2, 3, 17, 16],
            [32, 3, 3, 3],
            s2,
        ),
        (
            "col2im at stride 3, dilated (phases of two, one and no taps)",
            [2, 5, 14, 11],
            [18, 5, 4, 3],
            s3,
        ),
        (
            "dilated stride 1 (the single-phase input gradient)",
            [2, 4, 13, 12],
            [5, 4, 3, 3],
            dil,
        ),
    ];
    // With a bias, which the forward adds in its store (to the first split only, where
    // few tiles split K, as in the first case).
    for (what, xs, ws, o) in cases {
        let (x, w, b) = (
            randn(&xs, r.next()),
            randn(&ws, r.next()),
            randn(&[ws[0]], r.next()),
        );
        parity(&gpu, &format!("conv2d, {what}"), &[x, w, b], &|t| {
            t[0].conv2d(&t[1], Some(&t[2]), o)
        });
    }
    // A decoder's last upsampling (32 to 3 channels, 2×2, stride 2): its forward is a
    // strided input gradient of few channels, through col2im.
    let up = ConvTranspose2dOptions {
        stride: [2, 2],
        ..Default::default()
    };
    let (x, w) = (
        randn(&[2, 32, 8, 9], r.next()),
        randn(&[32, 3, 2, 2], r.next()),
    );
    parity(
        &gpu,
        "conv_transpose2d, col2im at stride 2",
        &[x, w],
        &|t| t[0].conv_transpose2d(&t[1], None, up),
    );
    let x = randn(&[2, 24, 15, 14], r.next());
    let w = randn(&[24, 1, 3, 3], r.next());
    let dw = Conv2dOptions {
        stride: [2, 2],
        padding: [1, 1],
        groups: 24,
        ..Default::default()
    };
    parity(&gpu, "depthwise", &[x, w], &|t| {
        t[0].conv2d(&t[1], None, dw)
    });
    // The direct depthwise kernel: channel multipliers, dilation, uneven kernels and
    // strides, a batch and pixel count past one workgroup's 256 threads, and the
    // transposed form (its grad-input path).
    for (mult, k, stride, dil) in [
        (1, [3, 3], [1, 1], [1, 1]),
        (2, [5, 2], [2, 3], [2, 1]),
        (3, [1, 4], [1, 2], [1, 2]),
    ] {
        let c = r.range(3, 9);
        let x = randn(&[3, c, r.range(9, 17), r.range(9, 15)], r.next());
        let w = randn(&[c * mult, 1, k[0], k[1]], r.next());
        let b = randn(&[c * mult], r.next());
        let opts = Conv2dOptions {
            stride,
            padding: [k[0] / 2, k[1] / 2],
            dilation: dil,
            groups: c,
        };
        parity(
            &gpu,
            &format!("depthwise ×{mult} {opts:?} k{k:?}"),
            &[x.clone(), w, b],
            &|t| t[0].conv2d(&t[1], Some(&t[2]), opts),
        );
        let wt = randn(&[c, mult, k[0], k[1]], r.next());
        let topts = ConvTranspose2dOptions {
            stride,
            dilation: dil,
            groups: c,
            ..Default::default()
        };
        parity(
            &gpu,
            &format!("depthwise transposed ×{mult} {topts:?}"),
            &[x, wt],
            &|t| t[0].conv_transpose2d(&t[1], None, topts),
        );
    }
}

#[test]
fn pooling_resizing_and_normalisation() {
    let gpu = gpu_or_skip!("pooling_resizing_and_normalisation");
    let mut r = Rng(run_seed("pooling_resizing_and_normalisation"));
    for _ in 0..4 {
        let kernel = [r.range(1, 4), r.range(1, 3)];
        let opts = Pool2dOptions {
            kernel,
            stride: [r.range(1, 3), r.range(1, 3)],
            padding: [r.range(0, kernel[0] / 2), r.range(0, kernel[1] / 2)],
            ceil_mode: r.chance(0.5),
        };
        let s = [
            r.range(1, 3),
            r.range(1, 4),
            r.range(kernel[0], 13),
            r.range(kernel[1], 11),
        ];
        parity(
            &gpu,
            &format!("max_pool2d {opts:?}"),
            &[distinct(&s, r.next(), &Device::cpu())],
            &|t| t[0].max_pool2d(opts),
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

/// The fused optimizer updates (one kernel per parameter) against the CPU's, over a few
/// steps of each form: Adam plain, with an L2 term and decoupled (AdamW); SGD plain with
/// decay, with momentum, and Nesterov with decay. Parameters of several workgroups,
/// gradients fresh each step; the saved state (moments, momentum buffers) compared too.
#[test]
fn fused_optimizer_updates() {
    let gpu = gpu_or_skip!("fused_optimizer_updates");
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

#[test]
fn running_statistics_and_pool_reach_a_steady_state() {
    let shared = gpu_or_skip!("running_statistics_and_pool_reach_a_steady_state");
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
    let filter = std::env::var("FOVEA_ADAPTER").ok();
    let options = OpenOptions {
        immediates: false,
        ..Default::default()
    };
    let backend = WgpuBackend::open_with_options(filter.as_deref(), options)
        .unwrap_or_else(|e| panic!("{} without immediates: {e}", default.name()));
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
