//! Every differentiable op's backward rule against central finite differences on the CPU
//! backend, on random shapes that include sizes 1 and odd sizes.

// Inputs are built once per round and handed over by clone for readability.
#![allow(clippy::cloned_ref_to_slice_refs)]

mod common;

use common::{away_from_zero, bias_off_relu_kink, distinct, gradcheck, run_seed, Rng};
use fovea::ops::{BatchNormOptions, Conv2dOptions, ConvTranspose2dOptions, Pool2dOptions};
use fovea::{Device, Tensor};

fn dev() -> Device {
    Device::cpu()
}

fn shape(r: &mut Rng, rank: usize) -> Vec<usize> {
    (0..rank).map(|_| r.pick(&[1, 2, 3, 5])).collect()
}

fn randn(s: &[usize], seed: u64) -> Tensor {
    Tensor::randn(s, seed, &dev())
}

fn positive(s: &[usize], seed: u64) -> Tensor {
    Tensor::rand(s, seed, &dev()).affine(1.5, 0.5)
}

/// Input, weight and bias of a fused batch norm + ReLU whose values before the ReLU all lie
/// 0.06 or more from its kink, drawn until they do. A finite-difference step (1e-2) moves
/// them by at most about 0.04: on a weight, 1e-2 times a normalised value (|x̂| ≤ 3 here);
/// on a bias, 1e-2; on an input, 1e-2 · |w| / σ, with |w| < 1.5 and σ near 2.
fn bn_relu_inputs(s: &[usize], seed: u64, stats: Option<(&[f32], &[f32])>) -> [Tensor; 3] {
    let c = s[1];
    for k in 0..200 {
        let seed = seed.wrapping_add(2 * k);
        let x = randn(s, seed).affine(2.0, 0.5);
        let w = away_from_zero(&[c], seed + 1, 0.5, &dev()).mul_scalar(1.5);
        let (b, kept) = bias_off_relu_kink(&x, &w.to_vec().unwrap(), stats, 1e-5);
        if kept >= 0.06 {
            return [x, w, Tensor::from_vec(b, &[c], &dev()).unwrap()];
        }
    }
    panic!("no batch norm + ReLU inputs 0.06 off the kink for shape {s:?}");
}

#[test]
fn unary_ops() {
    let mut r = Rng(run_seed("unary_ops"));
    for round in 0..3 {
        let rank = r.range(1, 3);
        let s = shape(&mut r, rank);
        let seed = r.next();
        let x = randn(&s, seed);
        let a = away_from_zero(&s, seed, 0.1, &dev());
        let p = positive(&s, seed);
        let one = [true];
        gradcheck("neg", &[x.clone()], &one, &|t| Ok(t[0].neg()));
        gradcheck("exp", &[x.clone()], &one, &|t| Ok(t[0].exp()));
        gradcheck("log", &[p.clone()], &one, &|t| Ok(t[0].log()));
        gradcheck("sqrt", &[p.clone()], &one, &|t| Ok(t[0].sqrt()));
        gradcheck("abs", &[a.clone()], &one, &|t| Ok(t[0].abs()));
        gradcheck("relu", &[a.clone()], &one, &|t| Ok(t[0].relu()));
        gradcheck("leaky_relu", &[a.clone()], &one, &|t| {
            Ok(t[0].leaky_relu(0.1))
        });
        gradcheck("sigmoid", &[x.clone()], &one, &|t| Ok(t[0].sigmoid()));
        gradcheck("tanh", &[x.clone()], &one, &|t| Ok(t[0].tanh()));
        gradcheck("affine", &[x.clone()], &one, &|t| {
            Ok(t[0].affine(-1.5, 0.25))
        });
        gradcheck("powf", &[p.clone()], &one, &|t| Ok(t[0].powf(2.5)));
        gradcheck("recip", &[p.clone()], &one, &|t| Ok(t[0].recip()));
        // Distinct values on a grid of 1 offset by 0.5: they straddle the kinks (integers:
        // 0 and 6 for relu6, ±3 for hardswish and hardsigmoid, the bounds below) and stay
        // 0.5 away from them.
        let grid = distinct(&s, seed, &dev()).mul_scalar(10.0).add_scalar(0.5);
        gradcheck("hardtanh", &[grid.clone()], &one, &|t| {
            Ok(t[0].hardtanh(-1.0, 2.0))
        });
        gradcheck("relu6", &[grid.clone()], &one, &|t| Ok(t[0].relu6()));
        gradcheck("clamp", &[grid.clone()], &one, &|t| {
            Ok(t[0].clamp(-2.0, 1.0))
        });
        gradcheck("silu", &[x.mul_scalar(3.0)], &one, &|t| Ok(t[0].silu()));
        gradcheck(
            "hardswish",
            &[grid.clone()],
            &one,
            &|t| Ok(t[0].hardswish()),
        );
        gradcheck("hardsigmoid", &[grid.clone()], &one, &|t| {
            Ok(t[0].hardsigmoid())
        });
        if round == 0 {
            gradcheck("square", &[x.clone()], &one, &|t| Ok(t[0].square()));
        }
    }
}

