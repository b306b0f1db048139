//! Learning-rate schedules, evaluated per epoch.

/// A learning rate as a function of the epoch.
pub trait LrSchedule {
    /// The learning rate for `epoch` (0-based).
    fn lr_at(&self, epoch: usize) -> f32;
}

/// `StepLR`: multiply by `gamma` every `step_size` epochs.
#[derive(Clone, Copy, Debug)]
pub struct StepLr {
    /// starting rate
    pub base: f32,
    /// epochs between decays
    pub step_size: usize,
    /// decay factor
    pub gamma: f32,
}

impl LrSchedule for StepLr {
    fn lr_at(&self, epoch: usize) -> f32 {
        self.base * self.gamma.powi((epoch / self.step_size.max(1)) as i32)
    }
}

/// `CosineAnnealingLR`: from `base` down to `min` over `t_max` epochs.
#[derive(Clone, Copy, Debug)]
pub struct CosineAnnealing {
    /// starting rate
    pub base: f32,
    /// final rate
    pub min: f32,
    /// epochs of the half cosine
    pub t_max: usize,
}

impl LrSchedule for CosineAnnealing {
    fn lr_at(&self, epoch: usize) -> f32 {
        let t = epoch.min(self.t_max) as f32 / self.t_max.max(1) as f32;
        self.min + 0.5 * (self.base - self.min) * (1.0 + (std::f32::consts::PI * t).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_pytorch() {
        let s = StepLr {
            base: 0.1,
            step_size: 3,
            gamma: 0.5,
        };
        assert_eq!(
            [s.lr_at(0), s.lr_at(2), s.lr_at(3), s.lr_at(7)],
            [0.1, 0.1, 0.05, 0.025]
        );
        let c = CosineAnnealing {
            base: 1.0,
            min: 0.0,
            t_max: 10,
        };
        assert!(
            (c.lr_at(0) - 1.0).abs() < 1e-6
                && (c.lr_at(5) - 0.5).abs() < 1e-6
                && c.lr_at(10).abs() < 1e-6
        );
    }
}
