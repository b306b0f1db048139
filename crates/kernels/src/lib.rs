//! fovea-kernels: the wgpu backend. It implements `fovea_core::backend::Backend` with the
//! WGSL compute shaders of the repository's `shaders/` folder (one host file here per
//! shader, same name), records work into one pending command encoder, caches pipelines
//! and pools buffers.
//!
//! ```no_run
//! use fovea_core::{Device, Tensor};
//! use fovea_kernels::DeviceExt;
//! let dev = Device::best(); // the GPU if there is one, else the CPU
//! let x = Tensor::randn(&[2, 3], 0, &dev);
//! ```

#![warn(missing_docs)]

#[macro_use]
mod params;

mod adaptive_pool2d;
mod batch_norm;
mod binary;
mod cast;
mod context;
mod conv2d;
mod conv2d_depthwise;
mod elementwise;
mod gemm_coop;
mod gemm_gen;
mod geometry;
mod gram;
mod layout;
mod matmul;
mod optim;
mod pool;
mod pool2d;
mod profile;
mod reduce;
pub mod source;
mod upsample2d;
mod upsample_bilinear2d;

use std::sync::{Arc, OnceLock};

use fovea_core::backend::*;
use fovea_core::{DType, Device, Error, Result};

pub use context::Ctx;
pub use pool::PoolStats;

/// How [`WgpuBackend::open_with_options`] opens an adapter.
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    /// Time every dispatch on the GPU (see [`WgpuBackend::open_with`]).
    pub profile: bool,
    /// Pass each dispatch's parameters as immediates (push constants) where the adapter
    /// has them, which shortens every submission; off, they go through a uniform buffer,
    /// as on adapters without immediates. On by default.
    pub immediates: bool,
    /// Open the device with cooperative matrices (tensor cores) where the adapter offers
    /// what autocast's GEMM needs (see `Ctx::cooperative_matrix`), and run autocast's
    /// 64×64 GEMM tiles on them. Off by default: wgpu marks the feature experimental, and
    /// this path has not yet been checked against the CPU on such a GPU. `FOVEA_COOP=1`
    /// turns it on for [`WgpuBackend::open`].
    pub cooperative_matrix: bool,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions {
            profile: false,
            immediates: true,
            cooperative_matrix: false,
        }
    }
}

/// wgpu enables the Vulkan surface extensions even for compute, and with them Mesa's
/// drivers (lavapipe, or its device-select layer) probe for a Wayland display; libwayland
/// then prints "error: XDG_RUNTIME_DIR is invalid or not set in the environment." on every
/// headless run (containers, CI, ssh), which reads like a failure. wgpu offers no way to
/// leave those extensions out, so where the variable is unset or names no directory it is
/// pointed at a private one (`<temp>/fovea-runtime-<uid>`, mode 0700): the probe then
/// finds no display socket and stays silent. A usable value is left alone.
///
/// Changing the environment is not thread-safe against C code reading it at the same
/// moment, so it happens once per process, behind a `Once`, before the first instance is
/// created (the only code of ours that leads to Mesa reading it); later opens wait for it.
fn quiet_window_system_probe() {
    #[cfg(all(unix, not(target_os = "macos"), not(target_os = "android")))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let usable = std::env::var_os("XDG_RUNTIME_DIR")
                .map(std::path::PathBuf::from)
                .is_some_and(|p| p.is_absolute() && p.is_dir());
            if usable {
                return;
            }
            if let Some(dir) = private_runtime_dir() {
                std::env::set_var("XDG_RUNTIME_DIR", dir);
            }
        });
    }
}

/// `<temp>/fovea-runtime-<uid>`, created with mode 0700 if missing; `None` if it cannot be
/// made or is not a directory owned by this user with no access for others (someone else
/// could have planted it), in which case the probe's message is the lesser evil.
#[cfg(all(unix, not(target_os = "macos"), not(target_os = "android")))]
fn private_runtime_dir() -> Option<std::path::PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    // SAFETY: getuid has no preconditions, cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("fovea-runtime-{uid}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(_) => return None,
    }
    // symlink_metadata: a link planted under that name is refused, not followed.
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    (meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0).then_some(dir)
}

