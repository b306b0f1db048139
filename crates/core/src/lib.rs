//! fovea-core: tensors, reverse-mode autodiff, the `Backend` trait and the CPU reference
//! backend. The wgpu backend lives in `fovea-kernels`; users normally depend on the
//! `fovea` facade crate.
#![warn(missing_docs)]

mod autocast;
mod autograd;
pub mod backend;
pub mod checkpoint;
mod checkpoint_stream;
pub mod cpu;
pub mod data;
mod device;
mod dtype;
mod error;
mod host;
mod memory_left;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod parallel;
pub mod rng;
pub mod shape;
mod tensor;

pub use autocast::{autocast, is_autocast_enabled};
pub use autograd::{is_grad_enabled, no_grad, NoGradGuard};
pub use device::Device;
pub use dtype::DType;
pub use error::{Error, Result};
pub use tensor::Tensor;
