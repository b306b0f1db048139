//! Losses: cross-entropy over class indices and mean squared error.

use super::check_device;
use crate::{Error, Result, Tensor};

/// A `[N, K]` one-hot tensor of class indices in `x`'s dtype, checked against `x`'s shape.
fn one_hot(op: &'static str, x: &Tensor, targets: &[usize]) -> Result<Tensor> {
    if x.rank() != 2 || x.shape()[0] != targets.len() || x.shape()[0] == 0 {
        return Err(Error::op(
            op,
            format!(
                "needs [N, K] input with N = {} targets, got shape {:?}",
                targets.len(),
                x.shape()
            ),
        ));
    }
    let k = x.shape()[1];
    if let Some((i, &t)) = targets.iter().enumerate().find(|&(_, &t)| t >= k) {
        return Err(Error::op(
            op,
            format!("target {t} at index {i} is out of range for {k} classes"),
        ));
    }
    let mut onehot = vec![0.0; targets.len() * k];
    targets
        .iter()
        .enumerate()
        .for_each(|(i, &t)| onehot[i * k + t] = 1.0);
    Tensor::from_vec(onehot, x.shape(), x.device())?.to_dtype(x.dtype())
}

impl Tensor {
    /// Mean cross-entropy of `[N, K]` logits against `N` class indices (PyTorch's
    /// `F.cross_entropy` with `reduction='mean'`), as a 0-dimensional tensor.
    pub fn cross_entropy(&self, targets: &[usize]) -> Result<Tensor> {
        // Validate here so errors name the op the user called.
        let onehot = one_hot("cross_entropy", self, targets)?;
        Ok(self
            .log_softmax(1)?
            .mul(&onehot)?
            .sum()
            .mul_scalar(-1.0 / targets.len() as f32))
    }

    /// Mean negative log-likelihood of `[N, K]` log-probabilities against class indices
    /// (PyTorch's `F.nll_loss`).
    pub fn nll_loss(&self, targets: &[usize]) -> Result<Tensor> {
        let onehot = one_hot("nll_loss", self, targets)?;
        Ok(self
            .mul(&onehot)?
            .sum()
            .mul_scalar(-1.0 / targets.len() as f32))
    }

    /// Mean binary cross-entropy of logits against targets in [0, 1] of the same shape
    /// (PyTorch's `F.binary_cross_entropy_with_logits`), in the stable form
    /// `max(x, 0) − x·t + log(1 + e^−|x|)`.
    pub fn bce_with_logits(&self, target: &Tensor) -> Result<Tensor> {
        check_device("bce_with_logits", &[self, target])?;
        if self.shape() != target.shape() {
            return Err(Error::op(
                "bce_with_logits",
                format!(
                    "logits {:?} and target {:?} must have the same shape",
                    self.shape(),
                    target.shape()
                ),
            ));
        }
        let softplus = self.abs().neg().exp().add_scalar(1.0).log();
        Ok(self.relu().sub(&self.mul(target)?)?.add(&softplus)?.mean())
    }

    /// Mean binary cross-entropy of logits against targets in [0, 1] of the same shape with
    /// the positive term weighted by `pos_weight` (PyTorch's
    /// `F.binary_cross_entropy_with_logits(x, t, pos_weight=…)` for one channel):
    /// `−[p·t·log σ(x) + (1 − t)·log(1 − σ(x))]`, computed as
    /// `(1 − t)·x + (1 + (p − 1)·t)·(log(1 + e^−|x|) + max(−x, 0))` so that large |x| stay
    /// finite.
    pub fn bce_with_logits_weighted(&self, target: &Tensor, pos_weight: f32) -> Result<Tensor> {
        const OP: &str = "bce_with_logits_weighted";
        check_device(OP, &[self, target])?;
        if self.shape() != target.shape() || !pos_weight.is_finite() {
            return Err(Error::op(
                OP,
                format!(
                    "logits {:?} and target {:?} must have the same shape, pos_weight ({pos_weight}) must be finite",
                    self.shape(),
                    target.shape()
                ),
            ));
        }
        let log_sigmoid_neg = self
            .abs()
            .neg()
            .exp()
            .add_scalar(1.0)
            .log()
            .add(&self.neg().relu())?;
        let negative = target.affine(-1.0, 1.0).mul(self)?;
        let positive = target.affine(pos_weight - 1.0, 1.0).mul(&log_sigmoid_neg)?;
        Ok(negative.add(&positive)?.mean())
    }

    /// Mean squared error against a target of the same shape.
    pub fn mse_loss(&self, target: &Tensor) -> Result<Tensor> {
        check_device("mse_loss", &[self, target])?;
        if self.shape() != target.shape() {
            return Err(Error::op(
                "mse_loss",
                format!(
                    "input {:?} and target {:?} must have the same shape",
                    self.shape(),
                    target.shape()
                ),
            ));
        }
        Ok(self.sub(target)?.square().mean())
    }
}
