//! Stochastic gradient descent with momentum, Nesterov and L2 weight decay (PyTorch's
//! `torch.optim.SGD` update rule).

use std::collections::HashMap;

use super::{
    at_least_zero, check_settings, check_with_state, flatten_groups, grad_of, learning_rate,
    saved_buffer, saved_header, write_with_state, Optimizer, OptimizerState, ParamGroup,
};
use crate::backend::SgdStep;
use crate::checkpoint::NamedArrays;
use crate::{Result, Tensor};

/// SGD hyper-parameters; `Default` is plain SGD at lr 0.01.
#[derive(Clone, Copy, Debug)]
pub struct SgdOptions {
    /// learning rate
    pub lr: f32,
    /// momentum factor (0 disables)
    pub momentum: f32,
    /// Nesterov momentum
    pub nesterov: bool,
    /// L2 penalty added to the gradient
    pub weight_decay: f32,
}

impl Default for SgdOptions {
    fn default() -> Self {
        SgdOptions {
            lr: 0.01,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

/// SGD over a set of parameters.
pub struct Sgd {
    params: Vec<Tensor>,
    opts: SgdOptions,
    velocity: Vec<Option<Tensor>>,
    /// each parameter's learning rate over `opts.lr` (its group's)
    factors: Vec<f32>,
}

impl Sgd {
    /// An optimizer for `params`.
    pub fn new(params: Vec<Tensor>, opts: SgdOptions) -> Sgd {
        let velocity = vec![None; params.len()];
        let factors = vec![1.0; params.len()];
        Sgd {
            params,
            opts,
            velocity,
            factors,
        }
    }

    /// An optimizer for parameter groups, each with its own learning rate or `opts.lr`.
    pub fn with_groups(groups: Vec<ParamGroup>, opts: SgdOptions) -> Result<Sgd> {
        let (params, factors) = flatten_groups("SGD", groups, opts.lr)?;
        Ok(Sgd {
            velocity: vec![None; params.len()],
            params,
            opts,
            factors,
        })
    }
}

impl Optimizer for Sgd {
    /// One fused backend update per parameter (`Backend::sgd_step`).
    fn step(&mut self) -> Result<()> {
        let o = self.opts;
        check_settings(
            "SGD",
            &[
                learning_rate(o.lr),
                at_least_zero("momentum", o.momentum),
                at_least_zero("weight decay", o.weight_decay),
                (
                    "momentum",
                    "more than 0 with Nesterov",
                    o.momentum,
                    !o.nesterov || o.momentum > 0.0,
                ),
            ],
        )?;
        for ((p, v), &factor) in self
            .params
            .iter()
            .zip(self.velocity.iter_mut())
            .zip(&self.factors)
        {
            let Some(g) = grad_of(p) else { continue };
            let s = SgdStep {
                opts: SgdOptions {
                    lr: self.opts.lr * factor,
                    ..self.opts
                },
            };
            let prev = v.take().filter(|_| self.opts.momentum != 0.0);
            let (p1, buf) = p
                .backend()
                .sgd_step(
                    &p.f32_storage(),
                    &g.f32_storage(),
                    prev.map(|b| b.f32_storage()).as_ref(),
                    &s,
                )
                .map_err(|e| e.in_op("SGD", &[p.shape()]))?;
            let leaf = |s| Tensor::leaf(s, p.shape().to_vec(), p.device());
            p.assign(&leaf(p1))?;
            *v = buf.map(leaf);
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
        let mut st = OptimizerState::new("SGD", self.params.len(), self.opts.lr);
        for (i, v) in self.velocity.iter().enumerate() {
            if let Some(v) = v {
                st.tensors
                    .push((format!("state.{i}.momentum_buffer"), v.clone()));
            }
        }
        write_with_state(&mut st, self.velocity.iter().map(Option::is_some));
        st
    }
    fn load_state(
        &mut self,
        tensors: &NamedArrays,
        values: &HashMap<String, String>,
    ) -> Result<()> {
        let lr = saved_header(values, "SGD", self.params.len())?;
        let velocity = self
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| saved_buffer(tensors, "SGD", i, "momentum_buffer", p, false))
            .collect::<Result<Vec<_>>>()?;
        let present: Vec<bool> = velocity.iter().map(Option::is_some).collect();
        check_with_state(values, "SGD", &present, true)?;
        self.velocity = velocity;
        self.opts.lr = lr;
        Ok(())
    }
}
