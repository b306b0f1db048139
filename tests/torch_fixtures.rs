//! The PyTorch fixture suite: 300 cases computed by PyTorch (see tests/fixtures/README.md),
//! forward within 1e-4 and gradients within 1e-3 relative error, on the CPU and on the GPU.

mod common;

use common::fixtures::run_all;
use fovea::Device;

#[test]
fn every_pytorch_fixture_passes_on_cpu() {
    run_all(&Device::cpu());
}

#[test]
fn every_pytorch_fixture_passes_on_gpu() {
    if let Some(gpu) = common::gpu("every_pytorch_fixture_passes_on_gpu") {
        run_all(&gpu);
    }
}
