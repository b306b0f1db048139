//! Memory: what graphs hold (the CPU backend's live-byte counter), how the GPU pool
//! grows, and results larger than the memory the system has left. In a file of their
//! own: the counters are process-wide, and other tests would allocate beside them.

mod common;

use std::sync::Mutex;

use fovea::nn::{BatchNorm2d, Conv2d, Module, Relu, Sequential};
use fovea::ops::Conv2dOptions;
use fovea::{autocast, DType, Device, DeviceExt, Tensor};

/// The CPU counter is process-wide: its tests take turns.
static CPU_COUNTER: Mutex<()> = Mutex::new(());

#[test]
fn backward_frees_what_the_forward_saved_while_the_loss_lives() {
    let _turn = CPU_COUNTER.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::cpu();
    let live = || dev.stats().bytes_allocated;
    let x = Tensor::randn(&[64, 1024], 0, &dev).requires_grad();
    let base = live();
    // Twenty 256 KiB activations, each kept for backward.
    let mut h = x.clone();
    for _ in 0..20 {
        h = h.tanh();
    }
    let loss = h.sum();
    let held = live() - base;
    assert!(held >= 20 * 256 * 1024, "the forward holds {held} bytes");
    loss.backward().unwrap();
    // The loss (and h) are still alive, but the saved activations were released; the
    // gradient of x (256 KiB) and h's own values remain.
    let after = live() - base;
    assert!(
        after <= 3 * 256 * 1024,
        "{after} bytes still held after backward"
    );
    assert!(dev.stats().peak_bytes >= base + held);
    drop((loss, h));
}

#[test]
fn a_conv_relu_stack_keeps_only_what_its_backward_needs() {
    let _turn = CPU_COUNTER.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::cpu();
    let live = || dev.stats().bytes_allocated;
    let unit = 16 * 64 * 64 * 4; // one activation: 256 KiB
    let same = Conv2dOptions {
        padding: [1, 1],
        ..Default::default()
    };
    for trainable in [false, true] {
        let x = Tensor::randn(&[1, 16, 64, 64], 0, &dev).requires_grad();
        let w1 = Tensor::randn(&[16, 16, 3, 3], 1, &dev).mul_scalar(0.1);
        let w2 = Tensor::randn(&[16, 16, 3, 3], 2, &dev).mul_scalar(0.1);
        let (w1, w2) = if trainable {
            (w1.requires_grad(), w2.requires_grad())
        } else {
            (w1, w2)
        };
        let base = live();
        // Each ReLU keeps its output; the conv outputs feeding them are not kept (nothing
        // needs them), and the second conv's input is the first ReLU's output, kept
        // already. Keeping the graph's tensors would hold four activations.
        let loss = x
            .conv2d(&w1, None, same)
            .unwrap()
            .relu()
            .conv2d(&w2, None, same)
            .unwrap()
            .relu()
            .sum();
        let held = live() - base;
        assert!(
            (2 * unit..3 * unit).contains(&held),
            "trainable {trainable}: the forward holds {held} bytes, {:.2} activations",
            held as f64 / unit as f64
        );
        loss.backward().unwrap();
        assert!(x.grad().is_some());
        assert_eq!(w1.grad().is_some(), trainable);
    }
}

#[test]
fn inference_activations_make_no_buffer_of_their_own() {
    let _turn = CPU_COUNTER.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::cpu();
    let buffers = || dev.stats().buffers_allocated;
    let x = Tensor::randn(&[1, 16, 64, 64], 0, &dev);
    let w = Tensor::randn(&[16, 16, 3, 3], 1, &dev);
    let same = Conv2dOptions {
        padding: [1, 1],
        ..Default::default()
    };
    let y = fovea::no_grad(|| x.conv2d(&w, None, same).unwrap());
    let before = buffers();
    let z = fovea::no_grad(|| y.into_relu());
    assert_eq!(buffers(), before, "the ReLU wrote over the conv's output");
    // Held elsewhere, the input keeps its values and the activation gets a buffer.
    let kept = z.clone();
    let before = buffers();
    let r = z.into_relu6();
    assert_eq!(buffers(), before + 1);
    assert_eq!(kept.to_vec().unwrap().len(), r.to_vec().unwrap().len());
}

