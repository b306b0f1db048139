//! Dynamic loss scaling with PyTorch's `torch.amp.GradScaler` semantics: the loss is
//! multiplied by a large scale before backward so that small gradients survive a narrow
//! floating-point format, the gradients are divided by it again before the step, and a
//! step whose gradients hold an inf or a NaN is skipped while the scale backs off. After
//! `growth_interval` clean steps in a row the scale grows again.
//!
//! ```text
//! let loss = model.forward(&x)?.cross_entropy(&y)?;
//! scaler.scale(&loss).backward()?;
//! scaler.unscale(&opt)?;             // optional: to clip or inspect the true gradients
//! scaler.step(&mut opt)?;            // skipped when a gradient is not finite
//! scaler.update()?;
//! ```

use std::collections::HashMap;

use super::Optimizer;
use crate::{no_grad, Error, Result, Tensor};

/// How the scale starts and moves (PyTorch's defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradScalerOptions {
    /// the first scale, 2¹⁶
    pub init_scale: f32,
    /// the factor the scale grows by after `growth_interval` clean steps, 2
    pub growth_factor: f32,
    /// the factor the scale shrinks by after a step with non-finite gradients, 0.5
    pub backoff_factor: f32,
    /// clean steps in a row before the scale grows, 2000
    pub growth_interval: u64,
}

impl Default for GradScalerOptions {
    fn default() -> Self {
        GradScalerOptions {
            init_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
        }
    }
}

/// Where an optimizer is in the current iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Unscaled { found_inf: bool },
    Stepped { found_inf: bool },
}

/// Dynamic loss scaling (see the module docs). One scaler can serve several optimizers:
/// each is unscaled and stepped once per iteration, and [`GradScaler::update`] backs off
/// if any of them met a non-finite gradient.
pub struct GradScaler {
    opts: GradScalerOptions,
    scale: f32,
    growth_tracker: u64,
    /// per optimizer (by address) this iteration
    stages: HashMap<usize, Stage>,
}

/// An optimizer's identity for the length of one iteration.
fn key(opt: &dyn Optimizer) -> usize {
    opt as *const dyn Optimizer as *const () as usize
}

impl GradScaler {
    /// A scaler with `opts`; a non-positive or non-finite scale, a growth factor not above
    /// 1, a backoff factor outside (0, 1) or a zero interval is an error.
    pub fn new(opts: GradScalerOptions) -> Result<GradScaler> {
        let o = &opts;
        let bad = if !(o.init_scale.is_finite() && o.init_scale > 0.0) {
            Some(format!(
                "init_scale {} must be finite and > 0",
                o.init_scale
            ))
        } else if !(o.growth_factor.is_finite() && o.growth_factor > 1.0) {
            Some(format!("growth_factor {} must be > 1", o.growth_factor))
        } else if !(o.backoff_factor > 0.0 && o.backoff_factor < 1.0) {
            Some(format!(
                "backoff_factor {} must be in (0, 1)",
                o.backoff_factor
            ))
        } else if o.growth_interval == 0 {
            Some("growth_interval must be at least 1".to_string())
        } else {
            None
        };
        if let Some(msg) = bad {
            return Err(Error::op("grad_scaler", msg));
        }
        Ok(GradScaler {
            opts,
            scale: opts.init_scale,
            growth_tracker: 0,
            stages: HashMap::new(),
        })
    }

    /// The current scale.
    pub fn get_scale(&self) -> f32 {
        self.scale
    }

    /// Clean steps since the scale last changed.
    pub fn growth_tracker(&self) -> u64 {
        self.growth_tracker
    }

    /// The options it was built with.
    pub fn options(&self) -> GradScalerOptions {
        self.opts
    }

    /// `loss × scale`, to call `backward` on.
    pub fn scale(&self, loss: &Tensor) -> Tensor {
        loss.mul_scalar(self.scale)
    }