#[test]
fn broadcasting_binary_ops() {
    let mut r = Rng(run_seed("broadcasting_binary_ops"));
    for _ in 0..4 {
        let sa = shape(&mut r, 3);
        // b broadcasts against a: some dims set to 1, sometimes fewer dims.
        let mut sb: Vec<usize> = sa
            .iter()
            .map(|&d| if r.chance(0.4) { 1 } else { d })
            .collect();
        if r.chance(0.5) {
            sb.remove(0);
        }
        let (s1, s2) = (r.next(), r.next());
        let (a, b) = (randn(&sa, s1), randn(&sb, s2));
        let both = [true, true];
        gradcheck("add", &[a.clone(), b.clone()], &both, &|t| t[0].add(&t[1]));
        gradcheck("sub", &[b.clone(), a.clone()], &both, &|t| t[0].sub(&t[1]));
        gradcheck("mul", &[a.clone(), b.clone()], &both, &|t| t[0].mul(&t[1]));
        let bz = away_from_zero(&sb, s2, 0.5, &dev());
        gradcheck("div", &[a.clone(), bz], &both, &|t| t[0].div(&t[1]));
        let (da, db) = (
            distinct(&sa, s1, &dev()),
            distinct(&sb, s2, &dev()).add_scalar(0.05),
        );
        gradcheck("maximum", &[da.clone(), db.clone()], &both, &|t| {
            t[0].maximum(&t[1])
        });
        gradcheck("minimum", &[da, db], &both, &|t| t[0].minimum(&t[1]));
        // Sums at least 0.2 from ReLU's kink: |a| ≥ 0.3, |b| < 0.1.
        let (ka, kb) = (
            away_from_zero(&sa, s1, 0.3, &dev()),
            Tensor::rand(&sb, s2, &dev()).affine(0.2, -0.1),
        );
        gradcheck("add_relu", &[ka, kb], &both, &|t| t[0].add_relu(&t[1]));
        gradcheck("pow", &[positive(&sa, s1), randn(&sb, s2)], &both, &|t| {
            t[0].pow(&t[1])
        });
    }
}

#[test]
fn reductions() {
    let mut r = Rng(run_seed("reductions"));
    for _ in 0..4 {
        let s = shape(&mut r, 4);
        let seed = r.next();
        let x = randn(&s, seed);
        let dx = distinct(&s, seed, &dev());
        let d = r.range(0, 2) as isize;
        let keep = r.chance(0.5);
        let one = [true];
        gradcheck("sum", &[x.clone()], &one, &|t| Ok(t[0].sum()));
        gradcheck("mean", &[x.clone()], &one, &|t| Ok(t[0].mean()));
        gradcheck("sum_dims", &[x.clone()], &one, &|t| {
            t[0].sum_dims(&[d, -1], keep)
        });
        gradcheck("mean_dims", &[x.clone()], &one, &|t| {
            t[0].mean_dims(&[0, 2], keep)
        });
        gradcheck("max_dims", &[dx.clone()], &one, &|t| {
            t[0].max_dims(&[d], keep)
        });
        gradcheck("max", &[dx], &one, &|t| t[0].max());
    }
}

