//! fovea: convolutional networks in Rust, trained on any GPU through wgpu or on the CPU
//! reference backend.
//!
//! ```
//! use fovea::{Device, Tensor};
//! use fovea::ops::Conv2dOptions;
//! let dev = Device::cpu();
//! let x = Tensor::randn(&[1, 3, 8, 8], 0, &dev);
//! let w = Tensor::randn(&[4, 3, 3, 3], 1, &dev).requires_grad();
//! let y = x.conv2d(&w, None, Conv2dOptions { padding: [1, 1], ..Default::default() })?;
//! y.square().sum().backward()?;
//! assert_eq!(w.grad().unwrap().shape(), &[4, 3, 3, 3]);
//! # Ok::<(), fovea::Error>(())
//! ```

pub use fovea_core::{
    autocast, backend, checkpoint, cpu, data, is_autocast_enabled, is_grad_enabled, nn, no_grad,
    ops, optim, parallel, rng, shape, DType, Device, Error, NoGradGuard, Result, Tensor,
};
/// The wgpu backend.
pub use fovea_kernels as kernels;
/// `Device::gpu()`, `Device::gpu_with(..)` and `Device::best()`.
pub use fovea_kernels::DeviceExt;
/// Classic networks.
pub use fovea_models as models;

#[cfg(feature = "mpi")]
pub mod mpi;
