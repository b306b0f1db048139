//! Optional per-kernel GPU timing (`FOVEA_PROFILE=1`): each dispatch's compute pass writes
//! a timestamp at its start and its end; before each submission the pending timestamps
//! are resolved into a buffer, and after it they are read back and summed per entry
//! point. Reading them waits for the GPU at every submission, so timing is for
//! benchmarks and investigations, not for training runs; it exists so that a short lease
//! on a real GPU says which kernels take the time, not only how long a whole step takes.

use std::collections::HashMap;
use std::sync::Mutex;

use fovea_core::backend::KernelTime;
use fovea_core::{Error, Result};

/// Timestamps per recorded pass: its start and its end.
const PER_PASS: u32 = 2;

#[derive(Default)]
struct Tally {
    /// The entry point of each pass recorded since the last submission, in order.
    passes: Vec<&'static str>,
    /// Dispatches and nanoseconds per entry point since the last `take`.
    totals: HashMap<&'static str, (usize, f64)>,
}

pub(crate) struct Profiler {
    set: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    readback: wgpu::Buffer,
    capacity: u32,
    ns_per_tick: f64,
    tally: Mutex<Tally>,
}

fn lock(m: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Profiler {
    /// Room for `passes` passes between submissions.
    pub(crate) fn new(device: &wgpu::Device, queue: &wgpu::Queue, passes: u32) -> Profiler {
        let capacity = passes * PER_PASS;
        let bytes = u64::from(capacity) * wgpu::QUERY_SIZE as u64;
        let buffer = |label, usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        Profiler {
            set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("fovea kernel times"),
                ty: wgpu::QueryType::Timestamp,
                count: capacity,
            }),
            resolved: buffer(
                "fovea resolved times",
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            readback: buffer(
                "fovea read-back times",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            capacity,
            ns_per_tick: f64::from(queue.get_timestamp_period()),
            tally: Mutex::default(),
        }
    }

    /// The timestamp writes for the next pass, which runs `entry`. The caller submits
    /// before more passes are recorded than the profiler was made for.
    pub(crate) fn pass(&self, entry: &'static str) -> wgpu::ComputePassTimestampWrites<'_> {
        let mut tally = lock(&self.tally);
        let first = tally.passes.len() as u32 * PER_PASS;
        debug_assert!(first + PER_PASS <= self.capacity);
        tally.passes.push(entry);
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(first),
            end_of_pass_write_index: Some(first + 1),
        }
    }

    /// Encodes the copy of this submission's timestamps into the read-back buffer; `true`
    /// when there are some (then call [`Profiler::collect`] after submitting).
    pub(crate) fn resolve(&self, encoder: &mut wgpu::CommandEncoder) -> bool {
        let n = lock(&self.tally).passes.len() as u32 * PER_PASS;
        if n == 0 {
            return false;
        }
        encoder.resolve_query_set(&self.set, 0..n, &self.resolved, 0);
        let bytes = u64::from(n) * wgpu::QUERY_SIZE as u64;
        encoder.copy_buffer_to_buffer(&self.resolved, 0, &self.readback, 0, bytes);
        true
    }

    /// Waits for the submitted work, then adds each pass's time to its entry point.
    pub(crate) fn collect(&self, device: &wgpu::Device) -> Result<()> {
        let mut tally = lock(&self.tally);
        let passes = std::mem::take(&mut tally.passes);
        let bytes = (passes.len() as u32 * PER_PASS) as u64 * wgpu::QUERY_SIZE as u64;
        let slice = self.readback.slice(..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Backend(format!("wgpu poll: {e}")))?;
        rx.recv()
            .map_err(|_| Error::Backend("kernel times were never mapped".into()))?
            .map_err(|e| Error::Backend(format!("kernel times could not be mapped: {e}")))?;
        {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Backend(format!("kernel times could not be mapped: {e}")))?;
            let ticks: &[u64] = bytemuck::cast_slice(&view);
            for (entry, pair) in passes.iter().zip(ticks.chunks_exact(2)) {
                let ns = pair[1].saturating_sub(pair[0]) as f64 * self.ns_per_tick;
                let slot = tally.totals.entry(entry).or_default();
                slot.0 += 1;
                slot.1 += ns;
            }
        }
        self.readback.unmap();
        Ok(())
    }

    /// The totals since the last call, slowest first.
    pub(crate) fn take(&self) -> Vec<KernelTime> {
        let mut times: Vec<KernelTime> = lock(&self.tally)
            .totals
            .drain()
            .map(|(name, (dispatches, ns))| KernelTime {
                name: name.to_string(),
                dispatches,
                ms: ns / 1e6,
            })
            .collect();
        times.sort_by(|a, b| b.ms.total_cmp(&a.ms).then_with(|| a.name.cmp(&b.name)));
        times
    }
}
