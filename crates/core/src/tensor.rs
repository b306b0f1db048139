//! `Tensor`: an immutable n-d array of f32 (or f16) on a device, with an optional autodiff
//! node.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::autograd::{self, BackwardFn, Edge, Node, Saved};
use crate::backend::{Backend, Storage};
use crate::ops::{check_output, on_device};
use crate::shape::{checked_numel, numel};
use crate::{rng, DType, Device, Error, Result};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) struct Inner {
    pub(crate) id: u64,
    pub(crate) shape: Vec<usize>,
    pub(crate) device: Device,
    // A lock so that optimizers and running statistics can swap a parameter's data in
    // place while every clone of the handle sees the update.
    storage: RwLock<Storage>,
    requires_grad: AtomicBool,
    pub(crate) grad_fn: Option<Arc<Node>>,
    grad: Mutex<Option<Tensor>>,
}

impl Drop for Inner {
    // Dropping a long chain of nodes recursively would overflow the stack (a 20,000-op
    // graph is ordinary in an unrolled loop), so unlink the graph iteratively: whenever
    // this is the last handle on a node, take its edges before it drops.
    fn drop(&mut self) {
        let mut pending: Vec<Arc<Node>> = self.grad_fn.take().into_iter().collect();
        while let Some(node) = pending.pop() {
            let Ok(node) = Arc::try_unwrap(node) else {
                continue;
            };
            let saved = node.saved.into_inner().unwrap_or_else(|e| e.into_inner());
            if let Some(Saved { edges, backward }) = saved {
                // Tensors the rule saved go first; their nodes are still held by the
                // edges, so this recurses no deeper than one level.
                drop(backward);
                for edge in edges {
                    if let Edge::Op(n) = edge {
                        pending.push(n);
                    }
                }
            }
        }
    }
}

/// An n-dimensional array of f32 values (NCHW for images) on a [`Device`].
///
/// Cloning is cheap and shares data and gradient. Ops return new tensors; when an input
/// requires grad (and grad mode is on), the result records how to propagate gradients.
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<Inner>);

