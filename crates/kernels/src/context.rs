//! The GPU context: device and queue, cached pipelines, the buffer pool and the pending
//! command encoder. Ops record their dispatches into one open compute pass of the pending
//! encoder (uploads and copies end it); the encoder is submitted on read-back, on sync, or
//! after `SUBMIT_EVERY` dispatches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fovea_core::backend::Storage;
use fovea_core::{DType, Error, Result};
use wgpu::util::DeviceExt;

use crate::gemm_coop;
use crate::gemm_gen::GemmEntry;
use crate::pool::{GpuBuffer, Pool, PoolStats};
use crate::profile::Profiler;
use crate::source::{Precision, Shader};

/// Dispatches recorded before the encoder is submitted without being asked. Small enough
/// that the GPU starts on a long step while the host still records the rest (a 512×512
/// style step recorded 230 dispatches in about 6 ms on the host on 2026-11-22 (9e29339),
/// 1.7 ms since 2026-11-23 (595fc3f): with 256, the GPU waited for all of them); large
/// enough that submissions stay few (one per 32 dispatches).
const SUBMIT_EVERY: usize = 32;

/// Most bind groups kept for reuse (see [`BindGroups`]); past it the cache starts over.
const BIND_GROUPS_KEPT: usize = 4096;

/// Bytes per dispatch in the uniform arena (at least; the adapter's offset alignment may
/// ask for more). Every shader's `Params` fits.
const UNIFORM_SLOT: usize = 256;

/// Immediate bytes a context needs to pass every shader's `Params` as immediates (the
/// largest, conv2d's, takes 108); Vulkan guarantees 128.
pub(crate) const IMMEDIATE_BYTES: u32 = 128;

/// How long a wait for the GPU polls before it blocks. A blocked thread wakes some tens of
/// microseconds after the GPU finishes, which a short step feels at every read-back; a
/// software adapter never polls (it needs the host's cores itself).
const SPIN: Duration = Duration::from_micros(1500);

/// Threads per workgroup of the one-thread-per-element kernels (`WG` in the shaders).
pub const WG: u32 = 256;

struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    /// The open compute pass of `encoder`, which consecutive dispatches share: a pass per
    /// dispatch cost about 3 µs of host time each in `finish` on an H100, a third of a
    /// small op's (benches/RESULTS.md, 2026-11-23, commit 467ab27). wgpu still places a
    /// barrier between dispatches that need one. Ended before any other command is recorded.
    pass: Option<wgpu::ComputePass<'static>>,
    dispatches: usize,
    /// The uniforms of the recorded dispatches, one slot each, written to the arena
    /// buffer just before the encoder is submitted (without immediates).
    uniforms: Vec<u8>,
}

/// Every dispatch's parameters in one slot of one buffer (instead of a buffer created per
/// dispatch); a queue write fills it before each submission, which wgpu orders after the
/// previous submission's reads.
struct Arena {
    buffer: wgpu::Buffer,
    /// bytes per dispatch
    slot: usize,
}

/// Device, queue and the execution state shared by every op.
pub struct Ctx {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    /// The adapter this context runs on.
    pub info: wgpu::AdapterInfo,
    pub(crate) limits: wgpu::Limits,
    /// Shader modules by name and the precision of their GEMM entries.
    modules: Mutex<HashMap<(&'static str, Precision), wgpu::ShaderModule>>,
    /// Each pipeline with its bind group layout (fetching the layout from the pipeline
    /// took about 1 µs a dispatch), by shader, entry and precision.
    pipelines: Mutex<HashMap<Kernel, Pipeline>>,
    pending: Mutex<Pending>,
    bind_groups: Mutex<BindGroups>,
    /// Where dispatches find their parameters: `None` when they take them as immediates
    /// (push constants), else a uniform arena. Immediates save the arena's write, its
    /// staging copy and a binding: 10–15 µs of each sync's round trip on an H100
    /// (benches/RESULTS.md, 2026-11-22, commit adfb16d).
    arena: Option<Arena>,
    pool: Arc<Pool>,
    error: Arc<Mutex<Option<String>>>,
    submissions: Mutex<usize>,
    /// Per-kernel timing, when the device was opened with it.
    profiler: Option<Profiler>,
    /// The subgroup size of autocast's cooperative-matrix GEMM, where it runs.
    coop: Option<u32>,
    /// Whether shaders can round to f16 (`quantizeToF16`), as autocast's GEMMs do.
    f16_rounding: bool,
}

/// What a device needs for autocast's cooperative-matrix GEMM (`gemm_coop`).
pub(crate) const COOP_FEATURES: wgpu::Features = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::SHADER_F16);

