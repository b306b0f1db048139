//! Adam and AdamW (PyTorch's `torch.optim.Adam` / `AdamW` update rules).

use std::collections::HashMap;

use super::{
    at_least_zero, check_settings, check_with_state, flatten_groups, grad_of, learning_rate,
    saved_buffer, saved_header, value, write_with_state, Optimizer, OptimizerState, ParamGroup,
};
use crate::backend::AdamStep;
use crate::checkpoint::NamedArrays;
use crate::{Error, Result, Tensor};

/// Adam hyper-parameters; `Default` is PyTorch's (lr 1e-3, betas 0.9/0.999, eps 1e-8).
#[derive(Clone, Copy, Debug)]
pub struct AdamOptions {
    /// learning rate
    pub lr: f32,
    /// decay of the first moment
    pub beta1: f32,
    /// decay of the second moment
    pub beta2: f32,
    /// added to the denominator
    pub eps: f32,
    /// L2 penalty (Adam) or decoupled weight decay (AdamW)
    pub weight_decay: f32,
    /// decoupled weight decay (AdamW) instead of an L2 term in the gradient
    pub decoupled: bool,
}

impl Default for AdamOptions {
    fn default() -> Self {
        AdamOptions {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }
}

impl AdamOptions {
    /// AdamW's defaults (weight decay 0.01, decoupled).
    pub fn adamw() -> Self {
        AdamOptions {
            weight_decay: 0.01,
            decoupled: true,
            ..Default::default()
        }
    }
}

/// Adam over a set of parameters.
pub struct Adam {
    params: Vec<Tensor>,
    opts: AdamOptions,
    moments: Vec<Option<(Tensor, Tensor)>>,
    t: i32,
    /// each parameter's learning rate over `opts.lr` (its group's)
    factors: Vec<f32>,
}

impl Adam {
    /// An optimizer for `params`.
    pub fn new(params: Vec<Tensor>, opts: AdamOptions) -> Adam {
        let moments = vec![None; params.len()];
        let factors = vec![1.0; params.len()];
        Adam {
            params,
            opts,
            moments,
            t: 0,
            factors,
        }
    }

    /// An optimizer for parameter groups, each with its own learning rate or `opts.lr`.
    pub fn with_groups(groups: Vec<ParamGroup>, opts: AdamOptions) -> Result<Adam> {
        let (params, factors) = flatten_groups("Adam", groups, opts.lr)?;
        Ok(Adam {
            moments: vec![None; params.len()],
            params,
            opts,
            t: 0,
            factors,
        })
    }
}

impl Optimizer for Adam {
    /// One fused backend update per parameter (`Backend::adam_step`): a single dispatch on
    /// the GPU where the rule written as tensor ops took fifteen.
    fn step(&mut self) -> Result<()> {
        let o = self.opts;
        check_settings(
            "Adam",
            &[
                learning_rate(o.lr),
                (
                    "beta1",
                    "from 0 up to 1",
                    o.beta1,
                    (0.0..1.0).contains(&o.beta1),
                ),
                (
                    "beta2",
                    "from 0 up to 1",
                    o.beta2,
                    (0.0..1.0).contains(&o.beta2),
                ),
                at_least_zero("eps", o.eps),
                at_least_zero("weight decay", o.weight_decay),
            ],
        )?;
        self.t += 1;
        for ((p, state), &factor) in self
            .params
            .iter()
            .zip(self.moments.iter_mut())
            .zip(&self.factors)
        {
            let Some(g) = grad_of(p) else { continue };
            let s = AdamStep {
                opts: AdamOptions {
                    lr: o.lr * factor,
                    ..o
                },
                bias_correction1: 1.0 - o.beta1.powi(self.t),
                bias_correction2: 1.0 - o.beta2.powi(self.t),
            };
            // PyTorch starts both moments at zero.
            let (m, v) = state
                .take()
                .unwrap_or_else(|| (p.zeros_like(), p.zeros_like()));
            let [p1, m1, v1] = p
                .backend()
                .adam_step(
                    &p.f32_storage(),
                    &g.f32_storage(),
                    &m.f32_storage(),
                    &v.f32_storage(),
                    &s,
                )
                .map_err(|e| e.in_op("Adam", &[p.shape()]))?;
            let leaf = |s| Tensor::leaf(s, p.shape().to_vec(), p.device());
            p.assign(&leaf(p1))?;
            *state = Some((leaf(m1), leaf(v1)));
        }
        Ok(())
    }
    fn params(&self) -> &[Tensor] {
        &self.params
    }
    fn lr(&self) -> f32 {
        self.opts.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.opts.lr = lr;
    }
    fn param_lrs(&self) -> Vec<f32> {
        self.factors.iter().map(|f| self.opts.lr * f).collect()
    }
    fn state(&self) -> OptimizerState {
        let mut st = OptimizerState::new("Adam", self.params.len(), self.opts.lr);
        for (i, state) in self.moments.iter().enumerate() {
            if let Some((m, v)) = state {
                st.tensors.push((format!("state.{i}.exp_avg"), m.clone()));
                st.tensors
                    .push((format!("state.{i}.exp_avg_sq"), v.clone()));
            }
        }
        st.values.insert("step".into(), self.t.to_string());
        write_with_state(&mut st, self.moments.iter().map(Option::is_some));
        st
    }
    fn load_state(
        &mut self,
        tensors: &NamedArrays,
        values: &HashMap<String, String>,
    ) -> Result<()> {
        let n = self.params.len();
        let lr = saved_header(values, "Adam", n)?;
        let t: i32 = value(values, "Adam", "step")?;
        // The next step is t + 1: its bias corrections need t + 1 ≥ 1 (at 0 they divide
        // by zero), and must not overflow.
        if !(0..i32::MAX).contains(&t) {
            return Err(Error::op(
                "Adam",
                format!("saved step {t} is out of range (0 to {})", i32::MAX - 1),
            ));
        }
        let mut moments = Vec::with_capacity(n);
        for (i, p) in self.params.iter().enumerate() {
            let m = saved_buffer(tensors, "Adam", i, "exp_avg", p, false)?;
            let v = saved_buffer(tensors, "Adam", i, "exp_avg_sq", p, true)?;
            moments.push(match (m, v) {
                (Some(m), Some(v)) => Some((m, v)),
                (None, None) => None,
                _ => {
                    return Err(Error::op(
                        "Adam",
                        format!("saved state has only one of parameter {i}'s two moments"),
                    ))
                }
            });
        }
        let present: Vec<bool> = moments.iter().map(Option::is_some).collect();
        if t == 0 && present.contains(&true) {
            return Err(Error::op(
                "Adam",
                "saved state has moments at step 0, before any step made them",
            ));
        }
        check_with_state(values, "Adam", &present, false)?;
        self.moments = moments;
        self.t = t;
        self.opts.lr = lr;
        Ok(())
    }
}