/// The wgpu backend on one adapter.
pub struct WgpuBackend {
    ctx: Ctx,
    name: String,
}

impl WgpuBackend {
    /// Opens the adapter whose name or backend contains `filter` (case-insensitive), or the
    /// highest-performance adapter when `filter` is `None`. The device is created with the
    /// adapter's real limits, not wgpu's conservative defaults. `FOVEA_PROFILE=1` turns on
    /// per-kernel timing (see [`WgpuBackend::open_with`]); `FOVEA_IMMEDIATES=0` passes
    /// parameters through a uniform buffer instead of immediates (see [`OpenOptions`]), for
    /// a driver that mishandles them; `FOVEA_COOP=1` runs autocast on cooperative matrices
    /// where the adapter has them.
    pub fn open(filter: Option<&str>) -> Result<WgpuBackend> {
        let set = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let options = OpenOptions {
            profile: set("FOVEA_PROFILE").is_some_and(|v| v != "0"),
            immediates: set("FOVEA_IMMEDIATES").is_none_or(|v| v != "0"),
            cooperative_matrix: set("FOVEA_COOP").is_some_and(|v| v == "1"),
        };
        WgpuBackend::open_with_options(filter, options)
    }

    /// Like [`WgpuBackend::open`]; with `profile`, every dispatch is timed on the GPU and
    /// `take_kernel_times` reports the sums per kernel (each submission then waits for the
    /// GPU). `Err` when the adapter cannot write timestamps.
    pub fn open_with(filter: Option<&str>, profile: bool) -> Result<WgpuBackend> {
        WgpuBackend::open_with_options(
            filter,
            OpenOptions {
                profile,
                ..Default::default()
            },
        )
    }

    /// Like [`WgpuBackend::open`], with every choice spelled out.
    pub fn open_with_options(filter: Option<&str>, options: OpenOptions) -> Result<WgpuBackend> {
        let profile = options.profile;
        // Vulkan/Metal/DX12 first; GL only where none of those exists (even creating a GL
        // instance probes EGL and prints warnings on headless machines).
        quiet_window_system_probe();
        let enumerate = |backends: wgpu::Backends| {
            let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
            desc.backends = backends;
            pollster::block_on(wgpu::Instance::new(desc).enumerate_adapters(backends))
        };
        let mut adapters = enumerate(wgpu::Backends::PRIMARY);
        if adapters.is_empty() {
            adapters = enumerate(wgpu::Backends::SECONDARY);
        }
        let describe = |a: &wgpu::Adapter| {
            let i = a.get_info();
            format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
        };
        let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Cpu => 3,
            wgpu::DeviceType::Other => 4,
        };
        let mut candidates: Vec<wgpu::Adapter> = adapters
            .into_iter()
            .filter(|a| {
                a.get_downlevel_capabilities()
                    .flags
                    .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
            })
            .filter(|a| {
                filter.is_none_or(|f| describe(a).to_lowercase().contains(&f.to_lowercase()))
            })
            .collect();
        candidates.sort_by_key(rank);
        let adapter = candidates.into_iter().next().ok_or_else(|| {
            Error::Backend(match filter {
                Some(f) => format!("no GPU adapter with compute shaders matches {f:?}"),
                None => "no GPU adapter with compute shaders was found (on Linux without a GPU, install Mesa's software driver: apt-get install mesa-vulkan-drivers)".into(),
            })
        })?;
        let name = describe(&adapter);
        check_compute_limits(&name, &adapter.limits())?;
        let timestamps = wgpu::Features::TIMESTAMP_QUERY;
        if profile && !adapter.features().contains(timestamps) {
            return Err(Error::Backend(format!(
                "kernel timing needs timestamp queries, which {name} does not offer; unset FOVEA_PROFILE"
            )));
        }
        let mut features = wgpu::Features::empty();
        let coop =
            options.cooperative_matrix && adapter.features().contains(context::COOP_FEATURES);
        if coop {
            features |= context::COOP_FEATURES;
        }
        if profile {
            features |= timestamps;
        }
        if options.immediates
            && adapter.features().contains(wgpu::Features::IMMEDIATES)
            && adapter.limits().max_immediate_size >= context::IMMEDIATE_BYTES
        {
            features |= wgpu::Features::IMMEDIATES;
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("fovea"),
            required_limits: adapter.limits(),
            required_features: features,
            // SAFETY: wgpu's experimental features may misbehave when used incorrectly;
            // only cooperative matrices are requested, only when the caller opted in, and
            // only the shaders of `gemm_coop` use them.
            experimental_features: if coop {
                unsafe { wgpu::ExperimentalFeatures::enabled() }
            } else {
                wgpu::ExperimentalFeatures::disabled()
            },
            ..Default::default()
        }))
        .map_err(|e| Error::Backend(format!("cannot open {name}: {e}")))?;
        Ok(WgpuBackend {
            ctx: Ctx::new(&adapter, device, queue, profile),
            name,
        })
    }

    /// The execution context (pool and submission counters).
    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }
}