/// The subgroup size with which autocast's GEMM can run on `adapter`'s cooperative
/// matrices, once `device` was opened with them: 16×16×16 blocks of f16 with f32
/// accumulators in subgroup scope, f16 arithmetic, subgroups of one fixed size that 256
/// invocations fill, and workgroup memory for the staged tiles. `None` elsewhere.
pub(crate) fn cooperative_subgroup(adapter: &wgpu::Adapter, device: &wgpu::Device) -> Option<u32> {
    use wgpu::CooperativeScalarType as T;
    if !device.features().contains(COOP_FEATURES) {
        return None;
    }
    let blocks = adapter.cooperative_matrix_properties().iter().any(|p| {
        [p.m_size, p.n_size, p.k_size] == [16; 3] && p.ab_type == T::F16 && p.cr_type == T::F32
    });
    let info = adapter.get_info();
    let size = info.subgroup_min_size;
    let entry = &crate::source::MATMUL_ENTRIES[0];
    let room = device.limits().max_compute_workgroup_storage_size as usize;
    (blocks
        && size == info.subgroup_max_size
        && gemm_coop::fits(entry, size)
        && room >= gemm_coop::WORKGROUP_BYTES)
        .then_some(size)
}

/// Bind groups made so far, by kernel and buffers, for dispatches that take their
/// parameters as immediates (so buffers are all they bind). A training step binds the same
/// pooled buffers to the same kernels every step, and making a bind group cost about
/// 2.7 µs of host time a dispatch on an H100 (benches/RESULTS.md, 2026-11-23, commit
/// 467ab27).
#[derive(Default)]
struct BindGroups {
    groups: HashMap<BindKey, wgpu::BindGroup>,
    /// The pool's count of released buffers when `groups` was last emptied: a cached
    /// group keeps its buffers alive, so a release empties the cache.
    released: usize,
}

/// A kernel: shader, entry point, and how its GEMM multiplies.
type Kernel = (&'static str, &'static str, Precision);

type BindKey = (Kernel, Vec<(u32, wgpu::Buffer)>);

#[derive(Clone)]
struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The GPU buffer behind a storage made by this backend.
pub(crate) fn buf(s: &Storage) -> &wgpu::Buffer {
    s.downcast::<GpuBuffer>()
        .expect("internal error: a non-GPU storage reached the wgpu backend")
        .buffer()
}

