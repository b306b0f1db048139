//! The data-parallel row: summing ResNet-18's gradients (11.7 M values) over two replicas
//! in one process, as `DataParallel::forward_backward` does after every backward pass
//! (staged through the host, added in replica order, written back to both). Two devices of
//! the kind `--device` names (on the GPU: two devices on one adapter).

use anyhow::Result;
use fovea::models::ResNet;
use fovea::parallel::DataParallel;
use fovea::{Device, DeviceExt, Tensor};

use super::{time, Opts, Row};

pub(super) fn rows(
    dev: &Device,
    o: &Opts,
    wanted: &dyn Fn(&str) -> bool,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let name = "resnet18 gradient sum over 2 replicas (11.7 M values)".to_string();
    if !wanted(&name) {
        return Ok(());
    }
    let devs = if dev.is_gpu() {
        let filter = dev
            .name()
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        vec![Device::gpu_with(&filter)?, Device::gpu_with(&filter)?]
    } else {
        vec![
            Device::cpu_with_memory_limit(usize::MAX),
            Device::cpu_with_memory_limit(usize::MAX),
        ]
    };
    let dp = DataParallel::new(&devs, |d| ResNet::resnet18(1000, 0, d))?;
    // One small step gives every parameter a gradient to sum.
    let x = Tensor::randn(&[2, 3, 64, 64], 50, &Device::cpu());
    dp.forward_backward(&[&x], |m, p| {
        use fovea::nn::Module;
        m.forward(&p[0])?.cross_entropy(&[3])
    })?;
    let timed = time(&devs[0], o, || Ok(dp.all_reduce_gradients()?))?;
    rows.push(Row {
        name,
        timed,
        flop: f64::NAN,
    });
    Ok(())
}
