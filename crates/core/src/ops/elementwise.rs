//! Elementwise unary ops and scalar arithmetic.

use super::on_device;
use crate::backend::{BinaryOp, UnaryOp};
use crate::{DType, Result, Tensor};

/// The one tensor a unary op's gradient is computed from, and so the only one kept for
/// backward: a ReLU keeps its output, so the convolution output feeding it is freed as
/// soon as nothing else holds it.
#[derive(Clone, Copy)]
enum Keep {
    Input,
    Output,
}

impl Tensor {
    /// Applies `op` and records the rule that `rule(input, output)` builds: the output is
    /// a detached twin (same storage, no node), since the output must not own itself
    /// through its own graph node.
    fn unary_node<R>(
        &self,
        name: &'static str,
        op: UnaryOp,
        rule: impl FnOnce(&Tensor, Tensor) -> R,
    ) -> Tensor
    where
        R: Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
    {
        let storage = on_device(self.backend().unary(&self.f32_storage(), op), name);
        // PyTorch's autocast gives these in f32 whatever the input's dtype.
        let dtype = match op {
            UnaryOp::Exp | UnaryOp::Log | UnaryOp::Powf(_) | UnaryOp::Recip | UnaryOp::RDiv(_)
                if crate::is_autocast_enabled() =>
            {
                DType::F32
            }
            _ => self.dtype(),
        };
        // Rounded before it is kept, so that an f16 activation is kept in f16.
        let storage = match dtype {
            DType::F32 => storage,
            dtype => on_device(self.backend().cast(&storage, dtype), name),
        };
        let y = Tensor::leaf(storage.clone(), self.shape().to_vec(), self.device());
        let rule = rule(self, y);
        Tensor::from_op_as(
            dtype,
            storage,
            self.shape().to_vec(),
            self.device(),
            name,
            &[self],
            move |g| Ok(vec![Some(rule(g)?)]),
        )
    }

    /// Applies `op`; `grad` maps (the kept tensor, upstream grad) to the input's gradient.
    fn unary(
        &self,
        name: &'static str,
        op: UnaryOp,
        keep: Keep,
        grad: impl Fn(&Tensor, &Tensor) -> Result<Tensor> + Send + Sync + 'static,
    ) -> Tensor {
        self.unary_node(name, op, |x, y| {
            let kept = match keep {
                Keep::Input => x.detach(),
                Keep::Output => y,
            };
            move |g: &Tensor| grad(&kept, g)
        })
    }

    /// A unary op whose gradient is the upstream gradient times `factor`: keeps nothing.
    fn scaled(&self, name: &'static str, op: UnaryOp, factor: f32) -> Tensor {
        self.unary_node(name, op, |_, _| move |g: &Tensor| Ok(g.mul_scalar(factor)))
    }

    /// `op` applied to a tensor its caller gives up: written over its own buffer where
    /// nothing else can see it ([`Tensor::sole_storage`], and a backend that writes in
    /// place), else as `op_fn` computes it. In inference an activation after a
    /// convolution then makes no new buffer and no second copy of the activation.
    fn consumed(mut self, op: UnaryOp, op_fn: impl FnOnce(&Tensor) -> Tensor) -> Tensor {
        if let Ok(Some(y)) = self.over_own_buffer(op) {
            return y;
        }
        op_fn(&self)
    }

    /// `op` written over this tensor's f32 buffer where nothing else can see it and the
    /// backend writes in place: the result, with no gradient; else `None`, the tensor
    /// untouched.
    fn over_own_buffer(&mut self, op: UnaryOp) -> Result<Option<Tensor>> {
        let (shape, device) = (self.shape().to_vec(), self.device().clone());
        let Some(storage) = self.sole_storage().filter(|s| s.dtype() == DType::F32) else {
            return Ok(None);
        };
        let written = device.backend().unary_in_place(storage, op)?;
        Ok(written.then(|| Tensor::leaf(storage.clone(), shape, &device)))
    }

    /// `mul · x + add` of an f32 tensor given up by its caller, with no gradient, as
    /// [`Tensor::affine`] computes it (over its own buffer where [`Self::consumed`] would)
    /// but with a device's failure (out of memory) as an error rather than a panic: the
    /// layers' fallible constructors scale their random weights with it, in place, where
    /// a new buffer held the weight twice while it was made.
    pub(crate) fn try_into_affine(mut self, mul: f32, add: f32) -> Result<Tensor> {
        let op = UnaryOp::Affine { mul, add };
        if let Some(y) = self.over_own_buffer(op)? {
            return Ok(y);
        }
        let storage = self.backend().unary(&self.f32_storage(), op)?;
        Ok(Tensor::leaf(storage, self.shape().to_vec(), self.device()))
    }

