//! The CPU reference backend: clear, correct and reasonably fast (GEMM from `gemm_zmm`
//! with AVX-512, else `matrixmultiply`; rayon across batch, channels and rows).

mod adaptive_pool2d;
mod batch_norm;
mod binary;
mod cast;
mod conv2d;
mod conv2d_depthwise;
mod conv2d_strided;
mod conv2d_winograd;
#[cfg(target_arch = "x86_64")]
mod conv2d_winograd_panels;
mod conv2d_winograd_rows;
mod conv3d_winograd;
mod conv_channels;
mod conv_direct;
mod conv_shifted;
mod conv_taps;
mod conv_weight;
mod conv_weight_wide;
mod elementwise;
mod gemm;
#[cfg(target_arch = "x86_64")]
mod gemm_zmm;
mod gram;
mod layout;
mod matmul;
mod optim;
mod panels_kept;
mod per_image;
mod pool2d;
mod profile;
mod reduce;
mod threads;
mod transpose;
mod upsample2d;
mod upsample_bilinear2d;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::*;
use crate::host;
use crate::Result;

pub(crate) use threads::join_pool;
pub use threads::main_thread_joined;

/// The CPU backend. Its storage is a `Vec<f32>`.
#[derive(Debug)]
pub struct CpuBackend {
    max_len: usize,
    times: profile::OpTimes,
}

impl CpuBackend {
    /// A CPU backend admitting tensors up to the host's memory limit (the machine's
    /// memory, or `FOVEA_CPU_MEMORY_LIMIT` bytes); `Device::cpu()` shares one.
    pub fn new() -> Self {
        CpuBackend::with_memory_limit(crate::host::memory_limit())
    }

    /// A CPU backend whose tensors may each hold at most `bytes` (and never more than the
    /// host's limit): a larger result is an error naming the op, raised before anything
    /// is allocated. Wrap it with `Device::from_backend`.
    pub fn with_memory_limit(bytes: usize) -> Self {
        threads::join_pool();
        host::keep_freed_memory();
        CpuBackend {
            max_len: bytes.min(crate::host::memory_limit()) / 4,
            times: profile::OpTimes::from_env(),
        }
    }

    /// This backend with per-op timing on or off, whatever `FOVEA_PROFILE` says: with it
    /// on, [`Backend::take_kernel_times`] reports each op's calls and wall time.
    pub fn with_profile(self, on: bool) -> Self {
        CpuBackend {
            times: profile::OpTimes::new(on),
            ..self
        }
    }
}

/// A convolution's name in a profile: its kernel, stride and groups.
fn conv_name(op: &str, p: &Conv2dParams) -> String {
    let [kh, kw] = p.kernel;
    let [sh, sw] = p.stride;
    let groups = if p.groups > 1 {
        format!(" g{}", p.groups)
    } else {
        String::new()
    };
    let name = format!("{op} {kh}x{kw} s{sh}x{sw}{groups}");
    if !profile::by_shape() {
        return name;
    }
    format!("{name} n{} {}->{} {}x{}", p.n, p.c_in, p.c_out, p.h, p.w)
}

fn conv3d_name(op: &str, p: &Conv3dParams) -> String {
    let [kd, kh, kw] = p.kernel;
    let groups = if p.groups > 1 {
        format!(" g{}", p.groups)
    } else {
        String::new()
    };
    format!("{op} {kd}x{kh}x{kw}{groups}")
}

impl Default for CpuBackend {
    fn default() -> Self {
        CpuBackend::new()
    }
}

/// Bytes held by live CPU tensors, and the most held at once: what a program's tensors
/// need, before any GPU pooling (a process-wide count; every CPU device shares it).
static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);
static PEAK_BYTES: AtomicU64 = AtomicU64::new(0);
static BUFFERS: AtomicU64 = AtomicU64::new(0);

/// A CPU tensor's values, counted in [`LIVE_BYTES`] while alive.
struct HostBuffer {
    /// Written only through [`HostBuffer::values_mut`], which forgets what was kept of
    /// them.
    values: Vec<f32>,
    /// The values were widened from f16: autocast need not round them again.
    f16_exact: bool,
    /// What the channel products keep of the values as a convolution's weight.
    panels: panels_kept::PanelsKept,
}