impl Backend for WgpuBackend {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn is_gpu(&self) -> bool {
        true
    }
    fn is_software(&self) -> bool {
        self.ctx.software()
    }
    fn max_len(&self) -> usize {
        self.ctx.max_len()
    }
    fn upload(&self, data: &[f32]) -> Result<Storage> {
        self.ctx.upload(data)
    }
    fn download(&self, x: &Storage) -> Result<Vec<f32>> {
        match x.dtype() {
            DType::F32 => self.ctx.download(x),
            _ => self.ctx.download(&cast::cast(&self.ctx, x, DType::F32)?),
        }
    }
    fn cast(&self, x: &Storage, to: DType) -> Result<Storage> {
        cast::cast(&self.ctx, x, to)
    }
    fn sync(&self) -> Result<()> {
        self.ctx.sync()
    }
    fn take_kernel_times(&self) -> Option<Vec<KernelTime>> {
        self.ctx.take_kernel_times()
    }
    fn release_cached(&self) {
        self.ctx.release_cached();
    }
    fn stats(&self) -> BackendStats {
        let p = self.ctx.pool_stats();
        BackendStats {
            buffers_allocated: p.allocated,
            bytes_allocated: p.allocated_bytes,
            peak_bytes: p.peak_bytes,
            buffers_cached: p.cached,
            submissions: self.ctx.submissions(),
        }
    }
    fn fill(&self, len: usize, value: f32) -> Result<Storage> {
        elementwise::fill(&self.ctx, len, value)
    }
    fn unary(&self, x: &Storage, op: UnaryOp) -> Result<Storage> {
        elementwise::unary(&self.ctx, x, op)
    }
    fn binary(&self, a: &Storage, b: &Storage, p: &BinaryParams, op: BinaryOp) -> Result<Storage> {
        binary::binary(&self.ctx, a, b, p, op)
    }
    fn reduce(&self, x: &Storage, p: &ReduceParams, op: ReduceOp) -> Result<Storage> {
        reduce::reduce(&self.ctx, x, p, op)
    }
    fn strided_copy(&self, x: &Storage, view: &StridedView) -> Result<Storage> {
        layout::strided_copy(&self.ctx, x, view)
    }
    fn pad(&self, x: &Storage, p: &PadParams) -> Result<Storage> {
        layout::pad(&self.ctx, x, p)
    }
    fn cat(&self, parts: &[&Storage], p: &CatParams) -> Result<Storage> {
        layout::cat(&self.ctx, parts, p)
    }
    fn matmul(&self, a: &Storage, b: &Storage, p: &MatmulParams) -> Result<Storage> {
        matmul::matmul(&self.ctx, a, b, p)
    }
    fn gram(&self, f: &Storage, n: usize, c: usize, hw: usize) -> Result<Storage> {
        gram::gram(&self.ctx, f, n, c, hw)
    }
    fn conv2d(
        &self,
        x: &Storage,
        w: &Storage,
        bias: Option<&Storage>,
        p: &Conv2dParams,
    ) -> Result<Storage> {
        geometry::conv(&self.ctx, p, false)?;
        if conv2d_depthwise::applies(p) {
            return conv2d_depthwise::forward(&self.ctx, x, w, bias, p);
        }
        conv2d::forward(&self.ctx, x, w, bias, p)
    }
    fn adam_step(
        &self,
        param: &Storage,
        grad: &Storage,
        m: &Storage,
        v: &Storage,
        s: &AdamStep,
    ) -> Result<[Storage; 3]> {
        optim::adam_step(&self.ctx, param, grad, m, v, s)
    }
    fn sgd_step(
        &self,
        param: &Storage,
        grad: &Storage,
        buf: Option<&Storage>,
        s: &SgdStep,
    ) -> Result<(Storage, Option<Storage>)> {
        optim::sgd_step(&self.ctx, param, grad, buf, s)
    }
    fn conv2d_grad_input(&self, gy: &Storage, w: &Storage, p: &Conv2dParams) -> Result<Storage> {
        geometry::conv(&self.ctx, p, !conv2d_depthwise::applies(p))?;
        if conv2d_depthwise::applies(p) {
            return conv2d_depthwise::grad_input(&self.ctx, gy, w, p);
        }
        conv2d::grad_input(&self.ctx, gy, w, p)
    }
    fn conv2d_grad_weight(&self, x: &Storage, gy: &Storage, p: &Conv2dParams) -> Result<Storage> {
        geometry::conv(&self.ctx, p, false)?;
        if conv2d_depthwise::applies(p) {
            return conv2d_depthwise::grad_weight(&self.ctx, x, gy, p);
        }
        conv2d::grad_weight(&self.ctx, x, gy, p)
    }
    fn max_pool2d(&self, x: &Storage, p: &Pool2dParams) -> Result<Storage> {
        pool2d::max_forward(&self.ctx, x, p)
    }
    fn max_pool2d_backward(&self, x: &Storage, gy: &Storage, p: &Pool2dParams) -> Result<Storage> {
        pool2d::max_backward(&self.ctx, x, gy, p)
    }
    fn max_pool2d_with_indices(&self, x: &Storage, p: &Pool2dParams) -> Result<(Storage, Storage)> {
        pool2d::max_with_indices(&self.ctx, x, p)
    }
    fn max_unpool2d(&self, x: &Storage, idx: &Storage, p: &Resize2dParams) -> Result<Storage> {
        pool2d::unpool(&self.ctx, x, idx, p)
    }
    fn max_unpool2d_backward(
        &self,
        gy: &Storage,
        idx: &Storage,
        p: &Resize2dParams,
    ) -> Result<Storage> {
        pool2d::unpool_backward(&self.ctx, gy, idx, p)
    }
    fn avg_pool2d(&self, x: &Storage, p: &Pool2dParams) -> Result<Storage> {
        pool2d::avg_forward(&self.ctx, x, p)
    }
    fn avg_pool2d_backward(&self, gy: &Storage, p: &Pool2dParams) -> Result<Storage> {
        pool2d::avg_backward(&self.ctx, gy, p)
    }
    fn adaptive_avg_pool2d(&self, x: &Storage, p: &Resize2dParams) -> Result<Storage> {
        adaptive_pool2d::forward(&self.ctx, x, p)
    }
    fn adaptive_avg_pool2d_backward(&self, gy: &Storage, p: &Resize2dParams) -> Result<Storage> {
        adaptive_pool2d::backward(&self.ctx, gy, p)
    }
    fn upsample_nearest2d(&self, x: &Storage, p: &Resize2dParams) -> Result<Storage> {
        upsample2d::forward(&self.ctx, x, p)
    }
    fn upsample_nearest2d_backward(&self, gy: &Storage, p: &Resize2dParams) -> Result<Storage> {
        upsample2d::backward(&self.ctx, gy, p)
    }
    fn upsample_bilinear2d(&self, x: &Storage, p: &Bilinear2dParams) -> Result<Storage> {
        upsample_bilinear2d::forward(&self.ctx, x, p)
    }
    fn upsample_bilinear2d_backward(&self, gy: &Storage, p: &Bilinear2dParams) -> Result<Storage> {
        upsample_bilinear2d::backward(&self.ctx, gy, p)
    }
    fn channel_sums(
        &self,
        a: &Storage,
        b: Option<(&Storage, &Storage)>,
        p: &ChannelParams,
    ) -> Result<Storage> {
        batch_norm::channel_sums(&self.ctx, a, b, p)
    }
    fn channel_affine(
        &self,
        a: &Storage,
        b: Option<&Storage>,
        coef: &Storage,
        p: &ChannelParams,
    ) -> Result<Storage> {
        batch_norm::channel_affine(&self.ctx, a, b, coef, p)
    }
}

