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
    /// [`Tensor::full`] where the device cannot hold the weight; [`Linear::try_new`]
    /// returns an error instead.
    pub fn new(
        in_features: usize,
        out_features: usize,
        bias: bool,
        seed: u64,
        device: &Device,
    ) -> Linear {
        Linear::try_new(in_features, out_features, bias, seed, device)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Linear::new`], with an error naming the layer and its weight's shape where the
    /// device cannot hold it (a model's constructor that returns `Result` uses this).
    pub fn try_new(
        in_features: usize,
        out_features: usize,
        bias: bool,
        seed: u64,
        device: &Device,
    ) -> Result<Linear> {
        let bound = init::default_bound(in_features);
        let weight_shape = [out_features, in_features];
        let param = |shape: &[usize], seed| {
            init::parameter("Linear::new", &weight_shape, shape, bound, seed, device)
        };
        Ok(Linear {
            weight: param(&weight_shape, seed)?,
            bias: bias
                .then(|| param(&[out_features], seed ^ 0x5eed))
                .transpose()?,
        })
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