/// Counts a new buffer of `bytes` in the live and peak bytes.
fn count_new(bytes: usize) {
    let bytes = bytes as u64;
    let live = LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
    BUFFERS.fetch_add(1, Ordering::Relaxed);
}

/// Takes a dropped buffer of `bytes` off the live bytes; what stays live.
fn count_drop(bytes: usize) -> u64 {
    let bytes = bytes as u64;
    LIVE_BYTES.fetch_sub(bytes, Ordering::Relaxed) - bytes
}

impl HostBuffer {
    fn new(v: Vec<f32>) -> HostBuffer {
        count_new(v.len() * 4);
        HostBuffer {
            values: v,
            f16_exact: false,
            panels: Default::default(),
        }
    }

    /// The values to write in place.
    fn values_mut(&mut self) -> &mut Vec<f32> {
        self.f16_exact = false;
        self.panels.clear();
        &mut self.values
    }
}

impl Drop for HostBuffer {
    fn drop(&mut self) {
        let live = count_drop(self.values.len() * 4);
        host::recycle(
            std::mem::take(&mut self.values),
            live,
            PEAK_BYTES.load(Ordering::Relaxed),
        );
    }
}

/// Hands an op's large scratch buffer (a padded copy of its input, say) to the pool of
/// freed tensor buffers, under the same bound, so that the next call of the same shape
/// reuses its pages: dropped, a buffer of many megabytes goes back to the kernel and
/// returns as fresh pages, each a fault and a clearing.
pub(super) fn recycle_scratch(v: Vec<f32>) {
    host::recycle(
        v,
        LIVE_BYTES.load(Ordering::Relaxed),
        PEAK_BYTES.load(Ordering::Relaxed),
    );
}

/// The host slice behind a CPU storage. Ops check devices before calling a backend, so
/// a foreign storage here is a bug in fovea, not in user code.
pub(crate) fn data(s: &Storage) -> &[f32] {
    &s.downcast::<HostBuffer>()
        .expect("internal error: a non-CPU storage reached the CPU backend")
        .values
}

/// A GEMM operand as the kernels read it: under autocast rounded to f16, as the GPU's
/// GEMM stages it (see [`crate::autocast`]), else the storage itself.
fn operand(s: &Storage) -> Result<Cow<'_, [f32]>> {
    let x = data(s);
    let exact = s.downcast::<HostBuffer>().is_some_and(|b| b.f16_exact);
    if !crate::autocast::is_autocast_enabled() || exact {
        return Ok(x.into());
    }
    Ok(elementwise::map(x, crate::autocast::round_to_f16)?.into())
}

/// [`operand`] for a convolution's operand; a depthwise convolution's stay f32 under
/// autocast, as on the GPU, where it is not a GEMM.
fn conv_operand(s: &Storage, depthwise: bool) -> Result<Cow<'_, [f32]>> {
    if depthwise {
        Ok(data(s).into())
    } else {
        operand(s)
    }
}

/// What a CPU kernel hands back: its values, or the error of a fallible allocation.
trait Values {
    fn values(self) -> Result<Vec<f32>>;
}

impl Values for Vec<f32> {
    fn values(self) -> Result<Vec<f32>> {
        Ok(self)
    }
}

impl Values for Result<Vec<f32>> {
    fn values(self) -> Result<Vec<f32>> {
        self
    }
}

/// Wraps a kernel's output as a storage. Kernels allocate through `crate::host`, whose
/// failures (a size past the memory limit, or one the system refuses) arrive here as
/// errors instead of aborting the process.
fn store(v: impl Values) -> Result<Storage> {
    let v = v.values()?;
    Ok(Storage::new(v.len(), HostBuffer::new(v)))
}

/// [`store`] for values widened from f16.
fn store_f16_exact(v: Vec<f32>) -> Storage {
    let mut b = HostBuffer::new(v);
    b.f16_exact = true;
    Storage::new(b.values.len(), b)
}

/// Slices at least this long are split across threads.
pub(crate) const PAR_CHUNK: usize = 1 << 14;

/// The instruction sets the CPU kernels are compiled for, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Base,
    /// AVX2 with FMA
    Avx2,
    /// AVX-512F with FMA
    Avx512,
}