/// Fails unless the adapter runs fovea's kernels: 256 threads a workgroup, and the
/// workgroup memory of the tiles that are always used (64×64 GEMM tiles, both Gram tiles).
/// Larger tiles are chosen only where they fit (see [`gemm_gen::tile_for`]).
fn check_compute_limits(name: &str, l: &wgpu::Limits) -> Result<()> {
    let needed = source::GRAM_ENTRIES
        .iter()
        .chain(source::CONV2D_ENTRIES.iter().step_by(source::TILE_COUNT))
        .chain(source::MATMUL_ENTRIES.iter().step_by(source::TILE_COUNT))
        .map(|e| e.workgroup_bytes())
        .max()
        .unwrap_or(0);
    // Every GEMM tile and reduction runs 256 threads a workgroup.
    let threads = 256;
    if l.max_compute_workgroup_storage_size < needed as u32
        || l.max_compute_invocations_per_workgroup < threads
    {
        return Err(Error::Backend(format!(
            "{name} offers {} bytes of workgroup memory and {} threads per workgroup; fovea's kernels need {needed} and {threads}",
            l.max_compute_workgroup_storage_size, l.max_compute_invocations_per_workgroup
        )));
    }
    Ok(())
}

/// GPU constructors for [`Device`] (bring into scope with `use fovea::DeviceExt`).
pub trait DeviceExt: Sized {
    /// The process-wide default GPU device: the highest-performance adapter, or the one
    /// `FOVEA_ADAPTER` names (a substring of its name or backend, e.g. `vulkan`,
    /// `llvmpipe`). `Err` with the reason when there is none.
    fn gpu() -> Result<Self>;
    /// A new GPU device on the adapter whose name or backend contains `filter`.
    fn gpu_with(filter: &str) -> Result<Self>;
    /// The GPU when a hardware one is available, else the CPU; prints its choice once.
    fn best() -> Self;
    /// `cpu`, `gpu` or `best`, as command-line flags spell them.
    fn by_name(name: &str) -> Result<Self>;
}