/// A layer's random weight is scaled over the buffer it was drawn into: one buffer per
/// weight, where a second one held it twice while the layer was made (a 16 GiB classifier
/// then needed 32), and the same values as the op that makes a new buffer.
#[test]
fn a_layers_weight_is_drawn_and_scaled_in_one_buffer() {
    let _turn = CPU_COUNTER.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::cpu();
    let before = dev.stats().buffers_allocated;
    let layer = fovea::nn::Linear::try_new(300, 200, false, 7, &dev).unwrap();
    assert_eq!(dev.stats().buffers_allocated, before + 1);
    let bound = fovea::nn::init::default_bound(300);
    let fresh = Tensor::rand(&[200, 300], 7, &dev).affine(2.0 * bound, -bound);
    assert_eq!(layer.weight.to_vec().unwrap(), fresh.to_vec().unwrap());
    assert!(layer.weight.is_requires_grad());
}

/// A result within what one CPU tensor may hold (the machine's memory) but larger than the
/// memory the system has left is an error naming the op, not an allocation that Linux
/// grants and then kills the process for writing.
#[test]
#[cfg(target_os = "linux")]
fn a_result_larger_than_the_memory_left_is_an_error_not_a_kill() {
    // A refusal gives the kept buffers back, which the counting tests here would see.
    let _turn = CPU_COUNTER.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        std::env::var("FOVEA_CPU_CHECK_LEFT").map_or(true, |v| v != "0"),
        "FOVEA_CPU_CHECK_LEFT=0 would have this test write the machine's whole memory"
    );
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    assert!(
        info.contains("MemAvailable:"),
        "without MemAvailable (Linux before 3.14) nothing is checked, and this test would write the machine's whole memory"
    );
    let dev = Device::cpu();
    // The most one tensor may hold; with a limit set by hand, far past any machine's
    // memory instead.
    let len = match std::env::var_os("FOVEA_CPU_MEMORY_LIMIT") {
        None => dev.max_len(),
        Some(_) => 1 << 40,
    };
    let refused = |what: &str, r: fovea::Result<Tensor>, names: &[&str]| {
        let msg = r
            .err()
            .unwrap_or_else(|| panic!("{what}: made"))
            .to_string();
        for n in names {
            assert!(msg.contains(n), "{what}: {msg:?} does not name {n:?}");
        }
        if len <= dev.max_len() {
            assert!(
                msg.contains("left"),
                "{what}: {msg:?} does not say what is left"
            );
        }
    };
    let shape = format!("[{len}]");
    refused(
        "try_zeros",
        Tensor::try_zeros(&[len], &dev),
        &["full", &shape],
    );
    // An op's result, a padded plane of about as many values.
    let x = Tensor::ones(&[1, 1, 1, 1], &dev);
    let side = (len as f64).sqrt() as usize - 1;
    let (a, b) = (side / 2, side - side / 2);
    refused("pad", x.pad(&[a, b, a, b], 0.0), &["pad", "[1, 1, 1, 1]"]);
    // The device works on.
    assert_eq!(x.add_scalar(1.0).sum().item().unwrap(), 2.0);
}

/// A GPU device of the test's own on the default adapter: tests that count the buffer
/// pool's bytes cannot share it with tests running beside them.
fn private_gpu(test: &str) -> Option<Device> {
    let shared = common::gpu(test)?;
    Some(Device::gpu_with(&shared.name()).expect("the default adapter opens again"))
}

#[test]
fn the_gpu_pool_releases_idle_buffers_instead_of_growing_past_its_slack() {
    let Some(gpu) =
        private_gpu("the_gpu_pool_releases_idle_buffers_instead_of_growing_past_its_slack")
    else {
        return;
    };
    let mib = 1u64 << 20;
    let held = || gpu.stats().bytes_allocated;
    let start = held();
    // Phase 1: sixteen 1 MiB tensors at once, then all idle.
    let small: Vec<Tensor> = (0..16)
        .map(|i| Tensor::full(&[1 << 18], i as f32, &gpu))
        .collect();
    gpu.sync().unwrap();
    drop(small);
    // Phase 2: four 4 MiB tensors at once. Keeping every idle buffer, the pool would hold
    // both phases (32 MiB); with at most 16 MiB ever in use it may grow to 24 MiB.
    let big: Vec<Tensor> = (0..4)
        .map(|i| Tensor::full(&[1 << 20], i as f32, &gpu))
        .collect();
    assert_eq!(big[3].to_vec().unwrap()[0], 3.0);
    let grown = held() - start;
    assert!(grown <= 24 * mib, "the pool grew by {} MiB", grown / mib);
    assert!(
        grown >= 16 * mib,
        "the pool grew by only {} MiB",
        grown / mib
    );
}

