//! Broadcasting binary ops and `sum_to_shape`, the adjoint of broadcasting.

use super::{check_device, check_output};
use crate::backend::{BinaryOp, BinaryParams, ReduceOp};
use crate::shape::{broadcast_shapes, broadcast_strides};
use crate::tensor::result_dtype;
use crate::{DType, Result, Tensor};

impl Tensor {
    /// Raw broadcast op, no graph.
    pub(crate) fn zip_raw(
        &self,
        other: &Tensor,
        op: BinaryOp,
        name: &'static str,
    ) -> Result<Tensor> {
        check_device(name, &[self, other])?;
        let shape = broadcast_shapes(name, self.shape(), other.shape())?;
        check_output(name, &[self.shape(), other.shape()], &shape, self.device())?;
        let p = BinaryParams {
            a_strides: broadcast_strides(self.shape(), &shape),
            b_strides: broadcast_strides(other.shape(), &shape),
            shape: shape.clone(),
        };
        let s = self
            .backend()
            .binary(&self.f32_storage(), &other.f32_storage(), &p, op)
            .map_err(|e| e.in_op(name, &[self.shape(), other.shape()]))?;
        Ok(Tensor::leaf(s, shape, self.device()))
    }

    /// A differentiable broadcast op; `grad` maps (a, b, upstream grad) to both inputs'
    /// (broadcast-shaped) gradients. Keeps detached copies of both inputs for backward.
    fn binary(
        &self,
        other: &Tensor,
        op: BinaryOp,
        name: &'static str,
        grad: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<(Tensor, Tensor)> + Send + Sync + 'static,
    ) -> Result<Tensor> {
        let (a, b) = (self.detach(), other.detach());
        self.binary_node(other, op, name, move |g| grad(&a, &b, g))
    }

    /// `a ± b`: the gradients are `g` and `±g`, so no input is kept (only shapes). A sum
    /// hands both inputs the same gradient tensor, as PyTorch's does: multiplied by 1 it
    /// was a copy of every sum's gradient (MobileNetV2's residual sums, 11 a step).
    fn binary_linear(
        &self,
        other: &Tensor,
        op: BinaryOp,
        name: &'static str,
        sign: f32,
    ) -> Result<Tensor> {
        self.binary_node(other, op, name, move |g| {
            let gb = if sign == 1.0 {
                g.clone()
            } else {
                g.mul_scalar(sign)
            };
            Ok((g.clone(), gb))
        })
    }

    fn binary_node(
        &self,
        other: &Tensor,
        op: BinaryOp,
        name: &'static str,
        grads: impl Fn(&Tensor) -> Result<(Tensor, Tensor)> + Send + Sync + 'static,
    ) -> Result<Tensor> {
        let out = self.zip_raw(other, op, name)?;
        let (a_shape, b_shape) = (self.shape().to_vec(), other.shape().to_vec());
        Ok(Tensor::from_op(
            out.f32_storage(),
            out.shape().to_vec(),
            self.device(),
            name,
            &[self, other],
            move |g| {
                let (ga, gb) = grads(g)?;
                Ok(vec![
                    Some(ga.sum_to_shape(&a_shape)?),
                    Some(gb.sum_to_shape(&b_shape)?),
                ])
            },
        ))
    }

