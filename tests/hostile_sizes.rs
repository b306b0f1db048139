//! Each hostile size that once aborted the process or wrapped around, one by one: results
//! past a device's memory or what a GPU binds, shape arithmetic that overflows, window
//! sizes near `usize::MAX`. The random property test is in `bad_input.rs`.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use fovea::ops::{
    Conv2dOptions, Conv3dOptions, ConvTranspose2dOptions, CrossEntropy2dOptions, PixelTargets,
    Pool2dOptions,
};
use fovea::{Device, Result, Tensor};

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
    // Batch norms: an error naming the layer and its channels, or a panic saying the same.
    let channels = (max + 1).to_string();
    let named = |layer: &str, msg: String| {
        for n in [layer, &channels, &limit] {
            assert!(msg.contains(n), "{layer}: {msg:?} does not name {n:?}");
        }
    };
    let bn = fovea::nn::BatchNorm2d::try_new(max + 1, &dev);
    named("BatchNorm2d::new", bn.err().expect("refused").to_string());
    let bn3 = fovea::nn::BatchNorm3d::try_new(max + 1, &dev);
    named("BatchNorm3d::new", bn3.err().expect("refused").to_string());
    named(
        "BatchNorm1d::new",
        panic_message(|| fovea::nn::BatchNorm1d::new(max + 1, &dev)),
    );
    assert_eq!(
        fovea::nn::BatchNorm2d::try_new(max, &dev)
            .unwrap()
            .weight
            .numel(),
        max
    );

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

    // Strides that never step (one output, or one input of a transposed convolution,
    // along their axis) reach no backend (`Conv2dParams::normalized`): the GPU, which
    // indexes strides below 2³⁰ only, gives what the CPU gives.
    let cpu = Device::cpu();
    let strided = |stride: [usize; 2], side: usize, dev: &Device| {
        let x = Tensor::ones(&[1, 1, side, side], dev);
        let o = ConvTranspose2dOptions {
            stride,
            ..Default::default()
        };
        x.conv_transpose2d(&Tensor::ones(&[1, 1, 1, 1], dev), None, o)
    };
    for dev in [&cpu, &gpu] {
        let y = strided([1_000_000, 1], 1, dev).unwrap();
        assert_eq!(y.to_vec().unwrap(), vec![1.0], "on {}", dev.name());
    }
    let far = Conv2dOptions {
        stride: [1 << 40, 1],
        ..Default::default()
    };
    let conv = |dev: &Device| {
        let x = Tensor::ones(&[1, 1, 3, 3], dev);
        x.conv2d(&Tensor::ones(&[1, 1, 1, 1], dev), None, far)
    };
    assert_eq!(conv(&cpu).unwrap().shape(), &[1, 1, 1, 3]);
    assert_eq!(conv(&gpu).unwrap().to_vec().unwrap(), vec![1.0; 3]);
    // Strides that step, past what the GPU runs as phases of one dispatch (300² of them
    // against 65 535 workgroups): refused there, computed on the CPU.
    assert_eq!(
        strided([300, 300], 2, &cpu).unwrap().shape(),
        &[1, 1, 301, 301]
    );
    refused(
        "conv_transpose2d",
        strided([300, 300], 2, &gpu),
        &["conv_transpose2d", "stride"],
    );
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

/// An input plane with no values, all padding (height 0, padding 1): a strided
/// convolution's output is all zeros (plus the bias), forward and both gradients, on
/// both devices. The CPU's phase grid once panicked on it ("chunk size must be
/// non-zero").
#[test]
fn a_strided_convolution_of_an_empty_plane_is_zeros() {
    let mut devices = vec![Device::cpu()];
    devices.extend(common::gpu(
        "a_strided_convolution_of_an_empty_plane_is_zeros",
    ));
    for dev in devices {
        // One padded row of 20 columns and 2×2 taps at stride 2: small enough a grid for
        // the CPU to take its phase-grid path.
        let x = Tensor::zeros(&[2, 3, 0, 20], &dev).requires_grad();
        let w = Tensor::ones(&[4, 3, 2, 2], &dev).requires_grad();
        let b = Tensor::ones(&[4], &dev);
        let opts = Conv2dOptions {
            stride: [2, 2],
            padding: [1, 0],
            ..Default::default()
        };
        let y = x.conv2d(&w, Some(&b), opts).unwrap();
        assert_eq!(y.shape(), [2, 4, 1, 10], "on {}", dev.name());
        assert!(
            y.to_vec().unwrap().iter().all(|&v| v == 1.0),
            "on {}",
            dev.name()
        );
        y.sum().backward().unwrap();
        assert_eq!(x.grad().unwrap().numel(), 0);
        let gw = w.grad().unwrap().to_vec().unwrap();
        assert!(gw.iter().all(|&v| v == 0.0), "on {}", dev.name());
    }
}

