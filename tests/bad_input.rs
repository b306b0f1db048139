//! Property test: random (often invalid) shapes and parameters thrown at every op must
//! give `Ok` or a clear `Err`, never a panic.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::{run_seed, Rng};
use fovea::ops::{BatchNormOptions, Conv2dOptions, ConvTranspose2dOptions, Pool2dOptions};
use fovea::{Device, Result, Tensor};

fn rand_shape(r: &mut Rng, max_rank: usize) -> Vec<usize> {
    let rank = r.range(0, max_rank);
    (0..rank)
        .map(|_| r.pick(&[0, 1, 1, 2, 3, 3, 4, 5]))
        .collect()
}

fn tensor(r: &mut Rng, max_rank: usize) -> Tensor {
    let s = rand_shape(r, max_rank);
    Tensor::randn(&s, r.next(), &Device::cpu())
}

fn image(r: &mut Rng) -> Tensor {
    // Mostly rank 4 so that deeper validation is reached, sometimes not.
    if r.chance(0.85) {
        let s: Vec<usize> = (0..4).map(|_| r.pick(&[0, 1, 2, 3, 4, 6, 7])).collect();
        Tensor::randn(&s, r.next(), &Device::cpu())
    } else {
        tensor(r, 5)
    }
}

fn small(r: &mut Rng) -> usize {
    r.pick(&[0, 1, 1, 2, 2, 3, 4, 9])
}

fn pair(r: &mut Rng) -> [usize; 2] {
    [small(r), small(r)]
}

fn dim(r: &mut Rng) -> isize {
    r.range(0, 9) as isize - 5
}