    /// Divides every gradient of `opt`'s parameters by the scale, in place, and notes
    /// whether any of them holds an inf or a NaN (one read-back for all of them). Calling
    /// it twice in one iteration is an error: the gradients would be divided twice.
    pub fn unscale(&mut self, opt: &dyn Optimizer) -> Result<()> {
        match self.stages.get(&key(opt)) {
            Some(Stage::Unscaled { .. }) => {
                return Err(Error::op(
                    "grad_scaler.unscale",
                    "already called for this optimizer since the last update()",
                ))
            }
            Some(Stage::Stepped { .. }) => {
                return Err(Error::op(
                    "grad_scaler.unscale",
                    "called after step(); call update() first",
                ))
            }
            None => {}
        }
        // The reciprocal in f64, as PyTorch takes it, so a power-of-two scale divides
        // exactly.
        let inv = (1.0 / self.scale as f64) as f32;
        // PyTorch refuses too: unscaled in f16, small gradients would flush to zero.
        let half = |p: &&Tensor| p.grad().is_some_and(|g| g.dtype() != crate::DType::F32);
        if let Some(p) = opt.params().iter().find(half) {
            return Err(Error::op(
                "grad_scaler.unscale",
                format!(
                    "cannot unscale {} gradients (parameter of shape {:?}): keep parameters in f32 and run the forward under autocast",
                    p.dtype(),
                    p.shape()
                ),
            ));
        }
        let found_inf = no_grad(|| -> Result<bool> {
            let mut count: Option<Tensor> = None;
            for p in opt.params() {
                let Some(g) = p.grad() else { continue };
                let g = g.mul_scalar(inv);
                // Checked after the division: that also catches a finite gradient that
                // the division overflows.
                let bad = g.non_finite_mask().sum();
                count = Some(match count {
                    None => bad,
                    Some(c) => c.add(&bad)?,
                });
                p.set_grad(Some(g))?;
            }
            Ok(match count {
                Some(c) => c.item()? != 0.0,
                None => false,
            })
        })?;
        self.stages.insert(key(opt), Stage::Unscaled { found_inf });
        Ok(())
    }

    /// Unscales `opt`'s gradients if [`GradScaler::unscale`] was not called, then takes
    /// the optimizer's step unless a gradient was inf or NaN. Returns whether it stepped.
    pub fn step(&mut self, opt: &mut dyn Optimizer) -> Result<bool> {
        let k = key(&*opt);
        if let Some(Stage::Stepped { .. }) = self.stages.get(&k) {
            return Err(Error::op(
                "grad_scaler.step",
                "already called for this optimizer since the last update()",
            ));
        }
        if !self.stages.contains_key(&k) {
            self.unscale(&*opt)?;
        }
        let found_inf = matches!(
            self.stages.get(&k),
            Some(Stage::Unscaled { found_inf: true })
        );
        if !found_inf {
            opt.step()?;
        }
        self.stages.insert(k, Stage::Stepped { found_inf });
        Ok(!found_inf)
    }

    /// Ends the iteration: the scale backs off if any optimizer met a non-finite gradient,
    /// and grows after `growth_interval` clean iterations in a row. An iteration that
    /// unscaled nothing is an error (PyTorch's "no inf checks were recorded").
    pub fn update(&mut self) -> Result<()> {
        if self.stages.is_empty() {
            return Err(Error::op(
                "grad_scaler.update",
                "no gradients were checked this iteration: call step() (or unscale()) first",
            ));
        }
        let found_inf = self.stages.values().any(|s| match *s {
            Stage::Unscaled { found_inf } | Stage::Stepped { found_inf } => found_inf,
        });
        self.stages.clear();
        if found_inf {
            self.scale *= self.opts.backoff_factor;
            self.growth_tracker = 0;
        } else {
            self.growth_tracker += 1;
            if self.growth_tracker == self.opts.growth_interval {
                let grown = self.scale * self.opts.growth_factor;
                // PyTorch keeps the scale when growing it would overflow.
                if grown.is_finite() {
                    self.scale = grown;
                }
                self.growth_tracker = 0;
            }
        }
        Ok(())
    }

    /// Sets the scale and the count of clean steps, as a resumed run restores them
    /// (PyTorch's `load_state_dict`). A scale that is not finite and positive, or a count
    /// that has already reached `growth_interval`, is refused.
    pub fn load_state(&mut self, scale: f32, growth_tracker: u64) -> Result<()> {
        if !(scale.is_finite() && scale > 0.0) || growth_tracker >= self.opts.growth_interval {
            return Err(Error::op(
                "grad_scaler.load_state",
                format!(
                    "scale {scale} must be finite and > 0 and growth_tracker {growth_tracker} below growth_interval {}",
                    self.opts.growth_interval
                ),
            ));
        }
        self.scale = scale;
        self.growth_tracker = growth_tracker;
        self.stages.clear();
        Ok(())
    }
}