/// A grouped transposed convolution of an input with no channels (found by the random
/// bad-input test, seed 1796185625167743722): the output's channels get nothing, so it is
/// all zeros, on both devices. The CPU's depthwise input gradient, which the transposed
/// form runs on, once sliced past an empty buffer for want of output channels.
#[test]
fn a_transposed_convolution_of_no_channels_is_zeros() {
    let mut devices = vec![Device::cpu()];
    devices.extend(common::gpu(
        "a_transposed_convolution_of_no_channels_is_zeros",
    ));
    for dev in devices {
        let x = Tensor::zeros(&[2, 0, 2, 7], &dev);
        let w = Tensor::ones(&[0, 1, 6, 7], &dev);
        let opts = fovea::ops::ConvTranspose2dOptions {
            stride: [1, 9],
            padding: [1, 1],
            dilation: [2, 2],
            groups: 2,
            ..Default::default()
        };
        let y = x.conv_transpose2d(&w, None, opts).unwrap();
        assert_eq!(y.shape(), [2, 2, 10, 65], "on {}", dev.name());
        assert!(
            y.to_vec().unwrap().iter().all(|&v| v == 0.0),
            "on {}",
            dev.name()
        );
    }
}

/// A convolution whose groups have no input channels (found by the random bad-input test):
/// every output value is an empty sum, so the output is the bias, on both devices. The
/// CPU's strided kernel once asserted on its padded input of no values.
#[test]
fn a_convolution_of_no_input_channels_is_its_bias() {
    let mut devices = vec![Device::cpu()];
    devices.extend(common::gpu(
        "a_convolution_of_no_input_channels_is_its_bias",
    ));
    for dev in devices {
        let x = Tensor::ones(&[7, 0, 7, 7], &dev);
        let w = Tensor::ones(&[6, 0, 4, 3], &dev);
        let b = Tensor::arange(0.0, 6.0, 1.0, &dev).unwrap();
        let opts = Conv2dOptions {
            stride: [1, 2],
            padding: [1, 3],
            groups: 2,
            ..Default::default()
        };
        let y = x.conv2d(&w, Some(&b), opts).unwrap();
        assert_eq!(y.shape(), [7, 6, 6, 6], "on {}", dev.name());
        let v = y.to_vec().unwrap();
        for (i, plane) in v.chunks(36).enumerate() {
            let want = (i % 6) as f32;
            assert!(plane.iter().all(|&y| y == want), "on {}", dev.name());
        }
    }
}

/// Depthwise transposed convolutions with strides past any width (found by the random
/// bad-input test, which the first kept busy for an hour): an output one column wide at a
/// stride of 2³² has its CPU stride phases be that column alone, not a buffer of 2³² rows,
/// and an empty batch lays out no phases at all.
#[test]
fn a_stride_past_the_width_costs_nothing_of_its_size() {
    let dev = Device::cpu();
    let x = Tensor::ones(&[1, 2, 3, 1], &dev);
    let w = Tensor::full(&[2, 1, 2, 1], 0.5, &dev);
    let opts = ConvTranspose2dOptions {
        stride: [1, 1 << 32],
        groups: 2,
        ..Default::default()
    };
    let y = x.conv_transpose2d(&w, None, opts).unwrap();
    assert_eq!(y.shape(), [1, 2, 4, 1]);
    assert_eq!(
        y.to_vec().unwrap(),
        [0.5, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 0.5]
    );
    // No images, output planes 2³² + 1 wide: nothing to lay out, let alone 2³¹ phases.
    let x = Tensor::zeros(&[0, 4, 2, 3], &dev);
    let w = Tensor::ones(&[4, 1, 3, 1], &dev);
    let opts = ConvTranspose2dOptions {
        stride: [9, 1 << 31],
        dilation: [3, 9],
        groups: 4,
        ..Default::default()
    };
    let y = x.conv_transpose2d(&w, None, opts).unwrap();
    assert_eq!(y.shape(), [0, 4, 16, (1 << 32) + 1]);
}

