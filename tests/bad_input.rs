//! Property test: random (often invalid) shapes and parameters thrown at every op must
//! give `Ok` or a clear `Err`, never a panic; sizes near and past `usize` and the device's
//! memory among them, on the CPU and the GPU. Then each hostile size of the issue that
//! asked for these guarantees, one by one.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::{run_seed, Rng};
use fovea::ops::{BatchNormOptions, Conv2dOptions, ConvTranspose2dOptions, Pool2dOptions};
use fovea::{Device, Error, Result, Tensor};

/// Sizes near and past what a `usize` counts and any device holds.
const HUGE: [usize; 12] = [
    1_000_000,
    1_000_000_000,
    1 << 31,
    1 << 32,
    (1 << 32) + 1,
    1 << 62,
    (1 << 62) + 1,
    1 << 63,
    (1 << 63) + 1,
    usize::MAX / 2,
    usize::MAX - 1,
    usize::MAX,
];

/// A size for a shape argument: mostly small, now and then huge.
fn size(r: &mut Rng) -> usize {
    if r.chance(0.06) {
        r.pick(&HUGE)
    } else {
        r.pick(&[0, 1, 1, 2, 3, 3, 4, 5])
    }
}

fn rand_shape(r: &mut Rng, max_rank: usize) -> Vec<usize> {
    let rank = r.range(0, max_rank);
    (0..rank).map(|_| size(r)).collect()
}

/// A random tensor on `dev`. A shape that cannot exist (huge without a zero) is made
/// empty by a zero in its last dimension, so that empty tensors with huge dimensions
/// take part too (where their other dimensions' product fits a `usize`).
fn tensor(r: &mut Rng, max_rank: usize, dev: &Device) -> Tensor {
    let mut s = rand_shape(r, max_rank);
    if s.iter().any(|&d| d > 5) {
        *s.last_mut().expect("a huge dimension") = 0;
    }
    let seed = r.next();
    Tensor::try_randn(&s, seed, dev).unwrap_or_else(|_| Tensor::randn(&[0], seed, dev))
}

fn image(r: &mut Rng, dev: &Device) -> Tensor {
    // Mostly rank 4 so that deeper validation is reached, sometimes not.
    if r.chance(0.85) {
        let s: Vec<usize> = (0..4).map(|_| r.pick(&[0, 1, 2, 3, 4, 6, 7])).collect();
        Tensor::randn(&s, r.next(), dev)
    } else {
        tensor(r, 5, dev)
    }
}

/// A parameter (stride, padding, dilation, kernel, groups, scale): mostly small, now and
/// then huge.
fn small(r: &mut Rng) -> usize {
    if r.chance(0.05) {
        r.pick(&HUGE)
    } else {
        r.pick(&[0, 1, 1, 2, 2, 3, 4, 9])
    }
}

fn pair(r: &mut Rng) -> [usize; 2] {
    [small(r), small(r)]
}

fn dim(r: &mut Rng) -> isize {
    r.range(0, 9) as isize - 5
}

/// An `Ok` tensor must hold what its shape says, within what the device holds.
fn consistent(t: Tensor) -> Result<()> {
    match fovea::shape::checked_numel("consistent", t.shape()).ok() {
        Some(n) if n == t.storage().len() && n <= t.device().max_len() => Ok(()),
        _ => Err(Error::Backend(format!(
            "INCONSISTENT: shape {:?} with {} values",
            t.shape(),
            t.storage().len()
        ))),
    }
}

