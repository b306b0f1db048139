//! Buffers pooled by size class. A tensor's buffer returns to the pool when the last
//! storage handle drops, so a training loop reaches a steady state instead of allocating
//! every step. Idle buffers are released when keeping them would grow the pool past
//! `SLACK` times the most ever in use: without that, every class keeps as many buffers as
//! it once needed at the same time, and a 512×512 style step held twice its live bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Smallest buffer handed out: also the size of empty tensors' buffers (wgpu cannot bind
/// a zero-sized range).
const MIN_BYTES: u64 = 256;

/// How far the pool may grow beyond the most bytes ever in use before idle buffers are
/// released to make room.
const SLACK: f64 = 1.5;

/// How many times a request's class an idle buffer may be and still be lent to it, where
/// the pool would otherwise release buffers to grow.
const BORROW: u64 = 4;

/// Rounds up to one of four classes per power of two (≤ 25% waste), but never past
/// `max` (the largest buffer the device binds, whose bytes `bytes` must not exceed): a
/// tensor just under that limit gets a buffer of its own size, not one too large to bind
/// (DX12 binds up to 2³¹ − 1 bytes, whose class would be 2³¹).
pub fn size_class(bytes: u64, max: u64) -> u64 {
    let b = bytes.max(MIN_BYTES);
    let pow = 1u64 << (63 - b.leading_zeros());
    let class = if b == pow {
        b
    } else {
        let quarter = pow / 4;
        b.div_ceil(quarter) * quarter
    };
    // Copies need sizes that are multiples of 4.
    class.min(max & !3).max(bytes)
}

/// Counters for tests and memory reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers created over the pool's lifetime.
    pub allocated: usize,
    /// Bytes in all buffers created (live or cached).
    pub allocated_bytes: u64,
    /// Buffers waiting in the pool for reuse.
    pub cached: usize,
    /// Largest number of bytes held at once.
    pub peak_bytes: u64,
    /// Bytes in buffers that tensors hold now.
    pub in_use_bytes: u64,
    /// Most bytes tensors held at once.
    pub in_use_peak: u64,
    /// Idle buffers released to keep the pool within its slack.
    pub released: usize,
}

/// The pool: free buffers by size class.
#[derive(Default)]
pub struct Pool {
    free: Mutex<(HashMap<u64, Vec<wgpu::Buffer>>, PoolStats)>,
}

/// A pooled storage buffer holding a tensor's f32 values.
pub struct GpuBuffer {
    buffer: Option<wgpu::Buffer>,
    pool: Arc<Pool>,
}

impl GpuBuffer {
    /// The wgpu buffer (its size is the size class, at least the tensor's bytes).
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer present until drop")
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            let mut g = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
            g.1.in_use_bytes -= b.size();
            g.0.entry(b.size()).or_default().push(b);
            g.1.cached += 1;
        }
    }
}

impl Pool {
    /// A buffer of at least `bytes` and at most `max` (see [`size_class`]), reused when
    /// one of its class is free.
    pub fn get(self: &Arc<Self>, device: &wgpu::Device, bytes: u64, max: u64) -> GpuBuffer {
        let class = size_class(bytes, max);
        let mut g = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let (free, stats) = &mut *g;
        let cap = (stats.in_use_peak as f64 * SLACK) as u64;
        let mut reused = free.get_mut(&class).and_then(|v| v.pop());
        if reused.is_none() && stats.allocated_bytes + class > cap {
            // Growing would release an idle buffer: lend a larger one instead. Releasing
            // the largest to make a smaller class made LeNet's training step create and
            // release buffers every step, the two classes taking turns.
            reused = free
                .iter_mut()
                .filter(|(&size, l)| size > class && size <= BORROW * class && !l.is_empty())
                .min_by_key(|(&size, _)| size)
                .and_then(|(_, l)| l.pop());
        }
        let size = reused.as_ref().map_or(class, |b| b.size());
        stats.in_use_bytes += size;
        stats.in_use_peak = stats.in_use_peak.max(stats.in_use_bytes);
        let buffer = match reused {
            Some(b) => {
                stats.cached -= 1;
                b
            }
            None => {
                // Release idle buffers, largest class first, while the pool would outgrow
                // its slack over the peak in use. (wgpu frees them once the GPU is done.)
                while stats.allocated_bytes + class > cap {
                    let Some((&size, list)) = free
                        .iter_mut()
                        .filter(|(_, l)| !l.is_empty())
                        .max_by_key(|(&size, _)| size)
                    else {
                        break;
                    };
                    list.pop();
                    stats.cached -= 1;
                    stats.released += 1;
                    stats.allocated_bytes -= size;
                }
                stats.allocated += 1;
                stats.allocated_bytes += class;
                stats.peak_bytes = stats.peak_bytes.max(stats.allocated_bytes);
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("fovea tensor"),
                    size: class,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            }
        };
        GpuBuffer {
            buffer: Some(buffer),
            pool: self.clone(),
        }
    }

    /// Releases every idle buffer (wgpu frees each once the GPU is done with it).
    pub fn release_idle(&self) {
        let mut g = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let (free, stats) = &mut *g;
        for (size, list) in free.drain() {
            stats.cached -= list.len();
            stats.released += list.len();
            stats.allocated_bytes -= size * list.len() as u64;
        }
    }

    /// Current counters.
    pub fn stats(&self) -> PoolStats {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn classes_round_up_by_at_most_a_quarter() {
        let any = u64::MAX;
        assert_eq!(size_class(1, any), 256);
        assert_eq!(size_class(1024, any), 1024);
        assert_eq!(size_class(1025, any), 1280);
        assert_eq!(size_class(1900, any), 2048);
        for b in [300u64, 5000, 123_456, 9_999_999] {
            let c = size_class(b, any);
            assert!(c >= b && (c as f64) <= b as f64 * 1.25 + 1.0, "{b} -> {c}");
        }
    }

    #[test]
    fn classes_stop_at_the_largest_buffer_the_device_binds() {
        let dx12 = (1u64 << 31) - 1;
        assert_eq!(size_class(1_900_000_000, dx12), dx12 & !3);
        assert_eq!(size_class(1 << 30, dx12), 1 << 30);
        // Under the limit, the classes are as before.
        assert_eq!(size_class(1_100_000_000, dx12), 1_342_177_280);
    }
}
