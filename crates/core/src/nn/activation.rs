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
