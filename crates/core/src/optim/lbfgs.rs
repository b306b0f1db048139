//! L-BFGS (PyTorch's `torch.optim.LBFGS`): a quasi-Newton method that re-evaluates the
//! loss through a closure, up to `max_iter` times per `step`.
//!
//! The search direction is computed on the host in f64. Every iteration needs scalars (the
//! loss, dot products for the two-loop recursion, the convergence tests) before it can
//! choose the next point, so the loop synchronises with the device once per evaluation
//! anyway, as PyTorch's does; one flat copy of the gradient per evaluation costs little next
//! to the forward and backward passes that produce it.

use std::collections::VecDeque;

use crate::{no_grad, Error, Result, Tensor};

/// How a step length is chosen along each direction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LineSearch {
    /// Backtracking from `lr`: halve the step until the loss falls by at least
    /// `1e-4 · t · (g·d)` (Armijo's condition); after 30 halvings without one, the step
    /// ends where it began. PyTorch offers
    /// `strong_wolfe` instead; this is the simpler safeguard with the same purpose.
    Armijo,
}

/// L-BFGS settings; `Default` is PyTorch's.
#[derive(Clone, Copy, Debug)]
pub struct LbfgsOptions {
    /// step length (the first iteration scales it by `min(1, 1/‖g‖₁)`)
    pub lr: f32,
    /// iterations per `step`
    pub max_iter: usize,
    /// loss evaluations per `step` (`None`: `max_iter · 5/4`)
    pub max_eval: Option<usize>,
    /// stop when every gradient entry is at most this large
    pub tolerance_grad: f64,
    /// stop when the loss or the step changes by less than this
    pub tolerance_change: f64,
    /// number of past updates kept
    pub history_size: usize,
    /// `None`: fixed steps of `lr`, as PyTorch's default
    pub line_search: Option<LineSearch>,
}

impl Default for LbfgsOptions {
    fn default() -> Self {
        LbfgsOptions {
            lr: 1.0,
            max_iter: 20,
            max_eval: None,
            tolerance_grad: 1e-7,
            tolerance_change: 1e-9,
            history_size: 100,
            line_search: None,
        }
    }
}

/// L-BFGS over a set of parameters. Unlike the other optimizers it needs a closure that
/// zeroes the gradients, computes the loss, runs `backward` and returns the loss.
pub struct Lbfgs {
    params: Vec<Tensor>,
    opts: LbfgsOptions,
    history: VecDeque<(Vec<f64>, Vec<f64>, f64)>,
    direction: Vec<f64>,
    t: f64,
    prev_grad: Vec<f64>,
    h_diag: f64,
    n_iter: usize,
    func_evals: usize,
}

/// Armijo backtracking gives up after this many halvings.
const HALVINGS: usize = 30;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

impl Lbfgs {
    /// An optimizer for `params`.
    pub fn new(params: Vec<Tensor>, opts: LbfgsOptions) -> Result<Lbfgs> {
        // Written so that a NaN rate fails it too; an infinite one would only destroy.
        let lr_ok = opts.lr.is_finite() && opts.lr > 0.0;
        if params.is_empty() || opts.max_iter == 0 || opts.history_size == 0 || !lr_ok {
            return Err(Error::op(
                "LBFGS",
                format!(
                    "needs parameters ({} given), max_iter ≥ 1 ({}), history_size ≥ 1 ({}) \
                     and a finite lr > 0 ({})",
                    params.len(),
                    opts.max_iter,
                    opts.history_size,
                    opts.lr
                ),
            ));
        }
        Ok(Lbfgs {
            params,
            opts,
            history: VecDeque::new(),
            direction: Vec::new(),
            t: 0.0,
            prev_grad: Vec::new(),
            h_diag: 1.0,
            n_iter: 0,
            func_evals: 0,
        })
    }

    /// The learning rate.
    pub fn lr(&self) -> f32 {
        self.opts.lr
    }

