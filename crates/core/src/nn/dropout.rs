//! Dropout layer.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::Module;
use crate::{Result, Tensor};

/// `nn.Dropout(p)`: a fresh mask on every training call (seeded: seed, seed + 1, …), the
/// identity in eval mode.
pub struct Dropout {
    /// drop probability
    pub p: f32,
    calls: AtomicU64,
    seed: AtomicU64,
    training: AtomicBool,
}

impl Dropout {
    /// A dropout layer in training mode.
    pub fn new(p: f32, seed: u64) -> Dropout {
        Dropout {
            p,
            calls: AtomicU64::new(0),
            seed: AtomicU64::new(seed),
            training: AtomicBool::new(true),
        }
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let training = self.training.load(Ordering::Relaxed);
        let call = if training {
            self.calls.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        x.dropout(
            self.p,
            training,
            self.seed.load(Ordering::Relaxed).wrapping_add(call),
        )
    }
    fn visit_counters(&self, prefix: &str, f: &mut dyn FnMut(&str, &AtomicU64)) {
        // The mask stream is (seed, calls): a resumed run restores both.
        f(&super::join(prefix, "seed"), &self.seed);
        f(&super::join(prefix, "calls"), &self.calls);
    }
    fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }
}

/// torchvision's `StochasticDepth(p, "row")`: drops a residual branch for a random subset of
/// the batch in training (see [`Tensor::drop_path`]), seeded like [`Dropout`].
pub struct StochasticDepth {
    /// drop probability
    pub p: f32,
    calls: AtomicU64,
    seed: AtomicU64,
    training: AtomicBool,
}

impl StochasticDepth {
    /// A stochastic-depth layer in training mode.
    pub fn new(p: f32, seed: u64) -> StochasticDepth {
        StochasticDepth {
            p,
            calls: AtomicU64::new(0),
            seed: AtomicU64::new(seed),
            training: AtomicBool::new(true),
        }
    }
}

impl Module for StochasticDepth {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let training = self.training.load(Ordering::Relaxed);
        let call = if training {
            self.calls.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        x.drop_path(
            self.p,
            training,
            self.seed.load(Ordering::Relaxed).wrapping_add(call),
        )
    }
    fn visit_counters(&self, prefix: &str, f: &mut dyn FnMut(&str, &AtomicU64)) {
        f(&super::join(prefix, "seed"), &self.seed);
        f(&super::join(prefix, "calls"), &self.calls);
    }
    fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }
}