#[test]
fn layout_ops() {
    let mut r = Rng(run_seed("layout_ops"));
    for _ in 0..4 {
        let s = shape(&mut r, 3);
        let seed = r.next();
        let x = randn(&s, seed);
        let one = [true];
        gradcheck("reshape", &[x.clone()], &one, &|t| {
            t[0].reshape(&[s[2], s[0] * s[1]])
        });
        gradcheck("permute", &[x.clone()], &one, &|t| t[0].permute(&[2, 0, 1]));
        gradcheck("transpose", &[x.clone()], &one, &|t| t[0].transpose(0, -1));
        let d = r.range(0, 2);
        let start = r.range(0, s[d] - 1);
        let len = r.range(1, s[d] - start);
        gradcheck("narrow", &[x.clone()], &one, &|t| {
            t[0].narrow(d as isize, start, len)
        });
        gradcheck("pad", &[x.clone()], &one, &|t| t[0].pad(&[1, 2, 0, 1], 0.5));
        gradcheck("expand", &[x.clone()], &one, &|t| {
            t[0].narrow(1, 0, 1)?.expand(&[2, s[0], 3, s[2]])
        });
        let mut s2 = s.clone();
        s2[d] = r.pick(&[1, 2, 4]);
        let y = randn(&s2, seed + 1);
        gradcheck("cat", &[x.clone(), y], &[true, true], &|t| {
            Tensor::cat(&[&t[0], &t[1], &t[0]], d as isize)
        });
        let z = randn(&s, seed + 2);
        gradcheck("stack", &[x.clone(), z], &[true, true], &|t| {
            Tensor::stack(&[&t[0], &t[1]], -1)
        });
    }
}

#[test]
fn matmul_variants() {
    let mut r = Rng(run_seed("matmul_variants"));
    for _ in 0..4 {
        let (m, k, n, b) = (r.range(1, 6), r.range(1, 6), r.range(1, 6), r.range(1, 3));
        let s = r.next();
        let both = [true, true];
        gradcheck(
            "matmul 2d",
            &[randn(&[m, k], s), randn(&[k, n], s + 1)],
            &both,
            &|t| t[0].matmul(&t[1]),
        );
        gradcheck(
            "matmul batched",
            &[randn(&[b, m, k], s), randn(&[b, k, n], s + 1)],
            &both,
            &|t| t[0].matmul(&t[1]),
        );
        gradcheck(
            "matmul broadcast",
            &[randn(&[b, 1, m, k], s), randn(&[3, k, n], s + 1)],
            &both,
            &|t| t[0].matmul(&t[1]),
        );
        gradcheck(
            "matmul shared rhs",
            &[randn(&[b, m, k], s), randn(&[k, n], s + 1)],
            &both,
            &|t| t[0].matmul(&t[1]),
        );
        gradcheck(
            "matmul vector",
            &[randn(&[k], s), randn(&[b, k, n], s + 1)],
            &both,
            &|t| t[0].matmul(&t[1]),
        );
        gradcheck(
            "matmul matvec",
            &[randn(&[m, k], s), randn(&[k], s + 1)],
            &both,
            &|t| t[0].matmul(&t[1]),
        );
    }
}

#[test]
fn conv2d_all_parameters() {
    let mut r = Rng(run_seed("conv2d_all_parameters"));
    for _ in 0..8 {
        let groups = r.pick(&[1, 1, 2, 3]);
        let cin = groups * r.range(1, 2);
        let cout = groups * r.range(1, 2);
        let k = [r.range(1, 3), r.range(1, 3)];
        let opts = Conv2dOptions {
            stride: [r.range(1, 2), r.range(1, 3)],
            padding: [r.range(0, 2), r.range(0, 1)],
            dilation: [r.range(1, 2), r.range(1, 2)],
            groups,
            same: false,
        };
        let h = (k[0] - 1) * opts.dilation[0] + 1 + r.range(0, 4);
        let w = (k[1] - 1) * opts.dilation[1] + 1 + r.range(0, 4);
        let s = r.next();
        let x = randn(&[r.range(1, 2), cin, h, w], s);
        let wt = randn(&[cout, cin / groups, k[0], k[1]], s + 1);
        let b = randn(&[cout], s + 2);
        gradcheck(
            &format!("conv2d {opts:?} k{k:?} x{:?}", x.shape()),
            &[x, wt, b],
            &[true, true, true],
            &|t| t[0].conv2d(&t[1], Some(&t[2]), opts),
        );
    }
    // depthwise with a channel multiplier, no bias
    let x = randn(&[2, 3, 6, 5], 7);
    let wt = randn(&[6, 1, 3, 3], 8);
    let opts = Conv2dOptions {
        padding: [1, 1],
        groups: 3,
        ..Default::default()
    };
    gradcheck("conv2d depthwise", &[x, wt], &[true, true], &|t| {
        t[0].conv2d(&t[1], None, opts)
    });
}

