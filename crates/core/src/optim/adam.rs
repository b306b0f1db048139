//! Adam and AdamW (PyTorch's `torch.optim.Adam` / `AdamW` update rules).

use std::collections::HashMap;

use super::{grad_of, saved_buffer, saved_header, value, Optimizer, OptimizerState};
use crate::checkpoint::NamedArrays;
use crate::{no_grad, Error, Result, Tensor};

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
}

impl Adam {
    /// An optimizer for `params`.
    pub fn new(params: Vec<Tensor>, opts: AdamOptions) -> Adam {
        let moments = vec![None; params.len()];
        Adam {
            params,
            opts,
            moments,
            t: 0,
        }
    }
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        self.t += 1;
        let o = self.opts;
        let (bc1, bc2) = (1.0 - o.beta1.powi(self.t), 1.0 - o.beta2.powi(self.t));
        no_grad(|| {
            for (p, state) in self.params.iter().zip(self.moments.iter_mut()) {
                let Some(mut g) = grad_of(p) else { continue };
                let mut param = p.clone();
                if o.weight_decay != 0.0 {
                    if o.decoupled {
                        param = param.mul_scalar(1.0 - o.lr * o.weight_decay);
                    } else {
                        g = g.add(&p.mul_scalar(o.weight_decay))?;
                    }
                }
                let (m, v) = match state.take() {
                    Some((m, v)) => (
                        m.mul_scalar(o.beta1).add(&g.mul_scalar(1.0 - o.beta1))?,
                        v.mul_scalar(o.beta2)
                            .add(&g.square().mul_scalar(1.0 - o.beta2))?,
                    ),
                    None => (
                        g.mul_scalar(1.0 - o.beta1),
                        g.square().mul_scalar(1.0 - o.beta2),
                    ),
                };
                let denom = v.div_scalar(bc2).sqrt().add_scalar(o.eps);
                let update = m.div_scalar(bc1).div(&denom)?.mul_scalar(o.lr);
                p.assign(&param.sub(&update)?)?;
                *state = Some((m, v));
            }
            Ok(())
        })
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
        let mut moments = Vec::with_capacity(n);
        for (i, p) in self.params.iter().enumerate() {
            let m = saved_buffer(tensors, "Adam", i, "exp_avg", p)?;
            let v = saved_buffer(tensors, "Adam", i, "exp_avg_sq", p)?;
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
        self.moments = moments;
        self.t = t;
        self.opts.lr = lr;
        Ok(())
    }
}
