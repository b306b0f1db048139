//! Pooling layers.

use super::Module;
use crate::ops::Pool2dOptions;
use crate::{Result, Tensor};

/// `nn.MaxPool2d`.
pub struct MaxPool2d(pub Pool2dOptions);

/// `nn.AvgPool2d` (with `count_include_pad`).
pub struct AvgPool2d(pub Pool2dOptions, pub bool);

/// `nn.AdaptiveAvgPool2d`.
pub struct AdaptiveAvgPool2d(pub [usize; 2]);

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.max_pool2d(self.0)
    }
}

impl Module for AvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.avg_pool2d_with(self.0, self.1)
    }
}

impl Module for AdaptiveAvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.adaptive_avg_pool2d(self.0)
    }
}
