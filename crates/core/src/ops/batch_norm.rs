//! Batch normalisation (PyTorch's `F.batch_norm`, and `SyncBatchNorm`'s statistics across
//! data-parallel replicas) on two backend primitives, per-channel sums and a per-channel
//! affine map, with its own backward.

use crate::autograd::no_grad;
use crate::backend::ChannelParams;
use crate::parallel::ReplicaSum;
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
        self.batch_norm_with(running_mean, running_var, weight, bias, opts, false, false)
    }

    /// [`Tensor::batch_norm`] then ReLU, fused: the ReLU is applied as the normalised
    /// values are written, and its backward mask is recomputed from the input, so neither
    /// a pass of its own nor the normalised tensor is kept. Values and gradients are those
    /// of `batch_norm(…)?.relu()` bit for bit on the CPU.
    pub fn batch_norm_relu(
        &self,
        running_mean: Option<&Tensor>,
        running_var: Option<&Tensor>,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        opts: BatchNormOptions,
    ) -> Result<Tensor> {
        self.batch_norm_with(running_mean, running_var, weight, bias, opts, false, true)
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
        self.batch_norm_with(running_mean, running_var, weight, bias, opts, true, false)
    }

    /// Batch norm from two primitives (per-channel sums, a per-channel affine map):
    /// statistics in two reads of the input, the output in one pass, and a backward of one
    /// read of the gradient and input and one pass writing the input gradient; composed
    /// from elementwise ops and reductions it made about ten passes each way. With `sync`
    /// the sums are added across replicas and processes, one all-reduce each for the mean,
    /// the variance and the backward's two sums. With `relu`, a ReLU follows (see
    /// [`Tensor::batch_norm_relu`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn batch_norm_with(
        &self,
        running_mean: Option<&Tensor>,
        running_var: Option<&Tensor>,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        opts: BatchNormOptions,
        sync: bool,
        relu: bool,
    ) -> Result<Tensor> {
        let name: &'static str = match (sync, relu) {
            (false, false) => "batch_norm",
            (false, true) => "batch_norm_relu",
            (true, false) => "sync_batch_norm",
            (true, true) => "sync_batch_norm_relu",
        };
        if self.rank() < 2 {
            return Err(Error::op(
                name,
                format!("needs an input of shape [N, C, …], got {:?}", self.shape()),
            ));
        }
        let c = self.shape()[1];
        for (what, t) in [
            ("running_mean", running_mean),
            ("running_var", running_var),
            ("weight", weight),
            ("bias", bias),
        ] {
            if let Some(t) = t {
                super::check_device(name, &[self, t])?;
                if t.shape() != [c] {
                    return Err(Error::op(
                        name,
                        format!(
                            "{what} must have shape [{c}] for input {:?}, got {:?}",
                            self.shape(),
                            t.shape()
                        ),
                    ));
                }
            }
        }
        let shape = self.shape();
        let p = ChannelParams {
            outer: shape[0],
            channels: c,
            inner: shape[2..].iter().product(),
            relu: false,
        };
        // The passes a fused ReLU changes: the output, and every backward pass.
        let pr = ChannelParams { relu, ..p };
        let op = |e: crate::Error| e.in_op(name, &[shape]);
        let backend = self.backend();
        let x = self.f32_storage();
        // Synchronised, the sums (and the count) are the whole batch's across replicas and
        // processes, forward and backward; a replica's own sums otherwise.
        let replicas = sync.then(ReplicaSum::current).flatten();
        let across = |t: Tensor, n: f64| match &replicas {
            Some(r) => r.sum(&t, n),
            None => Ok((t, n)),
        };
        let mut count = p.per_channel();
        let (mean, var) = if opts.training {
            let sum = backend.channel_sums(&x, None, &p).map_err(op)?;
            let (sum, n) = across(Tensor::leaf(sum, vec![c], self.device()), count as f64)?;
            count = n as usize;
            if count <= 1 {
                return Err(Error::op(
                    name,
                    format!("training needs more than one value per channel, got input {shape:?}"),
                ));
            }
            let mean = sum.div_scalar(count as f32);
            let centers = pair(&mean, &mean)?;
            let sums = backend
                .channel_sums(&x, Some((&x, &centers.f32_storage())), &p)
                .map_err(op)?;
            let (sq, _) = across(halves(sums, c, self)?.1, 0.0)?;
            let var = sq.div_scalar(count as f32);
            if let (Some(rm), Some(rv)) = (running_mean, running_var) {
                no_grad(|| -> Result<()> {
                    let m = opts.momentum;
                    let unbiased = var.mul_scalar(count as f32 / (count - 1) as f32);
                    rm.assign(&rm.mul_scalar(1.0 - m).add(&mean.mul_scalar(m))?)?;
                    rv.assign(&rv.mul_scalar(1.0 - m).add(&unbiased.mul_scalar(m))?)
                })?;
            }
            (mean, var)
        } else {
            match (running_mean, running_var) {
                (Some(rm), Some(rv)) => (rm.detach(), rv.detach()),
                _ => {
                    return Err(Error::op(
                        name,
                        "eval mode needs running_mean and running_var",
                    ))
                }
            }
        };
        let (y, invstd, scale, shift) = no_grad(|| -> Result<_> {
            // The per-channel factors stay f32 whatever the dtypes (f16 statistics or
            // parameters are widened), as PyTorch's kernels keep them.
            let (mean, var) = (mean.float()?, var.float()?);
            let invstd = var.add_scalar(opts.eps).sqrt().recip();
            let scale = match weight {
                Some(w) => w.detach().float()?.mul(&invstd)?,
                None => invstd.clone(),
            };
            let shift = mean.mul(&scale)?.neg();
            let shift = match bias {
                Some(b) => shift.add(&b.detach().float()?)?,
                None => shift,
            };
            let y = backend
                .channel_affine(&x, None, &pair(&scale, &shift)?.f32_storage(), &pr)
                .map_err(op)?;
            Ok((y, invstd, scale, shift))
        })?;
        let mut inputs = vec![self];
        inputs.extend(weight);
        inputs.extend(bias);
        let wants = (
            self.tracks_grad(),
            weight.is_some_and(|w| w.tracks_grad()),
            bias.is_some_and(|b| b.tracks_grad()),
        );
        let (has_weight, has_bias, training) = (weight.is_some(), bias.is_some(), opts.training);
        let saved_x = self.detach();
        // The output takes the input's dtype, whatever the parameters' (PyTorch's rule).
        Ok(Tensor::from_op_as(
            self.dtype(),
            y,
            shape.to_vec(),
            self.device(),
            name,
            &inputs,
            move |gy| {
                let backend = saved_x.backend();
                let op = |e: crate::Error| e.in_op(name, &[saved_x.shape()]);
                let like_x = |s| Tensor::leaf(s, saved_x.shape().to_vec(), saved_x.device());
                let zeros = mean.zeros_like();
                // A fused ReLU's gate: the forward's scale and shift, appended to each
                // backward pass's per-channel coefficients.
                let gated = |parts: &[&Tensor]| -> Result<Tensor> {
                    let mut all = parts.to_vec();
                    if relu {
                        all.extend([&scale, &shift]);
                    }
                    Tensor::cat(&all, 0)
                };
                // Σ gy and Σ gy·(x − mean) per channel, unless nothing needs them: frozen
                // statistics and parameters (a fine-tuned backbone's batch norm in eval).
                let sums = if wants.1 || wants.2 || (training && wants.0) {
                    let centers = gated(&[&zeros, &mean])?;
                    let sums = backend
                        .channel_sums(
                            &gy.f32_storage(),
                            Some((&saved_x.f32_storage(), &centers.f32_storage())),
                            &pr,
                        )
                        .map_err(op)?;
                    Some(halves(sums, c, &saved_x)?)
                } else {
                    None
                };
                let gx = match &sums {
                    _ if !wants.0 => None,
                    Some((sum_gy, sum_gy_xc)) if training => {
                        // The batch statistics depend on x: with x̂ = (x − mean)·invstd,
                        // gx = scale · (gy − Σgy/M − x̂ · Σ(gy·x̂)/M) over the whole batch,
                        // one affine map of gy and the centred x (PyTorch's CPU kernel's
                        // form). The parameters' gradients below stay this replica's: data
                        // parallelism sums them with the others.
                        let (all_gy, all_gy_xc) = match &replicas {
                            Some(r) => {
                                let (both, _) = r.sum(&pair(sum_gy, sum_gy_xc)?, 0.0)?;
                                halves(both.f32_storage(), c, &saved_x)?
                            }
                            None => (sum_gy.clone(), sum_gy_xc.clone()),
                        };
                        let m = count as f32;
                        let kx = scale
                            .mul(&invstd)?
                            .mul(&invstd)?
                            .mul(&all_gy_xc)?
                            .mul_scalar(-1.0 / m);
                        let k0 = scale.mul(&all_gy)?.mul_scalar(-1.0 / m);
                        let coef = gated(&[&scale, &kx, &mean, &k0])?;
                        let gx = backend
                            .channel_affine(
                                &gy.f32_storage(),
                                Some(&saved_x.f32_storage()),
                                &coef.f32_storage(),
                                &pr,
                            )
                            .map_err(op)?;
                        Some(like_x(gx))
                    }
                    // Running statistics are constants: gy scaled (masked by the input, a
                    // fused ReLU's gate, through the two-input form with zero terms).
                    _ if relu => {
                        let coef = gated(&[&scale, &zeros, &zeros, &zeros])?;
                        let gx = backend
                            .channel_affine(
                                &gy.f32_storage(),
                                Some(&saved_x.f32_storage()),
                                &coef.f32_storage(),
                                &pr,
                            )
                            .map_err(op)?;
                        Some(like_x(gx))
                    }
                    _ => {
                        let coef = pair(&scale, &zeros)?;
                        let gx = backend
                            .channel_affine(&gy.f32_storage(), None, &coef.f32_storage(), &p)
                            .map_err(op)?;
                        Some(like_x(gx))
                    }
                };
                let (gw, gb) = match sums {
                    Some((sum_gy, sum_gy_xc)) => (
                        wants.1.then(|| sum_gy_xc.mul(&invstd)).transpose()?,
                        wants.2.then_some(sum_gy),
                    ),
                    None => (None, None),
                };
                let mut grads = vec![gx];
                if has_weight {
                    grads.push(gw);
                }
                if has_bias {
                    grads.push(gb);
                }
                Ok(grads)
            },
        ))
    }
}

/// `a` then `b` as one `[2C]` tensor.
fn pair(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Tensor::cat(&[a, b], 0)
}

/// The `[C]` halves of a `[2C]` result of `channel_sums`.
fn halves(sums: crate::backend::Storage, c: usize, x: &Tensor) -> Result<(Tensor, Tensor)> {
    let t = Tensor::leaf(sums, vec![2, c], x.device());
    Ok((
        t.narrow(0, 0, 1)?.reshape(&[c])?,
        t.narrow(0, 1, 1)?.reshape(&[c])?,
    ))
}
