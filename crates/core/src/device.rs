//! `Device`: where tensors live and which backend runs their ops.

use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::backend::Backend;
use crate::cpu::CpuBackend;
use crate::Result;

/// A handle on a backend. Cheap to clone; two handles are the same device when they share
/// the backend instance. Dynamic dispatch keeps user code and models free of generics.
#[derive(Clone)]
pub struct Device {
    backend: Arc<dyn Backend>,
}

impl Device {
    /// The CPU reference backend (one shared instance per process).
    pub fn cpu() -> Device {
        static CPU: OnceLock<Device> = OnceLock::new();
        // Made first on another thread, the device is still the main thread's to join.
        crate::cpu::join_pool();
        CPU.get_or_init(|| Device::from_backend(Arc::new(CpuBackend::new())))
            .clone()
    }

    /// A CPU device of its own whose tensors may each hold at most `bytes` (and no more
    /// than the machine's memory, or `FOVEA_CPU_MEMORY_LIMIT`): a larger result is an
    /// error naming the op and its shapes, raised before anything is allocated. Its
    /// tensors do not mix with [`Device::cpu`]'s (move them with `to_device`).
    pub fn cpu_with_memory_limit(bytes: usize) -> Device {
        Device::from_backend(Arc::new(CpuBackend::with_memory_limit(bytes)))
    }

    /// Wraps any backend (the wgpu backend constructs its devices this way).
    pub fn from_backend(backend: Arc<dyn Backend>) -> Device {
        Device { backend }
    }

    /// The backend that runs this device's ops.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// The backend's human-readable name.
    pub fn name(&self) -> String {
        self.backend.name()
    }

    /// True when the device is a GPU.
    pub fn is_gpu(&self) -> bool {
        self.backend.is_gpu()
    }

    /// True when the device is a GPU API running on the CPU (lavapipe, WARP).
    pub fn is_software(&self) -> bool {
        self.backend.is_software()
    }

    /// The most values one tensor may hold here: larger results are an error naming the op,
    /// raised before anything is allocated. On a GPU, what it binds to a shader; on the
    /// CPU, its memory limit (the machine's memory or `FOVEA_CPU_MEMORY_LIMIT`) over 4.
    pub fn max_len(&self) -> usize {
        self.backend.max_len()
    }

    /// Waits until all work recorded on this device has finished.
    pub fn sync(&self) -> Result<()> {
        self.backend.sync()
    }

    /// The backend's memory and submission counters.
    pub fn stats(&self) -> crate::backend::BackendStats {
        self.backend.stats()
    }

    /// Hands the memory of buffers kept for reuse back to the system (PyTorch's
    /// `torch.cuda.empty_cache`): the GPU's idle pooled buffers, or the CPU's kept host
    /// buffers (shared by every CPU device of the process). Live tensors are untouched;
    /// the next step allocates afresh.
    pub fn release_cached(&self) {
        self.backend.release_cached()
    }

    /// Per-kernel GPU times since the last call (slowest first), when the backend times
    /// its kernels: on the wgpu backend, set `FOVEA_PROFILE=1` before the device opens.
    pub fn take_kernel_times(&self) -> Option<Vec<crate::backend::KernelTime>> {
        self.backend.take_kernel_times()
    }

    /// True when both handles refer to the same backend instance.
    pub fn same(&self, other: &Device) -> bool {
        Arc::ptr_eq(&self.backend, &other.backend)
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        self.same(other)
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({})", self.name())
    }
}
