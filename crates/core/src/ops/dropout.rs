//! Dropout with a seeded, counter-based mask (the same on every backend).

use crate::backend::BinaryOp;
use crate::{Error, Result, Tensor};

impl Tensor {
    /// In training, zeroes each element with probability `p` and scales the rest by
    /// `1 / (1 − p)`; in eval, returns the input unchanged.
    pub fn dropout(&self, p: f32, training: bool, seed: u64) -> Result<Tensor> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::op(
                "dropout",
                format!("probability must be in [0, 1], got {p}"),
            ));
        }
        if !training || p == 0.0 {
            return Ok(self.clone());
        }
        if p == 1.0 {
            return Ok(self.mul_scalar(0.0));
        }
        let keep = Tensor::rand(self.shape(), seed, self.device())
            .zip_raw(&Tensor::scalar(p, self.device()), BinaryOp::Ge, "dropout")?
            .mul_scalar(1.0 / (1.0 - p))
            .to_dtype(self.dtype())?;
        self.mul(&keep)
    }
}

impl Tensor {
    /// Stochastic depth (torchvision's `stochastic_depth(mode="row")`): in training, zeroes
    /// each sample of the batch (dimension 0) with probability `p` and scales the others by
    /// `1 / (1 − p)`, so a residual branch is dropped for some samples; in eval, returns the
    /// input unchanged.
    pub fn drop_path(&self, p: f32, training: bool, seed: u64) -> Result<Tensor> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::op(
                "drop_path",
                format!("probability must be in [0, 1], got {p}"),
            ));
        }
        if self.rank() == 0 {
            return Err(Error::op(
                "drop_path",
                "needs a batch dimension, got a scalar",
            ));
        }
        // An empty batch drops nothing (and its mask, one value per sample, may be vast).
        if !training || p == 0.0 || self.numel() == 0 {
            return Ok(self.clone());
        }
        if p == 1.0 {
            return Ok(self.mul_scalar(0.0));
        }
        let mut shape = vec![1; self.rank()];
        shape[0] = self.shape()[0];
        let keep = Tensor::try_rand(&shape, seed, self.device())?
            .zip_raw(&Tensor::scalar(p, self.device()), BinaryOp::Ge, "drop_path")?
            .mul_scalar(1.0 / (1.0 - p))
            .to_dtype(self.dtype())?;
        self.mul(&keep)
    }
}