#[test]
fn conv_transpose2d_all_parameters() {
    let mut r = Rng(run_seed("conv_transpose2d_all_parameters"));
    let mut checked = 0;
    while checked < 8 {
        let groups = r.pick(&[1, 1, 2]);
        let cin = groups * r.range(1, 2);
        let cout = groups * r.range(1, 2);
        let stride = [r.range(1, 3), r.range(1, 2)];
        let dilation = [r.range(1, 2), r.range(1, 2)];
        let opts = ConvTranspose2dOptions {
            stride,
            padding: [r.range(0, 1), 0],
            output_padding: [r.range(0, stride[0].max(dilation[0]) - 1), 0],
            dilation,
            groups,
        };
        let s = r.next();
        let x = randn(&[r.range(1, 2), cin, r.range(2, 4), r.range(1, 4)], s);
        let wt = randn(&[cin, cout / groups, r.range(1, 3), r.range(1, 3)], s + 1);
        let b = randn(&[cout], s + 2);
        if x.conv_transpose2d(&wt, None, opts).is_err() {
            continue; // padding ate the whole output: drawn again
        }
        checked += 1;
        gradcheck(
            &format!("conv_transpose2d {opts:?}"),
            &[x, wt, b],
            &[true, true, true],
            &|t| t[0].conv_transpose2d(&t[1], Some(&t[2]), opts),
        );
    }
}

#[test]
fn pooling() {
    let mut r = Rng(run_seed("pooling"));
    for _ in 0..6 {
        let kernel = [r.range(1, 3), r.range(1, 3)];
        let mut opts = Pool2dOptions {
            kernel,
            stride: [r.range(1, 3), r.range(1, 2)],
            padding: [r.range(0, kernel[0] / 2), r.range(0, kernel[1] / 2)],
            ceil_mode: r.chance(0.5),
            same: r.chance(0.3),
            ..Default::default()
        };
        let s = [
            r.range(1, 2),
            r.range(1, 3),
            r.range(kernel[0] * 2, 7),
            r.range(kernel[1] * 2, 6),
        ];
        let seed = r.next();
        let one = [true];
        let dilated = Pool2dOptions {
            dilation: [r.range(1, 2), r.range(1, 2)],
            ..opts
        };
        gradcheck(
            &format!("max_pool2d {dilated:?}"),
            &[distinct(&s, seed, &dev())],
            &one,
            &|t| t[0].max_pool2d(dilated),
        );
        gradcheck(
            &format!("max_pool2d_with_indices {dilated:?}"),
            &[distinct(&s, seed, &dev())],
            &one,
            &|t| Ok(t[0].max_pool2d_with_indices(dilated)?.0),
        );
        // Windows that do not overlap: each cell is picked at most once, so unpooling writes
        // every input somewhere (with a repeat, one write would be lost).
        let tiles = Pool2dOptions {
            stride: kernel,
            padding: [0, 0],
            same: false,
            ..opts
        };
        let (pooled, idx) = distinct(&s, seed, &dev())
            .max_pool2d_with_indices(tiles)
            .unwrap();
        gradcheck("max_unpool2d", &[randn(pooled.shape(), seed)], &one, &|t| {
            t[0].max_unpool2d(&idx, [s[2], s[3]])
        });
        opts.dilation = [1, 1];
        let include = r.chance(0.5);
        gradcheck(
            &format!("avg_pool2d {opts:?}"),
            &[randn(&s, seed)],
            &one,
            &|t| t[0].avg_pool2d_with(opts, include),
        );
        let out = [r.range(1, 4), r.range(1, 4)];
        gradcheck("adaptive_avg_pool2d", &[randn(&s, seed)], &one, &|t| {
            t[0].adaptive_avg_pool2d(out)
        });
        gradcheck("upsample_nearest2d", &[randn(&s, seed)], &one, &|t| {
            t[0].upsample_nearest2d([out[0] * 2 + 1, out[1] + 3])
        });
        gradcheck("upsample2d", &[randn(&s, seed)], &one, &|t| {
            t[0].upsample2d(2)
        });
    }
}