#[test]
fn release_cached_hands_the_idle_pooled_buffers_back() {
    let Some(gpu) = private_gpu("release_cached_hands_the_idle_pooled_buffers_back") else {
        return;
    };
    let live = Tensor::full(&[1 << 18], 2.0, &gpu);
    let idle: Vec<Tensor> = (0..4)
        .map(|i| Tensor::full(&[1 << 18], i as f32, &gpu))
        .collect();
    gpu.sync().unwrap();
    drop(idle);
    let before = gpu.stats();
    assert!(before.buffers_cached >= 4, "{before:?}");
    gpu.release_cached();
    let after = gpu.stats();
    assert_eq!(after.buffers_cached, 0, "{after:?}");
    assert!(
        after.bytes_allocated + 4 * (1 << 20) <= before.bytes_allocated,
        "{before:?} -> {after:?}"
    );
    // The live tensor keeps its buffer, and the device works on.
    assert_eq!(live.add_scalar(1.0).to_vec().unwrap()[7], 3.0);
}

#[test]
fn a_repeated_step_reuses_the_pools_buffers_instead_of_trading_classes() {
    let Some(gpu) =
        private_gpu("a_repeated_step_reuses_the_pools_buffers_instead_of_trading_classes")
    else {
        return;
    };
    let mib = 1usize << 18; // f32 values in 1 MiB
                            // Two phases, as in LeNet's training step: two 4 MiB tensors at once (the peak in use,
                            // 8 MiB, lets the pool hold 12 MiB), then three 2 MiB ones. Holding both phases'
                            // buffers would take 14 MiB: growing for the third 2 MiB tensor released a 4 MiB
                            // buffer, which the next step's first phase created again, and so on every step.
    let step = || {
        let big: Vec<Tensor> = (0..2)
            .map(|_| Tensor::full(&[4 * mib], 1.0, &gpu))
            .collect();
        gpu.sync().unwrap();
        drop(big);
        let small: Vec<Tensor> = (0..3)
            .map(|_| Tensor::full(&[2 * mib], 2.0, &gpu))
            .collect();
        assert_eq!(small[2].to_vec().unwrap()[2 * mib - 1], 2.0);
    };
    step();
    let created = gpu.stats().buffers_allocated;
    for _ in 0..3 {
        step();
    }
    assert_eq!(
        gpu.stats().buffers_allocated,
        created,
        "steps after the first created buffers"
    );
}

#[test]
fn f16_tensors_hold_two_bytes_a_value() {
    let _turn = CPU_COUNTER.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::cpu();
    let x = Tensor::randn(&[1 << 20], 3, &dev);
    let before = dev.stats().bytes_allocated;
    let h = x.half().unwrap();
    assert_eq!(dev.stats().bytes_allocated - before, 2 << 20);
    drop(h);
    assert_eq!(dev.stats().bytes_allocated, before);
}

/// Under autocast a convolution's result is f16, and so is what follows it (batch norm,
/// ReLU), so the activations the graph keeps for backward take about half the bytes.
#[test]
fn autocast_keeps_activations_in_f16() {
    let _turn = CPU_COUNTER.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::cpu();
    let pad = Conv2dOptions {
        padding: [1, 1],
        ..Default::default()
    };
    let mut net = Sequential::new();
    for i in 0..4 {
        net = net
            .push(Conv2d::new(16, 16, [3, 3], pad, false, i, &dev).unwrap())
            .push(BatchNorm2d::new(16, &dev))
            .push(Relu);
    }
    let x = Tensor::randn(&[4, 16, 32, 32], 1, &dev).requires_grad();
    let held = |cast: bool| {
        let base = dev.stats().bytes_allocated;
        let y = if cast {
            autocast(|| net.forward(&x)).unwrap()
        } else {
            net.forward(&x).unwrap()
        };
        assert_eq!(y.dtype(), if cast { DType::F16 } else { DType::F32 });
        let loss = autocast(|| y.square().mean());
        assert_eq!(loss.dtype(), DType::F32, "autocast sums in f32");
        let held = dev.stats().bytes_allocated - base;
        loss.backward().unwrap();
        x.zero_grad();
        held
    };
    let (full, half) = (held(false), held(true));
    // Each layer keeps batch norm's input and ReLU's output (the next convolution's
    // input): eight activations of 256 KiB in f32.
    assert!(full >= 8 * 256 * 1024, "f32 holds {full} bytes");
    assert!(
        (half as f64) < 0.6 * full as f64,
        "autocast holds {half} bytes, f32 {full}"
    );
}
