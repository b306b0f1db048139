//! fovea-models: classic convolutional networks (LeNet-5, AlexNet, VGG, ResNet, …) built
//! only from `fovea_core`'s public API, so they run on any device.

#![warn(missing_docs)]

mod lenet;
mod lenet_classic;
pub mod style;
mod vgg;

pub use fovea_core::{Device, Tensor};
pub use lenet::LeNet5;
pub use lenet_classic::{LeNet5Classic, PartialConv, RbfOutput, Subsampling, C3_TABLE};
pub use vgg::{Vgg, VggConfig};
