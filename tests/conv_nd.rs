//! 1-D and 3-D convolution, pooling and resizing: gradients against finite differences, the GPU
//! against the CPU on random odd shapes, and bad input (PyTorch's own values are checked
//! in tests/torch_fixtures.rs).

// Inputs are handed over by clone for readability.
#![allow(clippy::cloned_ref_to_slice_refs)]

mod common;

use std::sync::Arc;

use common::parity::parity;
use common::{distinct, gradcheck, rel_err, run_seed, Rng};
use fovea::cpu::CpuBackend;
use fovea::ops::{Conv1dOptions, Conv3dOptions, Pool1dOptions, Pool3dOptions};
use fovea::{Device, Tensor};

fn randn(s: &[usize], seed: u64) -> Tensor {
    Tensor::randn(s, seed, &Device::cpu())
}

/// Random 3-D options with a window that fits a `[d, h, w]` input of at least 5 per axis.
fn conv3_opts(r: &mut Rng, groups: usize) -> Conv3dOptions {
    let s = [r.range(1, 2), r.range(1, 2), r.range(1, 3)];
    let d = [r.range(1, 2), 1, r.range(1, 2)];
    Conv3dOptions {
        stride: s,
        padding: [r.range(0, 1), r.range(0, 1), r.range(0, 1)],
        output_padding: [0; 3],
        dilation: d,
        groups,
    }
}

#[test]
fn gradients_match_finite_differences() {
    let mut r = Rng(run_seed("nd gradients"));
    for _ in 0..3 {
        let g = r.pick(&[1, 2]);
        let (cin, cout) = (2 * g, g * r.range(1, 2));
        let o1 = Conv1dOptions {
            stride: r.range(1, 2),
            padding: r.range(0, 2),
            dilation: r.range(1, 2),
            groups: g,
            ..Default::default()
        };
        let s = r.next();
        let x = randn(&[2, cin, r.range(5, 9)], s);
        let w = randn(&[cout, cin / g, r.range(1, 3)], s + 1);
        let b = randn(&[cout], s + 2);
        let all = [true, true, true];
        gradcheck(
            &format!("conv1d {o1:?}"),
            &[x.clone(), w, b.clone()],
            &all,
            &|t| t[0].conv1d(&t[1], Some(&t[2]), o1),
        );
        let wt = randn(&[cin, cout / g, r.range(1, 3)], s + 3);
        let ot = Conv1dOptions {
            output_padding: o1.stride.max(o1.dilation) - 1,
            ..o1
        };
        gradcheck(
            &format!("conv_transpose1d {ot:?}"),
            &[x, wt, b.clone()],
            &all,
            &|t| t[0].conv_transpose1d(&t[1], Some(&t[2]), ot),
        );
        let o3 = conv3_opts(&mut r, g);
        let x3 = randn(
            &[1, cin, r.range(5, 6), r.range(5, 6), r.range(5, 7)],
            s + 4,
        );
        let k = [r.range(1, 3), r.range(1, 2), r.range(1, 3)];
        let w3 = randn(&[cout, cin / g, k[0], k[1], k[2]], s + 5);
        gradcheck(
            &format!("conv3d {o3:?} k{k:?}"),
            &[x3.clone(), w3, b.clone()],
            &all,
            &|t| t[0].conv3d(&t[1], Some(&t[2]), o3),
        );
        let ot3 = Conv3dOptions {
            output_padding: [o3.stride[0].max(o3.dilation[0]) - 1, 0, 0],
            ..o3
        };
        let wt3 = randn(&[cin, cout / g, k[0], k[1], k[2]], s + 6);
        gradcheck(
            &format!("conv_transpose3d {ot3:?} k{k:?}"),
            &[x3, wt3, b],
            &all,
            &|t| t[0].conv_transpose3d(&t[1], Some(&t[2]), ot3),
        );
        let p3 = Pool3dOptions {
            kernel: [2, r.range(1, 3), 2],
            stride: [r.range(1, 2), 2, r.range(1, 2)],
            padding: [1, 0, r.range(0, 1)],
            dilation: [1, 1, r.range(1, 2)],
            ceil_mode: r.chance(0.5),
        };
        let xs = [1, 2, 5, 6, 7];
        let one = [true];
        gradcheck(
            &format!("max_pool3d {p3:?}"),
            &[distinct(&xs, s, &Device::cpu())],
            &one,
            &|t| t[0].max_pool3d(p3),
        );
        let avg = Pool3dOptions {
            dilation: [1; 3],
            ..p3
        };
        let include = r.chance(0.5);
        gradcheck(
            &format!("avg_pool3d {avg:?}"),
            &[randn(&xs, s)],
            &one,
            &|t| t[0].avg_pool3d(avg, include),
        );
        gradcheck("adaptive_avg_pool3d", &[randn(&xs, s)], &one, &|t| {
            t[0].adaptive_avg_pool3d([3, 4, 2])
        });
        gradcheck("interpolate_trilinear", &[randn(&xs, s)], &one, &|t| {
            t[0].interpolate_trilinear([3, 7, 4], include)
        });
        gradcheck("interpolate_linear", &[randn(&[2, 3, 5], s)], &one, &|t| {
            t[0].interpolate_linear(8, !include)
        });
        let p1 = Pool1dOptions {
            kernel: 3,
            stride: r.range(1, 3),
            padding: 1,
            dilation: r.range(1, 2),
            ceil_mode: r.chance(0.5),
        };
        gradcheck(
            &format!("max_pool1d {p1:?}"),
            &[distinct(&[2, 3, 9], s, &Device::cpu())],
            &one,
            &|t| t[0].max_pool1d(p1),
        );
        gradcheck("avg_pool1d", &[randn(&[2, 3, 9], s)], &one, &|t| {
            t[0].avg_pool1d(Pool1dOptions { dilation: 1, ..p1 }, include)
        });
    }
}

