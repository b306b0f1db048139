//! Losses: cross-entropy over class indices and mean squared error.

use super::check_device;
use crate::{Error, Result, Tensor};

impl Tensor {
    /// Mean cross-entropy of `[N, K]` logits against `N` class indices (PyTorch's
    /// `F.cross_entropy` with `reduction='mean'`), as a 0-dimensional tensor.
    pub fn cross_entropy(&self, targets: &[usize]) -> Result<Tensor> {
        const OP: &str = "cross_entropy";
        if self.rank() != 2 || self.shape()[0] != targets.len() || self.shape()[0] == 0 {
            return Err(Error::op(
                OP,
                format!(
                    "needs [N, K] logits with N = {} targets, got shape {:?}",
                    targets.len(),
                    self.shape()
                ),
            ));
        }
        let k = self.shape()[1];
        if let Some((i, &t)) = targets.iter().enumerate().find(|&(_, &t)| t >= k) {
            return Err(Error::op(
                OP,
                format!("target {t} at index {i} is out of range for {k} classes"),
            ));
        }
        let mut onehot = vec![0.0; targets.len() * k];
        targets
            .iter()
            .enumerate()
            .for_each(|(i, &t)| onehot[i * k + t] = 1.0);
        let onehot = Tensor::from_vec(onehot, self.shape(), self.device())?;
        Ok(self
            .log_softmax(1)?
            .mul(&onehot)?
            .sum()
            .mul_scalar(-1.0 / targets.len() as f32))
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