/// One random call of one op on `dev`, described for the failure report.
fn call(r: &mut Rng, which: usize, dev: &Device) -> (String, Result<()>) {
    let ok = |t: Result<Tensor>| t.and_then(consistent);
    let a = tensor(r, 4, dev);
    let b = tensor(r, 4, dev);
    match which {
        0 => {
            let s = rand_shape(r, 4);
            let n = r.range(0, 12);
            (
                format!("from_vec {n} values as {s:?}"),
                ok(Tensor::from_vec(vec![0.5; n], &s, dev)),
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
            let x = image(r, dev);
            let w = image(r, dev);
            let o = Conv2dOptions {
                stride: pair(r),
                padding: pair(r),
                dilation: pair(r),
                groups: small(r),
                same: r.chance(0.3),
            };
            let bias = r.chance(0.3).then(|| tensor(r, 2, dev));
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
            let x = image(r, dev);
            let w = image(r, dev);
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
            let x = image(r, dev);
            let o = Pool2dOptions {
                kernel: pair(r),
                stride: pair(r),
                padding: pair(r),
                padding_end: r.chance(0.3).then(|| pair(r)),
                dilation: pair(r),
                ceil_mode: r.chance(0.5),
                same: r.chance(0.3),
            };
            let res = match r.range(0, 2) {
                0 => x.max_pool2d(o),
                1 => x.max_pool2d_with_indices(o).map(|(y, _)| y),
                _ => x.avg_pool2d_with(o, r.chance(0.5)),
            };
            (format!("pool x{:?} {o:?}", x.shape()), ok(res))
        }
        14 => {
            let x = image(r, dev);
            let s = pair(r);
            let res = if r.chance(0.5) {
                x.adaptive_avg_pool2d(s)
            } else {
                x.upsample_nearest2d(s)
            };
            (format!("resize x{:?} to {s:?}", x.shape()), ok(res))
        }
        15 => {
            let x = image(r, dev);
            let c = tensor(r, 1, dev);
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
            let bias = r.chance(0.5).then(|| tensor(r, 2, dev));
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
                r.pick(&[0.0, 1.0, -3.0, f32::NAN, -3e38]),
                r.pick(&[0.0, 5.0, f32::INFINITY, 1e30, 3e38]),
                r.pick(&[0.0, 1.0, -1.0, 0.5, 1e-30]),
            );
            (
                format!("arange {s} {e} {st}"),
                ok(Tensor::arange(s, e, st, dev)),
            )
        }
        24 => {
            let x = a.clone().requires_grad();
            let res = x.mul_scalar(2.0).backward();
            (format!("backward on {:?}", a.shape()), res)
        }
        25 => (format!("item {:?}", a.shape()), a.item().map(|_| ())),
        26 => {
            let s = small(r);
            (
                format!("upsample2d {:?} x{s}", a.shape()),
                ok(a.upsample2d(s)),
            )
        }
        _ => {
            let s = rand_shape(r, 4);
            let v = r.pick(&[0.0, 1.5]);
            let res = match r.range(0, 5) {
                0 => Tensor::try_full(&s, v, dev),
                1 => Tensor::try_zeros(&s, dev),
                2 => Tensor::try_rand(&s, 3, dev),
                3 => Tensor::try_randn(&s, 4, dev),
                _ => a.to_device(dev),
            };
            (format!("constructor of {s:?}"), ok(res))
        }
    }
}

