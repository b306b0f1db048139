//! fovea-models: classic convolutional networks (LeNet-5, AlexNet, VGG, ResNet, U-Net, …) built
//! only from `fovea_core`'s public API, so they run on any device.

#![warn(missing_docs)]

mod alexnet;
pub mod detection;
mod efficientnet;
pub mod face;
mod hed;
pub mod imagenet;
mod inception;
mod lenet;
mod lenet_classic;
pub mod metric;
mod mobilenet;
mod resnet;
pub mod segmentation;
mod siamese;
pub mod style;
mod unet;
mod vgg;
mod yolo;

pub use alexnet::AlexNet;
pub use efficientnet::{EfficientNet, EfficientNetScaling, MBConv};
pub use fovea_core::{Device, Tensor};
pub use hed::{Hed, HedOutput, HED_TAPS};
pub use inception::{BasicConv2d, GoogLeNet, GoogLeNetOutput, Inception, InceptionAux};
pub use lenet::LeNet5;
pub use lenet_classic::{LeNet5Classic, PartialConv, RbfOutput, Subsampling, C3_TABLE};
pub use mobilenet::{
    make_divisible, DepthwiseSeparable, InvertedResidual, InvertedResidualV3, MobileNetV1,
    MobileNetV2, MobileNetV3,
};
pub use resnet::{Block, Downsample, ResNet, ResNetConfig, ResidualBlock};
pub use siamese::{PairFeature, SiameseEncoder, VerificationHead};
pub use unet::{DoubleConv, Down, OutConv, UNet, UNetConfig, Up};
pub use vgg::{Vgg, VggConfig};
pub use yolo::{Darknet, DarknetConv, Localizer, Yolo};