    /// Loss evaluations so far, over all steps.
    pub fn func_evals(&self) -> usize {
        self.func_evals
    }

    fn flat_grad(&self) -> Result<Vec<f64>> {
        let mut out = Vec::new();
        for p in &self.params {
            match p.grad() {
                Some(g) => out.extend(g.to_vec()?.iter().map(|&v| v as f64)),
                None => out.extend(std::iter::repeat_n(0.0, p.numel())),
            }
        }
        Ok(out)
    }

    fn flat_params(&self) -> Result<Vec<f64>> {
        let mut out = Vec::new();
        for p in &self.params {
            out.extend(p.to_vec()?.iter().map(|&v| v as f64));
        }
        Ok(out)
    }

    /// Sets the parameters to `x + t·d`.
    fn set_params(&self, x: &[f64], t: f64, d: &[f64]) -> Result<()> {
        no_grad(|| {
            let mut at = 0;
            for p in &self.params {
                let n = p.numel();
                let values: Vec<f32> = (at..at + n).map(|i| (x[i] + t * d[i]) as f32).collect();
                p.assign(&Tensor::from_vec(values, p.shape(), p.device())?)?;
                at += n;
            }
            Ok(())
        })
    }

    fn evaluate(&mut self, closure: &mut dyn FnMut() -> Result<Tensor>) -> Result<f64> {
        self.func_evals += 1;
        let loss = closure()?;
        if loss.numel() != 1 {
            return Err(Error::op(
                "LBFGS",
                format!(
                    "the closure must return a scalar loss, got shape {:?}",
                    loss.shape()
                ),
            ));
        }
        Ok(loss.item()? as f64)
    }

