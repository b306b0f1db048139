//! Batch normalisation (PyTorch's `F.batch_norm`), composed from differentiable ops so
//! its gradient comes from autodiff.

use crate::autograd::no_grad;
use crate::parallel::sum_across_replicas;
use crate::{Error, Result, Tensor};

/// Options of [`Tensor::batch_norm`]; `Default` is PyTorch's (eval mode, momentum 0.1,
/// eps 1e-5).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormOptions {
    /// use batch statistics (and update the running ones) instead of the running ones
    pub training: bool,
    /// weight of the new batch statistic in the running average
    pub momentum: f32,
    /// added to the variance for stability
    pub eps: f32,
}

impl Default for BatchNormOptions {
    fn default() -> Self {
        BatchNormOptions {
            training: false,
            momentum: 0.1,
            eps: 1e-5,
        }
    }
}

impl Tensor {
    /// Normalises each channel (dimension 1) of an `[N, C, …]` input. In training the
    /// batch statistics are used (biased variance) and the running statistics, when
    /// given, are updated in place with the unbiased variance; in eval the running
    /// statistics are used. `weight` and `bias` are the optional `[C]` affine parameters.
    pub fn batch_norm(
        &self,
        running_mean: Option<&Tensor>,
        running_var: Option<&Tensor>,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        opts: BatchNormOptions,
    ) -> Result<Tensor> {
        self.batch_norm_with(running_mean, running_var, weight, bias, opts, false)
    }

    /// [`Tensor::batch_norm`] with the statistics of the whole batch across data-parallel
    /// replicas (PyTorch's `SyncBatchNorm`): inside
    /// [`crate::parallel::DataParallel::forward_backward`], each channel's sum and sum of
    /// squared deviations are summed over every replica and process, in forward and, for
    /// their gradients, in backward, so N replicas with batch B normalise (and update the
    /// running statistics) exactly as one device with batch N·B. Elsewhere it is
    /// [`Tensor::batch_norm`].
    pub fn sync_batch_norm(
        &self,
        running_mean: Option<&Tensor>,
        running_var: Option<&Tensor>,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        opts: BatchNormOptions,
    ) -> Result<Tensor> {
        self.batch_norm_with(running_mean, running_var, weight, bias, opts, true)
    }

    fn batch_norm_with(
        &self,
        running_mean: Option<&Tensor>,
        running_var: Option<&Tensor>,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        opts: BatchNormOptions,
        sync: bool,
    ) -> Result<Tensor> {
        let op: &'static str = if sync {
            "sync_batch_norm"
        } else {
            "batch_norm"
        };
        if self.rank() < 2 {
            return Err(Error::op(
                op,
                format!("needs an input of shape [N, C, …], got {:?}", self.shape()),
            ));
        }
        let c = self.shape()[1];
        for (name, t) in [
            ("running_mean", running_mean),
            ("running_var", running_var),
            ("weight", weight),
            ("bias", bias),
        ] {
            if let Some(t) = t {
                super::check_device(op, &[self, t])?;
                if t.shape() != [c] {
                    return Err(Error::op(
                        op,
                        format!(
                            "{name} must have shape [{c}] for input {:?}, got {:?}",
                            self.shape(),
                            t.shape()
                        ),
                    ));
                }
            }
        }
        let mut stat_shape = vec![1; self.rank()];
        stat_shape[1] = c;
        let dims: Vec<isize> = (0..self.rank() as isize).filter(|&d| d != 1).collect();
        let count = self.numel() / c.max(1);
        let (mean, var) = if opts.training {
            // Synchronised: the whole batch's count, mean and variance, in two passes
            // like the local path (sums of squares alone lose digits to cancellation).
            let (mean, var, count) = if sync {
                let (sum, n) = sum_across_replicas(&self.sum_dims(&dims, false)?, count as f64)?;
                let mean = sum.div_scalar(n as f32).reshape(&stat_shape)?;
                let sq = self.sub(&mean)?.square().sum_dims(&dims, false)?;
                let (sq, _) = sum_across_replicas(&sq, 0.0)?;
                let var = sq.div_scalar(n as f32).reshape(&stat_shape)?;
                (mean, var, n as usize)
            } else {
                let mean = self.mean_dims(&dims, true)?;
                let var = self.sub(&mean)?.square().mean_dims(&dims, true)?;
                (mean, var, count)
            };
            if count <= 1 {
                return Err(Error::op(
                    op,
                    format!(
                        "training needs more than one value per channel, got input {:?}",
                        self.shape()
                    ),
                ));
            }
            if let (Some(rm), Some(rv)) = (running_mean, running_var) {
                no_grad(|| -> Result<()> {
                    let m = opts.momentum;
                    let unbiased = var
                        .reshape(&[c])?
                        .mul_scalar(count as f32 / (count - 1) as f32);
                    rm.assign(
                        &rm.mul_scalar(1.0 - m)
                            .add(&mean.reshape(&[c])?.mul_scalar(m))?,
                    )?;
                    rv.assign(&rv.mul_scalar(1.0 - m).add(&unbiased.mul_scalar(m))?)
                })?;
            }
            (mean, var)
        } else {
            match (running_mean, running_var) {
                (Some(rm), Some(rv)) => (
                    rm.detach().reshape(&stat_shape)?,
                    rv.detach().reshape(&stat_shape)?,
                ),
                _ => {
                    return Err(Error::op(
                        op,
                        "eval mode needs running_mean and running_var",
                    ))
                }
            }
        };
        let mut y = self.sub(&mean)?.div(&var.add_scalar(opts.eps).sqrt())?;
        if let Some(w) = weight {
            y = y.mul(&w.reshape(&stat_shape)?)?;
        }
        if let Some(b) = bias {
            y = y.add(&b.reshape(&stat_shape)?)?;
        }
        Ok(y)
    }
}
