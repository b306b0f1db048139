//! Parameter-free layers: activations and flattening.

use super::Module;
use crate::{Result, Tensor};

/// `nn.ReLU`.
pub struct Relu;
/// `nn.Sigmoid`.
pub struct Sigmoid;
/// `nn.Tanh`.
pub struct Tanh;
/// `nn.LeakyReLU(negative_slope)`.
pub struct LeakyRelu(pub f32);
/// `nn.Flatten()`: `[N, …]` to `[N, ∏…]`.
pub struct Flatten;
/// `nn.ReLU6`: `min(max(x, 0), 6)`.
pub struct Relu6;
/// `nn.Hardtanh(min_val, max_val)`.
pub struct Hardtanh(pub f32, pub f32);
/// `nn.SiLU`: `x · sigmoid(x)`.
pub struct Silu;
/// `nn.Hardswish`: `x · relu6(x + 3) / 6`.
pub struct Hardswish;
/// `nn.Hardsigmoid`: `relu6(x + 3) / 6`.
pub struct Hardsigmoid;
/// `nn.Identity`.
pub struct Identity;

macro_rules! stateless {
    ($t:ty, |$s:ident, $x:ident| $body:expr) => {
        impl Module for $t {
            fn forward(&self, $x: &Tensor) -> Result<Tensor> {
                let $s = self;
                $body
            }
        }
    };
}

stateless!(Relu, |_s, x| Ok(x.relu()));
stateless!(Sigmoid, |_s, x| Ok(x.sigmoid()));
stateless!(Tanh, |_s, x| Ok(x.tanh()));
stateless!(LeakyRelu, |s, x| Ok(x.leaky_relu(s.0)));
stateless!(Flatten, |_s, x| x.flatten(1));
stateless!(Relu6, |_s, x| Ok(x.relu6()));
stateless!(Hardtanh, |s, x| Ok(x.hardtanh(s.0, s.1)));
stateless!(Silu, |_s, x| Ok(x.silu()));
stateless!(Hardswish, |_s, x| Ok(x.hardswish()));
stateless!(Hardsigmoid, |_s, x| Ok(x.hardsigmoid()));
stateless!(Identity, |_s, x| Ok(x.clone()));
