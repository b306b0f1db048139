//! fovea-kernels: the wgpu backend. It implements `fovea_core::backend::Backend` with
//! WGSL compute shaders from the repository's `shaders/` folder. This crate holds only its
//! skeleton until the GPU backend lands; `Device::cpu()` runs everything meanwhile.

pub use fovea_core::backend::Backend;
