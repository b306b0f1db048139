//! Per-kernel timing (`FOVEA_PROFILE=1`, or `WgpuBackend::open_with(…, true)` and
//! `CpuBackend::with_profile(true)`): a timed device reports the kernels it ran, how often,
//! and for how long.

mod common;

use std::sync::Arc;

use fovea::cpu::CpuBackend;
use fovea::kernels::WgpuBackend;
use fovea::ops::Conv2dOptions;
use fovea::{Device, Tensor};

#[test]
fn a_timed_device_reports_each_kernel_it_ran() {
    let Some(plain) = common::gpu("a_timed_device_reports_each_kernel_it_ran") else {
        return;
    };
    if std::env::var_os("FOVEA_PROFILE").is_none() {
        assert!(
            plain.take_kernel_times().is_none(),
            "timing is off by default"
        );
    }
    let filter = std::env::var("FOVEA_ADAPTER").ok();
    let backend = match WgpuBackend::open_with(filter.as_deref(), true) {
        Ok(b) => b,
        Err(e) => {
            // An adapter without timestamp queries must say so, not fail later.
            let msg = e.to_string();
            assert!(
                msg.contains("timestamp") && msg.contains("FOVEA_PROFILE"),
                "{msg}"
            );
            eprintln!("{} cannot time kernels: {msg}", plain.name());
            return;
        }
    };
    let dev = Device::from_backend(Arc::new(backend));
    let x = Tensor::randn(&[1, 3, 9, 9], 0, &dev);
    let w = Tensor::randn(&[4, 3, 3, 3], 1, &dev);
    let y = x.conv2d(&w, None, Conv2dOptions::default()).unwrap();
    let z = y.relu().relu();
    assert_eq!(z.shape(), &[1, 4, 7, 7]);
    dev.sync().unwrap();
    let times = dev
        .take_kernel_times()
        .expect("a timed device reports times");
    let find = |name: &str| times.iter().find(|k| k.name == name);
    let conv = find("conv2d_64x64_fwd").unwrap_or_else(|| panic!("no conv kernel in {times:?}"));
    assert_eq!(conv.dispatches, 1);
    assert!(conv.ms > 0.0 && conv.ms.is_finite(), "{conv:?}");
    let dispatches = times.iter().map(|k| k.dispatches).sum::<usize>();
    assert!(dispatches >= 3, "a conv and two ReLUs ran: {times:?}");
    assert!(
        times.windows(2).all(|p| p[0].ms >= p[1].ms),
        "slowest first: {times:?}"
    );
    // Taking resets the tally.
    assert_eq!(dev.take_kernel_times(), Some(Vec::new()));
}

#[test]
fn a_timed_cpu_device_reports_each_op_by_shape() {
    if std::env::var_os("FOVEA_PROFILE").is_none() {
        assert!(
            Device::cpu().take_kernel_times().is_none(),
            "timing is off by default"
        );
    }
    let untimed = Device::from_backend(Arc::new(CpuBackend::new().with_profile(false)));
    let x = Tensor::randn(&[1, 3, 9, 9], 0, &untimed);
    x.relu();
    assert!(untimed.take_kernel_times().is_none(), "timing is off");

    let dev = Device::from_backend(Arc::new(CpuBackend::new().with_profile(true)));
    let x = Tensor::randn(&[2, 3, 9, 9], 0, &dev);
    let w = Tensor::randn(&[4, 3, 3, 3], 1, &dev);
    dev.take_kernel_times();
    let strided = Conv2dOptions {
        stride: [2, 2],
        ..Default::default()
    };
    let y = x.conv2d(&w, None, Conv2dOptions::default()).unwrap();
    x.conv2d(&w, None, strided).unwrap();
    x.conv2d(&w, None, strided).unwrap();
    y.relu().relu();
    // A temporary's activation is written over its own buffer, and named so.
    fovea::no_grad(|| y.mul_scalar(2.0).into_relu6());
    let times = dev
        .take_kernel_times()
        .expect("a timed device reports times");
    let calls = |name: &str| {
        times
            .iter()
            .find(|k| k.name == name)
            .unwrap_or_else(|| panic!("no {name} in {times:?}"))
            .dispatches
    };
    assert_eq!(calls("conv2d 3x3 s1x1"), 1);
    assert_eq!(calls("conv2d 3x3 s2x2"), 2);
    assert_eq!(calls("Relu"), 2);
    assert_eq!(calls("Clamp { min: 0.0, max: 6.0 } in place"), 1);
    assert!(
        times.iter().all(|k| k.ms >= 0.0 && k.ms.is_finite()),
        "{times:?}"
    );
    assert!(
        times.windows(2).all(|p| p[0].ms >= p[1].ms),
        "slowest first: {times:?}"
    );
    assert_eq!(dev.take_kernel_times(), Some(Vec::new()));
}