#[test]
fn the_gpu_gives_the_cpus_results_on_odd_shapes() {
    let Some(gpu) = common::gpu("nd parity") else {
        return;
    };
    let mut r = Rng(run_seed("nd parity"));
    for _ in 0..2 {
        let g = r.pick(&[1, 3]);
        let (cin, cout) = (3 * r.range(1, 2), 3 * r.range(1, 3));
        let o1 = Conv1dOptions {
            stride: r.range(1, 3),
            padding: r.range(0, 3),
            dilation: r.range(1, 2),
            groups: g,
            ..Default::default()
        };
        let s = r.next();
        parity(
            &gpu,
            &format!("conv1d {o1:?}"),
            &[
                randn(&[3, cin, r.range(17, 70)], s),
                randn(&[cout, cin / g, r.range(1, 9)], s + 1),
                randn(&[cout], s + 2),
            ],
            &|t| t[0].conv1d(&t[1], Some(&t[2]), o1),
        );
        let o3 = conv3_opts(&mut r, g);
        let k = [r.range(1, 3), 3, r.range(1, 3)];
        parity(
            &gpu,
            &format!("conv3d {o3:?} k{k:?}"),
            &[
                randn(
                    &[2, cin, r.range(5, 9), r.range(6, 13), r.range(5, 11)],
                    s + 3,
                ),
                randn(&[cout, cin / g, k[0], k[1], k[2]], s + 4),
                randn(&[cout], s + 5),
            ],
            &|t| t[0].conv3d(&t[1], Some(&t[2]), o3),
        );
        parity(
            &gpu,
            &format!("conv_transpose3d {o3:?} k{k:?}"),
            &[
                randn(
                    &[2, cin, r.range(3, 6), r.range(3, 7), r.range(3, 6)],
                    s + 6,
                ),
                randn(&[cin, cout / g, k[0], k[1], k[2]], s + 7),
                randn(&[cout], s + 8),
            ],
            &|t| t[0].conv_transpose3d(&t[1], Some(&t[2]), o3),
        );
        let p3 = Pool3dOptions {
            kernel: [3, 2, 3],
            stride: [2, r.range(1, 2), 2],
            padding: [1, 1, 0],
            ceil_mode: r.chance(0.5),
            ..Default::default()
        };
        let xs = [2, 3, r.range(5, 9), r.range(6, 11), r.range(5, 9)];
        parity(
            &gpu,
            &format!("max_pool3d {p3:?}"),
            &[distinct(&xs, s, &Device::cpu())],
            &|t| t[0].max_pool3d(p3),
        );
        parity(
            &gpu,
            &format!("avg_pool3d {p3:?}"),
            &[randn(&xs, s)],
            &|t| t[0].avg_pool3d(p3, false),
        );
    }
}

