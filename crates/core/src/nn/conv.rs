//! Convolution layers.

use super::{init, join, Module};
use crate::ops::{Conv2dOptions, ConvTranspose2dOptions};
use crate::{Device, Error, Result, Tensor};

/// `nn.Conv2d`: weight `[out, in/groups, kh, kw]`, optional bias `[out]`.
pub struct Conv2d {
    /// `[out, in/groups, kh, kw]`
    pub weight: Tensor,
    /// `[out]`
    pub bias: Option<Tensor>,
    /// stride, padding, dilation, groups
    pub opts: Conv2dOptions,
}

impl Conv2d {
    /// A conv layer with PyTorch's default initialisation from `seed`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 2],
        opts: Conv2dOptions,
        bias: bool,
        seed: u64,
        device: &Device,
    ) -> Result<Conv2d> {
        let g = opts.groups;
        if g == 0
            || !in_channels.is_multiple_of(g)
            || !out_channels.is_multiple_of(g)
            || kernel.contains(&0)
        {
            return Err(Error::op(
                "Conv2d::new",
                format!("groups {g} must divide in {in_channels} and out {out_channels}, kernel {kernel:?} must be positive"),
            ));
        }
        let fan_in = in_channels / g * kernel[0] * kernel[1];
        let bound = init::default_bound(fan_in);
        Ok(Conv2d {
            weight: init::uniform(
                &[out_channels, in_channels / g, kernel[0], kernel[1]],
                bound,
                seed,
                device,
            )
            .requires_grad(),
            bias: bias.then(|| {
                init::uniform(&[out_channels], bound, seed ^ 0x5eed, device).requires_grad()
            }),
            opts,
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(&self.weight, self.bias.as_ref(), self.opts)
    }
    fn macs(&self, _input: &[usize], output: &[usize]) -> usize {
        let w = self.weight.shape();
        output.iter().product::<usize>() * w[1] * w[2] * w[3]
    }
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
        if let Some(b) = &self.bias {
            f(&join(prefix, "bias"), b);
        }
    }
}

/// `nn.ConvTranspose2d`: weight `[in, out/groups, kh, kw]`, optional bias `[out]`.
pub struct ConvTranspose2d {
    /// `[in, out/groups, kh, kw]`
    pub weight: Tensor,
    /// `[out]`
    pub bias: Option<Tensor>,
    /// stride, padding, output_padding, dilation, groups
    pub opts: ConvTranspose2dOptions,
}

impl ConvTranspose2d {
    /// A transposed conv layer with PyTorch's default initialisation from `seed`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 2],
        opts: ConvTranspose2dOptions,
        bias: bool,
        seed: u64,
        device: &Device,
    ) -> Result<ConvTranspose2d> {
        let g = opts.groups;
        if g == 0
            || !in_channels.is_multiple_of(g)
            || !out_channels.is_multiple_of(g)
            || kernel.contains(&0)
        {
            return Err(Error::op(
                "ConvTranspose2d::new",
                format!("groups {g} must divide in {in_channels} and out {out_channels}, kernel {kernel:?} must be positive"),
            ));
        }
        // PyTorch computes fan_in from weight.size(1) here: out/groups · kh · kw.
        let bound = init::default_bound(out_channels / g * kernel[0] * kernel[1]);
        Ok(ConvTranspose2d {
            weight: init::uniform(
                &[in_channels, out_channels / g, kernel[0], kernel[1]],
                bound,
                seed,
                device,
            )
            .requires_grad(),
            bias: bias.then(|| {
                init::uniform(&[out_channels], bound, seed ^ 0x5eed, device).requires_grad()
            }),
            opts,
        })
    }
}

impl Module for ConvTranspose2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv_transpose2d(&self.weight, self.bias.as_ref(), self.opts)
    }
    fn macs(&self, input: &[usize], _output: &[usize]) -> usize {
        let w = self.weight.shape();
        input.iter().product::<usize>() * w[1] * w[2] * w[3]
    }
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
        if let Some(b) = &self.bias {
            f(&join(prefix, "bias"), b);
        }
    }
}
