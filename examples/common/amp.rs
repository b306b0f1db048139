//! Mixed precision for the training examples' `--autocast` flag: the forward pass under
//! `fovea::autocast` and the backward and step through a `GradScaler` (PyTorch's AMP
//! recipe), with the scaler's state kept in the training state file.

use std::collections::HashMap;

use anyhow::{Context, Result};
use fovea::optim::{GradScaler, GradScalerOptions, Optimizer};
use fovea::Tensor;

/// Plain f32 training, or autocast with loss scaling.
pub struct Amp {
    scaler: Option<GradScaler>,
}

impl Amp {
    /// Autocast and loss scaling when `enabled`.
    pub fn new(enabled: bool) -> Result<Amp> {
        let scaler = enabled
            .then(|| GradScaler::new(GradScalerOptions::default()))
            .transpose()?;
        Ok(Amp { scaler })
    }

    /// `f` (the forward pass and loss) under autocast when enabled.
    pub fn forward<R>(&self, f: impl FnOnce() -> R) -> R {
        match self.scaler {
            Some(_) => fovea::autocast(f),
            None => f(),
        }
    }

    /// Backward from `loss` and one optimizer step (skipped, with the scale backing off,
    /// when a scaled gradient overflowed).
    pub fn backward_and_step(&mut self, loss: &Tensor, opt: &mut dyn Optimizer) -> Result<()> {
        match &mut self.scaler {
            Some(s) => {
                s.scale(loss).backward()?;
                s.step(opt)?;
                s.update()?;
            }
            None => {
                loss.backward()?;
                opt.step()?;
            }
        }
        Ok(())
    }

    /// The scaler's state as training-state counters (none in f32).
    pub fn progress(&self) -> Vec<(String, u64)> {
        self.scaler
            .iter()
            .flat_map(|s| {
                [
                    ("amp_scale".to_string(), s.get_scale().to_bits() as u64),
                    ("amp_growth_tracker".to_string(), s.growth_tracker()),
                ]
            })
            .collect()
    }

    /// Restores the scaler from a training state's counters; a state saved without
    /// autocast starts the scaler afresh.
    pub fn restore(&mut self, progress: &HashMap<String, u64>) -> Result<()> {
        let Some(s) = &mut self.scaler else {
            return Ok(());
        };
        if let (Some(&scale), Some(&tracker)) = (
            progress.get("amp_scale"),
            progress.get("amp_growth_tracker"),
        ) {
            let scale = u32::try_from(scale).context("amp_scale is not an f32's bits")?;
            s.load_state(f32::from_bits(scale), tracker)?;
        }
        Ok(())
    }
}