impl DeviceExt for Device {
    fn gpu() -> Result<Device> {
        static GPU: OnceLock<std::result::Result<Device, String>> = OnceLock::new();
        GPU.get_or_init(|| {
            let filter = std::env::var("FOVEA_ADAPTER").ok();
            WgpuBackend::open(filter.as_deref())
                .map(|b| Device::from_backend(Arc::new(b)))
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(Error::Backend)
    }

    fn gpu_with(filter: &str) -> Result<Device> {
        Ok(Device::from_backend(Arc::new(WgpuBackend::open(Some(
            filter,
        ))?)))
    }

    fn best() -> Device {
        static SAID: OnceLock<()> = OnceLock::new();
        let (dev, note) = match Device::gpu() {
            // A software rasteriser (lavapipe, WARP) is slower than the CPU backend; use it
            // only when FOVEA_ADAPTER asks for it.
            Ok(d) if d.is_software() && std::env::var("FOVEA_ADAPTER").is_err() => (
                Device::cpu(),
                format!(
                    "fovea: the only GPU adapter is a software one ({}); using the CPU backend",
                    d.name()
                ),
            ),
            Ok(d) => {
                let n = format!("fovea: using the GPU {}", d.name());
                (d, n)
            }
            Err(e) => (Device::cpu(), format!("fovea: no GPU ({e}); using the CPU")),
        };
        SAID.get_or_init(|| eprintln!("{note}"));
        dev
    }

    fn by_name(name: &str) -> Result<Device> {
        match name {
            "cpu" => Ok(Device::cpu()),
            "gpu" => Device::gpu(),
            "best" => Ok(Device::best()),
            other => Err(Error::Backend(format!(
                "unknown device {other:?}: use cpu, gpu or best"
            ))),
        }
    }
}