#[test]
fn normalisation_and_dropout() {
    let mut r = Rng(run_seed("normalisation_and_dropout"));
    for _ in 0..3 {
        let c = r.range(1, 4);
        // With two values per channel the normalised output is ±1 whatever the input, so
        // the input gradient vanishes and relative errors mean nothing. At least 8: with
        // 4 a channel's spread could come near the finite differences' step.
        let s = [r.range(2, 3), c, r.range(2, 3), r.range(2, 4)];
        let seed = r.next();
        let opts = BatchNormOptions {
            training: true,
            ..Default::default()
        };
        let all = [true, true, true];
        let p = 0.5;
        gradcheck("drop_path", &[randn(&s, seed)], &[true], &|t| {
            t[0].drop_path(p, true, 7)
        });
        gradcheck(
            "batch_norm train",
            &[
                randn(&s, seed),
                randn(&[c], seed + 1),
                randn(&[c], seed + 2),
            ],
            &all,
            &|t| t[0].batch_norm(None, None, Some(&t[1]), Some(&t[2]), opts),
        );
        let (rm, rv) = (randn(&[c], seed + 3), positive(&[c], seed + 4));
        // Also with frozen parameters and statistics (a fine-tuned backbone): only the input
        // takes a gradient, which skips the per-channel sums.
        for (name, check) in [
            ("batch_norm eval", &all[..]),
            ("batch_norm eval, frozen affine", &[true, false, false][..]),
        ] {
            gradcheck(
                name,
                &[
                    randn(&s, seed),
                    randn(&[c], seed + 1),
                    randn(&[c], seed + 2),
                ],
                check,
                &|t| {
                    t[0].batch_norm(
                        Some(&rm),
                        Some(&rv),
                        Some(&t[1]),
                        Some(&t[2]),
                        BatchNormOptions::default(),
                    )
                },
            );
        }
        for training in [true, false] {
            let (m, v) = (rm.to_vec().unwrap(), rv.to_vec().unwrap());
            let stats = (!training).then_some((&m[..], &v[..]));
            let inputs = bn_relu_inputs(&s, seed + 5, stats);
            let opts = BatchNormOptions {
                training,
                ..Default::default()
            };
            // In training the running statistics are left out: each evaluation would move them.
            let (m, v) = if training {
                (None, None)
            } else {
                (Some(&rm), Some(&rv))
            };
            let name = format!("batch_norm_relu training {training}");
            gradcheck(&name, &inputs, &all, &|t| {
                t[0].batch_norm_relu(m, v, Some(&t[1]), Some(&t[2]), opts)
            });
        }
        gradcheck("dropout", &[randn(&s, seed)], &[true], &|t| {
            t[0].dropout(0.3, true, 5)
        });
    }
}

#[test]
fn style_and_classification_ops() {
    let mut r = Rng(run_seed("style_and_classification_ops"));
    for _ in 0..3 {
        let s = [r.range(1, 2), r.range(1, 4), r.range(1, 4), r.range(1, 3)];
        let seed = r.next();
        gradcheck("gram", &[randn(&s, seed)], &[true], &|t| t[0].gram());
        let (n, i, o) = (r.range(1, 4), r.range(1, 5), r.range(1, 4));
        gradcheck(
            "linear",
            &[
                randn(&[n, i], seed),
                randn(&[o, i], seed + 1),
                randn(&[o], seed + 2),
            ],
            &[true, true, true],
            &|t| t[0].linear(&t[1], Some(&t[2])),
        );
        gradcheck(
            "linear 3d",
            &[randn(&[2, n, i], seed), randn(&[o, i], seed + 1)],
            &[true, true],
            &|t| t[0].linear(&t[1], None),
        );
        let d = r.range(0, 1) as isize;
        gradcheck("softmax", &[randn(&[n, o + 1], seed)], &[true], &|t| {
            t[0].softmax(d)
        });
        gradcheck("log_softmax", &[randn(&[n, o + 1], seed)], &[true], &|t| {
            t[0].log_softmax(d)
        });
        let k = r.range(1, 5);
        let targets: Vec<usize> = (0..n).map(|_| r.range(0, k - 1)).collect();
        gradcheck("cross_entropy", &[randn(&[n, k], seed)], &[true], &|t| {
            t[0].cross_entropy(&targets)
        });
        gradcheck(
            "mse_loss",
            &[randn(&s, seed), randn(&s, seed + 1)],
            &[true, true],
            &|t| t[0].mse_loss(&t[1]),
        );
    }
}