    /// `a + b` with broadcasting.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        self.binary_linear(other, BinaryOp::Add, "add", 1.0)
    }
    /// `relu(a + b)` with broadcasting, in one pass: a residual block's sum and activation
    /// (the sum is not kept; the backward masks by the output, as ReLU's does).
    pub fn add_relu(&self, other: &Tensor) -> Result<Tensor> {
        const OP: &str = "add_relu";
        let out = self.zip_raw(other, BinaryOp::AddRelu, OP)?;
        let (a_shape, b_shape) = (self.shape().to_vec(), other.shape().to_vec());
        // Rounded before it is kept, so that an f16 activation is kept in f16 only.
        let dtype = result_dtype(&[self, other]);
        let out = out.to_dtype(dtype)?;
        let y = out.detach();
        Ok(Tensor::from_op_as(
            dtype,
            out.storage(),
            out.shape().to_vec(),
            self.device(),
            OP,
            &[self, other],
            move |g| {
                let g = g.relu_backward(&y)?;
                Ok(vec![
                    Some(g.sum_to_shape(&a_shape)?),
                    Some(g.sum_to_shape(&b_shape)?),
                ])
            },
        ))
    }
    /// `self + other` for a tensor its caller gives up: summed into its own buffer where
    /// the shapes match, both are f32 and nothing else holds it or tracks a gradient through
    /// it ([`Tensor::sole_storage`], and a backend that adds in place), else [`Tensor::add`].
    /// The backward pass sums gradients this way.
    pub(crate) fn into_add(mut self, other: &Tensor) -> Result<Tensor> {
        let (shape, device) = (self.shape().to_vec(), self.device().clone());
        if shape == other.shape() && other.dtype() == DType::F32 && device.same(other.device()) {
            let b = other.storage();
            if let Some(a) = self.sole_storage().filter(|s| s.dtype() == DType::F32) {
                if device.backend().add_in_place(a, &b)? {
                    return Ok(Tensor::leaf(a.clone(), shape, &device));
                }
            }
        }
        self.add(other)
    }
    /// `a - b` with broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        self.binary_linear(other, BinaryOp::Sub, "sub", -1.0)
    }
    /// `a · b` elementwise with broadcasting.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Mul, "mul", |a, b, g| {
            Ok((g.mul(b)?, g.mul(a)?))
        })
    }
    /// `a / b` with broadcasting.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Div, "div", |a, b, g| {
            let ga = g.div(b)?;
            Ok((ga.clone(), ga.mul(a)?.div(b)?.neg()))
        })
    }
    /// Elementwise maximum; at ties each side gets half the gradient (as in PyTorch).
    pub fn maximum(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Maximum, "maximum", |a, b, g| {
            let share = a
                .zip_raw(b, BinaryOp::Ge, "maximum")?
                .sub(&a.zip_raw(b, BinaryOp::Eq, "maximum")?.mul_scalar(0.5))?;
            Ok((g.mul(&share)?, g.mul(&share.affine(-1.0, 1.0))?))
        })
    }
    /// Elementwise minimum; ties split the gradient.
    pub fn minimum(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Minimum, "minimum", |a, b, g| {
            let share = b
                .zip_raw(a, BinaryOp::Ge, "minimum")?
                .sub(&a.zip_raw(b, BinaryOp::Eq, "minimum")?.mul_scalar(0.5))?;
            Ok((g.mul(&share)?, g.mul(&share.affine(-1.0, 1.0))?))
        })
    }
    /// `a^b` elementwise with broadcasting (the gradient in `b` needs `a > 0`); in f32
    /// under autocast, as PyTorch's.
    pub fn pow(&self, other: &Tensor) -> Result<Tensor> {
        let (a, b) = (
            crate::autocast::f32_input(self)?,
            crate::autocast::f32_input(other)?,
        );
        a.binary(&b, BinaryOp::Pow, "pow", |a, b, g| {
            let y = a.zip_raw(b, BinaryOp::Pow, "pow")?;
            let ga = g
                .mul(b)?
                .mul(&a.zip_raw(&b.sub_scalar(1.0), BinaryOp::Pow, "pow")?)?;
            let gb = g.mul(&y)?.mul(&a.log())?;
            Ok((ga, gb))
        })
    }

    /// Sums a broadcast gradient back to `shape` (the adjoint of broadcasting to this
    /// tensor's shape).
    pub fn sum_to_shape(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let lead = self.rank().checked_sub(shape.len()).ok_or_else(|| {
            crate::Error::op(
                "sum_to_shape",
                format!(
                    "cannot sum shape {:?} to the longer shape {shape:?}",
                    self.shape()
                ),
            )
        })?;
        let targets: Vec<usize> = (0..self.rank())
            .map(|d| if d < lead { 1 } else { shape[d - lead] })
            .collect();
        if targets
            .iter()
            .zip(self.shape())
            .any(|(&t, &s)| t != s && t != 1)
        {
            return Err(crate::Error::op(
                "sum_to_shape",
                format!("shape {:?} does not broadcast to {shape:?}", self.shape()),
            ));
        }
        if self.numel() == 0 {
            // Sums of nothing; summed one dimension at a time, an empty dimension made 1
            // could leave a vast partial result (`[2·10⁶, 0]` to `[1, 1]`).
            check_output("sum_to_shape", &[self.shape()], shape, self.device())?;
            return Tensor::try_zeros(shape, self.device())?.to_dtype(self.dtype());
        }
        // Every partial sum is no larger than this tensor.
        let mut t = self.clone();
        for (d, &target) in targets.iter().enumerate().rev() {
            if t.shape()[d] != target {
                t = t.reduce_dim(d, ReduceOp::Sum);
            }
        }
        t.reshape(shape)
    }
}