/// A depthwise convolution of planes no column wide, padded to three (found by the random
/// bad-input test): all padding, so the output is the bias and the weight's gradient zero,
/// on both devices. The CPU's grid once split the planes into rows of width 0.
#[test]
fn a_depthwise_convolution_of_planes_zero_wide_is_its_bias() {
    let mut devices = vec![Device::cpu()];
    devices.extend(common::gpu(
        "a_depthwise_convolution_of_planes_zero_wide_is_its_bias",
    ));
    for dev in devices {
        let x = Tensor::zeros(&[1, 4, 6, 0], &dev).requires_grad();
        let w = Tensor::ones(&[4, 1, 1, 4], &dev).requires_grad();
        let b = Tensor::full(&[4], 2.0, &dev);
        let opts = Conv2dOptions {
            padding: [0, 3],
            groups: 4,
            ..Default::default()
        };
        let y = x.conv2d(&w, Some(&b), opts).unwrap();
        assert_eq!(y.shape(), [1, 4, 6, 3], "on {}", dev.name());
        let v = y.to_vec().unwrap();
        assert!(v.iter().all(|&v| v == 2.0), "on {}", dev.name());
        y.sum().backward().unwrap();
        let gw = w.grad().unwrap().to_vec().unwrap();
        assert!(gw.iter().all(|&v| v == 0.0), "on {}", dev.name());
    }
}

