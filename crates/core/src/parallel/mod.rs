//! Data-parallel training: one replica of the model per device, the batch split between
//! them, gradients summed across replicas (and across processes through an [`AllReduce`]
//! such as MPI's) after backward, and one optimizer step per replica, so every replica
//! keeps the same weights as one device training on the whole batch.
//!
//! Gradients are staged through the host in buckets of at most
//! [`DataParallel::bucket_floats`] values, summed in a fixed order (replica 0, 1, …, then
//! the processes' reduction), and written back to every replica: the result does not
//! depend on thread timing. Batch-norm statistics stay per replica by default (PyTorch's
//! default): weights agree across replicas, running statistics need not. With
//! [`DataParallel::sync_batch_norm`] they are those of the whole batch across replicas and
//! processes (PyTorch's `SyncBatchNorm`), and the running statistics agree too.
//!
//! A replica that fails or panics ends the step with an error naming it; replicas waiting
//! to sum statistics with it fail too instead of waiting forever.

mod reduce;
mod sync;

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

pub use reduce::{AllReduce, LocalWorld};
pub(crate) use sync::ReplicaSum;

use crate::nn::Module;
use crate::{Device, Error, Result, Tensor};

/// Replicas of one model on several devices (see the module docs).
pub struct DataParallel<M: Module> {
    replicas: Vec<M>,
    devices: Vec<Device>,
    params: Vec<Vec<Tensor>>,
    world: Box<dyn AllReduce>,
    /// largest host buffer one all-reduce call carries (values); 4 M by default
    pub bucket_floats: usize,
    reduce_ns: AtomicU64,
}

/// The names and shapes of a module's parameters, in order.
fn signature(m: &dyn Module) -> Vec<(String, Vec<usize>)> {
    let mut sig = Vec::new();
    m.visit_parameters("", &mut |n, t| {
        sig.push((n.to_string(), t.shape().to_vec()))
    });
    sig
}

fn parameters(m: &dyn Module) -> Vec<Tensor> {
    let mut ps = Vec::new();
    m.visit_parameters("", &mut |_, t| ps.push(t.clone()));
    ps
}

impl<M: Module> DataParallel<M> {
    /// Builds one replica per device with `build` and copies replica 0's parameters and
    /// buffers into the others. Devices must all be CPUs or all GPUs and distinct, and
    /// every replica must have the same parameters (names and shapes).
    pub fn new(devices: &[Device], build: impl Fn(&Device) -> Result<M>) -> Result<Self> {
        if devices.is_empty() {
            return Err(Error::op("data_parallel", "needs at least one device"));
        }
        for (i, d) in devices.iter().enumerate() {
            if d.is_gpu() != devices[0].is_gpu() {
                return Err(Error::op(
                    "data_parallel",
                    format!(
                        "replicas on devices of different kinds: {} (device 0) and {} (device {i})",
                        devices[0].name(),
                        d.name()
                    ),
                ));
            }
            if devices[..i].iter().any(|e| e.same(d)) {
                return Err(Error::op(
                    "data_parallel",
                    format!("device {i} ({}) is listed twice", d.name()),
                ));
            }
        }
        let replicas = devices.iter().map(&build).collect::<Result<Vec<M>>>()?;
        let sig = signature(&replicas[0]);
        for (i, r) in replicas.iter().enumerate().skip(1) {
            if signature(r) != sig {
                return Err(Error::op(
                    "data_parallel",
                    format!("replica {i} has other parameters than replica 0"),
                ));
            }
        }
        let dp = DataParallel {
            params: replicas.iter().map(|r| parameters(r)).collect(),
            replicas,
            devices: devices.to_vec(),
            world: Box::new(LocalWorld),
            bucket_floats: 4 << 20,
            reduce_ns: AtomicU64::new(0),
        };
        dp.broadcast_from_first()?;
        Ok(dp)
    }

