//! The main thread joins the CPU backend's pool as worker 0 (`crates/core/src/cpu/threads.rs`),
//! and what it computes there is what a thread outside the pool computes, bit for bit:
//! the kernels cut work into pieces that each own their part of the output, and sum in a
//! fixed order, so how the pool schedules the pieces changes nothing. Its own binary
//! without the test harness, whose tests run off the main thread.

use fovea::ops::Conv2dOptions;
use fovea::{Device, Result, Tensor};

/// A forward and backward pass through two convolutions of `n` images: at batch 1 the
/// channels split between the workers, at batch 4 the images do and each one's products
/// stay whole.
fn pass(dev: &Device, n: usize) -> Result<Vec<Vec<f32>>> {
    let pad = Conv2dOptions {
        padding: [1, 1],
        ..Default::default()
    };
    let x = Tensor::randn(&[n, 32, 17, 17], 0, dev).requires_grad();
    let w1 = Tensor::randn(&[128, 32, 3, 3], 1, dev).requires_grad();
    let w2 = Tensor::randn(&[64, 128, 3, 3], 2, dev).requires_grad();
    let h = x.conv2d(&w1, None, pad)?.relu();
    let y = h.conv2d(
        &w2,
        None,
        Conv2dOptions {
            stride: [2, 2],
            ..pad
        },
    )?;
    y.square().sum().backward()?;
    let grad = |t: &Tensor| t.grad().expect("a gradient").to_vec();
    Ok(vec![y.to_vec()?, grad(&x)?, grad(&w1)?, grad(&w2)?])
}

fn main() -> Result<()> {
    // Two threads where nothing says otherwise, so that a one-core machine joins too.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "2");
    }
    // rayon's reading: 0 or a value that does not parse is the machine's core count.
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let opted_out = std::env::var("FOVEA_CPU_JOIN_MAIN").is_ok_and(|v| v == "0");
    let dev = Device::cpu();
    assert_eq!(
        fovea::cpu::main_thread_joined(),
        threads >= 2 && !opted_out,
        "the main thread joins a pool of RAYON_NUM_THREADS={threads} unless told not to"
    );
    for n in [1, 4] {
        let here = pass(&dev, n)?;
        let there = std::thread::spawn(move || pass(&Device::cpu(), n))
            .join()
            .expect("the other thread's pass")?;
        for (a, b) in here.iter().zip(&there) {
            assert!(
                a.len() == b.len() && a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits()),
                "batch {n}: the main thread's results differ from another thread's"
            );
        }
    }
    println!(
        "cpu_threads: main thread joined: {}",
        fovea::cpu::main_thread_joined()
    );
    Ok(())
}