/// 3-D convolutions whose depth stride or dilation never steps (one output slice, one
/// input slice, one tap) give what a stride and dilation of 1 give, however large (the
/// random bad-input test once overflowed the depth gather's strides with them), empty
/// inputs with vast planes among them.
#[test]
fn depth_steps_that_never_step_change_nothing() {
    let dev = Device::cpu();
    let x = Tensor::randn(&[1, 2, 3, 4, 4], 7, &dev);
    let w = Tensor::randn(&[3, 2, 3, 2, 2], 8, &dev);
    let with = |stride: usize, dilation: usize| Conv3dOptions {
        stride: [stride, 1, 1],
        dilation: [dilation, 1, 1],
        ..Default::default()
    };
    let want = x.conv3d(&w, None, with(1, 1)).unwrap();
    let got = x.conv3d(&w, None, with(1 << 40, 1)).unwrap();
    assert_eq!(got.shape(), [1, 3, 1, 3, 3]);
    assert_eq!(got.to_vec().unwrap(), want.to_vec().unwrap());

    let one_tap = Tensor::randn(&[3, 2, 1, 2, 2], 9, &dev);
    let want = x.conv3d(&one_tap, None, with(1, 1)).unwrap();
    let got = x.conv3d(&one_tap, None, with(1, 1 << 40)).unwrap();
    assert_eq!(got.to_vec().unwrap(), want.to_vec().unwrap());

    let slice = Tensor::randn(&[1, 2, 1, 3, 3], 10, &dev);
    let w = Tensor::randn(&[2, 3, 2, 2, 2], 11, &dev);
    let want = slice.conv_transpose3d(&w, None, with(1, 1)).unwrap();
    let got = slice.conv_transpose3d(&w, None, with(1 << 40, 1)).unwrap();
    assert_eq!(got.shape(), [1, 3, 2, 4, 4]);
    assert_eq!(got.to_vec().unwrap(), want.to_vec().unwrap());

    let empty = Tensor::zeros(&[0, 2, 3, 1 << 28, 1 << 28], &dev);
    let w = Tensor::ones(&[3, 2, 2, 1, 1], &dev);
    let y = empty.conv3d(&w, None, with(1 << 40, 1)).unwrap();
    assert_eq!(y.shape(), [0, 3, 1, 1 << 28, 1 << 28]);

    // Three output slices 2⁶² apart over an empty batch: the backward's depth arithmetic
    // (slices times the stride) overflowed.
    let x = Tensor::zeros(&[0, 1, 5, 1, 1], &dev).requires_grad();
    let w = Tensor::ones(&[1, 1, 2, 1, 1], &dev);
    let o = Conv3dOptions {
        padding: [1 << 62, 0, 0],
        ..with(1 << 62, 1)
    };
    let y = x.conv3d(&w, None, o).unwrap();
    assert_eq!(y.shape(), [0, 1, 3, 1, 1]);
    y.sum().backward().unwrap();
    assert_eq!(x.grad().unwrap().shape(), [0, 1, 5, 1, 1]);

    // A dilation of 2⁶³ along a kernel one tap wide, forward and backward (the CPU's tap
    // offsets negated it as an isize): what a dilation of 1 gives.
    let grads = |dilation: usize| {
        let x = Tensor::randn(&[2, 1, 6, 6, 4], 12, &dev).requires_grad();
        let w = Tensor::randn(&[4, 1, 2, 6, 1], 13, &dev).requires_grad();
        let o = Conv3dOptions {
            stride: [4, 1, 1],
            padding: [1, 3, 1],
            dilation: [1, 1, dilation],
            ..Default::default()
        };
        let y = x.conv3d(&w, None, o).unwrap();
        y.sum().backward().unwrap();
        [y, x.grad().unwrap(), w.grad().unwrap()].map(|t| t.to_vec().unwrap())
    };
    assert_eq!(grads(1 << 63), grads(1));

    // A depth padded past what the device holds (found by the random test): an error
    // that names conv3d, not only the padding step inside it.
    let dev = Device::cpu_with_memory_limit(4 << 20);
    let x = Tensor::ones(&[3, 7, 7, 2, 7], &dev);
    let w = Tensor::ones(&[2, 7, 1, 2, 7], &dev);
    let o = Conv3dOptions {
        padding: [1 << 32, 0, 0],
        ..Default::default()
    };
    let e = x.conv3d(&w, None, o).unwrap_err().to_string();
    assert!(e.starts_with("conv3d") && e.contains("padded"), "{e}");
}

/// Losses, targets and reductions with sizes past any memory (found by the random test
/// once it called them): errors naming the op where the result is vast, where they
/// multiplied unchecked, allocated a weight per class of empty logits (4 TiB: an abort),
/// or built a vast mask or partial sum on the way to a small result.
#[test]
fn targets_and_losses_refuse_vast_sizes() {
    let dev = Device::cpu_with_memory_limit(4 << 20);
    let e = PixelTargets::new(vec![], [1 << 32, 1 << 32, 1]).unwrap_err();
    assert!(e.to_string().contains("PixelTargets::new"), "{e}");
    let e = PixelTargets::from_masks(&[vec![0u8]], 1 << 32, 1 << 32).unwrap_err();
    assert!(e.to_string().contains("from_masks"), "{e}");
    let logits = Tensor::zeros(&[0, 1 << 40, 1, 1], &dev);
    let targets = PixelTargets::new(vec![], [0, 1, 1]).unwrap();
    let opts = CrossEntropy2dOptions::default();
    refused(
        "cross_entropy2d",
        logits.cross_entropy2d(&targets, &opts),
        &["cross_entropy2d"],
    );
    // An empty batch of 2·10⁶ samples drops nothing (its mask was built first and
    // refused), and sums to a vast result only where that result is asked for.
    let empty = Tensor::zeros(&[2_000_000, 0], &dev);
    assert_eq!(
        empty.drop_path(0.5, true, 1).unwrap().shape(),
        [2_000_000, 0]
    );
    let sum = empty.sum_to_shape(&[1, 1]).unwrap();
    assert_eq!(sum.to_vec().unwrap(), [0.0]);
    refused(
        "sum_to_shape",
        empty.sum_to_shape(&[2_000_000, 1]),
        &["sum_to_shape", "[2000000, 1]"],
    );
}
