//! Optimizers and learning-rate schedules. Updates run under `no_grad` and write the
//! parameters in place (`Tensor::assign`); frozen parameters and parameters without a
//! gradient are skipped.

mod adam;
mod grad_scaler;
mod lbfgs;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamOptions};
pub use grad_scaler::{GradScaler, GradScalerOptions};
pub use lbfgs::{Lbfgs, LbfgsOptions, LineSearch};
pub use schedule::{CosineAnnealing, LrSchedule, StepLr};
pub use sgd::{Sgd, SgdOptions};

use std::collections::HashMap;

use crate::checkpoint::NamedArrays;
use crate::{Error, Result, Tensor};

/// Parameters that share a learning rate: PyTorch's parameter groups
/// (`[{"params": backbone, "lr": 1e-4}, {"params": head}]`). Fine-tuning trains the
/// pretrained layers with a lower rate than the new head.
#[derive(Clone)]
pub struct ParamGroup {
    /// the parameters
    pub params: Vec<Tensor>,
    /// their learning rate; `None` takes the optimizer's
    pub lr: Option<f32>,
}

impl ParamGroup {
    /// A group with the optimizer's learning rate.
    pub fn new(params: Vec<Tensor>) -> ParamGroup {
        ParamGroup { params, lr: None }
    }

    /// A group with a learning rate of its own.
    pub fn with_lr(params: Vec<Tensor>, lr: f32) -> ParamGroup {
        ParamGroup {
            params,
            lr: Some(lr),
        }
    }
}

/// Flattens groups into one parameter list and each parameter's learning-rate factor
/// (its group's rate over `base`), so that a schedule that sets the optimizer's rate
/// scales every group alike, as PyTorch's schedulers do with each group's `initial_lr`.
/// A rate that is not finite and non-negative, or a base of zero with a group rate of its
/// own, is an error naming the group.
pub(crate) fn flatten_groups(
    op: &'static str,
    groups: Vec<ParamGroup>,
    base: f32,
) -> Result<(Vec<Tensor>, Vec<f32>)> {
    let (mut params, mut factors) = (Vec::new(), Vec::new());
    for (i, g) in groups.into_iter().enumerate() {
        let factor = match g.lr {
            None => 1.0,
            Some(lr) if !lr.is_finite() || lr < 0.0 => {
                return Err(Error::op(
                    op,
                    format!("group {i}'s learning rate {lr} is not a finite, non-negative number"),
                ))
            }
            Some(lr) if base > 0.0 => lr / base,
            Some(lr) => {
                return Err(Error::op(
                    op,
                    format!("group {i} has learning rate {lr} but the optimizer's is {base}: group rates are kept relative to a positive one"),
                ))
            }
        };
        factors.extend(std::iter::repeat_n(factor, g.params.len()));
        params.extend(g.params);
    }
    Ok((params, factors))
}

/// An optimizer's saved state: per-parameter tensors (PyTorch's names,
/// `state.{i}.exp_avg`) and exact scalars (`step`, `lr`) as text.
#[derive(Default)]
pub struct OptimizerState {
    /// per-parameter buffers by name
    pub tensors: Vec<(String, Tensor)>,
    /// counters and settings, written so they read back bit for bit
    pub values: HashMap<String, String>,
}

impl OptimizerState {
    /// A state with the values every optimizer saves: its kind, parameter count and lr.
    pub(crate) fn new(kind: &str, params: usize, lr: f32) -> OptimizerState {
        let values = [
            ("optimizer", kind.to_string()),
            ("params", params.to_string()),
            ("lr", lr.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        OptimizerState {
            tensors: Vec::new(),
            values,
        }
    }
}

/// What every optimizer offers.
pub trait Optimizer {
    /// Applies one update from the parameters' current gradients.
    fn step(&mut self) -> Result<()>;
    /// The parameters it updates.
    fn params(&self) -> &[Tensor];
    /// Forgets every parameter's gradient.
    fn zero_grad(&self) {
        self.params().iter().for_each(Tensor::zero_grad);
    }
    /// The learning rate.
    fn lr(&self) -> f32;
    /// Sets the learning rate (schedules call this); parameter groups with rates of their
    /// own keep their ratio to it.
    fn set_lr(&mut self, lr: f32);
    /// The learning rate each parameter is updated with, in [`Optimizer::params`] order.
    fn param_lrs(&self) -> Vec<f32> {
        vec![self.lr(); self.params().len()]
    }
    /// The state a resumed run needs to continue exactly (moments, step, lr).
    fn state(&self) -> OptimizerState;
    /// Restores [`Optimizer::state`]. Every problem is checked before anything changes:
    /// on error the optimizer is untouched. Saved state is validated as well as matched:
    /// a finite, non-negative learning rate, a step count in range, finite buffers (Adam's
    /// second moments non-negative), and buffers for exactly the parameters the state
    /// says had them, so that a damaged file is refused rather than turning the next step's
    /// weights into NaN.
    fn load_state(&mut self, tensors: &NamedArrays, values: &HashMap<String, String>)
        -> Result<()>;
}

/// Reads `key` of an optimizer's saved values.
pub(crate) fn value<T: std::str::FromStr>(
    values: &HashMap<String, String>,
    op: &'static str,
    key: &str,
) -> Result<T> {
    values
        .get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::op(op, format!("saved state has no valid `{key}`")))
}

/// The saved value `with_state`: the indices of the parameters that have buffers.
pub(crate) const WITH_STATE: &str = "with_state";

/// Writes [`WITH_STATE`] for buffers held by the parameters where `has` is true.
pub(crate) fn write_with_state(st: &mut OptimizerState, has: impl Iterator<Item = bool>) {
    let list: Vec<String> = has
        .enumerate()
        .filter(|&(_, h)| h)
        .map(|(i, _)| i.to_string())
        .collect();
    st.values.insert(WITH_STATE.into(), list.join(","));
}

/// Checks which parameters have saved buffers (`present[i]`) against the saved
/// [`WITH_STATE`] list: exactly those, when the list is there. A file without it (saved
/// before the list was written) must have buffers for every parameter or for none, unless
/// `any_allowed` (SGD, whose state tells no step count to hold it to).
pub(crate) fn check_with_state(
    values: &HashMap<String, String>,
    op: &'static str,
    present: &[bool],
    any_allowed: bool,
) -> Result<()> {
    let Some(list) = values.get(WITH_STATE) else {
        let count = present.iter().filter(|&&p| p).count();
        if any_allowed || count == 0 || count == present.len() {
            return Ok(());
        }
        let missing: Vec<usize> = (0..present.len()).filter(|&i| !present[i]).collect();
        return Err(Error::op(
            op,
            format!(
                "saved state has no buffers for parameters {missing:?} and does not list which parameters had them"
            ),
        ));
    };
    let mut listed = vec![false; present.len()];
    for item in list.split(',').filter(|s| !s.is_empty()) {
        match item.trim().parse::<usize>() {
            Ok(i) if i < present.len() && !listed[i] => listed[i] = true,
            _ => {
                return Err(Error::op(
                    op,
                    format!("saved `{WITH_STATE}` is not a list of distinct parameter indices below {}: {list:?}", present.len()),
                ))
            }
        }
    }
    let wrong: Vec<String> = (0..present.len())
        .filter(|&i| listed[i] != present[i])
        .map(|i| {
            if listed[i] {
                format!("parameter {i} has none")
            } else {
                format!("parameter {i} has some but is not listed")
            }
        })
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(Error::op(
            op,
            format!(
                "saved buffers do not match the saved state: {}",
                wrong.join(", ")
            ),
        ))
    }
}

