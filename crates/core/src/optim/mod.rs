//! Optimizers and learning-rate schedules. Updates run under `no_grad` and write the
//! parameters in place (`Tensor::assign`); frozen parameters and parameters without a
//! gradient are skipped.

mod adam;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamOptions};
pub use schedule::{CosineAnnealing, LrSchedule, StepLr};
pub use sgd::{Sgd, SgdOptions};

use crate::{Result, Tensor};

/// What every optimizer offers.
pub trait Optimizer {
    /// Applies one update from the parameters' current gradients.
    fn step(&mut self) -> Result<()>;
    /// Forgets every parameter's gradient.
    fn zero_grad(&self);
    /// The learning rate.
    fn lr(&self) -> f32;
    /// Sets the learning rate (schedules call this).
    fn set_lr(&mut self, lr: f32);
}

/// The gradient to use for `p`, or `None` when the parameter is frozen or got none.
pub(crate) fn grad_of(p: &Tensor) -> Option<Tensor> {
    if p.is_requires_grad() {
        p.grad()
    } else {
        None
    }
}

/// `λ · Σ |p|` over the parameters: add it to the loss for L1 regularisation.
pub fn l1_penalty(params: &[Tensor], lambda: f32) -> Result<Tensor> {
    let Some(first) = params.first() else {
        return Err(crate::Error::op(
            "l1_penalty",
            "needs at least one parameter",
        ));
    };
    let mut total = first.abs().sum();
    for p in &params[1..] {
        total = total.add(&p.abs().sum())?;
    }
    Ok(total.mul_scalar(lambda))
}