/// One random call of one op, described for the failure report.
fn call(r: &mut Rng, which: usize) -> (String, Result<()>) {
    let ok = |t: Result<Tensor>| t.map(|_| ());
    let a = tensor(r, 4);
    let b = tensor(r, 4);
    match which {
        0 => {
            let s = rand_shape(r, 4);
            let n = r.range(0, 12);
            (
                format!("from_vec {n} values as {s:?}"),
                ok(Tensor::from_vec(vec![0.5; n], &s, &Device::cpu())),
            )
        }
        1 => {
            let s = rand_shape(r, 4);
            (
                format!("reshape {:?} -> {s:?}", a.shape()),
                ok(a.reshape(&s)),
            )
        }
        2 => {
            let p: Vec<usize> = (0..r.range(0, 4)).map(|_| r.range(0, 4)).collect();
            (
                format!("permute {:?} by {p:?}", a.shape()),
                ok(a.permute(&p)),
            )
        }
        3 => {
            let (d, s, l) = (dim(r), small(r), small(r));
            (
                format!("narrow {:?} dim {d} {s}+{l}", a.shape()),
                ok(a.narrow(d, s, l)),
            )
        }
        4 => {
            let d = dim(r);
            (
                format!("cat {:?} {:?} dim {d}", a.shape(), b.shape()),
                ok(Tensor::cat(&[&a, &b], d)),
            )
        }
        5 => {
            let d = dim(r);
            (
                format!("stack {:?} {:?} dim {d}", a.shape(), b.shape()),
                ok(Tensor::stack(&[&a, &b], d)),
            )
        }
        6 => {
            let p: Vec<usize> = (0..r.range(0, 5)).map(|_| small(r)).collect();
            (format!("pad {:?} by {p:?}", a.shape()), ok(a.pad(&p, 1.0)))
        }
        7 => {
            let s = rand_shape(r, 5);
            (format!("expand {:?} to {s:?}", a.shape()), ok(a.expand(&s)))
        }
        8 => {
            let op = r.range(0, 6);
            let res = match op {
                0 => a.add(&b),
                1 => a.sub(&b),
                2 => a.mul(&b),
                3 => a.div(&b),
                4 => a.maximum(&b),
                5 => a.minimum(&b),
                _ => a.pow(&b),
            };
            (
                format!("binary #{op} {:?} {:?}", a.shape(), b.shape()),
                ok(res),
            )
        }
        9 => {
            let dims: Vec<isize> = (0..r.range(0, 3)).map(|_| dim(r)).collect();
            let keep = r.chance(0.5);
            let res = match r.range(0, 3) {
                0 => a.sum_dims(&dims, keep),
                1 => a.mean_dims(&dims, keep),
                2 => a.max_dims(&dims, keep),
                _ => a.max(),
            };
            (format!("reduce {:?} over {dims:?}", a.shape()), ok(res))
        }
        10 => (
            format!("matmul {:?} {:?}", a.shape(), b.shape()),
            ok(a.matmul(&b)),
        ),
        11 => {
            let x = image(r);
            let w = image(r);
            let o = Conv2dOptions {
                stride: pair(r),
                padding: pair(r),
                dilation: pair(r),
                groups: small(r),
            };
            let bias = r.chance(0.3).then(|| tensor(r, 2));
            (
                format!(
                    "conv2d x{:?} w{:?} {o:?} b{:?}",
                    x.shape(),
                    w.shape(),
                    bias.as_ref().map(|b| b.shape().to_vec())
                ),
                ok(x.conv2d(&w, bias.as_ref(), o)),
            )
        }
        12 => {
            let x = image(r);
            let w = image(r);
            let o = ConvTranspose2dOptions {
                stride: pair(r),
                padding: pair(r),
                output_padding: pair(r),
                dilation: pair(r),
                groups: small(r),
            };
            (
                format!("conv_transpose2d x{:?} w{:?} {o:?}", x.shape(), w.shape()),
                ok(x.conv_transpose2d(&w, None, o)),
            )
        }
        13 => {
            let x = image(r);
            let o = Pool2dOptions {
                kernel: pair(r),
                stride: pair(r),
                padding: pair(r),
                ceil_mode: r.chance(0.5),
            };
            let res = if r.chance(0.5) {
                x.max_pool2d(o)
            } else {
                x.avg_pool2d_with(o, r.chance(0.5))
            };
            (format!("pool x{:?} {o:?}", x.shape()), ok(res))
        }
        14 => {
            let x = image(r);
            let s = pair(r);
            let res = if r.chance(0.5) {
                x.adaptive_avg_pool2d(s)
            } else {
                x.upsample_nearest2d(s)
            };
            (format!("resize x{:?} to {s:?}", x.shape()), ok(res))
        }
        15 => {
            let x = image(r);
            let c = tensor(r, 1);
            let opts = BatchNormOptions {
                training: r.chance(0.5),
                ..Default::default()
            };
            let stats = r.chance(0.5);
            let res = if stats {
                x.batch_norm(Some(&c), Some(&c), Some(&c), Some(&c), opts)
            } else {
                x.batch_norm(None, None, Some(&c), None, opts)
            };
            (
                format!(
                    "batch_norm x{:?} c{:?} {opts:?} stats {stats}",
                    x.shape(),
                    c.shape()
                ),
                ok(res),
            )
        }
        16 => {
            let p = r.pick(&[-0.5, 0.0, 0.3, 1.0, 1.5, f32::NAN]);
            (
                format!("dropout {:?} p {p}", a.shape()),
                ok(a.dropout(p, true, 1)),
            )
        }
        17 => (format!("gram {:?}", a.shape()), ok(a.gram())),
        18 => {
            let bias = r.chance(0.5).then(|| tensor(r, 2));
            (
                format!("linear {:?} {:?}", a.shape(), b.shape()),
                ok(a.linear(&b, bias.as_ref())),
            )
        }
        19 => {
            let d = dim(r);
            let res = if r.chance(0.5) {
                a.softmax(d)
            } else {
                a.log_softmax(d)
            };
            (format!("softmax {:?} dim {d}", a.shape()), ok(res))
        }
        20 => {
            let t: Vec<usize> = (0..r.range(0, 4)).map(|_| small(r)).collect();
            (
                format!("cross_entropy {:?} targets {t:?}", a.shape()),
                ok(a.cross_entropy(&t)),
            )
        }
        21 => (
            format!("mse_loss {:?} {:?}", a.shape(), b.shape()),
            ok(a.mse_loss(&b)),
        ),
        22 => {
            let (d0, d1) = (dim(r), dim(r));
            let res = match r.range(0, 4) {
                0 => a.transpose(d0, d1),
                1 => a.squeeze(d0),
                2 => a.unsqueeze(d0),
                3 => a.flatten(small(r)),
                _ => a.t(),
            };
            (format!("shape op {:?} {d0} {d1}", a.shape()), ok(res))
        }
        23 => {
            let (s, e, st) = (
                r.pick(&[0.0, 1.0, -3.0, f32::NAN]),
                r.pick(&[0.0, 5.0, f32::INFINITY]),
                r.pick(&[0.0, 1.0, -1.0, 0.5]),
            );
            (
                format!("arange {s} {e} {st}"),
                ok(Tensor::arange(s, e, st, &Device::cpu())),
            )
        }
        24 => {
            let x = a.clone().requires_grad();
            let res = x.mul_scalar(2.0).backward();
            (format!("backward on {:?}", a.shape()), res)
        }
        25 => (format!("item {:?}", a.shape()), a.item().map(|_| ())),
        _ => {
            let s = r.range(0, 4);
            (
                format!("upsample2d {:?} x{s}", a.shape()),
                ok(a.upsample2d(s)),
            )
        }
    }
}

#[test]
fn random_bad_input_never_panics() {
    let mut r = Rng(run_seed("random_bad_input_never_panics"));
    let mut panics = Vec::new();
    let (mut oks, mut errs) = (0, 0);
    for i in 0..20_000 {
        let which = i % 27;
        let mut case_rng = Rng(r.next());
        let outcome = catch_unwind(AssertUnwindSafe(|| call(&mut case_rng, which)));
        match outcome {
            Ok((_, Ok(()))) => oks += 1,
            Ok((desc, Err(e))) => {
                errs += 1;
                let msg = e.to_string();
                assert!(
                    !msg.is_empty() && msg.contains(':'),
                    "{desc}: error without context: {msg:?}"
                );
            }
            Err(_) => panics.push(format!(
                "op #{which} (replay its case with seed {})",
                case_rng.0
            )),
        }
    }
    assert!(
        panics.is_empty(),
        "{} panics:\n{}",
        panics.len(),
        panics.join("\n")
    );
    // The generator must exercise both outcomes, or the test proves nothing.
    assert!(oks > 500 && errs > 500, "{oks} ok, {errs} errors");
    eprintln!("{oks} calls succeeded, {errs} were refused with an error, none panicked");
}

