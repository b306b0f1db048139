//! Squeeze-and-excitation (torchvision's `ops.SqueezeExcitation`): each channel of the
//! input is scaled by a gate computed from all channels' means.

use super::{
    Activation, AdaptiveAvgPool2d, Conv2d, Hardsigmoid, Module, Pass, Sigmoid, SummaryRow,
};
use crate::ops::Conv2dOptions;
use crate::{Device, Result, Tensor};

/// The gate of a [`SqueezeExcitation`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// `sigmoid` (EfficientNet)
    Sigmoid,
    /// `hardsigmoid` (MobileNetV3)
    Hardsigmoid,
}

/// `x · gate(fc2(act(fc1(mean_hw(x)))))`, with `fc1` and `fc2` 1×1 convolutions with bias.
pub struct SqueezeExcitation {
    /// `[squeeze, channels, 1, 1]`
    pub fc1: Conv2d,
    /// `[channels, squeeze, 1, 1]`
    pub fc2: Conv2d,
    /// after `fc1`
    pub act: Activation,
    /// after `fc2`
    pub gate: Gate,
    act_layer: Option<Box<dyn Module>>,
}

impl SqueezeExcitation {
    /// An SE layer over `channels` squeezed to `squeeze`, with PyTorch's default
    /// initialisation.
    pub fn new(
        channels: usize,
        squeeze: usize,
        act: Activation,
        gate: Gate,
        seed: u64,
        device: &Device,
    ) -> Result<SqueezeExcitation> {
        let one = Conv2dOptions::default();
        Ok(SqueezeExcitation {
            fc1: Conv2d::new(channels, squeeze, [1, 1], one, true, seed, device)?,
            fc2: Conv2d::new(squeeze, channels, [1, 1], one, true, seed + 1, device)?,
            act,
            gate,
            act_layer: act.layer(),
        })
    }

    fn run(&self, x: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let s = pass.run("avgpool", &AdaptiveAvgPool2d([1, 1]), x)?;
        let mut s = pass.run("fc1", &self.fc1, &s)?;
        if let Some(a) = &self.act_layer {
            s = pass.run("activation", a.as_ref(), &s)?;
        }
        let s = pass.run("fc2", &self.fc2, &s)?;
        let s = match self.gate {
            Gate::Sigmoid => pass.run("scale_activation", &Sigmoid, &s)?,
            Gate::Hardsigmoid => pass.run("scale_activation", &Hardsigmoid, &s)?,
        };
        x.mul(&s)
    }
}

impl Module for SqueezeExcitation {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, &mut Pass::forward())
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        self.run(x, &mut Pass::summary(name, rows))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![("fc1", &self.fc1), ("fc2", &self.fc2)]
    }
}