/// A stride-1 conv3d with 16 or more input channels per group runs on the CPU as one op of
/// its own (a GEMM per tap straight from the padded input, no depth gather), and a narrower
/// one as the composition of 2-D convolutions that the GPU runs; the op's gradients match
/// finite differences, and its values and gradients the GPU's composition.
#[test]
fn a_wide_cpu_conv3d_runs_as_one_op_and_agrees_with_the_composition() {
    let timed = Device::from_backend(Arc::new(CpuBackend::new().with_profile(true)));
    let o = Conv3dOptions {
        padding: [1, 0, 1],
        dilation: [2, 1, 1],
        groups: 2,
        ..Default::default()
    };
    let ops = |c: usize| {
        let x = Tensor::randn(&[2, c, 5, 4, 11], 1, &timed);
        let w = Tensor::randn(&[6, c / 2, 2, 3, 3], 2, &timed);
        timed.take_kernel_times();
        x.conv3d(&w, None, o).unwrap();
        let times = timed
            .take_kernel_times()
            .expect("a timed device reports times");
        times.into_iter().map(|k| k.name).collect::<Vec<_>>()
    };
    assert_eq!(ops(32), ["conv3d 2x3x3 g2"], "32 channels: one op");
    let narrow = ops(8);
    assert!(
        narrow.iter().any(|n| n.starts_with("conv2d 3x3")),
        "8 channels compose 2-D convolutions: {narrow:?}"
    );

    let inputs = [
        randn(&[2, 32, 5, 4, 11], 3),
        randn(&[6, 16, 2, 3, 3], 4).mul_scalar(0.1),
        randn(&[6], 5),
    ];
    gradcheck("conv3d, one op", &inputs, &[true, true, true], &|t| {
        t[0].conv3d(&t[1], Some(&t[2]), o)
    });
    if let Some(gpu) = common::gpu("conv3d one op") {
        parity(
            &gpu,
            "conv3d one op against the composition",
            &inputs,
            &|t| t[0].conv3d(&t[1], Some(&t[2]), o),
        );
    }
}

#[test]
fn bad_ranks_windows_and_groups_are_errors_naming_the_op() {
    let dev = Device::cpu();
    let x3 = Tensor::zeros(&[1, 4, 5, 6, 7], &dev);
    let msg = |r: fovea::Result<Tensor>| r.unwrap_err().to_string();
    // A 4-D input to conv3d names the rank expected.
    let e = msg(Tensor::zeros(&[1, 4, 5, 6], &dev).conv3d(
        &Tensor::zeros(&[2, 4, 1, 1, 1], &dev),
        None,
        Default::default(),
    ));
    assert!(
        e.starts_with("conv3d:") && e.contains("5 dimensions") && e.contains("[1, 4, 5, 6]"),
        "{e}"
    );
    // A kernel deeper than the padded input.
    let e = msg(x3.conv3d(
        &Tensor::zeros(&[2, 4, 9, 1, 1], &dev),
        None,
        Default::default(),
    ));
    assert!(
        e.starts_with("conv3d:") && e.contains("kernel depth 9"),
        "{e}"
    );
    // A kernel wider than the input: reported by the 2-D kernel, under conv3d's name.
    let e = msg(x3.conv3d(
        &Tensor::zeros(&[2, 4, 1, 1, 9], &dev),
        None,
        Default::default(),
    ));
    assert!(
        e.starts_with("conv3d:") && e.contains("[1, 4, 5, 6, 7]"),
        "{e}"
    );
    let groups = Conv3dOptions {
        groups: 3,
        ..Default::default()
    };
    let e = msg(x3.conv3d(&Tensor::zeros(&[3, 1, 1, 1, 1], &dev), None, groups));
    assert!(e.starts_with("conv3d:") && e.contains("groups=3"), "{e}");
    let e = msg(Tensor::zeros(&[4, 5], &dev).conv1d(
        &Tensor::zeros(&[2, 4, 1], &dev),
        None,
        Default::default(),
    ));
    assert!(
        e.starts_with("conv1d:") && e.contains("3 dimensions"),
        "{e}"
    );
    let e = msg(Tensor::zeros(&[1, 2, 3], &dev).max_pool1d(Pool1dOptions {
        kernel: 5,
        ..Default::default()
    }));
    assert!(e.starts_with("max_pool1d:"), "{e}");
    let e = msg(x3.max_pool3d(Pool3dOptions {
        kernel: [9, 1, 1],
        ..Default::default()
    }));
    assert!(
        e.starts_with("max_pool3d:") && e.contains("[1, 4, 5, 6, 7]"),
        "{e}"
    );
    let zero_stride = Conv3dOptions {
        stride: [0, 1, 1],
        ..Default::default()
    };
    assert!(x3
        .conv3d(&Tensor::zeros(&[2, 4, 1, 1, 1], &dev), None, zero_stride)
        .is_err());
    let bad_pad = Conv3dOptions {
        output_padding: [2, 0, 0],
        ..Default::default()
    };
    let e = msg(x3.conv_transpose3d(&Tensor::zeros(&[4, 2, 1, 1, 1], &dev), None, bad_pad));
    assert!(
        e.starts_with("conv_transpose3d:") && e.contains("output_padding"),
        "{e}"
    );
}

