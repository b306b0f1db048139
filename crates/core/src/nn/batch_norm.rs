//! Batch normalisation layer.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{join, Module};
use crate::ops::BatchNormOptions;
use crate::{Device, Result, Tensor};

/// `nn.BatchNorm2d`: affine `weight`/`bias` and running statistics, with PyTorch's
/// `num_batches_tracked` buffer so torchvision state dicts load by name.
pub struct BatchNorm2d {
    /// `[c]`, initialised to 1
    pub weight: Tensor,
    /// `[c]`, initialised to 0
    pub bias: Tensor,
    /// `[c]`
    pub running_mean: Tensor,
    /// `[c]`
    pub running_var: Tensor,
    /// `[]`: training steps seen
    pub num_batches_tracked: Tensor,
    /// momentum and eps
    pub momentum: f32,
    /// added to the variance
    pub eps: f32,
    training: AtomicBool,
}

impl BatchNorm2d {
    /// A batch norm layer over `channels` (momentum 0.1, eps 1e-5), in training mode.
    pub fn new(channels: usize, device: &Device) -> BatchNorm2d {
        BatchNorm2d {
            weight: Tensor::ones(&[channels], device).requires_grad(),
            bias: Tensor::zeros(&[channels], device).requires_grad(),
            running_mean: Tensor::zeros(&[channels], device),
            running_var: Tensor::ones(&[channels], device),
            num_batches_tracked: Tensor::zeros(&[], device),
            momentum: 0.1,
            eps: 1e-5,
            training: AtomicBool::new(true),
        }
    }
}

impl Module for BatchNorm2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let training = self.training.load(Ordering::Relaxed);
        if training {
            crate::no_grad(|| {
                self.num_batches_tracked
                    .assign(&self.num_batches_tracked.add_scalar(1.0))
            })?;
        }
        let opts = BatchNormOptions {
            training,
            momentum: self.momentum,
            eps: self.eps,
        };
        x.batch_norm(
            Some(&self.running_mean),
            Some(&self.running_var),
            Some(&self.weight),
            Some(&self.bias),
            opts,
        )
    }
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
        f(&join(prefix, "bias"), &self.bias);
    }
    fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "running_mean"), &self.running_mean);
        f(&join(prefix, "running_var"), &self.running_var);
        f(
            &join(prefix, "num_batches_tracked"),
            &self.num_batches_tracked,
        );
    }
    fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }
}
