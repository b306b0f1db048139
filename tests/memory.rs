//! Memory held by graphs, measured by the CPU backend's live-byte counter. One test per
//! file: the counter is process-wide, and other tests would allocate beside it.

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