/// A result larger than the GPU binds to a shader is an error that names the op and its
/// inputs (the check runs before anything is allocated), and the device works on after it.
#[test]
fn a_result_too_large_for_the_gpu_is_an_error_naming_the_op() {
    let Some(gpu) = common::gpu("a_result_too_large_for_the_gpu_is_an_error_naming_the_op") else {
        return;
    };
    let max = gpu.max_len();
    let expect = |what: &str, r: Result<Tensor>, names: &[&str]| {
        let msg = match r {
            Ok(t) => panic!(
                "{what}: gave a tensor of shape {:?} past the device's {max} values",
                t.shape()
            ),
            Err(e) => e.to_string(),
        };
        for n in names {
            assert!(msg.contains(n), "{what}: {msg:?} does not name {n:?}");
        }
        assert!(
            msg.contains(&max.to_string()),
            "{what}: {msg:?} does not give the limit"
        );
    };
    // 1×1 convolution of a 64×64 plane into one channel more than the limit allows.
    let plane = 64 * 64;
    let x = Tensor::full(&[1, 1, 64, 64], 1.0, &gpu);
    let w = Tensor::full(&[max / plane + 1, 1, 1, 1], 1.0, &gpu);
    expect(
        "conv2d",
        x.conv2d(&w, None, Conv2dOptions::default()),
        &[
            "conv2d",
            "[1, 1, 64, 64]",
            &format!("[{}, 1, 1, 1]", max / plane + 1),
        ],
    );
    // An outer product one row and one column past the square root of the limit.
    let side = (max as f64).sqrt() as usize + 1;
    let a = Tensor::full(&[side, 1], 1.0, &gpu);
    let b = Tensor::full(&[1, side], 1.0, &gpu);
    expect("matmul", a.matmul(&b), &["matmul", &format!("[{side}, 1]")]);
    // A constructor, in its fallible form (`full` and `zeros` panic with the same text).
    expect(
        "try_zeros",
        Tensor::try_zeros(&[2, max / 2 + 1], &gpu),
        &["full", &format!("[2, {}]", max / 2 + 1)],
    );
    // Nothing was left half-recorded: the same device computes on.
    let y = x.conv2d(&w.narrow(0, 0, 2).unwrap(), None, Conv2dOptions::default());
    assert_eq!(y.unwrap().sum().to_vec().unwrap(), vec![2.0 * plane as f32]);
}

/// Empty operands on the GPU, which divided by zero (convolutions with no output, or no
/// input channels; Gram matrices of no images) or dispatched work for nothing (a matmul
/// over an empty inner dimension ran a workgroup per batch: minutes for a million of them
/// on lavapipe): the results equal the CPU's.
#[test]
fn empty_operands_on_the_gpu_give_what_the_cpu_gives() {
    let Some(gpu) = common::gpu("empty_operands_on_the_gpu_give_what_the_cpu_gives") else {
        return;
    };
    let cpu = Device::cpu();
    type Case = fn(&Device) -> Result<Tensor>;
    let cases: [(&str, Case); 6] = [
        ("matmul over k = 0", |d| {
            Tensor::ones(&[2, 0], d).matmul(&Tensor::ones(&[0, 3], d))
        }),
        ("matmul over k = 0 in 3000 batches", |d| {
            Tensor::ones(&[1000, 3, 1, 0], d).matmul(&Tensor::ones(&[0, 2], d))
        }),
        ("conv2d of no input channels", |d| {
            let b = Tensor::full(&[2], 0.5, d);
            let w = Tensor::ones(&[2, 0, 1, 1], d);
            Tensor::ones(&[1, 0, 3, 3], d).conv2d(&w, Some(&b), Conv2dOptions::default())
        }),
        ("conv_transpose2d of no images", |d| {
            let w = Tensor::ones(&[2, 3, 2, 2], d);
            let o = ConvTranspose2dOptions {
                stride: [2, 2],
                ..Default::default()
            };
            Tensor::ones(&[0, 2, 3, 3], d).conv_transpose2d(&w, None, o)
        }),
        ("gram of no images", |d| {
            Tensor::ones(&[0, 3, 2, 2], d).gram()
        }),
        ("sum over an empty dimension", |d| {
            Tensor::ones(&[3, 0, 2], d).sum_dims(&[1], false)
        }),
    ];
    for (what, f) in cases {
        let want = f(&cpu).unwrap_or_else(|e| panic!("{what} on the CPU: {e}"));
        let got = f(&gpu).unwrap_or_else(|e| panic!("{what} on the GPU: {e}"));
        assert_eq!(got.shape(), want.shape(), "{what}");
        assert_eq!(got.to_vec().unwrap(), want.to_vec().unwrap(), "{what}");
    }
}
