//! The PyTorch fixture suite (see tests/fixtures/README.md): cases computed by PyTorch,
//! forward within 1e-4 and gradients within 1e-3 relative error, indices exactly, on the
//! CPU and on the GPU.

mod common;

use common::fixtures::{conv_nd, run_file, segmentation, torch_ops, zoo_ops};
use fovea::Device;

#[test]
fn every_pytorch_fixture_passes_on_cpu() {
    let dev = Device::cpu();
    run_file("torch_ops.safetensors", 300, &dev, torch_ops);
    run_file("zoo_ops.safetensors", 200, &dev, zoo_ops);
    run_file("segmentation.safetensors", 85, &dev, segmentation);
    run_file("conv_nd.safetensors", 200, &dev, conv_nd);
}

#[test]
fn every_pytorch_fixture_passes_on_gpu() {
    if let Some(gpu) = common::gpu("every_pytorch_fixture_passes_on_gpu") {
        run_file("torch_ops.safetensors", 300, &gpu, torch_ops);
        run_file("zoo_ops.safetensors", 200, &gpu, zoo_ops);
        run_file("segmentation.safetensors", 85, &gpu, segmentation);
        run_file("conv_nd.safetensors", 200, &gpu, conv_nd);
    }
}
