//! Softmax and log-softmax, shifted by the (detached) maximum for stability.

use crate::shape::resolve_dim;
use crate::{Result, Tensor};

impl Tensor {
    fn shifted(&self, op: &'static str, dim: isize) -> Result<(Tensor, isize)> {
        let d = resolve_dim(op, dim, self.rank())? as isize;
        let m = self.detach().max_dims(&[d], true)?;
        Ok((self.sub(&m)?, d))
    }

    /// `exp(x) / Σ exp(x)` along `dim`.
    pub fn softmax(&self, dim: isize) -> Result<Tensor> {
        let (z, d) = self.shifted("softmax", dim)?;
        let e = z.exp();
        e.div(&e.sum_dims(&[d], true)?)
    }

    /// `x − log Σ exp(x)` along `dim`.
    pub fn log_softmax(&self, dim: isize) -> Result<Tensor> {
        let (z, d) = self.shifted("log_softmax", dim)?;
        z.sub(&z.exp().sum_dims(&[d], true)?.log())
    }
}