    /// [`Tensor::relu`] of a tensor given up by its caller, over its own buffer where
    /// nothing else holds it or its data and no gradient flows through it (see
    /// `Backend::unary_in_place`; PyTorch's `relu_` for a temporary).
    pub fn into_relu(self) -> Tensor {
        self.consumed(UnaryOp::Relu, Tensor::relu)
    }
    /// [`Tensor::relu6`], as [`Tensor::into_relu`].
    pub fn into_relu6(self) -> Tensor {
        self.consumed(UnaryOp::Clamp { min: 0.0, max: 6.0 }, Tensor::relu6)
    }
    /// [`Tensor::silu`], as [`Tensor::into_relu`].
    pub fn into_silu(self) -> Tensor {
        self.consumed(UnaryOp::Silu, Tensor::silu)
    }
    /// [`Tensor::hardswish`], as [`Tensor::into_relu`].
    pub fn into_hardswish(self) -> Tensor {
        self.consumed(UnaryOp::Hardswish, Tensor::hardswish)
    }

    fn map(&self, op: UnaryOp) -> Tensor {
        Tensor::leaf(
            on_device(self.backend().unary(&self.f32_storage(), op), "unary"),
            self.shape().to_vec(),
            self.device(),
        )
    }

    /// `1.0` where the value is ±inf or NaN, `0.0` elsewhere (`~torch.isfinite(x)` as
    /// floats). Not differentiable: the result is a constant.
    pub fn non_finite_mask(&self) -> Tensor {
        self.map(UnaryOp::NonFinite)
    }

