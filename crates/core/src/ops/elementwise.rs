//! Elementwise unary ops and scalar arithmetic.

use super::on_device;
use crate::backend::UnaryOp;
use crate::{Result, Tensor};

impl Tensor {
    /// Applies `op`; `grad` maps (input, output, upstream grad) to the input's gradient.
    fn unary(
        &self,
        name: &'static str,
        op: UnaryOp,
        grad: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor> + Send + Sync + 'static,
    ) -> Tensor {
        let storage = on_device(self.backend().unary(&self.storage(), op), name);
        // The node keeps a detached twin of the output (same storage, no node), so the
        // output does not own itself through its own graph node.
        let y = Tensor::leaf(storage.clone(), self.shape().to_vec(), self.device());
        let x = self.clone();
        Tensor::from_op(
            storage,
            self.shape().to_vec(),
            self.device(),
            name,
            &[self],
            move |g| Ok(vec![Some(grad(&x, &y, g)?)]),
        )
    }

    fn map(&self, op: UnaryOp) -> Tensor {
        Tensor::leaf(
            on_device(self.backend().unary(&self.storage(), op), "unary"),
            self.shape().to_vec(),
            self.device(),
        )
    }

    /// `-x`
    pub fn neg(&self) -> Tensor {
        self.unary("neg", UnaryOp::Neg, |_, _, g| Ok(g.neg()))
    }
    /// `e^x`
    pub fn exp(&self) -> Tensor {
        self.unary("exp", UnaryOp::Exp, |_, y, g| g.mul(y))
    }
    /// Natural logarithm.
    pub fn log(&self) -> Tensor {
        self.unary("log", UnaryOp::Log, |x, _, g| g.div(x))
    }
    /// Square root.
    pub fn sqrt(&self) -> Tensor {
        self.unary("sqrt", UnaryOp::Sqrt, |_, y, g| {
            g.mul(&y.map(UnaryOp::RDiv(0.5)))
        })
    }
    /// Absolute value (gradient 0 at 0).
    pub fn abs(&self) -> Tensor {
        self.unary("abs", UnaryOp::Abs, |x, _, g| g.mul(&x.map(UnaryOp::Sign)))
    }
    /// `max(x, 0)` (gradient 0 at 0).
    pub fn relu(&self) -> Tensor {
        self.unary("relu", UnaryOp::Relu, |x, _, g| {
            g.mul(&x.map(UnaryOp::Step))
        })
    }
    /// `x` where positive, `negative_slope · x` elsewhere.
    pub fn leaky_relu(&self, negative_slope: f32) -> Tensor {
        self.unary(
            "leaky_relu",
            UnaryOp::LeakyRelu(negative_slope),
            move |x, _, g| {
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
        self.unary("sigmoid", UnaryOp::Sigmoid, |_, y, g| {
            g.mul(&y.mul(&y.map(UnaryOp::Affine {
                mul: -1.0,
                add: 1.0,
            }))?)
        })
    }
    /// Hyperbolic tangent.
    pub fn tanh(&self) -> Tensor {
        self.unary("tanh", UnaryOp::Tanh, |_, y, g| {
            g.mul(&y.mul(y)?.map(UnaryOp::Affine {
                mul: -1.0,
                add: 1.0,
            }))
        })
    }
    /// `mul · x + add` in one pass.
    pub fn affine(&self, mul: f32, add: f32) -> Tensor {
        self.unary("affine", UnaryOp::Affine { mul, add }, move |_, _, g| {
            Ok(g.mul_scalar(mul))
        })
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
        self.unary("powf", UnaryOp::Powf(p), move |x, _, g| {
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
        self.unary("recip", UnaryOp::Recip, |_, y, g| g.mul(&y.mul(y)?.neg()))
    }
}
