//! Convolution layers.

use super::{init, join, Module};
use crate::ops::{Conv1dOptions, Conv2dOptions, Conv3dOptions, ConvTranspose2dOptions};
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

/// `nn.ConvTranspose2d`: weight `[in, out/groups, kh, kw]`, optional bias `[out]`.
pub struct ConvTranspose2d {
    /// `[in, out/groups, kh, kw]`
    pub weight: Tensor,
    /// `[out]`
    pub bias: Option<Tensor>,
    /// stride, padding, output_padding, dilation, groups
    pub opts: ConvTranspose2dOptions,
}

/// The shared shape of both layers: a weight of `weight_shape` and an optional `[out]` bias,
/// both uniform in ±1/√fan_in with fan_in = `weight_shape[1] · kh · kw` (PyTorch's default
/// for both), after checking the channel counts.
fn init_weights(
    layer: &'static str,
    (in_channels, out_channels, groups): (usize, usize, usize),
    weight_shape: &[usize],
    bias: bool,
    seed: u64,
    device: &Device,
) -> Result<(Tensor, Option<Tensor>)> {
    let (g, kernel) = (groups, &weight_shape[2..]);
    if g == 0
        || !in_channels.is_multiple_of(g)
        || !out_channels.is_multiple_of(g)
        || kernel.contains(&0)
    {
        return Err(Error::op(
            layer,
            format!("groups {g} must divide in {in_channels} and out {out_channels}, kernel {kernel:?} must be positive"),
        ));
    }
    // Saturating: a fan-in past `usize` is refused below, as a weight no device holds.
    let fan_in = weight_shape[1..]
        .iter()
        .fold(1usize, |f, &d| f.saturating_mul(d));
    let bound = init::default_bound(fan_in);
    let param =
        |shape: &[usize], seed| init::parameter(layer, weight_shape, shape, bound, seed, device);
    let weight = param(weight_shape, seed)?;
    let bias = bias
        .then(|| param(&[out_channels], seed ^ 0x5eed))
        .transpose()?;
    Ok((weight, bias))
}

fn visit_weight_bias(
    prefix: &str,
    weight: &Tensor,
    bias: Option<&Tensor>,
    f: &mut dyn FnMut(&str, &Tensor),
) {
    f(&join(prefix, "weight"), weight);
    if let Some(b) = bias {
        f(&join(prefix, "bias"), b);
    }
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
        let g = opts.groups.max(1);
        let (weight, bias) = init_weights(
            "Conv2d::new",
            (in_channels, out_channels, opts.groups),
            &[out_channels, in_channels / g, kernel[0], kernel[1]],
            bias,
            seed,
            device,
        )?;
        Ok(Conv2d { weight, bias, opts })
    }
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
        let g = opts.groups.max(1);
        // PyTorch computes fan_in from weight.size(1) here too: out/groups · kh · kw.
        let (weight, bias) = init_weights(
            "ConvTranspose2d::new",
            (in_channels, out_channels, opts.groups),
            &[in_channels, out_channels / g, kernel[0], kernel[1]],
            bias,
            seed,
            device,
        )?;
        Ok(ConvTranspose2d { weight, bias, opts })
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
        visit_weight_bias(prefix, &self.weight, self.bias.as_ref(), f);
    }
    fn visit_windows(&self, f: &mut dyn FnMut(super::Window)) {
        let o = self.opts;
        let k = [self.weight.shape()[2], self.weight.shape()[3]];
        // SAME padding depends on the input size; its leading part is half the dilated
        // kernel's reach, rounded down, at stride 1 (and a close bound at larger strides).
        let padding = if o.same {
            [
                o.dilation[0] * k[0].saturating_sub(1) / 2,
                o.dilation[1] * k[1].saturating_sub(1) / 2,
            ]
        } else {
            o.padding
        };
        f(super::receptive_field::axis0(
            k, o.stride, padding, o.dilation,
        ));
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
        visit_weight_bias(prefix, &self.weight, self.bias.as_ref(), f);
    }
}

/// The 1-D and 3-D layers (`nn.Conv1d`, `nn.Conv3d`, `nn.ConvTranspose1d`,
/// `nn.ConvTranspose3d`): PyTorch's weight layouts (`[out, in/groups, k…]`, transposed
/// `[in, out/groups, k…]`), names and default initialisation.
macro_rules! conv_nd_layer {
    ($name:ident, $torch:literal, $opts:ty, $k:ty, $transposed:literal, |$x:ident, $w:ident, $b:ident, $o:ident| $forward:expr) => {
        #[doc = concat!("`", $torch, "`.")]
        pub struct $name {
            /// the weight
            pub weight: Tensor,
            /// `[out]`
            pub bias: Option<Tensor>,
            /// stride, padding, dilation, groups (and output padding when transposed)
            pub opts: $opts,
        }

        impl $name {
            /// A layer with PyTorch's default initialisation from `seed`.
            pub fn new(
                in_channels: usize,
                out_channels: usize,
                kernel: $k,
                opts: $opts,
                bias: bool,
                seed: u64,
                device: &Device,
            ) -> Result<$name> {
                let g = opts.groups.max(1);
                let mut shape = if $transposed {
                    vec![in_channels, out_channels / g]
                } else {
                    vec![out_channels, in_channels / g]
                };
                shape.extend(AsRef::<[usize]>::as_ref(&kernel));
                let (weight, bias) = init_weights(
                    concat!(stringify!($name), "::new"),
                    (in_channels, out_channels, opts.groups),
                    &shape,
                    bias,
                    seed,
                    device,
                )?;
                Ok($name { weight, bias, opts })
            }
        }

        impl Module for $name {
            fn forward(&self, $x: &Tensor) -> Result<Tensor> {
                let ($w, $b, $o) = (&self.weight, self.bias.as_ref(), self.opts);
                $forward
            }
            fn macs(&self, input: &[usize], output: &[usize]) -> usize {
                let per: usize = self.weight.shape()[1..].iter().product();
                let cells: usize = if $transposed { input } else { output }.iter().product();
                cells * per
            }
            fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
                visit_weight_bias(prefix, &self.weight, self.bias.as_ref(), f);
            }
        }
    };
}

conv_nd_layer!(
    Conv1d,
    "nn.Conv1d",
    Conv1dOptions,
    [usize; 1],
    false,
    |x, w, b, o| x.conv1d(w, b, o)
);
conv_nd_layer!(
    Conv3d,
    "nn.Conv3d",
    Conv3dOptions,
    [usize; 3],
    false,
    |x, w, b, o| x.conv3d(w, b, o)
);
conv_nd_layer!(
    ConvTranspose1d,
    "nn.ConvTranspose1d",
    Conv1dOptions,
    [usize; 1],
    true,
    |x, w, b, o| x.conv_transpose1d(w, b, o)
);
conv_nd_layer!(
    ConvTranspose3d,
    "nn.ConvTranspose3d",
    Conv3dOptions,
    [usize; 3],
    true,
    |x, w, b, o| x.conv_transpose3d(w, b, o)
);
