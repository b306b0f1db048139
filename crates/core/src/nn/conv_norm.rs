//! `ConvNormAct`: torchvision's `Conv2dNormActivation` (convolution without bias, batch
//! norm, optional activation), the building block of MobileNet and EfficientNet.

use super::{BatchNorm2d, Conv2d, Hardswish, Module, Relu, Relu6, Silu};
use crate::ops::Conv2dOptions;
use crate::{Device, Result, Tensor};

/// The activation that follows a [`ConvNormAct`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// none (a linear bottleneck)
    None,
    /// `nn.ReLU`
    Relu,
    /// `nn.ReLU6`
    Relu6,
    /// `nn.SiLU`
    Silu,
    /// `nn.Hardswish`
    Hardswish,
}

impl Activation {
    /// The activation as a layer, or `None`.
    pub fn layer(self) -> Option<Box<dyn Module>> {
        match self {
            Activation::None => None,
            Activation::Relu => Some(Box::new(Relu)),
            Activation::Relu6 => Some(Box::new(Relu6)),
            Activation::Silu => Some(Box::new(Silu)),
            Activation::Hardswish => Some(Box::new(Hardswish)),
        }
    }

    /// Applies the activation to a tensor given up by its caller: over its own buffer
    /// where nothing else holds it and no gradient flows through it (inference), as
    /// [`Tensor::into_relu`].
    pub fn apply_owned(self, x: Tensor) -> Tensor {
        match self {
            Activation::None => x,
            Activation::Relu => x.into_relu(),
            Activation::Relu6 => x.into_relu6(),
            Activation::Silu => x.into_silu(),
            Activation::Hardswish => x.into_hardswish(),
        }
    }

    /// Applies the activation.
    pub fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Activation::None => x.clone(),
            Activation::Relu => x.relu(),
            Activation::Relu6 => x.relu6(),
            Activation::Silu => x.silu(),
            Activation::Hardswish => x.hardswish(),
        }
    }
}

/// Convolution (no bias), batch norm and an activation, named `0`, `1` and `2` as in
/// torchvision. In eval mode the batch norm is folded into the convolution
/// ([`BatchNorm2d::after_conv`]).
pub struct ConvNormAct {
    /// `0`
    pub conv: Conv2d,
    /// `1`
    pub bn: BatchNorm2d,
    /// `2`
    pub act: Activation,
    act_layer: Option<Box<dyn Module>>,
}

impl ConvNormAct {
    /// A `k×k` convolution from `c_in` to `c_out` channels with padding `(k − 1) / 2`
    /// (torchvision's default), then batch norm (`eps`) and `act`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        groups: usize,
        eps: f32,
        act: Activation,
        seed: u64,
        device: &Device,
    ) -> Result<ConvNormAct> {
        let opts = Conv2dOptions {
            stride: [stride, stride],
            padding: [(k - 1) / 2, (k - 1) / 2],
            groups,
            ..Default::default()
        };
        let conv = Conv2d::new(c_in, c_out, [k, k], opts, false, seed, device)?;
        Ok(ConvNormAct {
            conv,
            bn: BatchNorm2d::with_eps(c_out, eps, device),
            act,
            act_layer: act.layer(),
        })
    }
}

impl Module for ConvNormAct {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let in_conv = |e: crate::Error| e.in_layer("0");
        if self.act == Activation::Relu {
            return self.bn.after_conv_relu(&self.conv, x).map_err(in_conv);
        }
        let y = self.bn.after_conv(&self.conv, x).map_err(in_conv)?;
        Ok(self.act.apply_owned(y))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        let mut c: Vec<(&str, &dyn Module)> = vec![("0", &self.conv), ("1", &self.bn)];
        if let Some(a) = &self.act_layer {
            c.push(("2", a.as_ref()));
        }
        c
    }
}