/// The widest [`Level`] the processor has, capped by `FOVEA_CPU_LEVEL` (`avx2` or `base`),
/// so that the narrower builds of the kernels (a laptop's AVX2, say) can be run, timed and
/// tested on a wider processor. Read once; an unknown value is reported and ignored.
pub(crate) fn cpu_level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var("FOVEA_CPU_LEVEL").as_deref() {
            Ok("base") => Level::Base,
            Ok("avx2") => Level::Avx2,
            Ok("avx512") | Err(_) => Level::Avx512,
            Ok(other) => {
                eprintln!(
                    "fovea: FOVEA_CPU_LEVEL={other:?} is not one of avx512, avx2, base; ignored"
                );
                Level::Avx512
            }
        };
        #[cfg(target_arch = "x86_64")]
        let has = {
            let fma = std::arch::is_x86_feature_detected!("fma");
            if fma && std::arch::is_x86_feature_detected!("avx512f") {
                Level::Avx512
            } else if fma && std::arch::is_x86_feature_detected!("avx2") {
                Level::Avx2
            } else {
                Level::Base
            }
        };
        #[cfg(not(target_arch = "x86_64"))]
        let has = Level::Base;
        has.min(cap)
    })
}

/// Runs `body` compiled for AVX-512, else for AVX2, else for the baseline, whichever
/// [`cpu_level`] allows: the project builds for baseline x86-64, whose 4-wide SSE2 took
/// 2–4 times as long for elementwise ops on cached tensors (a ReLU6 that keeps NaN, over
/// MobileNetV2's 7² activations). `body` has one call site in each version, so it is
/// inlined and compiled with that version's features (the clamp's timing shows it).
#[inline(always)]
pub(crate) fn simd<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512<R>(body: impl FnOnce() -> R) -> R {
            body()
        }
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<R>(body: impl FnOnce() -> R) -> R {
            body()
        }
        match cpu_level() {
            // SAFETY: the processor has AVX-512F.
            Level::Avx512 => return unsafe { avx512(body) },
            // SAFETY: the processor has AVX2.
            Level::Avx2 => return unsafe { avx2(body) },
            Level::Base => {}
        }
    }
    body()
}

/// Runs `$inner::<…>($args)` compiled for AVX-512 (with FMA), for AVX2 with FMA, or for the
/// baseline, whichever the processor supports, each with its own const parameters (in
/// brackets: block sizes that fit its registers, and whether to fuse multiply and add).
/// Unlike [`simd`], whose closure the compiler may leave out of line (then compiled for
/// the baseline), `$inner` is a named `#[inline(always)]` function, so its loops are
/// compiled with each version's features.
macro_rules! by_cpu {
    ($inner:ident($($arg:ident: $ty:ty),*), avx512: [$($a:expr),*], avx2: [$($b:expr),*],
     base: [$($c:expr),*]) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx512($($arg: $ty),*) {
                $inner::<$($a),*>($($arg),*)
            }
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2($($arg: $ty),*) {
                $inner::<$($b),*>($($arg),*)
            }
            match $crate::cpu::cpu_level() {
                // SAFETY: the processor has AVX-512F and FMA; the caller's asserts keep
                // every access of the loops in range (checked, or unchecked where a loop's
                // own SAFETY note says why).
                $crate::cpu::Level::Avx512 => return unsafe { avx512($($arg),*) },
                // SAFETY: as above, with AVX2 and FMA.
                $crate::cpu::Level::Avx2 => return unsafe { avx2($($arg),*) },
                $crate::cpu::Level::Base => {}
            }
        }
        $inner::<$($c),*>($($arg),*)
    }};
}
pub(super) use by_cpu;

