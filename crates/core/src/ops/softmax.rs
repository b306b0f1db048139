//! Softmax and log-softmax, shifted by the (detached) maximum for stability; in f32 under
//! autocast.

use crate::shape::resolve_dim;
use crate::{Result, Tensor};

impl Tensor {
    /// `x − max x` along `dim`; in f32 under autocast.
    fn shifted(&self, op: &'static str, dim: isize) -> Result<(Tensor, isize)> {
        let d = resolve_dim(op, dim, self.rank())? as isize;
        let x = crate::autocast::f32_input(self)?;
        let m = x.detach().max_dims(&[d], true)?;
        Ok((x.sub(&m)?, d))
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
