//! Memory: what graphs hold (the CPU backend's live-byte counter) and how the GPU pool
//! grows. In a file of their own: both counters are process-wide, and other tests would
//! allocate beside them.

mod common;

use fovea::{Device, Tensor};

#[test]
fn backward_frees_what_the_forward_saved_while_the_loss_lives() {
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
fn the_gpu_pool_releases_idle_buffers_instead_of_growing_past_its_slack() {
    let Some(gpu) =
        common::gpu("the_gpu_pool_releases_idle_buffers_instead_of_growing_past_its_slack")
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