    /// `-x`
    pub fn neg(&self) -> Tensor {
        self.scaled("neg", UnaryOp::Neg, -1.0)
    }
    /// `e^x`
    pub fn exp(&self) -> Tensor {
        self.unary("exp", UnaryOp::Exp, Keep::Output, |y, g| g.mul(y))
    }
    /// Natural logarithm.
    pub fn log(&self) -> Tensor {
        self.unary("log", UnaryOp::Log, Keep::Input, |x, g| g.div(x))
    }
    /// Square root.
    pub fn sqrt(&self) -> Tensor {
        self.unary("sqrt", UnaryOp::Sqrt, Keep::Output, |y, g| {
            g.mul(&y.map(UnaryOp::RDiv(0.5)))
        })
    }
    /// Absolute value (gradient 0 at 0).
    pub fn abs(&self) -> Tensor {
        self.unary("abs", UnaryOp::Abs, Keep::Input, |x, g| {
            g.mul(&x.map(UnaryOp::Sign))
        })
    }
    /// `max(x, 0)` (gradient 0 at 0).
    pub fn relu(&self) -> Tensor {
        // y > 0 exactly where x > 0.
        self.unary("relu", UnaryOp::Relu, Keep::Output, |y, g| {
            g.relu_backward(y)
        })
    }
    /// The upstream gradient `self` where relu's output `y` is positive, else 0; linear in
    /// `self`, so it differentiates again (`y` is a constant here).
    pub(super) fn relu_backward(&self, y: &Tensor) -> Result<Tensor> {
        let out = self.zip_raw(y, BinaryOp::ReluBackward, "relu_backward")?;
        let y = y.detach();
        Ok(Tensor::from_op(
            out.f32_storage(),
            out.shape().to_vec(),
            self.device(),
            "relu_backward",
            &[self],
            move |gg| Ok(vec![Some(gg.relu_backward(&y)?)]),
        ))
    }
    /// `x` where positive, `negative_slope · x` elsewhere.
    pub fn leaky_relu(&self, negative_slope: f32) -> Tensor {
        self.unary(
            "leaky_relu",
            UnaryOp::LeakyRelu(negative_slope),
            // The input: with a negative slope the output's sign does not tell the side.
            Keep::Input,
            move |x, g| {
                let slope = x.map(UnaryOp::Step).map(UnaryOp::Affine {
                    mul: 1.0 - negative_slope,
                    add: negative_slope,
                });
                g.mul(&slope)
            },
        )
    }
    /// Logistic sigmoid.
    pub fn sigmoid(&self) -> Tensor {
        self.unary("sigmoid", UnaryOp::Sigmoid, Keep::Output, |y, g| {
            g.mul(&y.mul(&y.map(UnaryOp::Affine {
                mul: -1.0,
                add: 1.0,
            }))?)
        })
    }
    /// Hyperbolic tangent.
    pub fn tanh(&self) -> Tensor {
        self.unary("tanh", UnaryOp::Tanh, Keep::Output, |y, g| {
            g.mul(&y.mul(y)?.map(UnaryOp::Affine {
                mul: -1.0,
                add: 1.0,
            }))
        })
    }
    /// `min(max(x, min_val), max_val)` (PyTorch's `F.hardtanh`): the gradient passes where
    /// `min_val < x < max_val`.
    pub fn hardtanh(&self, min_val: f32, max_val: f32) -> Tensor {
        let op = UnaryOp::Clamp {
            min: min_val,
            max: max_val,
        };
        self.unary("hardtanh", op, Keep::Input, move |x, g| {
            g.mul(&x.map(UnaryOp::Between {
                lo: min_val,
                hi: max_val,
            }))
        })
    }
    /// `min(max(x, 0), 6)`, MobileNet's activation (`F.relu6`).
    pub fn relu6(&self) -> Tensor {
        self.hardtanh(0.0, 6.0)
    }
    /// `min(max(x, min), max)` (`torch.clamp`): the gradient passes where
    /// `min ≤ x ≤ max`.
    pub fn clamp(&self, min: f32, max: f32) -> Tensor {
        self.unary(
            "clamp",
            UnaryOp::Clamp { min, max },
            Keep::Input,
            move |x, g| {
                g.mul(&x.map(UnaryOp::Between {
                    lo: min.next_down(),
                    hi: max.next_up(),
                }))
            },
        )
    }
    /// `x · sigmoid(x)` (SiLU or swish, EfficientNet's activation).
    pub fn silu(&self) -> Tensor {
        self.unary("silu", UnaryOp::Silu, Keep::Input, |x, g| {
            g.mul(&x.map(UnaryOp::SiluGrad))
        })
    }
    /// `x · relu6(x + 3) / 6` (MobileNetV3's activation).
    pub fn hardswish(&self) -> Tensor {
        self.unary("hardswish", UnaryOp::Hardswish, Keep::Input, |x, g| {
            g.mul(&x.map(UnaryOp::HardswishGrad))
        })
    }
    /// `relu6(x + 3) / 6`, a piecewise-linear sigmoid.
    pub fn hardsigmoid(&self) -> Tensor {
        self.unary("hardsigmoid", UnaryOp::Hardsigmoid, Keep::Input, |x, g| {
            g.mul(
                &x.map(UnaryOp::Between { lo: -3.0, hi: 3.0 })
                    .map(UnaryOp::Affine {
                        mul: 1.0 / 6.0,
                        add: 0.0,
                    }),
            )
        })
    }
    /// `mul · x + add` in one pass.
    pub fn affine(&self, mul: f32, add: f32) -> Tensor {
        self.scaled("affine", UnaryOp::Affine { mul, add }, mul)
    }
    /// `x + s`
    pub fn add_scalar(&self, s: f32) -> Tensor {
        self.affine(1.0, s)
    }
    /// `x - s`
    pub fn sub_scalar(&self, s: f32) -> Tensor {
        self.affine(1.0, -s)
    }
    /// `x · s`
    pub fn mul_scalar(&self, s: f32) -> Tensor {
        self.affine(s, 0.0)
    }
    /// `x / s`
    pub fn div_scalar(&self, s: f32) -> Tensor {
        self.affine(1.0 / s, 0.0)
    }
    /// `x^p` for a scalar exponent.
    pub fn powf(&self, p: f32) -> Tensor {
        self.unary("powf", UnaryOp::Powf(p), Keep::Input, move |x, g| {
            g.mul(
                &x.map(UnaryOp::Powf(p - 1.0))
                    .map(UnaryOp::Affine { mul: p, add: 0.0 }),
            )
        })
    }
    /// `x²`
    pub fn square(&self) -> Tensor {
        self.powf(2.0)
    }
    /// `1 / x`
    pub fn recip(&self) -> Tensor {
        self.unary("recip", UnaryOp::Recip, Keep::Output, |y, g| {
            g.mul(&y.mul(y)?.neg())
        })
    }
}