impl Tensor {
    pub(crate) fn build(
        storage: Storage,
        shape: Vec<usize>,
        device: Device,
        grad_fn: Option<Arc<Node>>,
    ) -> Tensor {
        debug_assert_eq!(storage.len(), numel(&shape));
        Tensor(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shape,
            device,
            storage: RwLock::new(storage),
            requires_grad: AtomicBool::new(false),
            grad_fn,
            grad: Mutex::new(None),
        }))
    }

    /// A tensor that records no graph (a constant or a fresh leaf).
    pub(crate) fn leaf(storage: Storage, shape: Vec<usize>, device: &Device) -> Tensor {
        Tensor::build(storage, shape, device.clone(), None)
    }

    /// The result of an op: records a graph node when grad mode is on and any input
    /// tracks gradients. `backward` maps the output gradient to one optional gradient per
    /// input, in order. Kernels compute in f32; the result is rounded to f16 where the
    /// inputs are f16 (see [`result_dtype`]).
    pub(crate) fn from_op(
        storage: Storage,
        shape: Vec<usize>,
        device: &Device,
        name: &'static str,
        inputs: &[&Tensor],
        backward: impl Fn(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
    ) -> Tensor {
        Tensor::from_op_as(
            result_dtype(inputs),
            storage,
            shape,
            device,
            name,
            inputs,
            backward,
        )
    }

    /// [`Tensor::from_op`] whose result has `dtype`.
    pub(crate) fn from_op_as(
        dtype: DType,
        storage: Storage,
        shape: Vec<usize>,
        device: &Device,
        name: &'static str,
        inputs: &[&Tensor],
        backward: impl Fn(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
    ) -> Tensor {
        let storage = if storage.dtype() == dtype {
            storage
        } else {
            on_device(device.backend().cast(&storage, dtype), name)
        };
        let track = autograd::is_grad_enabled() && inputs.iter().any(|t| t.tracks_grad());
        let node = track.then(|| {
            Arc::new(Node::new(
                name,
                shape.clone(),
                storage.dtype(),
                inputs.iter().map(|&t| Edge::to(t)).collect(),
                Box::new(backward) as BackwardFn,
            ))
        });
        Tensor::build(storage, shape, device.clone(), node)
    }

    /// A tensor from host data in row-major order; fails when `data.len()` does not match
    /// the shape or the device cannot hold it. On the CPU the vector becomes the tensor's
    /// storage without a copy.
    pub fn from_vec(data: Vec<f32>, shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::check_host("from_vec", data.len(), shape, device)?;
        let storage = device
            .backend()
            .upload_vec(data)
            .map_err(|e| e.in_op("from_vec", &[shape]))?;
        Ok(Tensor::leaf(storage, shape.to_vec(), device))
    }

    /// Like [`Tensor::from_vec`] from a borrowed slice.
    pub fn from_slice(data: &[f32], shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::check_host("from_vec", data.len(), shape, device)?;
        let storage = device
            .backend()
            .upload(data)
            .map_err(|e| e.in_op("from_vec", &[shape]))?;
        Ok(Tensor::leaf(storage, shape.to_vec(), device))
    }

    /// Fails unless `len` host values fill `shape` exactly and the device holds them.
    fn check_host(op: &'static str, len: usize, shape: &[usize], device: &Device) -> Result<()> {
        let n = checked_numel(op, shape)?;
        if len != n {
            return Err(Error::op(
                op,
                format!("{len} values do not fill shape {shape:?} ({n} elements)"),
            ));
        }
        check_output(op, &[shape], shape, device).map(|_| ())
    }

    /// A 0-dimensional tensor holding `value`.
    pub fn scalar(value: f32, device: &Device) -> Tensor {
        Tensor::full(&[], value, device)
    }

    /// A tensor of `value` everywhere.
    ///
    /// # Panics
    /// With fovea's error message, when the device cannot hold it: its element count
    /// overflows, or passes [`Device::max_len`] (a GPU binds at most that many values to a
    /// shader; the CPU's limit is its memory), or the system refuses the memory.
    /// [`Tensor::try_full`] returns that as an error instead.
    pub fn full(shape: &[usize], value: f32, device: &Device) -> Tensor {
        Tensor::try_full(shape, value, device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Tensor::full`], with an error naming the shape where the device cannot hold it.
    pub fn try_full(shape: &[usize], value: f32, device: &Device) -> Result<Tensor> {
        let len = check_output("full", &[shape], shape, device)?;
        let storage = device
            .backend()
            .fill(len, value)
            .map_err(|e| e.in_op("full", &[shape]))?;
        Ok(Tensor::leaf(storage, shape.to_vec(), device))
    }

    /// [`Tensor::zeros`], with an error where the device cannot hold it.
    pub fn try_zeros(shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::try_full(shape, 0.0, device)
    }

    /// A tensor of zeros (panics like [`Tensor::full`]).
    pub fn zeros(shape: &[usize], device: &Device) -> Tensor {
        Tensor::full(shape, 0.0, device)
    }

    /// A tensor of ones (panics like [`Tensor::full`]).
    pub fn ones(shape: &[usize], device: &Device) -> Tensor {
        Tensor::full(shape, 1.0, device)
    }

    /// Zeros with this tensor's shape, device and dtype.
    pub fn zeros_like(&self) -> Tensor {
        self.full_like(0.0)
    }

    /// Ones with this tensor's shape, device and dtype.
    pub fn ones_like(&self) -> Tensor {
        self.full_like(1.0)
    }

    fn full_like(&self, value: f32) -> Tensor {
        let t = Tensor::full(self.shape(), value, self.device());
        on_device(t.to_dtype(self.dtype()), "full")
    }

    /// Values of a seeded stream: the shape is checked against the device before the
    /// host buffer is made.
    fn from_stream(
        op: &'static str,
        shape: &[usize],
        seed: u64,
        device: &Device,
        fill: fn(&mut [f32], u64),
    ) -> Result<Tensor> {
        let len = check_output(op, &[shape], shape, device)?;
        let mut data = crate::host::zeros(len).map_err(|e| e.in_op(op, &[shape]))?;
        fill(&mut data, seed);
        let storage = device
            .backend()
            .upload_vec(data)
            .map_err(|e| e.in_op(op, &[shape]))?;
        Ok(Tensor::leaf(storage, shape.to_vec(), device))
    }

    /// Uniform values in `[0, 1)` from a counter-based stream: the same seed gives the
    /// same values on every backend and thread count. Panics like [`Tensor::full`] where
    /// the device cannot hold the shape; [`Tensor::try_rand`] returns an error instead.
    pub fn rand(shape: &[usize], seed: u64, device: &Device) -> Tensor {
        Tensor::try_rand(shape, seed, device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Tensor::rand`], with an error naming the shape where the device cannot hold it.
    pub fn try_rand(shape: &[usize], seed: u64, device: &Device) -> Result<Tensor> {
        Tensor::from_stream("rand", shape, seed, device, rng::fill_uniform)
    }

    /// Standard normal values from a counter-based stream (see [`Tensor::rand`]).
    pub fn randn(shape: &[usize], seed: u64, device: &Device) -> Tensor {
        Tensor::try_randn(shape, seed, device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Tensor::randn`], with an error naming the shape where the device cannot hold it.
    pub fn try_randn(shape: &[usize], seed: u64, device: &Device) -> Result<Tensor> {
        Tensor::from_stream("randn", shape, seed, device, rng::fill_normal)
    }

    /// `[start, start + step, …]` up to but excluding `end`, like `torch.arange`.
    pub fn arange(start: f32, end: f32, step: f32, device: &Device) -> Result<Tensor> {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            return Err(Error::op(
                "arange",
                format!("needs finite bounds and a non-zero step, got start {start}, end {end}, step {step}"),
            ));
        }
        let count = ((end - start) / step).ceil().max(0.0);
        // Checked as a float: `as usize` would saturate a count past the device (or an
        // infinite one, when end − start overflows f32) into a buffer nobody can allocate.
        if !count.is_finite() || count > device.max_len() as f32 {
            return Err(Error::op(
                "arange",
                format!(
                    "start {start}, end {end}, step {step} give {count} values, more than the {} one tensor may hold on {}",
                    device.max_len(),
                    device.name()
                ),
            ));
        }
        let n = count as usize;
        let mut data = crate::host::with_capacity(n).map_err(|e| e.in_op("arange", &[&[n]]))?;
        data.extend((0..n).map(|i| start + i as f32 * step));
        Tensor::from_vec(data, &[n], device)
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// The shape (alias of [`Tensor::shape`]).
    pub fn dims(&self) -> &[usize] {
        &self.0.shape
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.0.shape)
    }

    /// The device the tensor lives on.
    pub fn device(&self) -> &Device {
        &self.0.device
    }

    pub(crate) fn backend(&self) -> &dyn Backend {
        self.0.device.backend()
    }

    /// The storage, for an op to write over, when no one else can observe it: this is the
    /// only handle on the tensor and no gradient flows through it (no graph node, not
    /// tracking). Whether another tensor shares the buffer is the backend's to check.
    pub(crate) fn sole_storage(&mut self) -> Option<&mut Storage> {
        let inner = Arc::get_mut(&mut self.0)?;
        if inner.grad_fn.is_some() || *inner.requires_grad.get_mut() {
            return None;
        }
        Some(inner.storage.get_mut().unwrap_or_else(|e| e.into_inner()))
    }

    /// The backend storage currently behind this tensor.
    pub fn storage(&self) -> Storage {
        self.0
            .storage
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.0
            .storage
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .dtype()
    }

    /// The values as f32 storage, as kernels read them: an f16 tensor's are widened
    /// (exactly) into a new buffer.
    pub(crate) fn f32_storage(&self) -> Storage {
        let s = self.storage();
        match s.dtype() {
            DType::F32 => s,
            _ => on_device(self.backend().cast(&s, DType::F32), "to_dtype(float32)"),
        }
    }

    /// This tensor's values as `dtype` (a copy, unless it already is): f32 → f16 rounds
    /// to nearest, ties to even, and overflows to ±inf, as PyTorch's `.to(torch.float16)`.
    /// Differentiable: the gradient comes back in this tensor's dtype. Ops on f16 tensors
    /// compute in f32 and round their results to f16; elementwise ops that mix f16 and
    /// f32 give f32, and matrix products and convolutions that mix them are an error
    /// naming both dtypes, as in PyTorch.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        let from = self.dtype();
        if from == dtype {
            return Ok(self.clone());
        }
        let s = self
            .backend()
            .cast(&self.storage(), dtype)
            .map_err(|e| e.in_op("to_dtype", &[self.shape()]))?;
        Ok(Tensor::from_op_as(
            dtype,
            s,
            self.shape().to_vec(),
            self.device(),
            "to_dtype",
            &[self],
            move |g| Ok(vec![Some(g.to_dtype(from)?)]),
        ))
    }

    /// [`Tensor::to_dtype`] f16 (PyTorch's `.half()`).
    pub fn half(&self) -> Result<Tensor> {
        self.to_dtype(DType::F16)
    }

    /// [`Tensor::to_dtype`] f32 (PyTorch's `.float()`).
    pub fn float(&self) -> Result<Tensor> {
        self.to_dtype(DType::F32)
    }

    /// Converts this tensor's data to `dtype` in place, outside the graph, where every
    /// clone of the handle sees it: how [`crate::nn::Module::to_dtype`] turns a model's
    /// parameters to f16, as PyTorch's `module.half()`. Its gradient is forgotten.
    pub fn set_dtype(&self, dtype: DType) -> Result<()> {
        let mut slot = self.0.storage.write().unwrap_or_else(|e| e.into_inner());
        if slot.dtype() != dtype {
            *slot = self
                .backend()
                .cast(&slot, dtype)
                .map_err(|e| e.in_op("set_dtype", &[self.shape()]))?;
            drop(slot);
            self.zero_grad();
        }
        Ok(())
    }

    /// A process-unique id (stable for the tensor's lifetime).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// Copies the values to the host in row-major order (an f16 tensor's widened to f32).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        self.backend().download(&self.storage())
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::op(
                "item",
                format!(
                    "needs a tensor with one element, got shape {:?}",
                    self.shape()
                ),
            ));
        }
        Ok(self.to_vec()?[0])
    }

    /// A copy on another device (differentiable: gradients flow back to this device).
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        if device.same(self.device()) {
            return Ok(self.clone());
        }
        check_output("to_device", &[self.shape()], self.shape(), device)?;
        let data = self.to_vec()?;
        let storage = device
            .backend()
            .upload_vec(data)
            .map_err(|e| e.in_op("to_device", &[self.shape()]))?;
        let back = self.device().clone();
        Ok(Tensor::from_op(
            storage,
            self.shape().to_vec(),
            device,
            "to_device",
            &[self],
            move |g| Ok(vec![Some(g.to_device(&back)?)]),
        ))
    }

    /// Marks a leaf tensor as a parameter whose gradient is wanted; returns it.
    pub fn requires_grad(self) -> Tensor {
        self.set_requires_grad(true);
        self
    }

    /// Turns gradient tracking of a leaf on or off in place (off freezes a parameter: it
    /// gets no gradient and optimizers leave it alone). Every clone of the handle sees it.
    pub fn set_requires_grad(&self, on: bool) {
        self.0.requires_grad.store(on, Ordering::Relaxed);
    }

    /// True for a leaf that accumulates gradients.
    pub fn is_requires_grad(&self) -> bool {
        self.0.requires_grad.load(Ordering::Relaxed)
    }

    /// True when gradients flow through this tensor (a parameter or an op result that
    /// depends on one).
    pub fn tracks_grad(&self) -> bool {
        self.is_requires_grad() || self.0.grad_fn.is_some()
    }

    /// True for tensors not produced by a recorded op.
    pub fn is_leaf(&self) -> bool {
        self.0.grad_fn.is_none()
    }

    /// The accumulated gradient of a leaf, if any backward pass reached it.
    pub fn grad(&self) -> Option<Tensor> {
        self.0
            .grad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets the accumulated gradient.
    pub fn zero_grad(&self) {
        *self.0.grad.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Replaces the accumulated gradient (`None` forgets it): how data-parallel training
    /// writes back gradients summed across replicas. The gradient must have this tensor's
    /// shape and live on its device.
    pub fn set_grad(&self, g: Option<Tensor>) -> Result<()> {
        if let Some(g) = &g {
            if g.shape() != self.shape() || !g.device().same(self.device()) {
                return Err(Error::op(
                    "set_grad",
                    format!(
                        "gradient {:?} on {} for a tensor {:?} on {}",
                        g.shape(),
                        g.device().name(),
                        self.shape(),
                        self.device().name()
                    ),
                ));
            }
        }
        // A gradient takes its tensor's dtype.
        let g = g.map(|g| g.detach().to_dtype(self.dtype())).transpose()?;
        *self.0.grad.lock().unwrap_or_else(|e| e.into_inner()) = g;
        Ok(())
    }

    pub(crate) fn accumulate_grad(&self, g: Tensor) -> Result<()> {
        let mut slot = self.0.grad.lock().unwrap_or_else(|e| e.into_inner());
        let sum = match slot.take() {
            Some(prev) => prev.into_add(&g)?,
            None => g,
        };
        *slot = Some(sum);
        Ok(())
    }

    /// The same data, cut from the graph (no gradient flows through it).
    pub fn detach(&self) -> Tensor {
        Tensor::leaf(self.storage(), self.shape().to_vec(), self.device())
    }

    /// Replaces this tensor's data with `src`'s, in place and outside the graph: how
    /// optimizers update parameters and batch norm its running statistics.
    pub fn assign(&self, src: &Tensor) -> Result<()> {
        if src.shape() != self.shape() {
            return Err(Error::op(
                "assign",
                format!(
                    "source shape {:?} differs from target shape {:?}",
                    src.shape(),
                    self.shape()
                ),
            ));
        }
        let storage = if src.device().same(self.device()) {
            src.storage()
        } else {
            self.backend().upload(&src.to_vec()?)?
        };
        // The target keeps its dtype, as PyTorch's `copy_`.
        let dtype = self.dtype();
        let storage = if storage.dtype() == dtype {
            storage
        } else {
            self.backend()
                .cast(&storage, dtype)
                .map_err(|e| e.in_op("assign", &[self.shape()]))?
        };
        *self.0.storage.write().unwrap_or_else(|e| e.into_inner()) = storage;
        Ok(())
    }

    /// Backpropagates from this one-element tensor (a loss): every leaf that requires grad
    /// and contributed to it accumulates its gradient.
    pub fn backward(&self) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::Autograd(format!(
                "backward() needs a one-element tensor (a loss), got shape {:?}; use backward_with(grad) to pass the upstream gradient",
                self.shape()
            )));
        }
        self.backward_with(&self.ones_like())
    }

    /// Backpropagates with an explicit upstream gradient of this tensor's shape.
    pub fn backward_with(&self, grad: &Tensor) -> Result<()> {
        if grad.shape() != self.shape() {
            return Err(Error::Autograd(format!(
                "backward_with: gradient shape {:?} differs from tensor shape {:?}",
                grad.shape(),
                self.shape()
            )));
        }
        if !grad.device().same(self.device()) {
            return Err(Error::DeviceMismatch {
                op: "backward_with",
                devices: (self.device().name(), grad.device().name()),
            });
        }
        autograd::run_backward(self, grad.detach(), false)
    }

    /// [`Tensor::backward`] that keeps the graph's saved tensors, so that another backward
    /// can run through the same graph (PyTorch's `retain_graph=True`). Memory stays held
    /// until the graph is dropped.
    pub fn backward_retain_graph(&self) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::Autograd(format!(
                "backward_retain_graph() needs a one-element tensor (a loss), got shape {:?}",
                self.shape()
            )));
        }
        autograd::run_backward(self, self.ones_like().detach(), true)
    }
}

/// An op's result dtype: f16 when its inputs are f16, else f32. Zero-dimensional inputs
/// (scalars) count only when every input is one, as in PyTorch's type promotion, so that
/// `x * scalar` keeps x's dtype.
pub(crate) fn result_dtype(inputs: &[&Tensor]) -> DType {
    let shaped = inputs.iter().any(|t| t.rank() > 0);
    let mut counted = inputs.iter().filter(|t| !shaped || t.rank() > 0).peekable();
    if counted.peek().is_some() && counted.all(|t| t.dtype() == DType::F16) {
        DType::F16
    } else {
        DType::F32
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor{:?} on {}", self.shape(), self.device().name())?;
        if self.dtype() != DType::F32 {
            write!(f, " {}", self.dtype())?;
        }
        if let Some(node) = &self.0.grad_fn {
            write!(f, " (grad_fn: {})", node.name)?;
        } else if self.is_requires_grad() {
            write!(f, " (requires_grad)")?;
        }
        Ok(())
    }
}

impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")?;
        if let Ok(values) = self.to_vec() {
            let shown: Vec<String> = values.iter().take(16).map(|v| format!("{v:.4}")).collect();
            write!(
                f,
                " [{}{}]",
                shown.join(", "),
                if values.len() > 16 { ", …" } else { "" }
            )?;
        }
        Ok(())
    }
}
