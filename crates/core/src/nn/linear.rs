//! Fully connected layer.

use super::{init, join, Module};
use crate::{Device, Result, Tensor};

/// `nn.Linear`: weight `[out, in]`, optional bias `[out]`.
pub struct Linear {
    /// `[out, in]`
    pub weight: Tensor,
    /// `[out]`
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A linear layer with PyTorch's default initialisation from `seed`. Panics like
    /// [`Tensor::full`] where the device cannot hold the weight.
    pub fn new(
        in_features: usize,
        out_features: usize,
        bias: bool,
        seed: u64,
        device: &Device,
    ) -> Linear {
        let bound = init::default_bound(in_features);
        Linear {
            weight: init::uniform(&[out_features, in_features], bound, seed, device)
                .requires_grad(),
            bias: bias.then(|| {
                init::uniform(&[out_features], bound, seed ^ 0x5eed, device).requires_grad()
            }),
        }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.linear(&self.weight, self.bias.as_ref())
    }
    fn macs(&self, _input: &[usize], output: &[usize]) -> usize {
        output.iter().product::<usize>() * self.weight.shape()[1]
    }
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
        if let Some(b) = &self.bias {
            f(&join(prefix, "bias"), b);
        }
    }
}