/// Throws `calls` random calls at every op on `dev`: each is `Ok` with a tensor that holds
/// what its shape says, or an `Err` that names its op, never a panic.
fn never_panics(test: &str, dev: &Device, calls: usize) {
    const OPS: usize = 28;
    let mut r = Rng(run_seed(test));
    let mut panics = Vec::new();
    let (mut oks, mut errs) = (0, 0);
    for i in 0..calls {
        let which = i % OPS;
        let mut case_rng = Rng(r.next());
        let outcome = catch_unwind(AssertUnwindSafe(|| call(&mut case_rng, which, dev)));
        match outcome {
            Ok((_, Ok(()))) => oks += 1,
            Ok((desc, Err(e))) => {
                errs += 1;
                let msg = e.to_string();
                assert!(
                    !msg.is_empty() && msg.contains(':'),
                    "{desc}: error without context: {msg:?}"
                );
                assert!(!msg.contains("INCONSISTENT"), "{desc}: {msg}");
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
    assert!(
        oks > calls / 40 && errs > calls / 40,
        "{oks} ok, {errs} errors"
    );
    eprintln!("{test}: {oks} calls succeeded, {errs} were refused with an error, none panicked");
}

/// On a CPU device whose tensors may hold at most 4 MiB: sizes past that are refused the
/// way sizes past the machine's memory are, without allocating them.
#[test]
fn random_bad_input_never_panics() {
    let dev = Device::cpu_with_memory_limit(4 << 20);
    never_panics("random_bad_input_never_panics", &dev, 20_000);
}

/// The same calls on the GPU (fewer: lavapipe is slow), whose limits are the adapter's.
#[test]
fn random_bad_input_never_panics_on_the_gpu() {
    let Some(gpu) = common::gpu("random_bad_input_never_panics_on_the_gpu") else {
        return;
    };
    never_panics("random_bad_input_never_panics_on_the_gpu", &gpu, 1_500);
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

/// The message of the error `r` must be, naming each of `names`.
fn refused(what: &str, r: Result<Tensor>, names: &[&str]) -> String {
    let msg = match r {
        Ok(t) => panic!("{what}: gave a tensor of shape {:?}", t.shape()),
        Err(e) => e.to_string(),
    };
    for n in names {
        assert!(msg.contains(n), "{what}: {msg:?} does not name {n:?}");
    }
    msg
}

/// The panic message of `f`, which must panic (with a message: fovea's, not an abort).
fn panic_message<T>(f: impl FnOnce() -> T) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).err().expect("no panic");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Every result of the issue that once aborted the process ("memory allocation of … bytes
/// failed"), on a CPU device that admits 16 MiB per tensor: each is an error naming its
/// op, its inputs and the limit, raised before anything is allocated. The constructors
/// that cannot return an error panic with that message instead, which a program can catch.
#[test]
fn results_past_the_memory_limit_are_errors_not_aborts() {
    let dev = Device::cpu_with_memory_limit(16 << 20);
    let max = dev.max_len();
    assert_eq!(max, 4 << 20);
    let limit = max.to_string();
    // Exactly the limit is admitted; one value more is not.
    assert_eq!(Tensor::try_zeros(&[max], &dev).unwrap().numel(), max);
    let over = format!("[{}]", max + 1);
    refused(
        "try_zeros",
        Tensor::try_zeros(&[max + 1], &dev),
        &["full", &over, &limit],
    );
    refused(
        "try_full",
        Tensor::try_full(&[1 << 40], 2.0, &dev),
        &["full", &limit],
    );
    refused(
        "try_rand",
        Tensor::try_rand(&[2, max], 0, &dev),
        &["rand", &limit],
    );
    refused(
        "try_randn",
        Tensor::try_randn(&[max + 1], 0, &dev),
        &["randn", &over],
    );
    for (what, msg) in [
        ("zeros", panic_message(|| Tensor::zeros(&[1 << 40], &dev))),
        ("ones", panic_message(|| Tensor::ones(&[1 << 40], &dev))),
        (
            "randn",
            panic_message(|| Tensor::randn(&[1 << 40], 0, &dev)),
        ),
        (
            "Linear::new",
            panic_message(|| fovea::nn::Linear::new(1 << 20, 1 << 20, true, 0, &dev)),
        ),
    ] {
        assert!(
            msg.contains("[1099511627776]") || msg.contains("[1048576, 1048576]"),
            "{what}: {msg:?}"
        );
        assert!(msg.contains(&limit), "{what}: {msg:?}");
    }

    let x = Tensor::ones(&[1, 1, 4, 4], &dev);
    let k = Tensor::ones(&[1, 1, 2, 2], &dev);
    let x_shape = "[1, 1, 4, 4]";
    refused(
        "pad",
        x.pad(&[1_000_000; 4], 0.0),
        &["pad", x_shape, &limit],
    );
    let wide = ConvTranspose2dOptions {
        stride: [1_000_000, 1_000_000],
        ..Default::default()
    };
    refused(
        "conv_transpose2d",
        x.conv_transpose2d(&k, None, wide),
        &["conv_transpose2d", x_shape, "[1, 1, 2, 2]"],
    );
    let padded = Conv2dOptions {
        padding: [1_000_000, 1_000_000],
        ..Default::default()
    };
    refused("conv2d", x.conv2d(&k, None, padded), &["conv2d", x_shape]);
    let v = Tensor::ones(&[1_000_000], &dev);
    let column = v.reshape(&[1_000_000, 1]).unwrap();
    let row = v.reshape(&[1, 1_000_000]).unwrap();
    refused(
        "matmul",
        column.matmul(&row),
        &["matmul", "[1000000, 1]", &limit],
    );
    refused("add", v.add(&column), &["add", "[1000000]", "[1000000, 1]"]);
    refused(
        "upsample2d",
        x.upsample2d(100_000),
        &["upsample_nearest2d", x_shape],
    );
    refused(
        "adaptive_avg_pool2d",
        x.adaptive_avg_pool2d([1_000_000_000, 1_000_000_000]),
        &["adaptive_avg_pool2d", x_shape],
    );
    refused(
        "expand",
        Tensor::ones(&[1], &dev).expand(&[1 << 40]),
        &["expand", "[1099511627776]"],
    );
    // Nothing was left half-done: the device computes on.
    let y = x.conv2d(&k, None, Conv2dOptions::default()).unwrap();
    assert_eq!(y.sum().item().unwrap(), 36.0);
}

/// The default CPU device's limit is the machine's memory: results past any machine are
/// refused there too (these sizes are petabytes), and nothing is allocated for them.
#[test]
fn results_past_any_memory_are_errors_on_the_default_cpu_device() {
    let dev = Device::cpu();
    let x = Tensor::ones(&[1, 1, 4, 4], &dev);
    let k = Tensor::ones(&[1, 1, 2, 2], &dev);
    refused("try_zeros", Tensor::try_zeros(&[1 << 52], &dev), &["full"]);
    refused("pad", x.pad(&[1_000_000_000; 4], 0.0), &["pad"]);
    let padded = Conv2dOptions {
        padding: [100_000_000, 100_000_000],
        ..Default::default()
    };
    refused("conv2d", x.conv2d(&k, None, padded), &["conv2d"]);
    refused(
        "expand",
        Tensor::ones(&[1], &dev).expand(&[1 << 52]),
        &["expand"],
    );
    refused(
        "upsample2d",
        x.upsample2d(100_000_000),
        &["upsample_nearest2d"],
    );
    refused(
        "adaptive_avg_pool2d",
        x.adaptive_avg_pool2d([1_000_000_000, 1_000_000_000]),
        &["adaptive_avg_pool2d"],
    );
    assert!(dev.max_len() < 1 << 50, "the CPU's limit {}", dev.max_len());
}

/// Shapes whose element count, or an output size, wraps past `usize::MAX` used to give
/// tensors whose shape did not match their data (or a small, wrong output): now an error.
#[test]
fn shape_arithmetic_that_overflows_is_an_error() {
    let dev = Device::cpu();
    let huge = [1 << 32, 1 << 32];
    refused(
        "from_vec",
        Tensor::from_vec(vec![1.0; 4], &[(1 << 62) + 1, 4], &dev),
        &["from_vec", "[4611686018427387905, 4]"],
    );
    refused("try_zeros", Tensor::try_zeros(&huge, &dev), &["full"]);
    refused("try_full", Tensor::try_full(&huge, 1.0, &dev), &["full"]);
    refused("try_rand", Tensor::try_rand(&huge, 1, &dev), &["rand"]);
    assert!(panic_message(|| Tensor::ones(&huge, &dev)).contains("[4294967296, 4294967296]"));
    // An empty tensor viewed as 2^32 × 2^32, whose count wraps to 0.
    let empty = Tensor::zeros(&[0], &dev);
    refused("reshape", empty.reshape(&huge), &["reshape"]);
    refused(
        "reshape",
        Tensor::ones(&[4], &dev).reshape(&[(1 << 62) + 1, 4]),
        &["reshape"],
    );
    refused(
        "expand",
        Tensor::ones(&[1], &dev).expand(&huge),
        &["expand"],
    );
    let a = Tensor::zeros(&[usize::MAX, 0], &dev);
    let b = Tensor::zeros(&[1, 0], &dev);
    refused("cat", Tensor::cat(&[&a, &b], 0), &["cat"]);
    // Output sizes: each wrapped to a small tensor of the wrong shape.
    let x = Tensor::ones(&[1, 1, 2, 2], &dev);
    refused("upsample2d", x.upsample2d((1 << 63) + 1), &["upsample2d"]);
    let k = Tensor::ones(&[1, 1, 2, 1], &dev);
    let dilated = Conv2dOptions {
        dilation: [1 << 63, 1],
        ..Default::default()
    };
    refused("conv2d", x.conv2d(&k, None, dilated), &["conv2d"]);
    let padded = Conv2dOptions {
        padding: [usize::MAX / 2, 0],
        ..Default::default()
    };
    refused("conv2d", x.conv2d(&k, None, padded), &["conv2d"]);
    let groups = Conv2dOptions {
        groups: 1 << 63,
        ..Default::default()
    };
    let none = Tensor::zeros(&[1, 0, 2, 2], &dev);
    let w = Tensor::zeros(&[0, 2, 1, 1], &dev);
    refused("conv2d groups", none.conv2d(&w, None, groups), &["conv2d"]);
}

/// conv2d and the pools at huge kernels, strides, paddings and dilations: every `Ok` has
/// exactly the output size PyTorch's formula gives in exact (128-bit) arithmetic, and a
/// size that no tensor could have is an error.
#[test]
fn window_output_sizes_are_exact_or_refused() {
    // Huge paddings give huge outputs: keep those that pass small.
    let dev = Device::cpu_with_memory_limit(1 << 20);
    let x = Tensor::ones(&[1, 1, 4, 4], &dev);
    let values = [
        1usize,
        2,
        3,
        5,
        1 << 31,
        1 << 61,
        (1 << 62) + 1,
        1 << 63,
        usize::MAX,
    ];
    let mut checked = 0;
    for &k in &values {
        for &s in &values {
            for &p in &values {
                // PyTorch's floor((len + 2p − k) / s) + 1, when the window fits.
                let span = 4 + 2 * p as u128;
                let expect = (span >= k as u128).then(|| (span - k as u128) / s as u128 + 1);
                let o = Pool2dOptions {
                    kernel: [k, 1],
                    stride: [s, 1],
                    padding: [p, 0],
                    ..Default::default()
                };
                match x.max_pool2d(o) {
                    Ok(y) => {
                        assert_eq!(Some(y.shape()[2] as u128), expect, "{o:?}");
                        checked += 1;
                    }
                    Err(e) => assert!(e.to_string().starts_with("max_pool2d"), "{e}"),
                }
                for d in [1, 1 << 62] {
                    let w = Tensor::ones(&[1, 1, k.min(5), 1], &dev);
                    let o = Conv2dOptions {
                        stride: [s, 1],
                        padding: [p, 0],
                        dilation: [d, 1],
                        groups: 1,
                        same: false,
                    };
                    let dk = d as u128 * (k.min(5) as u128 - 1) + 1;
                    let expect = (span >= dk).then(|| (span - dk) / s as u128 + 1);
                    match x.conv2d(&w, None, o) {
                        Ok(y) => {
                            assert_eq!(Some(y.shape()[2] as u128), expect, "{o:?}");
                            assert_eq!(y.numel(), y.to_vec().unwrap().len());
                            checked += 1;
                        }
                        Err(e) => assert!(e.to_string().starts_with("conv2d"), "{e}"),
                    }
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} results were checked");
}

/// Functions returning `Result` that panicked on these inputs (`capacity overflow`, a
/// slice index, a count saturated to `usize::MAX`).
#[test]
fn pads_and_aranges_past_any_size_are_errors_not_panics() {
    let dev = Device::cpu();
    let x = Tensor::ones(&[1, 1, 2, 2], &dev);
    refused("pad 10^9", x.pad(&[1_000_000_000; 4], 0.0), &["pad"]);
    refused(
        "pad MAX/2",
        x.pad(&[usize::MAX / 2; 2], 0.0),
        &["pad", "overflow"],
    );
    refused(
        "arange",
        Tensor::arange(0.0, 1e30, 1.0, &dev),
        &["arange", "values"],
    );
    refused(
        "arange",
        Tensor::arange(-3e38, 3e38, 1.0, &dev),
        &["arange"],
    );
    if let Some(gpu) = common::gpu("pads_and_aranges_past_any_size_are_errors_not_panics") {
        refused("arange", Tensor::arange(0.0, 1e30, 1.0, &gpu), &["arange"]);
        let x = Tensor::ones(&[1, 1, 2, 2], &gpu);
        refused("pad", x.pad(&[usize::MAX / 2; 2], 0.0), &["pad"]);
    }
}

/// The GPU checks a result before the host builds its values: random tensors and layers
/// past what it binds are errors (or fovea's panic), not a host allocation that aborts.
/// And parameters past what its kernels index in 32 bits are refused, where the CPU,
/// indexing in 64 bits, computes them.
#[test]
fn the_gpu_refuses_sizes_before_building_host_values() {
    let Some(gpu) = common::gpu("the_gpu_refuses_sizes_before_building_host_values") else {
        return;
    };
    let limit = gpu.max_len().to_string();
    refused(
        "try_randn",
        Tensor::try_randn(&[1 << 40], 0, &gpu),
        &["randn", &limit],
    );
    refused(
        "try_rand",
        Tensor::try_rand(&[1 << 40], 0, &gpu),
        &["rand", &limit],
    );
    let msg = panic_message(|| fovea::nn::Linear::new(1 << 20, 1 << 20, true, 0, &gpu));
    assert!(
        msg.contains("[1048576, 1048576]") && msg.contains(&limit),
        "{msg}"
    );

    let cpu = Device::cpu();
    let strided = ConvTranspose2dOptions {
        stride: [1_000_000, 1],
        ..Default::default()
    };
    let conv_t = |dev: &Device| {
        let x = Tensor::ones(&[1, 1, 1, 1], dev);
        x.conv_transpose2d(&Tensor::ones(&[1, 1, 1, 1], dev), None, strided)
    };
    assert_eq!(conv_t(&cpu).unwrap().to_vec().unwrap(), vec![1.0]);
    refused(
        "conv_transpose2d",
        conv_t(&gpu),
        &["conv_transpose2d", "stride"],
    );
    let far = Conv2dOptions {
        stride: [1 << 40, 1],
        ..Default::default()
    };
    let conv = |dev: &Device| {
        let x = Tensor::ones(&[1, 1, 3, 3], dev);
        x.conv2d(&Tensor::ones(&[1, 1, 1, 1], dev), None, far)
    };
    assert_eq!(conv(&cpu).unwrap().shape(), &[1, 1, 1, 3]);
    refused("conv2d", conv(&gpu), &["conv2d", "stride"]);
    // The device computes on.
    let x = Tensor::ones(&[1, 1, 3, 3], &gpu);
    assert_eq!(x.sum().item().unwrap(), 9.0);
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
