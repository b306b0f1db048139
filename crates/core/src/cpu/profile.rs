//! Optional per-op timing on the CPU (`FOVEA_PROFILE=1`, as on the GPU): every backend
//! call that computes or copies (all but handing a vector over) runs to completion before
//! it returns, so its wall time is the op's time. Names
//! carry what tells calls of one op apart where it matters (the binary op, the
//! convolution's kernel, stride and groups), so a profile of a whole network says which
//! layer shapes take the time. `FOVEA_PROFILE=shapes` also names each convolution's
//! batch, channels and input size, which tells a network's layers apart.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::backend::KernelTime;

#[derive(Debug, Default)]
pub(super) struct OpTimes {
    on: bool,
    /// Calls and milliseconds per name since the last `take`.
    tally: Mutex<HashMap<String, (usize, f64)>>,
}

/// Whether profiles name convolutions by their full shape (`FOVEA_PROFILE=shapes`).
pub(super) fn by_shape() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("FOVEA_PROFILE").is_ok_and(|v| v == "shapes"))
}

impl OpTimes {
    pub(super) fn new(on: bool) -> OpTimes {
        OpTimes {
            on,
            tally: Mutex::default(),
        }
    }

    /// On when `FOVEA_PROFILE` is set to anything but `0`.
    pub(super) fn from_env() -> OpTimes {
        OpTimes::new(std::env::var("FOVEA_PROFILE").is_ok_and(|v| v != "0"))
    }

    /// Runs `f`, adding its time under `name()` when timing is on. The name is built only
    /// then, so an unprofiled call allocates nothing.
    pub(super) fn time<T>(&self, name: impl FnOnce() -> String, f: impl FnOnce() -> T) -> T {
        if !self.on {
            return f();
        }
        let start = Instant::now();
        let out = f();
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        let entry = tally.entry(name()).or_default();
        entry.0 += 1;
        entry.1 += ms;
        out
    }

    /// The times since the last call, slowest first; `None` when timing is off.
    pub(super) fn take(&self) -> Option<Vec<KernelTime>> {
        if !self.on {
            return None;
        }
        let tally = std::mem::take(&mut *self.tally.lock().unwrap_or_else(|e| e.into_inner()));
        let mut times: Vec<KernelTime> = tally
            .into_iter()
            .map(|(name, (dispatches, ms))| KernelTime {
                name,
                dispatches,
                ms,
            })
            .collect();
        times.sort_by(|a, b| b.ms.total_cmp(&a.ms).then_with(|| a.name.cmp(&b.name)));
        Some(times)
    }
}