/// Checks that saved state is `op`'s and for `n` parameters, and returns its lr (finite
/// and not negative; zero is a schedule's warm-up start or end, not damage).
pub(crate) fn saved_header(
    values: &HashMap<String, String>,
    op: &'static str,
    n: usize,
) -> Result<f32> {
    let kind: String = value(values, op, "optimizer")?;
    if kind != op {
        return Err(Error::op(
            op,
            format!("saved state is {kind}'s, not {op}'s"),
        ));
    }
    let saved: usize = value(values, op, "params")?;
    if saved != n {
        return Err(Error::op(
            op,
            format!("saved state is for {saved} parameters, this optimizer has {n}"),
        ));
    }
    let lr: f32 = value(values, op, "lr")?;
    if !lr.is_finite() || lr < 0.0 {
        return Err(Error::op(
            op,
            format!("saved learning rate {lr} is not a finite, non-negative number"),
        ));
    }
    Ok(lr)
}

/// The saved buffer `state.{i}.{name}` for parameter `i`, checked against its shape and
/// for finite values (and, with `non_negative`, no value below zero); `Ok(None)` when the
/// file has none (the parameter had no step yet).
pub(crate) fn saved_buffer(
    tensors: &NamedArrays,
    op: &'static str,
    i: usize,
    name: &str,
    param: &Tensor,
    non_negative: bool,
) -> Result<Option<Tensor>> {
    let key = format!("state.{i}.{name}");
    match tensors.get(&key) {
        None => Ok(None),
        Some((shape, _)) if shape.as_slice() != param.shape() => Err(Error::op(
            op,
            format!(
                "saved {key} has shape {shape:?}, parameter {i} has {:?}",
                param.shape()
            ),
        )),
        Some((shape, v)) => {
            if let Some((at, bad)) = v
                .iter()
                .enumerate()
                .find(|&(_, &x)| !x.is_finite() || (non_negative && x < 0.0))
            {
                let want = if non_negative {
                    "finite and not negative"
                } else {
                    "finite"
                };
                return Err(Error::op(
                    op,
                    format!("saved {key} holds {bad} at index {at}; its values must be {want}"),
                ));
            }
            Tensor::from_slice(v, shape, param.device()).map(Some)
        }
    }
}

/// The gradient to use for `p`, or `None` when the parameter is frozen or got none.
pub(crate) fn grad_of(p: &Tensor) -> Option<Tensor> {
    if p.is_requires_grad() {
        p.grad()
    } else {
        None
    }
}

/// [`check_settings`]' entry: name, rule, value, whether it holds.
pub(crate) type Setting = (&'static str, &'static str, f32, bool);

/// Refuses an optimizer's setting as PyTorch's constructors do (NaN fails every
/// comparison), and an infinite learning rate besides: checked at each step, before any
/// weight moves, so that a bad setting (or a schedule that made one) is an error rather
/// than weights turned to NaN; the first setting that breaks its rule is named.
pub(crate) fn check_settings(op: &'static str, checks: &[Setting]) -> Result<()> {
    match checks.iter().find(|(.., ok)| !ok) {
        Some((name, rule, value, _)) => Err(Error::op(
            op,
            format!("invalid {name} {value}: it must be {rule}"),
        )),
        None => Ok(()),
    }
}

/// [`check_settings`]' entry for a setting that must be 0 or more (eps, momentum, weight
/// decay).
pub(crate) fn at_least_zero(name: &'static str, v: f32) -> Setting {
    (name, "0 or more", v, v >= 0.0)
}

/// [`check_settings`]' entry for a learning rate: finite, 0 or more.
pub(crate) fn learning_rate(lr: f32) -> Setting {
    (
        "learning rate",
        "finite, 0 or more",
        lr,
        lr.is_finite() && lr >= 0.0,
    )
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