/// A stride along an axis with one output never steps, and the op hands the backends
/// stride 1 there, over an input longer than that output reads (`Conv2dParams::normalized`):
/// the output and both gradients are those of the same convolution over only the inputs it
/// reads, for conv1d (on the 2-D kernels) and conv3d (on the CPU's own 3-D one), on both
/// devices.
#[test]
fn a_stride_with_one_output_reads_only_its_inputs() {
    let mut devices = vec![Device::cpu()];
    devices.extend(common::gpu(
        "a_stride_with_one_output_reads_only_its_inputs",
    ));
    for dev in &devices {
        // 9 values, kernel 3, stride 16: one output, which reads the first 3.
        let conv1d = |x: &Tensor, w: &Tensor, stride: usize| {
            let o = Conv1dOptions {
                stride,
                ..Default::default()
            };
            x.conv1d(w, None, o)
        };
        reads_only_its_inputs(dev, &[2, 3, 9], &[4, 3, 3], 2, conv1d);
        let conv3d = |x: &Tensor, w: &Tensor, stride: usize| {
            let o = Conv3dOptions {
                stride: [stride, 1, 1],
                padding: [0, 1, 1],
                ..Default::default()
            };
            x.conv3d(w, None, o)
        };
        reads_only_its_inputs(dev, &[1, 16, 9, 5, 5], &[16, 16, 3, 3, 3], 2, conv3d);
    }
}

/// `conv` at stride 16 over `xs` (9 long along `axis`, a kernel 3 long there) against
/// stride 1 over its first 3 values along `axis`.
fn reads_only_its_inputs(
    dev: &Device,
    xs: &[usize],
    ws: &[usize],
    axis: usize,
    conv: impl Fn(&Tensor, &Tensor, usize) -> fovea::Result<Tensor>,
) {
    let (x, w) = (Tensor::randn(xs, 5, dev), Tensor::randn(ws, 6, dev));
    let run = |len: usize, stride: usize| {
        let x = x.narrow(axis as isize, 0, len).unwrap().requires_grad();
        let w = w.detach().requires_grad();
        let y = conv(&x, &w, stride).unwrap();
        y.mul(&y).unwrap().sum().backward().unwrap();
        [y, x.grad().unwrap(), w.grad().unwrap()]
    };
    let ([y, gx, gw], [want_y, want_gx, want_gw]) = (run(9, 16), run(3, 1));
    let on = dev.name();
    assert_eq!(y.shape(), want_y.shape(), "on {on}");
    let close = |a: &Tensor, b: &Tensor| rel_err(&a.to_vec().unwrap(), &b.to_vec().unwrap());
    assert!(close(&y, &want_y) < 1e-5, "output on {on}");
    assert!(close(&gw, &want_gw) < 1e-5, "weight gradient on {on}");
    let read = gx.narrow(axis as isize, 0, 3).unwrap();
    assert!(close(&read, &want_gx) < 1e-5, "input gradient on {on}");
    let unread = gx.narrow(axis as isize, 3, 6).unwrap().to_vec().unwrap();
    assert!(
        unread.iter().all(|&v| v == 0.0),
        "unread inputs' gradient on {on}"
    );
}