    /// The two-loop recursion: `−H·g` from the stored updates.
    fn direction_from(&self, g: &[f64]) -> Vec<f64> {
        let mut q: Vec<f64> = g.iter().map(|v| -v).collect();
        let mut alphas = Vec::with_capacity(self.history.len());
        for (s, y, rho) in self.history.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(q, y)| *q -= a * y);
            alphas.push(a);
        }
        q.iter_mut().for_each(|v| *v *= self.h_diag);
        for ((s, y, rho), a) in self.history.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &q);
            q.iter_mut().zip(s).for_each(|(q, s)| *q += (a - b) * s);
        }
        q
    }

    /// Finds `t` along `d` from `x0` with Armijo's sufficient decrease, starting at
    /// `self.t`: halving while it fails; when it holds at once and `scaled` is false (no
    /// curvature pair has set the step's size yet), doubling while the loss keeps falling.
    /// Returns the loss, gradient and evaluations at the accepted point (the parameters are
    /// left there), or `None` when no step decreases the loss.
    fn armijo(
        &mut self,
        closure: &mut dyn FnMut() -> Result<Tensor>,
        x0: &[f64],
        d: &[f64],
        loss0: f64,
        gtd: f64,
        scaled: bool,
    ) -> Result<Option<(f64, Vec<f64>, usize)>> {
        let armijo = |loss: f64, t: f64| loss <= loss0 + 1e-4 * t * gtd;
        let mut evals = 0;
        let mut halvings = 0;
        let loss = loop {
            self.set_params(x0, self.t, d)?;
            let trial = self.evaluate(closure)?;
            evals += 1;
            if armijo(trial, self.t) {
                break trial;
            }
            if halvings == HALVINGS {
                return Ok(None);
            }
            self.t *= 0.5;
            halvings += 1;
        };
        let mut best = (self.t, loss, self.flat_grad()?);
        if !scaled && halvings == 0 {
            for _ in 0..HALVINGS {
                let t = best.0 * 2.0;
                self.set_params(x0, t, d)?;
                let trial = self.evaluate(closure)?;
                evals += 1;
                if !(armijo(trial, t) && trial < best.1) {
                    self.set_params(x0, best.0, d)?;
                    break;
                }
                best = (t, trial, self.flat_grad()?);
            }
        }
        self.t = best.0;
        Ok(Some((best.1, best.2, evals)))
    }

    /// Runs up to `max_iter` iterations and returns the loss at the starting point.
    pub fn step(&mut self, closure: &mut dyn FnMut() -> Result<Tensor>) -> Result<f32> {
        let o = self.opts;
        let max_eval = o.max_eval.unwrap_or(o.max_iter * 5 / 4).max(1);
        let orig_loss = self.evaluate(closure)?;
        let mut loss = orig_loss;
        let mut evals = 1;
        let mut g = self.flat_grad()?;
        // The parameters, read once per step and then tracked here (rounded as the f32
        // parameters are), instead of a download per iteration.
        let mut x = self.flat_params()?;
        if max_abs(&g) <= o.tolerance_grad {
            return Ok(orig_loss as f32);
        }
        for iter in 1..=o.max_iter {
            self.n_iter += 1;
            if self.n_iter == 1 {
                self.direction = g.iter().map(|v| -v).collect();
                self.history.clear();
                self.h_diag = 1.0;
            } else {
                let y: Vec<f64> = g.iter().zip(&self.prev_grad).map(|(a, b)| a - b).collect();
                let s: Vec<f64> = self.direction.iter().map(|d| d * self.t).collect();
                let (ys, yy) = (dot(&y, &s), dot(&y, &y));
                // Keep the pair when the curvature along s is positive relative to the
                // pair's own scale. (PyTorch compares ys with an absolute 1e-10, which
                // throws away every pair of a loss measured in large units, such as style
                // costs on 0..255 pixels, and leaves the method stuck at tiny steps.)
                if ys > 1e-10 * yy && ys > 0.0 {
                    if self.history.len() == o.history_size {
                        self.history.pop_front();
                    }
                    self.h_diag = ys / yy;
                    self.history.push_back((s, y, 1.0 / ys));
                }
                self.direction = self.direction_from(&g);
            }
            self.prev_grad.clone_from(&g);
            let prev_loss = loss;
            // Without curvature pairs the direction is the raw gradient, which can be
            // far from the right size: scale it as PyTorch scales its first step. (PyTorch
            // takes a full step here when the first pair was rejected, which can throw the
            // iterate arbitrarily far.)
            self.t = if self.history.is_empty() {
                (1.0f64).min(1.0 / g.iter().map(|v| v.abs()).sum::<f64>()) * o.lr as f64
            } else {
                o.lr as f64
            };
            let gtd = dot(&g, &self.direction);
            if gtd > -o.tolerance_change {
                break;
            }
            let x0 = std::mem::take(&mut x);
            let d = self.direction.clone();
            match o.line_search {
                Some(LineSearch::Armijo) => {
                    match self.armijo(closure, &x0, &d, loss, gtd, !self.history.is_empty())? {
                        Some((l, grad, n)) => {
                            (loss, g) = (l, grad);
                            evals += n;
                        }
                        None => {
                            // No step along d helps: stay where we were and stop.
                            self.set_params(&x0, 0.0, &d)?;
                            break;
                        }
                    }
                }
                None => {
                    self.set_params(&x0, self.t, &d)?;
                    if iter != o.max_iter {
                        loss = self.evaluate(closure)?;
                        evals += 1;
                        g = self.flat_grad()?;
                    }
                }
            }
            x = x0
                .iter()
                .zip(&d)
                .map(|(a, b)| (a + self.t * b) as f32 as f64)
                .collect();
            if iter == o.max_iter || evals >= max_eval {
                break;
            }
            if max_abs(&g) <= o.tolerance_grad
                || max_abs(&d) * self.t.abs() <= o.tolerance_change
                || (loss - prev_loss).abs() < o.tolerance_change
            {
                break;
            }
        }
        Ok(orig_loss as f32)
    }
}
