//! PyTorch's default initialisations, seeded.

use crate::{Device, Result, Tensor};

/// Uniform values in `[-bound, bound)` from a counter-based stream. Panics like
/// [`Tensor::rand`] where the device cannot hold the shape; [`try_uniform`] returns an
/// error instead.
pub fn uniform(shape: &[usize], bound: f32, seed: u64, device: &Device) -> Tensor {
    try_uniform(shape, bound, seed, device).unwrap_or_else(|e| panic!("{e}"))
}

/// [`uniform`], with an error naming the shape where the device cannot hold it.
pub fn try_uniform(shape: &[usize], bound: f32, seed: u64, device: &Device) -> Result<Tensor> {
    Tensor::try_rand(shape, seed, device)?
        .try_into_affine(2.0 * bound, -bound)
        .map_err(|e| e.in_op("uniform", &[shape]))
}

/// A layer's trainable parameter of `shape` from [`try_uniform`], with an error naming
/// `layer` and its weight's shape (`weight`) where the device cannot hold it: the conv
/// and linear layers' constructors share it.
pub(crate) fn parameter(
    layer: &'static str,
    weight: &[usize],
    shape: &[usize],
    bound: f32,
    seed: u64,
    device: &Device,
) -> Result<Tensor> {
    try_uniform(shape, bound, seed, device)
        .map(Tensor::requires_grad)
        .map_err(|e| crate::Error::op(layer, format!("weight {weight:?}: {}", e.root())))
}

/// PyTorch's default for conv and linear weights, `kaiming_uniform_(a = √5)`: the bound
/// works out to `1 / √fan_in`. Biases use the same bound.
pub fn default_bound(fan_in: usize) -> f32 {
    1.0 / (fan_in.max(1) as f32).sqrt()
}

/// Kaiming (He) uniform for ReLU networks: bound `√(6 / fan_in)`.
pub fn kaiming_uniform(shape: &[usize], fan_in: usize, seed: u64, device: &Device) -> Tensor {
    uniform(shape, (6.0 / fan_in.max(1) as f32).sqrt(), seed, device)
}

/// Normal values with standard deviation `std`.
pub fn normal(shape: &[usize], std: f32, seed: u64, device: &Device) -> Tensor {
    Tensor::randn(shape, seed, device).mul_scalar(std).detach()
}

/// Kaiming (He) normal with `mode="fan_out"` for a conv weight `[out, in/groups, kh, kw]`:
/// standard deviation `√(2 / (out · kh · kw))`, torchvision's choice for ResNet, MobileNet
/// and EfficientNet.
pub fn kaiming_normal_fan_out(shape: &[usize], seed: u64, device: &Device) -> Tensor {
    let fan_out = shape[0] * shape[2..].iter().product::<usize>();
    normal(shape, (2.0 / fan_out.max(1) as f32).sqrt(), seed, device)
}