#[test]
fn conv2d_same_padding() {
    let mut r = Rng(run_seed("conv2d_same_padding"));
    for _ in 0..4 {
        let (k, stride) = (
            [r.range(1, 4), r.range(1, 4)],
            [r.range(1, 2), r.range(1, 2)],
        );
        let opts = Conv2dOptions {
            stride,
            dilation: [r.range(1, 2), 1],
            same: true,
            ..Default::default()
        };
        let s = r.next();
        let (h, w) = (r.range(1, 7), r.range(1, 6));
        let x = randn(&[r.range(1, 2), 2, h, w], s);
        let wt = randn(&[3, 2, k[0], k[1]], s + 1);
        let b = randn(&[3], s + 2);
        let y = x.conv2d(&wt, Some(&b), opts).unwrap();
        // TensorFlow's SAME: ⌈input / stride⌉ outputs along each axis.
        assert_eq!(
            &y.shape()[2..],
            &[h.div_ceil(stride[0]), w.div_ceil(stride[1])]
        );
        gradcheck(
            &format!("conv2d same {opts:?} kernel {k:?}"),
            &[x, wt, b],
            &[true, true, true],
            &|t| t[0].conv2d(&t[1], Some(&t[2]), opts),
        );
    }
}

#[test]
fn bilinear_interpolation() {
    let mut r = Rng(run_seed("bilinear_interpolation"));
    for _ in 0..4 {
        let s = [r.range(1, 2), r.range(1, 2), r.range(1, 5), r.range(1, 6)];
        let size = [r.range(1, 9), r.range(1, 9)];
        let align = r.chance(0.5);
        gradcheck(
            &format!("interpolate_bilinear {s:?} -> {size:?} align_corners {align}"),
            &[randn(&s, r.next())],
            &[true],
            &|t| t[0].interpolate_bilinear(size, align),
        );
        let factor = [r.pick(&[0.5, 1.5, 2.0, 3.0]), r.pick(&[0.75, 1.25, 2.0])];
        let s = [1, 1, r.range(2, 5), r.range(2, 5)];
        gradcheck(
            &format!("interpolate_bilinear_scale {s:?} x {factor:?} align_corners {align}"),
            &[randn(&s, r.next())],
            &[true],
            &|t| t[0].interpolate_bilinear_scale(factor, align),
        );
    }
}

#[test]
fn pixel_losses() {
    use fovea::ops::{CrossEntropy2dOptions, PixelTargets, Reduction};
    let mut r = Rng(run_seed("pixel_losses"));
    for round in 0..4 {
        // Ignore an id outside the classes, then a real class (whose pixels then count
        // for nothing): one pixel always keeps a class that counts, which needs a second
        // class when class 0 is ignored (with none, the mean is 0/0 as in PyTorch).
        let ignore = if round % 2 == 0 { 255 } else { 0 };
        let c_min = if ignore == 0 { 2 } else { 1 };
        let (n, c, h, w) = (
            r.range(1, 2),
            r.range(c_min, 4),
            r.range(1, 4),
            r.range(1, 3),
        );
        let mut ids: Vec<i64> = (0..n * h * w)
            .map(|_| {
                if r.chance(0.25) {
                    ignore
                } else {
                    r.range(0, c - 1) as i64
                }
            })
            .collect();
        ids[0] = if ignore == 0 { c as i64 - 1 } else { 0 };
        let target = PixelTargets::new(ids, [n, h, w]).unwrap();
        let weight: Vec<f32> = (0..c).map(|_| 0.25 + r.range(0, 10) as f32 / 8.0).collect();
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            let opts = CrossEntropy2dOptions {
                weight: r.chance(0.5).then(|| weight.clone()),
                ignore_index: ignore,
                reduction,
            };
            gradcheck(
                &format!("cross_entropy2d {opts:?}"),
                &[randn(&[n, c, h, w], r.next())],
                &[true],
                &|t| t[0].cross_entropy2d(&target, &opts),
            );
        }
        let s = [n, 1, h, w];
        let pos_weight = 0.5 + r.range(0, 6) as f32 * 0.5;
        let labels: Vec<f32> = (0..n * h * w).map(|_| r.chance(0.4) as u8 as f32).collect();
        let labels = Tensor::from_vec(labels, &s, &dev()).unwrap();
        // Logits clamped to ±4: the forward rounds log(1 + e^−|x|) at the scale of 1, which
        // at |x| = 6.5 is already 1.6% of the gradient that finite differences resolve.
        gradcheck(
            &format!("bce_with_logits_weighted {pos_weight}"),
            &[randn(&s, r.next()).mul_scalar(3.0).clamp(-4.0, 4.0), labels],
            &[true, false],
            &|t| t[0].bce_with_logits_weighted(&t[1], pos_weight),
        );
    }
}