impl Backend for CpuBackend {
    fn name(&self) -> String {
        "cpu".into()
    }
    fn stats(&self) -> BackendStats {
        BackendStats {
            buffers_allocated: BUFFERS.load(Ordering::Relaxed) as usize,
            bytes_allocated: LIVE_BYTES.load(Ordering::Relaxed),
            peak_bytes: PEAK_BYTES.load(Ordering::Relaxed),
            buffers_cached: host::kept_buffers(),
            submissions: 0,
        }
    }
    fn take_kernel_times(&self) -> Option<Vec<KernelTime>> {
        self.times.take()
    }
    fn release_cached(&self) {
        host::release_kept();
    }
    fn max_len(&self) -> usize {
        self.max_len
    }
    fn upload(&self, d: &[f32]) -> Result<Storage> {
        self.times
            .time(|| "upload".into(), || store(crate::host::copied(d)))
    }
    fn upload_vec(&self, d: Vec<f32>) -> Result<Storage> {
        store(d)
    }
    fn download(&self, x: &Storage) -> Result<Vec<f32>> {
        if x.dtype() != crate::DType::F32 {
            return self.download(&cast::cast(x, crate::DType::F32)?);
        }
        self.times
            .time(|| "download".into(), || crate::host::copied(data(x)))
    }
    fn cast(&self, x: &Storage, to: crate::DType) -> Result<Storage> {
        self.times.time(
            || format!("cast {} to {to}", x.dtype()),
            || cast::cast(x, to),
        )
    }
    fn fill(&self, len: usize, value: f32) -> Result<Storage> {
        self.times
            .time(|| "fill".into(), || store(crate::host::filled(len, value)))
    }
    fn unary(&self, x: &Storage, op: UnaryOp) -> Result<Storage> {
        self.times.time(
            || format!("{op:?}"),
            || store(elementwise::unary(data(x), op)),
        )
    }
    fn unary_in_place(&self, x: &mut Storage, op: UnaryOp) -> Result<bool> {
        let Some(buf) = x.downcast_mut::<HostBuffer>() else {
            return Ok(false);
        };
        let values = buf.values_mut();
        self.times.time(
            || format!("{op:?} in place"),
            || elementwise::unary_in_place(values, op),
        );
        Ok(true)
    }
    fn add_in_place(&self, a: &mut Storage, b: &Storage) -> Result<bool> {
        let b = data(b);
        match a.downcast_mut::<HostBuffer>() {
            Some(buf) if buf.values.len() == b.len() => {
                let values = buf.values_mut();
                self.times.time(
                    || "Add in place".into(),
                    || elementwise::add_in_place(values, b),
                );
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    fn binary(&self, a: &Storage, b: &Storage, p: &BinaryParams, op: BinaryOp) -> Result<Storage> {
        self.times.time(
            || format!("{op:?}"),
            || store(binary::binary(data(a), data(b), p, op)),
        )
    }
    fn reduce(&self, x: &Storage, p: &ReduceParams, op: ReduceOp) -> Result<Storage> {
        self.times.time(
            || format!("reduce {op:?}"),
            || store(reduce::reduce(data(x), p, op)),
        )
    }
    fn strided_copy(&self, x: &Storage, view: &StridedView) -> Result<Storage> {
        self.times.time(
            || "strided_copy".into(),
            || store(layout::strided_copy(data(x), view)),
        )
    }
    fn pad(&self, x: &Storage, p: &PadParams) -> Result<Storage> {
        self.times
            .time(|| "pad".into(), || store(layout::pad(data(x), p)))
    }
    fn cat(&self, parts: &[&Storage], p: &CatParams) -> Result<Storage> {
        let parts: Vec<&[f32]> = parts.iter().map(|s| data(s)).collect();
        self.times
            .time(|| "cat".into(), || store(layout::cat(&parts, p)))
    }
    fn matmul(&self, a: &Storage, b: &Storage, p: &MatmulParams) -> Result<Storage> {
        self.times.time(
            || "matmul".into(),
            || store(matmul::matmul(&operand(a)?, &operand(b)?, p)),
        )
    }
    fn gram(&self, f: &Storage, n: usize, c: usize, hw: usize) -> Result<Storage> {
        self.times.time(
            || "gram".into(),
            || store(gram::gram(&operand(f)?, n, c, hw)),
        )
    }
    fn conv2d(
        &self,
        x: &Storage,
        w: &Storage,
        bias: Option<&Storage>,
        p: &Conv2dParams,
    ) -> Result<Storage> {
        self.times.time(
            || conv_name("conv2d", p),
            || {
                let (x, w_values) = (
                    conv_operand(x, p.is_depthwise())?,
                    conv_operand(w, p.is_depthwise())?,
                );
                // What the weight keeps is of its own values, not of a rounded copy.
                let kept = match &w_values {
                    Cow::Borrowed(v) if std::ptr::eq(v.as_ptr(), data(w).as_ptr()) => {
                        w.downcast::<HostBuffer>().map(|b| &b.panels)
                    }
                    _ => None,
                };
                let mut y = conv2d::forward_kept(&x, &w_values, p, kept)?;
                if let Some(b) = bias {
                    conv2d::add_bias(&mut y, data(b), p.oh * p.ow);
                }
                store(y)
            },
        )
    }
    fn conv2d_grad_input(&self, gy: &Storage, w: &Storage, p: &Conv2dParams) -> Result<Storage> {
        self.times.time(
            || conv_name("conv2d_grad_input", p),
            || {
                store(conv2d::grad_input(
                    &conv_operand(gy, p.is_depthwise())?,
                    &conv_operand(w, p.is_depthwise())?,
                    p,
                ))
            },
        )
    }
    fn adam_step(
        &self,
        param: &Storage,
        grad: &Storage,
        m: &Storage,
        v: &Storage,
        s: &AdamStep,
    ) -> Result<[Storage; 3]> {
        self.times.time(
            || "adam_step".into(),
            || {
                let [p, m, v] = optim::adam_step(data(param), data(grad), data(m), data(v), s)?;
                Ok([store(p)?, store(m)?, store(v)?])
            },
        )
    }
    fn sgd_step(
        &self,
        param: &Storage,
        grad: &Storage,
        buf: Option<&Storage>,
        s: &SgdStep,
    ) -> Result<(Storage, Option<Storage>)> {
        self.times.time(
            || "sgd_step".into(),
            || {
                let (p, b) = optim::sgd_step(data(param), data(grad), buf.map(data), s)?;
                Ok((store(p)?, b.map(store).transpose()?))
            },
        )
    }
    fn conv2d_grad_weight(&self, x: &Storage, gy: &Storage, p: &Conv2dParams) -> Result<Storage> {
        self.times.time(
            || conv_name("conv2d_grad_weight", p),
            || {
                store(conv2d::grad_weight(
                    &conv_operand(x, p.is_depthwise())?,
                    &conv_operand(gy, p.is_depthwise())?,
                    p,
                ))
            },
        )
    }
    fn runs_conv3d(&self, p: &Conv3dParams) -> bool {
        conv_shifted::applies(p)
    }
    fn conv3d(
        &self,
        x: &Storage,
        w: &Storage,
        bias: Option<&Storage>,
        p: &Conv3dParams,
    ) -> Result<Storage> {
        self.times.time(
            || conv3d_name("conv3d", p),
            || {
                let (x, w) = (
                    conv_operand(x, p.is_depthwise())?,
                    conv_operand(w, p.is_depthwise())?,
                );
                let mut y = conv3d_winograd::try_forward(&x, &w, p)?;
                if let Some(b) = bias {
                    conv2d::add_bias(&mut y, data(b), p.output.iter().product());
                }
                store(y)
            },
        )
    }
    fn conv3d_grad_input(&self, gy: &Storage, w: &Storage, p: &Conv3dParams) -> Result<Storage> {
        self.times.time(
            || conv3d_name("conv3d_grad_input", p),
            || {
                store(conv3d_winograd::try_grad_input(
                    &conv_operand(gy, p.is_depthwise())?,
                    &conv_operand(w, p.is_depthwise())?,
                    p,
                ))
            },
        )
    }
    fn conv3d_grad_weight(&self, x: &Storage, gy: &Storage, p: &Conv3dParams) -> Result<Storage> {
        self.times.time(
            || conv3d_name("conv3d_grad_weight", p),
            || {
                store(conv_shifted::grad_weight(
                    &conv_operand(x, p.is_depthwise())?,
                    &conv_operand(gy, p.is_depthwise())?,
                    p,
                ))
            },
        )
    }
    fn max_pool2d(&self, x: &Storage, p: &Pool2dParams) -> Result<Storage> {
        self.times.time(
            || "max_pool2d".into(),
            || store(pool2d::max_forward(data(x), p)),
        )
    }
    fn max_pool2d_backward(&self, x: &Storage, gy: &Storage, p: &Pool2dParams) -> Result<Storage> {
        self.times.time(
            || "max_pool2d_backward".into(),
            || store(pool2d::max_backward(data(x), data(gy), p)),
        )
    }
    fn max_pool2d_with_indices(&self, x: &Storage, p: &Pool2dParams) -> Result<(Storage, Storage)> {
        self.times.time(
            || "max_pool2d_with_indices".into(),
            || {
                let (y, idx) = pool2d::max_with_indices(data(x), p)?;
                Ok((store(y)?, store(idx)?))
            },
        )
    }
    fn max_unpool2d(&self, x: &Storage, idx: &Storage, p: &Resize2dParams) -> Result<Storage> {
        self.times.time(
            || "max_unpool2d".into(),
            || store(pool2d::unpool(data(x), data(idx), p)),
        )
    }
    fn max_unpool2d_backward(
        &self,
        gy: &Storage,
        idx: &Storage,
        p: &Resize2dParams,
    ) -> Result<Storage> {
        self.times.time(
            || "max_unpool2d_backward".into(),
            || store(pool2d::unpool_backward(data(gy), data(idx), p)),
        )
    }
    fn avg_pool2d(&self, x: &Storage, p: &Pool2dParams) -> Result<Storage> {
        self.times.time(
            || "avg_pool2d".into(),
            || store(pool2d::avg_forward(data(x), p)),
        )
    }
    fn avg_pool2d_backward(&self, gy: &Storage, p: &Pool2dParams) -> Result<Storage> {
        self.times.time(
            || "avg_pool2d_backward".into(),
            || store(pool2d::avg_backward(data(gy), p)),
        )
    }
    fn adaptive_avg_pool2d(&self, x: &Storage, p: &Resize2dParams) -> Result<Storage> {
        self.times.time(
            || "adaptive_avg_pool2d".into(),
            || store(adaptive_pool2d::forward(data(x), p)),
        )
    }
    fn adaptive_avg_pool2d_backward(&self, gy: &Storage, p: &Resize2dParams) -> Result<Storage> {
        self.times.time(
            || "adaptive_avg_pool2d_backward".into(),
            || store(adaptive_pool2d::backward(data(gy), p)),
        )
    }
    fn upsample_nearest2d(&self, x: &Storage, p: &Resize2dParams) -> Result<Storage> {
        self.times.time(
            || "upsample_nearest2d".into(),
            || store(upsample2d::forward(data(x), p)),
        )
    }
    fn upsample_nearest2d_backward(&self, gy: &Storage, p: &Resize2dParams) -> Result<Storage> {
        self.times.time(
            || "upsample_nearest2d_backward".into(),
            || store(upsample2d::backward(data(gy), p)),
        )
    }
    fn upsample_bilinear2d(&self, x: &Storage, p: &Bilinear2dParams) -> Result<Storage> {
        self.times.time(
            || "upsample_bilinear2d".into(),
            || store(upsample_bilinear2d::forward(data(x), p)),
        )
    }
    fn upsample_bilinear2d_backward(&self, gy: &Storage, p: &Bilinear2dParams) -> Result<Storage> {
        self.times.time(
            || "upsample_bilinear2d_backward".into(),
            || store(upsample_bilinear2d::backward(data(gy), p)),
        )
    }
    fn channel_sums(
        &self,
        a: &Storage,
        b: Option<(&Storage, &Storage)>,
        p: &ChannelParams,
    ) -> Result<Storage> {
        self.times.time(
            || "channel_sums".into(),
            || {
                store(batch_norm::channel_sums(
                    data(a),
                    b.map(|(b, centers)| (data(b), data(centers))),
                    p,
                ))
            },
        )
    }
    fn channel_affine(
        &self,
        a: &Storage,
        b: Option<&Storage>,
        coef: &Storage,
        p: &ChannelParams,
    ) -> Result<Storage> {
        self.times.time(
            || "channel_affine".into(),
            || {
                store(batch_norm::channel_affine(
                    data(a),
                    b.map(data),
                    data(coef),
                    p,
                ))
            },
        )
    }
}