    /// Joins a group of processes (MPI ranks): gradients are also summed across them.
    /// Every process must hold the same model; this is checked once, here, and replica
    /// 0's parameters of rank 0 are copied everywhere.
    pub fn with_world(mut self, world: Box<dyn AllReduce>) -> Result<Self> {
        let sig = signature(&self.replicas[0]);
        let (count, values) = (
            sig.len() as f64,
            sig.iter()
                .map(|(_, s)| s.iter().product::<usize>())
                .sum::<usize>() as f64,
        );
        // Names and shapes folded into 24 bits, so its square stays exact in f64.
        let shapes = sig.iter().fold(0x811c_9dc5u32, |h, (name, shape)| {
            let bytes = name
                .bytes()
                .chain(shape.iter().flat_map(|d| d.to_le_bytes()));
            bytes.fold(h, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
        }) as f64
            % 16_777_216.0;
        let mut check = [
            1.0,
            count,
            values,
            shapes,
            count * count,
            values * values,
            shapes * shapes,
        ];
        world.all_reduce_sum_f64(&mut check)?;
        let n = check[0];
        // Sums of x and x² over the ranks equal n·x and n·x² only when every rank has x.
        let local = [count, values, shapes];
        let agree = (0..3).all(|k| {
            (check[1 + k] - n * local[k]).abs() < 0.5
                && (check[4 + k] - n * local[k] * local[k]).abs() < 0.5
        });
        if !agree {
            return Err(Error::op(
                "data_parallel",
                format!(
                    "the ranks disagree on the model (parameter names, shapes or counts): this rank ({} of {}) has {count} parameter tensors with {values} values",
                    world.rank(),
                    world.size()
                ),
            ));
        }
        for p in &self.params[0] {
            let mut v = p.to_vec()?;
            world.broadcast_from_root(&mut v)?;
            p.assign(&Tensor::from_vec(v, p.shape(), p.device())?)?;
        }
        self.world = world;
        self.broadcast_from_first()?;
        Ok(self)
    }

    fn broadcast_from_first(&self) -> Result<()> {
        let mut first = Vec::new();
        self.replicas[0].visit_parameters("", &mut |_, t| first.push(t.clone()));
        self.replicas[0].visit_buffers("", &mut |_, t| first.push(t.clone()));
        for r in &self.replicas[1..] {
            let mut mine = Vec::new();
            r.visit_parameters("", &mut |_, t| mine.push(t.clone()));
            r.visit_buffers("", &mut |_, t| mine.push(t.clone()));
            for (dst, src) in mine.iter().zip(&first) {
                dst.assign(src)?;
            }
        }
        Ok(())
    }

    /// Batch norm layers normalise with the statistics of the whole batch across the
    /// replicas and processes (`true`, PyTorch's `SyncBatchNorm`) or of each replica's
    /// share (`false`, the default); see [`crate::nn::Module::set_sync_batch_norm`].
    pub fn sync_batch_norm(self, sync: bool) -> Self {
        self.replicas
            .iter()
            .for_each(|r| r.set_sync_batch_norm(sync));
        self
    }

    /// Gives back the group of processes (MPI initialises once per process, so a second
    /// `DataParallel` reuses it).
    pub fn into_world(self) -> Box<dyn AllReduce> {
        self.world
    }

    /// Milliseconds the last [`DataParallel::all_reduce_gradients`] took (staging through
    /// the host and summing across replicas and processes).
    pub fn last_reduce_ms(&self) -> f64 {
        self.reduce_ns.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// The replicas, one per device.
    pub fn replicas(&self) -> &[M] {
        &self.replicas
    }

    /// The devices, one per replica.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// Replica `i`'s parameters in `visit_parameters` order (to build its optimizer).
    pub fn parameters(&self, i: usize) -> Vec<Tensor> {
        self.params[i].clone()
    }

    /// The rows of a batch of `n` each replica takes: contiguous, as equal as possible,
    /// the first replicas taking one more. Fewer rows than replicas is an error.
    pub fn shards(&self, n: usize) -> Result<Vec<Range<usize>>> {
        let r = self.replicas.len();
        if n < r {
            return Err(Error::op(
                "data_parallel",
                format!("a batch of {n} cannot be split between {r} replicas"),
            ));
        }
        let mut start = 0;
        Ok((0..r)
            .map(|i| {
                let len = n / r + usize::from(i < n % r);
                start += len;
                start - len..start
            })
            .collect())
    }

    /// One forward and backward pass over a batch: replica `i` runs `loss` on its shard
    /// of every tensor in `batch` (rows split along dimension 0, moved to its device),
    /// scaled by its share of the whole batch across all processes so that the summed
    /// gradients are those of the mean loss; then the gradients are summed everywhere.
    /// Returns the mean loss over the whole batch. Replicas run in their own threads.
    pub fn forward_backward(
        &self,
        batch: &[&Tensor],
        loss: impl Fn(&M, &[Tensor]) -> Result<Tensor> + Sync,
    ) -> Result<f32> {
        let n = batch
            .first()
            .map_or(0, |t| t.shape().first().copied().unwrap_or(0));
        if let Some(t) = batch.iter().find(|t| t.shape().first() != Some(&n)) {
            return Err(Error::op(
                "data_parallel",
                format!(
                    "batch tensors disagree on their rows: {n} and {:?}",
                    t.shape()
                ),
            ));
        }
        let shards = self.shards(n)?;
        let mut total = [n as f64];
        self.world.all_reduce_sum_f64(&mut total)?;
        for ps in &self.params {
            ps.iter().for_each(Tensor::zero_grad);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        // Autocast is per thread: the replicas' threads take the caller's, as PyTorch's
        // `parallel_apply` does.
        let autocast = crate::autocast::is_autocast_enabled();
        let (mut results, finished) = std::thread::scope(|s| {
            let handles: Vec<_> = shards
                .iter()
                .enumerate()
                .map(|(i, rows)| {
                    let (loss, tx) = (&loss, tx.clone());
                    s.spawn(move || -> Result<f32> {
                        let _autocast = crate::autocast::Guard::set(autocast);
                        let _joined = sync::join(i, tx);
                        let part = batch
                            .iter()
                            .map(|t| {
                                t.narrow(0, rows.start, rows.len())?
                                    .to_device(&self.devices[i])
                            })
                            .collect::<Result<Vec<_>>>()?;
                        let l = loss(&self.replicas[i], &part)?;
                        let share = (rows.len() as f64 / total[0]) as f32;
                        let scaled = l.mul_scalar(share);
                        scaled.backward()?;
                        scaled.item()
                    })
                })
                .collect();
            drop(tx);
            // This thread sums what the replicas ask for until all have finished.
            let finished = sync::coordinate(rx, shards.len(), &*self.world);
            let results: Vec<Result<f32>> = handles
                .into_iter()
                .enumerate()
                .map(|(i, h)| match h.join() {
                    Ok(r) => r.map_err(|e| {
                        Error::op(
                            "data_parallel",
                            format!("replica {i} ({}): {e}", self.devices[i].name()),
                        )
                    }),
                    Err(panic) => Err(Error::op(
                        "data_parallel",
                        format!(
                            "replica {i} ({}) panicked: {}",
                            self.devices[i].name(),
                            panic_message(&*panic)
                        ),
                    )),
                })
                .collect();
            (results, finished)
        });
        // The first replica to finish with an error caused any others' errors.
        if let Some(&i) = finished.iter().find(|&&i| results[i].is_err()) {
            return Err(results.swap_remove(i).unwrap_err());
        }
        let mut local = [0.0f64];
        for l in results {
            local[0] += l? as f64;
        }
        self.all_reduce_gradients()?;
        self.world.all_reduce_sum_f64(&mut local)?;
        Ok(local[0] as f32)
    }

    /// Sums every parameter's gradient over the replicas and the processes and writes the
    /// sum back to every replica (a missing gradient counts as zero; a parameter no
    /// replica reached keeps none).
    pub fn all_reduce_gradients(&self) -> Result<()> {
        let start = std::time::Instant::now();
        let count = self.params[0].len();
        let mut first = 0;
        while first < count {
            // A bucket: consecutive parameters up to bucket_floats values (at least one).
            let mut end = first;
            let mut len = 0;
            while end < count
                && (end == first || len + self.params[0][end].numel() <= self.bucket_floats)
            {
                len += self.params[0][end].numel();
                end += 1;
            }
            self.reduce_bucket(first..end, len)?;
            first = end;
        }
        let ns = start.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.reduce_ns.store(ns, Ordering::Relaxed);
        Ok(())
    }

    fn reduce_bucket(&self, range: Range<usize>, len: usize) -> Result<()> {
        let mut sum = vec![0.0f32; len];
        let mut reached = vec![false; range.len()];
        for ps in &self.params {
            let mut at = 0;
            for (k, p) in ps[range.clone()].iter().enumerate() {
                if let Some(g) = p.grad() {
                    reached[k] = true;
                    for (s, v) in sum[at..at + p.numel()].iter_mut().zip(g.to_vec()?) {
                        *s += v;
                    }
                }
                at += p.numel();
            }
        }
        self.world.all_reduce_sum(&mut sum)?;
        let mut flags: Vec<f32> = reached.iter().map(|&r| f32::from(u8::from(r))).collect();
        self.world.all_reduce_sum(&mut flags)?;
        for ps in &self.params {
            let mut at = 0;
            for (k, p) in ps[range.clone()].iter().enumerate() {
                let n = p.numel();
                let g = (flags[k] > 0.0)
                    .then(|| {
                        Tensor::from_slice(&sum[at..at + n], p.shape(), p.device())?
                            .to_dtype(p.dtype())
                    })
                    .transpose()?;
                p.set_grad(g)?;
                at += n;
            }
        }
        Ok(())
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}
