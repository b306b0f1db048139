//! The layers of the face nets under their TF.js names (`filters`, `depthwise_filter`,
//! `pointwise_filter`, `bias`, `weights`, `biases`), so the bundled files load by name.
//! Batch norm was folded into these weights before export: there are no running
//! statistics, only a convolution bias or a per-channel affine "scale" layer.

use std::sync::Mutex;

use fovea_core::backend::Storage;
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
    /// The filters and bias with the scale folded in, kept for inference with the
    /// buffers they were made from.
    folded: Mutex<Option<Folded>>,
}

struct Folded {
    from: Vec<Storage>,
    filters: Tensor,
    bias: Tensor,
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
            folded: Mutex::default(),
        }
    }
}

impl ConvScale {
    /// The convolution's filters and bias with the per-channel affine map folded in:
    /// weight-sized work instead of a product and a sum over the activation.
    fn fold(&self) -> Result<(Tensor, Tensor)> {
        let c = self.weights.numel();
        let filters = self
            .conv
            .filters
            .mul(&self.weights.reshape(&[c, 1, 1, 1])?)?;
        let bias = match &self.conv.bias {
            Some(b) => b.mul(&self.weights)?.add(&self.biases)?,
            None => self.biases.clone(),
        };
        Ok((filters, bias))
    }

    /// [`Self::fold`], reused while no gradient flows to the parameters and they hold the
    /// buffers it was made from (a loaded or updated parameter gets new ones).
    fn kept_fold(&self) -> Result<(Tensor, Tensor)> {
        let params = [Some(&self.conv.filters), self.conv.bias.as_ref()];
        let params = params
            .into_iter()
            .flatten()
            .chain([&self.weights, &self.biases]);
        if fovea_core::is_grad_enabled() && params.clone().any(Tensor::tracks_grad) {
            return self.fold();
        }
        let from: Vec<Storage> = params.map(Tensor::storage).collect();
        let mut kept = self.folded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = kept.as_ref().filter(|f| {
            f.from.len() == from.len() && f.from.iter().zip(&from).all(|(a, b)| a.same_buffer(b))
        }) {
            return Ok((f.filters.clone(), f.bias.clone()));
        }
        let (filters, bias) = self.fold()?;
        *kept = Some(Folded {
            from,
            filters: filters.clone(),
            bias: bias.clone(),
        });
        Ok((filters, bias))
    }
}

impl Module for ConvScale {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (filters, bias) = self.kept_fold()?;
        let y = x.conv2d(&filters, Some(&bias), self.conv.opts)?;
        Ok(if self.relu { y.into_relu() } else { y })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `conv(x) · weights + biases`, then ReLU, as the layer is defined.
    fn unfolded(l: &ConvScale, x: &Tensor) -> Vec<f32> {
        let c = l.weights.numel();
        let y = l.conv.forward(x).unwrap();
        y.mul(&l.weights.reshape(&[c, 1, 1]).unwrap())
            .unwrap()
            .add(&l.biases.reshape(&[c, 1, 1]).unwrap())
            .unwrap()
            .relu()
            .to_vec()
            .unwrap()
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.iter()
            .zip(b)
            .all(|(p, q)| (p - q).abs() <= 1e-5 * (1.0 + q.abs()))
    }

    #[test]
    fn the_folded_scale_matches_the_definition_and_follows_new_parameters() {
        let dev = Device::cpu();
        let opts = Conv2dOptions {
            padding: [1, 1],
            ..Default::default()
        };
        let mut l = ConvScale::new((3, 5, 3), opts, true, 7, &dev);
        l.weights = Tensor::randn(&[5], 1, &dev).requires_grad();
        l.biases = Tensor::randn(&[5], 2, &dev).requires_grad();
        let x = Tensor::randn(&[2, 3, 6, 6], 3, &dev);
        // Gradients flow through the fold to the scale.
        let y = l.forward(&x).unwrap();
        assert!(close(&y.to_vec().unwrap(), &unfolded(&l, &x)));
        y.sum().backward().unwrap();
        assert!(l.weights.grad().is_some() && l.conv.filters.grad().is_some());
        // Inference keeps the fold, and makes a new one for a replaced parameter.
        for seed in [4, 5] {
            l.weights = Tensor::randn(&[5], seed, &dev);
            let got = fovea_core::no_grad(|| l.forward(&x)).unwrap();
            let again = fovea_core::no_grad(|| l.forward(&x)).unwrap();
            assert!(close(&got.to_vec().unwrap(), &unfolded(&l, &x)));
            assert_eq!(got.to_vec().unwrap(), again.to_vec().unwrap());
        }
    }
}
