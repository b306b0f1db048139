//! The layers of the face nets under their TF.js names (`filters`, `depthwise_filter`,
//! `pointwise_filter`, `bias`, `weights`, `biases`), so the bundled files load by name.
//! Batch norm was folded into these weights before export: there are no running
//! statistics, only a convolution bias or a per-channel affine "scale" layer.

use fovea_core::nn::{init, join, Module};
use fovea_core::ops::Conv2dOptions;
use fovea_core::{Device, Result, Tensor};

/// Loads `path` into a freshly built net by name (every tensor must be there with its
/// shape), then freezes it and switches it to eval mode.
pub(crate) fn pretrained<M: Module>(net: M, path: &std::path::Path) -> Result<M> {
    fovea_core::checkpoint::load_module(&net, path)?;
    net.freeze();
    net.eval();
    Ok(net)
}

fn uniform(shape: &[usize], fan_in: usize, seed: u64, dev: &Device) -> Tensor {
    init::uniform(shape, init::default_bound(fan_in), seed, dev).requires_grad()
}

/// A convolution with `filters [out, in, kh, kw]` and an optional `bias [out]`.
pub struct TfConv {
    /// `[out, in, kh, kw]`
    pub filters: Tensor,
    /// `[out]`
    pub bias: Option<Tensor>,
    /// stride and padding (`same` for TensorFlow's SAME, extra cell at the end)
    pub opts: Conv2dOptions,
}

impl TfConv {
    /// A randomly initialised convolution (PyTorch's default bounds).
    pub fn new(
        (cin, cout, k): (usize, usize, usize),
        opts: Conv2dOptions,
        bias: bool,
        seed: u64,
        dev: &Device,
    ) -> TfConv {
        TfConv {
            filters: uniform(&[cout, cin, k, k], cin * k * k, seed, dev),
            bias: bias.then(|| uniform(&[cout], cin * k * k, seed ^ 0x5eed, dev)),
            opts,
        }
    }
}

impl Module for TfConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(&self.filters, self.bias.as_ref(), self.opts)
    }
    fn macs(&self, _input: &[usize], output: &[usize]) -> usize {
        output.iter().product::<usize>() * self.filters.shape()[1..].iter().product::<usize>()
    }
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "filters"), &self.filters);
        if let Some(b) = &self.bias {
            f(&join(prefix, "bias"), b);
        }
    }
}

/// A depthwise 3×3 convolution (no bias), a pointwise 1×1 convolution and a bias; no
/// activation of its own.
pub struct SeparableConv {
    /// `[c, 1, 3, 3]`, one filter per channel
    pub depthwise_filter: Tensor,
    /// `[out, c, 1, 1]`
    pub pointwise_filter: Tensor,
    /// `[out]`
    pub bias: Tensor,
    /// the depthwise step's stride and padding
    pub opts: Conv2dOptions,
}

impl SeparableConv {
    /// A randomly initialised separable convolution; `opts.groups` is set to `cin`.
    pub fn new(cin: usize, cout: usize, opts: Conv2dOptions, seed: u64, dev: &Device) -> Self {
        SeparableConv {
            depthwise_filter: uniform(&[cin, 1, 3, 3], 9, seed, dev),
            pointwise_filter: uniform(&[cout, cin, 1, 1], cin, seed + 1, dev),
            bias: uniform(&[cout], cin, seed + 2, dev),
            opts: Conv2dOptions {
                groups: cin,
                ..opts
            },
        }
    }
}

impl Module for SeparableConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let d = x.conv2d(&self.depthwise_filter, None, self.opts)?;
        d.conv2d(
            &self.pointwise_filter,
            Some(&self.bias),
            Conv2dOptions::default(),
        )
    }
    fn macs(&self, _input: &[usize], output: &[usize]) -> usize {
        let cin = self.depthwise_filter.shape()[0];
        let (cout, hw) = (output[1], output[2] * output[3]);
        output[0] * hw * cin * (9 + cout)
    }
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "depthwise_filter"), &self.depthwise_filter);
        f(&join(prefix, "pointwise_filter"), &self.pointwise_filter);
        f(&join(prefix, "bias"), &self.bias);
    }
}

/// dlib's convolution then per-channel affine: `conv(x) · weights + biases`, with
/// `P.conv.{filters,bias}` and `P.scale.{weights,biases}`, optionally followed by ReLU.
pub struct ConvScale {
    /// the convolution
    pub conv: TfConv,
    /// `[c]` multipliers (batch norm's γ/σ)
    pub weights: Tensor,
    /// `[c]` offsets
    pub biases: Tensor,
    /// whether ReLU follows
    pub relu: bool,
}

impl ConvScale {
    /// A randomly initialised block; the scale starts as the identity.
    pub fn new(
        (cin, cout, k): (usize, usize, usize),
        opts: Conv2dOptions,
        relu: bool,
        seed: u64,
        dev: &Device,
    ) -> ConvScale {
        ConvScale {
            conv: TfConv::new((cin, cout, k), opts, true, seed, dev),
            weights: Tensor::ones(&[cout], dev).requires_grad(),
            biases: Tensor::zeros(&[cout], dev).requires_grad(),
            relu,
        }
    }
}

impl Module for ConvScale {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = self.weights.numel();
        let y = self.conv.forward(x)?;
        let y = y
            .mul(&self.weights.reshape(&[1, c, 1, 1])?)?
            .add(&self.biases.reshape(&[1, c, 1, 1])?)?;
        Ok(if self.relu { y.relu() } else { y })
    }
    fn macs(&self, input: &[usize], output: &[usize]) -> usize {
        self.conv.macs(input, output)
    }
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.conv.visit_parameters(&join(prefix, "conv"), f);
        f(&join(prefix, "scale.weights"), &self.weights);
        f(&join(prefix, "scale.biases"), &self.biases);
    }
}

/// A dense layer `y = x Wᵀ + b` with `W` stored under `weight_name` (`weights` in the
/// landmark net, the prefix itself in the recognition net) and an optional `bias`.
pub struct Dense {
    /// `[out, in]`
    pub weight: Tensor,
    /// `[out]`
    pub bias: Option<Tensor>,
    /// the weight's name under the layer's prefix (`""` for the prefix itself)
    pub weight_name: &'static str,
}

impl Dense {
    /// A randomly initialised dense layer.
    pub fn new(
        (cin, cout): (usize, usize),
        bias: bool,
        weight_name: &'static str,
        seed: u64,
        dev: &Device,
    ) -> Dense {
        Dense {
            weight: uniform(&[cout, cin], cin, seed, dev),
            bias: bias.then(|| uniform(&[cout], cin, seed ^ 0x5eed, dev)),
            weight_name,
        }
    }
}

impl Module for Dense {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.linear(&self.weight, self.bias.as_ref())
    }
    fn macs(&self, _input: &[usize], output: &[usize]) -> usize {
        output.iter().product::<usize>() * self.weight.shape()[1]
    }
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        let name = if self.weight_name.is_empty() {
            prefix.to_string()
        } else {
            join(prefix, self.weight_name)
        };
        f(&name, &self.weight);
        if let Some(b) = &self.bias {
            f(&join(prefix, "bias"), b);
        }
    }
}
