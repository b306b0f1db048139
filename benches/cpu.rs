//! CPU reference backend timings (criterion). Throughput is reported in FLOP (2 per
//! multiply-accumulate), so criterion's "elem/s" reads as FLOP/s.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fovea::ops::Conv2dOptions;
use fovea::{Device, Tensor};

fn matmul(c: &mut Criterion) {
    let dev = Device::cpu();
    let mut g = c.benchmark_group("matmul");
    g.sample_size(10);
    for &n in &[256usize, 1024] {
        let a = Tensor::randn(&[n, n], 1, &dev);
        let b = Tensor::randn(&[n, n], 2, &dev);
        g.throughput(Throughput::Elements((2 * n * n * n) as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{n}^3")),
            &n,
            |bch, _| bch.iter(|| a.matmul(&b).unwrap()),
        );
    }
    g.finish();
}

/// (name, N, Cin, H, Cout, k, stride, pad, groups)
type ConvRow = (
    &'static str,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

const CONVS: &[ConvRow] = &[
    ("3x3 128-128 28x28 n8", 8, 128, 28, 128, 3, 1, 1, 1),
    ("3x3 64-64 56x56 n1", 1, 64, 56, 64, 3, 1, 1, 1),
    ("1x1 256-64 28x28 n8", 8, 256, 28, 64, 1, 1, 0, 1),
    ("dw3x3 128 56x56 n4", 4, 128, 56, 128, 3, 1, 1, 128),
    ("lenet c1 5x5 1-6 28x28 n256", 256, 1, 28, 6, 5, 1, 0, 1),
];

fn conv2d(c: &mut Criterion) {
    let dev = Device::cpu();
    let mut g = c.benchmark_group("conv2d");
    g.sample_size(10);
    for &(name, n, cin, h, cout, k, s, p, groups) in CONVS {
        let x = Tensor::randn(&[n, cin, h, h], 1, &dev).requires_grad();
        let w = Tensor::randn(&[cout, cin / groups, k, k], 2, &dev).requires_grad();
        let opts = Conv2dOptions {
            stride: [s, s],
            padding: [p, p],
            groups,
            ..Default::default()
        };
        let y = fovea::no_grad(|| x.conv2d(&w, None, opts)).unwrap();
        let macs = y.numel() * (cin / groups) * k * k;
        g.throughput(Throughput::Elements(2 * macs as u64));
        g.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| fovea::no_grad(|| x.conv2d(&w, None, opts)).unwrap())
        });
        // fwd + bwd does three convolutions' worth of work.
        g.throughput(Throughput::Elements(6 * macs as u64));
        let gy = Tensor::randn(y.shape(), 3, &dev);
        g.bench_function(BenchmarkId::new("forward+backward", name), |b| {
            b.iter(|| {
                x.zero_grad();
                w.zero_grad();
                x.conv2d(&w, None, opts)
                    .unwrap()
                    .backward_with(&gy)
                    .unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, matmul, conv2d);
criterion_main!(benches);