impl Ctx {
    /// A context on `device`; `profile` times every dispatch (the device must have been
    /// created with `TIMESTAMP_QUERY`). Parameters go as immediates when the device was
    /// created with `IMMEDIATES` and at least [`IMMEDIATE_BYTES`] of them.
    pub(crate) fn new(
        adapter: &wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
        profile: bool,
    ) -> Ctx {
        let error = Arc::new(Mutex::new(None::<String>));
        let sink = error.clone();
        // wgpu's default handler panics; keep the first error and report it as an Err
        // from the next read-back or sync instead.
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = lock(&sink);
            if slot.is_none() {
                *slot = Some(e.to_string());
            }
        }));
        let limits = device.limits();
        let immediates = device.features().contains(wgpu::Features::IMMEDIATES)
            && limits.max_immediate_size >= IMMEDIATE_BYTES;
        let arena = (!immediates).then(|| {
            let slot = (limits.min_uniform_buffer_offset_alignment as usize).max(UNIFORM_SLOT);
            let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("fovea uniforms"),
                size: (slot * SUBMIT_EVERY) as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            Arena { buffer, slot }
        });
        let profiler = profile.then(|| Profiler::new(&device, &queue, SUBMIT_EVERY as u32));
        Ctx {
            coop: cooperative_subgroup(adapter, &device),
            f16_rounding: adapter
                .get_downlevel_capabilities()
                .flags
                .contains(wgpu::DownlevelFlags::SHADER_F16_IN_F32),
            profiler,
            limits,
            info: adapter.get_info(),
            device,
            queue,
            modules: Mutex::default(),
            pipelines: Mutex::default(),
            pending: Mutex::new(Pending {
                encoder: None,
                pass: None,
                dispatches: 0,
                uniforms: Vec::new(),
            }),
            arena,
            bind_groups: Mutex::default(),
            pool: Arc::new(Pool::default()),
            error,
            submissions: Mutex::new(0),
        }
    }

    /// Pool counters (allocations, cached buffers, peak bytes).
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Releases the pool's idle buffers (the bind groups that hold them go at the next
    /// dispatch, which sees the pool's release count change).
    pub fn release_cached(&self) {
        self.pool.release_idle();
    }

    /// Per-kernel GPU times since the last call, when timing is on.
    pub fn take_kernel_times(&self) -> Option<Vec<fovea_core::backend::KernelTime>> {
        self.profiler.as_ref().map(Profiler::take)
    }

    /// Whether the adapter is a software rasteriser running on the host's cores.
    pub fn software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Whether dispatches pass their parameters as immediates (else through a uniform
    /// buffer).
    pub fn immediates(&self) -> bool {
        self.arena.is_none()
    }

    /// Command buffers submitted so far.
    pub fn submissions(&self) -> usize {
        *lock(&self.submissions)
    }

    fn check_error(&self) -> Result<()> {
        match lock(&self.error).take() {
            Some(e) => Err(Error::Backend(format!("wgpu: {e}"))),
            None => Ok(()),
        }
    }

    /// The most f32 values one buffer may hold: each is bound to shaders whole, and
    /// shaders index it with u32.
    pub fn max_len(&self) -> usize {
        (self.max_bytes() / 4).min(u32::MAX as u64) as usize
    }

    /// The largest buffer a shader binds whole.
    fn max_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// A new storage of `len` f32 values (contents undefined until written).
    pub(crate) fn alloc(&self, len: usize) -> Result<Storage> {
        self.alloc_typed(len, DType::F32)
    }

    /// A new storage of `len` values of `dtype` (f16 packed two to a 32-bit word).
    pub(crate) fn alloc_typed(&self, len: usize, dtype: DType) -> Result<Storage> {
        let words = match dtype {
            DType::F32 => len,
            DType::F16 => len.div_ceil(2),
        };
        self.alloc_words(words)
            .map(|buffer| Storage::typed(len, dtype, buffer))
    }

    fn alloc_words(&self, len: usize) -> Result<GpuBuffer> {
        let max = self.max_len();
        if len > max {
            let mib = |n: usize| n as f64 * 4.0 / (1 << 20) as f64;
            return Err(Error::Backend(format!(
                "a buffer of {len} values ({:.2} MiB) is more than the {max} values ({:.2} MiB) this GPU binds to a shader; use a smaller batch or image, or the CPU device",
                mib(len),
                mib(max)
            )));
        }
        Ok(self
            .pool
            .get(&self.device, len as u64 * 4, self.max_bytes()))
    }

    fn pipeline(&self, shader: Shader, key: Kernel) -> Pipeline {
        let (_, entry, precision) = key;
        if let Some(p) = lock(&self.pipelines).get(&key) {
            return p.clone();
        }
        let module = lock(&self.modules)
            .entry((shader.name, precision))
            .or_insert_with(|| {
                self.device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(shader.name),
                        source: wgpu::ShaderSource::Wgsl(
                            shader.source_for(self.immediates(), precision).into(),
                        ),
                    })
            })
            .clone();
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
        let p = Pipeline {
            layout: pipeline.get_bind_group_layout(0),
            pipeline,
        };
        // Two threads may both have missed the cache and built the pipeline: keep the
        // first, since bind groups cached for it are incompatible with the other.
        lock(&self.pipelines).entry(key).or_insert(p).clone()
    }

    /// Records one dispatch of `shader::entry` with `params` as the uniform at binding 0
    /// and `buffers` at the given bindings.
    pub(crate) fn dispatch(
        &self,
        shader: Shader,
        entry: &'static str,
        params: &[u8],
        buffers: &[(u32, &wgpu::Buffer)],
        groups: [u32; 3],
    ) -> Result<()> {
        if groups.contains(&0) {
            return Ok(());
        }
        let max = self.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(Error::Backend(format!(
                "kernel {}::{entry} needs {groups:?} workgroups, more than the {max} per dimension this GPU runs; use a smaller batch or image",
                shader.name
            )));
        }
        let room = self
            .arena
            .as_ref()
            .map_or(IMMEDIATE_BYTES as usize, |a| a.slot);
        if params.len() > room {
            return Err(Error::Backend(format!(
                "{}::{entry} parameters take {} bytes, more than the {room} a dispatch has",
                shader.name,
                params.len(),
            )));
        }
        let key = (shader.name, entry, self.precision(shader, entry)?);
        let pipeline = self.pipeline(shader, key);
        let mut pending = lock(&self.pending);
        let bind_group = match &self.arena {
            None => self.bind_group(key, &pipeline, buffers),
            Some(arena) => {
                let offset = pending.uniforms.len();
                pending.uniforms.extend_from_slice(params);
                pending.uniforms.resize(offset + arena.slot, 0);
                let uniform = wgpu::BufferBinding {
                    buffer: &arena.buffer,
                    offset: offset as u64,
                    size: wgpu::BufferSize::new(params.len().next_multiple_of(16).max(16) as u64),
                };
                self.make_bind_group(entry, &pipeline, Some(uniform), buffers)
            }
        };
        let pass = self.pass(&mut pending, entry);
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        if self.arena.is_none() {
            pass.set_immediates(0, params);
        }
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        if self.profiler.is_some() {
            // Timed passes hold one dispatch each: their timestamps time that kernel.
            pending.pass = None;
        }
        self.count_recording(&mut pending);
        Ok(())
    }

    /// How `shader::entry` multiplies: in f32 outside autocast and for every entry that
    /// is not a generated GEMM; under autocast, on cooperative matrices where the device
    /// runs them and the entry has that form, else with operands rounded to f16 (an error
    /// naming the device where it cannot round to f16).
    fn precision(&self, shader: Shader, entry: &'static str) -> Result<Precision> {
        if !fovea_core::is_autocast_enabled() {
            return Ok(Precision::F32);
        }
        let Some(e) = shader.gemm.iter().find(|e| e.name == entry) else {
            return Ok(Precision::F32);
        };
        match self.coop {
            Some(sg) if gemm_coop::fits(e, sg) => Ok(Precision::Coop(sg)),
            _ if self.f16_rounding => Ok(Precision::Half),
            _ => Err(Error::Backend(format!(
                "autocast rounds to f16, and {} ({:?}, {:?}) cannot (no SHADER_F16_IN_F32 in its downlevel capabilities); run this outside autocast, in f32",
                self.info.name, self.info.backend, self.info.device_type
            ))),
        }
    }

    /// The subgroup size autocast's cooperative-matrix GEMM runs with, when the device was
    /// opened with cooperative matrices that it can use (see [`cooperative_subgroup`]).
    pub fn cooperative_matrix(&self) -> Option<u32> {
        self.coop
    }

    /// The bind group of `buffers` for the kernel `key`, made once (see [`BindGroups`]).
    fn bind_group(
        &self,
        key: Kernel,
        pipeline: &Pipeline,
        buffers: &[(u32, &wgpu::Buffer)],
    ) -> wgpu::BindGroup {
        let mut cache = lock(&self.bind_groups);
        let released = self.pool.stats().released;
        if released != cache.released || cache.groups.len() >= BIND_GROUPS_KEPT {
            cache.groups.clear();
            cache.released = released;
        }
        let buffers_key = buffers.iter().map(|&(b, buf)| (b, buf.clone())).collect();
        cache
            .groups
            .entry((key, buffers_key))
            .or_insert_with(|| self.make_bind_group(key.1, pipeline, None, buffers))
            .clone()
    }

    fn make_bind_group(
        &self,
        entry: &'static str,
        pipeline: &Pipeline,
        uniform: Option<wgpu::BufferBinding>,
        buffers: &[(u32, &wgpu::Buffer)],
    ) -> wgpu::BindGroup {
        let mut entries = Vec::with_capacity(buffers.len() + 1);
        if let Some(uniform) = uniform {
            entries.push(wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(uniform),
            });
        }
        entries.extend(buffers.iter().map(|(b, buffer)| wgpu::BindGroupEntry {
            binding: *b,
            resource: buffer.as_entire_binding(),
        }));
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(entry),
            layout: &pipeline.layout,
            entries: &entries,
        })
    }

    /// Records commands into the pending encoder, submitting it once `SUBMIT_EVERY`
    /// recordings have piled up (their staging buffers stay alive until then).
    fn record(&self, f: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut pending = lock(&self.pending);
        f(self.encoder(&mut pending));
        self.count_recording(&mut pending);
    }

    /// Counts one recording and submits once `SUBMIT_EVERY` have piled up.
    fn count_recording(&self, pending: &mut Pending) {
        pending.dispatches += 1;
        if pending.dispatches >= SUBMIT_EVERY {
            self.submit_locked(pending);
        }
    }

    /// The pending compute pass, opened if none is (timed, with the profiler on).
    fn pass<'a>(
        &self,
        pending: &'a mut Pending,
        entry: &'static str,
    ) -> &'a mut wgpu::ComputePass<'static> {
        if pending.pass.is_none() {
            let pass = self
                .encoder(pending)
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("fovea"),
                    timestamp_writes: self.profiler.as_ref().map(|p| p.pass(entry)),
                })
                .forget_lifetime();
            pending.pass = Some(pass);
        }
        pending.pass.as_mut().unwrap()
    }

    /// The pending encoder, with no pass open on it (one open is ended).
    fn encoder<'a>(&self, pending: &'a mut Pending) -> &'a mut wgpu::CommandEncoder {
        pending.pass = None;
        pending.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("fovea"),
                })
        })
    }

    /// The tile for `count` GEMMs of `m × n` among `entries` (one per tile), among those
    /// whose workgroup memory this adapter offers (see [`crate::gemm_gen::tile_for`]).
    pub(crate) fn tile_for(
        &self,
        m: usize,
        n: usize,
        count: usize,
        entries: &[GemmEntry],
    ) -> usize {
        // Under autocast on cooperative matrices, every GEMM that picks among the tiles
        // takes the one with that form (the first of every table; Gram picks by channels).
        if self.coop.is_some() && fovea_core::is_autocast_enabled() {
            return 0;
        }
        let bytes = self.limits.max_compute_workgroup_storage_size as usize;
        crate::gemm_gen::tile_for(m, n, count, entries, bytes)
    }

    /// Workgroups for a dispatch of `workgroups` whole workgroups (one per output or
    /// chunk), folded into 2-D like [`Ctx::groups_1d`]; the shader finds its index as
    /// `wid.y * nwg.x + wid.x`.
    pub(crate) fn groups_of(&self, workgroups: usize) -> [u32; 3] {
        let mut groups = self.groups_1d(workgroups * WG as usize);
        groups[0] = groups[0].min(workgroups as u32).max(1);
        groups[1] = (workgroups as u32).div_ceil(groups[0]);
        groups
    }

    /// Workgroups for `n` threads of `WG`, folded into 2-D when one dimension is too small.
    pub(crate) fn groups_1d(&self, n: usize) -> [u32; 3] {
        let g = n.div_ceil(WG as usize);
        let max = self.limits.max_compute_workgroups_per_dimension as usize;
        if g <= max {
            [g as u32, 1, 1]
        } else {
            [max as u32, g.div_ceil(max) as u32, 1]
        }
    }

    fn submit_locked(&self, pending: &mut Pending) {
        if let Some(arena) = self.arena.as_ref().filter(|_| !pending.uniforms.is_empty()) {
            self.queue.write_buffer(&arena.buffer, 0, &pending.uniforms);
            pending.uniforms.clear();
        }
        pending.pass = None;
        if let Some(mut enc) = pending.encoder.take() {
            let timed = self.profiler.as_ref().filter(|p| p.resolve(&mut enc));
            self.queue.submit([enc.finish()]);
            *lock(&self.submissions) += 1;
            if let Some(Err(e)) = timed.map(|p| p.collect(&self.device)) {
                lock(&self.error).get_or_insert(e.to_string());
            }
        }
        pending.dispatches = 0;
    }

    /// Submits the pending encoder.
    pub(crate) fn flush(&self) {
        self.submit_locked(&mut lock(&self.pending));
    }

    /// Submits and waits for all work.
    pub(crate) fn sync(&self) -> Result<()> {
        self.flush();
        self.wait()?;
        self.check_error()
    }

    /// Waits until every submission has run (and its callbacks have been called).
    fn wait(&self) -> Result<()> {
        let fail = |e: wgpu::PollError| Error::Backend(format!("wgpu poll: {e}"));
        if !self.software() {
            let start = Instant::now();
            while start.elapsed() < SPIN {
                if self
                    .device
                    .poll(wgpu::PollType::Poll)
                    .map_err(fail)?
                    .is_queue_empty()
                {
                    return Ok(());
                }
                std::hint::spin_loop();
            }
        }
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(fail)?;
        Ok(())
    }

    pub(crate) fn upload(&self, data: &[f32]) -> Result<Storage> {
        let s = self.alloc(data.len())?;
        if !data.is_empty() {
            // Copied inside the pending encoder: it lands in order with the recorded work
            // without a submission. (A queue write would run before the pending commands
            // and could overwrite a recycled buffer that one of them still reads.)
            let staging = self
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("fovea upload"),
                    contents: bytemuck::cast_slice(data),
                    usage: wgpu::BufferUsages::COPY_SRC,
                });
            let bytes = staging.size();
            self.record(|encoder| encoder.copy_buffer_to_buffer(&staging, 0, buf(&s), 0, bytes));
        }
        Ok(s)
    }

    pub(crate) fn download(&self, s: &Storage) -> Result<Vec<f32>> {
        let bytes = s.len() as u64 * 4;
        if bytes == 0 {
            self.check_error()?;
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("fovea read-back"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            let mut pending = lock(&self.pending);
            let encoder = self.encoder(&mut pending);
            encoder.copy_buffer_to_buffer(buf(s), 0, &staging, 0, bytes);
            self.submit_locked(&mut pending);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        self.check_error()?;
        let mapped = match rx.try_recv() {
            Ok(r) => Ok(r),
            // Not called back yet: a blocking poll calls every callback that is due.
            Err(_) => {
                self.device
                    .poll(wgpu::PollType::wait_indefinitely())
                    .map_err(|e| Error::Backend(format!("wgpu poll: {e}")))?;
                rx.recv()
            }
        };
        mapped
            .map_err(|_| Error::Backend("read-back was never mapped".into()))?
            .map_err(|e| Error::Backend(format!("read-back mapping failed: {e}")))?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Backend(format!("read-back mapping failed: {e}")))?;
        let out = bytemuck::cast_slice::<u8, f32>(&view).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }
}
