//! The `Backend` trait: one flat trait, one method per primitive, and the params structs
//! that carry each primitive's shape arithmetic. Both the CPU reference backend and the
//! wgpu backend implement it; `#[repr(C)]` params mirror the WGSL uniform structs.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::{DType, Result};

/// A backend's opaque buffer of `len` values of one [`DType`]. Cloning shares the buffer:
/// tensors are immutable, so views such as `reshape` share storage freely.
#[derive(Clone)]
pub struct Storage {
    len: usize,
    dtype: DType,
    inner: Arc<dyn Any + Send + Sync>,
}

impl Storage {
    /// Wraps a backend's buffer type holding `len` f32 values.
    pub fn new<T: Any + Send + Sync>(len: usize, buffer: T) -> Self {
        Storage::typed(len, DType::F32, buffer)
    }

    /// Wraps a backend's buffer type holding `len` values of `dtype`.
    pub fn typed<T: Any + Send + Sync>(len: usize, dtype: DType, buffer: T) -> Self {
        Storage {
            len,
            dtype,
            inner: Arc::new(buffer),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// True when the storage holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The backend's buffer, if it is of type `T`.
    pub fn downcast<T: Any>(&self) -> Option<&T> {
        self.inner.downcast_ref::<T>()
    }

    /// The backend's buffer to write, if it is of type `T` and no other handle shares it.
    pub fn downcast_mut<T: Any>(&mut self) -> Option<&mut T> {
        Arc::get_mut(&mut self.inner)?.downcast_mut::<T>()
    }

    /// True when both handles share one buffer.
    pub fn same_buffer(&self, other: &Storage) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Storage({} {})", self.len, self.dtype)
    }
}

/// Elementwise one-input operations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// `-x`
    Neg,
    /// `e^x`
    Exp,
    /// natural log
    Log,
    /// square root
    Sqrt,
    /// `|x|`
    Abs,
    /// `max(x, 0)`
    Relu,
    /// `x` if positive else `slope * x`
    LeakyRelu(f32),
    /// `1 / (1 + e^-x)`
    Sigmoid,
    /// hyperbolic tangent
    Tanh,
    /// `mul * x + add`
    Affine {
        /// factor
        mul: f32,
        /// offset
        add: f32,
    },
    /// `x^p` for a scalar exponent
    Powf(f32),
    /// `1` where `x > 0`, else `0` (the derivative of relu)
    Step,
    /// `-1`, `0` or `1` by the sign of `x`
    Sign,
    /// `1 / x`
    Recip,
    /// `c / x` where c is the scalar: used for `scalar / tensor`
    RDiv(f32),
    /// `min(max(x, min), max)`: hardtanh, ReLU6 with `[0, 6]`
    Clamp {
        /// lower bound
        min: f32,
        /// upper bound
        max: f32,
    },
    /// `1` where `lo < x < hi`, else `0` (the derivative of a clamp)
    Between {
        /// exclusive lower bound
        lo: f32,
        /// exclusive upper bound
        hi: f32,
    },
    /// `x · sigmoid(x)` (SiLU, swish)
    Silu,
    /// the derivative of SiLU: `s · (1 + x · (1 − s))` with `s = sigmoid(x)`
    SiluGrad,
    /// `x · relu6(x + 3) / 6`
    Hardswish,
    /// the derivative of hardswish as PyTorch takes it: `0` below −3, `x / 3 + 0.5` up to 3
    /// (inclusive), `1` above
    HardswishGrad,
    /// `relu6(x + 3) / 6`
    Hardsigmoid,
    /// `1` where `x` is infinite or NaN, else `0` (decided on the bits, so no fast-math
    /// assumption of a shader compiler can fold it away)
    NonFinite,
}

/// Elementwise two-input operations with broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`
    Div,
    /// `max(a, b)`
    Maximum,
    /// `min(a, b)`
    Minimum,
    /// `a^b`
    Pow,
    /// `1` where `a >= b`, else `0`
    Ge,
    /// `1` where `a == b`, else `0`
    Eq,
    /// `a` where `b > 0`, else `0` (a NaN `a` too): ReLU's backward from its output,
    /// PyTorch's `threshold_backward` at 0, one pass where a mask and a product took two
    ReluBackward,
    /// `a + b` where positive, else `0` (a NaN sum too, as [`UnaryOp::Relu`]): a residual
    /// block's sum and activation in one pass over memory instead of two
    AddRelu,
}

/// Reductions over one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// sum
    Sum,
    /// maximum
    Max,
}

/// The largest rank the broadcasting and strided-copy primitives accept.
pub const MAX_RANK: usize = 8;

/// Broadcast binary op: both inputs are read with per-dimension strides (0 where broadcast)
/// against the output shape.
#[derive(Clone, Debug)]
pub struct BinaryParams {
    /// Output shape.
    pub shape: Vec<usize>,
    /// Strides of `a` against the output shape.
    pub a_strides: Vec<usize>,
    /// Strides of `b` against the output shape.
    pub b_strides: Vec<usize>,
}

/// Reduction of the middle axis of a `[outer, len, inner]` view.
#[derive(Clone, Copy, Debug)]
pub struct ReduceParams {
    /// product of the dimensions before the reduced one
    pub outer: usize,
    /// length of the reduced dimension
    pub len: usize,
    /// product of the dimensions after it
    pub inner: usize,
}

/// A tensor seen as `[outer, channels, inner]` with per-channel work along dimension 1
/// (batch norm: N, C and the product of the spatial sizes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelParams {
    /// product of the dimensions before the channel one
    pub outer: usize,
    /// channels
    pub channels: usize,
    /// product of the dimensions after it
    pub inner: usize,
    /// A ReLU fused in (batch norm then ReLU). `channel_affine` without `b` clamps its
    /// output at zero (a NaN becomes 0, as [`UnaryOp::Relu`] does). With `b` (the
    /// forward's input), `channel_affine` and `channel_sums` read `a` (the gradient of the
    /// ReLU's output) as zero wherever the forward's value `b · g[c] + h[c]` was not
    /// positive, `g` and `h` being the forward's coefficients appended to `coef` or
    /// `centers` (`[6C]` and `[4C]`): the mask is recomputed from the input, so the
    /// normalised values need not be kept.
    pub relu: bool,
}

impl ChannelParams {
    /// Values per channel.
    pub fn per_channel(&self) -> usize {
        self.outer * self.inner
    }

    /// Values in all.
    pub fn len(&self) -> usize {
        self.outer * self.channels * self.inner
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads `shape` elements from a source at `offset` with arbitrary strides (0 for
/// broadcast): covers permute, narrow/slice and expand.
#[derive(Clone, Debug)]
pub struct StridedView {
    /// Output shape.
    pub shape: Vec<usize>,
    /// Source strides per output dimension.
    pub strides: Vec<usize>,
    /// Source offset of the first element.
    pub offset: usize,
}

/// Constant padding: `before[d]` and `after[d]` elements around each dimension.
#[derive(Clone, Debug)]
pub struct PadParams {
    /// Input shape.
    pub shape: Vec<usize>,
    /// Elements added before each dimension.
    pub before: Vec<usize>,
    /// Elements added after each dimension.
    pub after: Vec<usize>,
    /// The fill value.
    pub value: f32,
}

/// Concatenation of tensors viewed as `[outer, part_len_i]`.
#[derive(Clone, Debug)]
pub struct CatParams {
    /// product of the dimensions before the cat dimension
    pub outer: usize,
    /// per part: its cat-dimension size times the product of the dimensions after it
    pub part_lens: Vec<usize>,
}

/// Batched matmul `C[b] = op(A[b]) · op(B[b])` with `op` an optional transpose.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct MatmulParams {
    /// batch count
    pub batch: usize,
    /// rows of `C`
    pub m: usize,
    /// shared dimension
    pub k: usize,
    /// columns of `C`
    pub n: usize,
    /// A is stored `[k, m]` per batch instead of `[m, k]`
    pub trans_a: bool,
    /// B is stored `[n, k]` per batch instead of `[k, n]`
    pub trans_b: bool,
    /// A is one matrix shared by every batch (batch stride 0)
    pub a_shared: bool,
    /// B is one matrix shared by every batch (batch stride 0)
    pub b_shared: bool,
}

/// The full shape arithmetic of a 2-D convolution (PyTorch semantics). Transposed
/// convolution reuses it: its forward is this conv's input gradient. The ops hand the
/// backends [`Conv2dParams::normalized`] ones, whose stride along an axis with one output
/// is 1 whatever the caller's was, so the input may be longer than that output reads:
/// kernels size their loops and buffers from `h`, `w`, `oh` and `ow`, not the stride.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conv2dParams {
    /// batch
    pub n: usize,
    /// input channels
    pub c_in: usize,
    /// input height
    pub h: usize,
    /// input width
    pub w: usize,
    /// output channels
    pub c_out: usize,
    /// output height
    pub oh: usize,
    /// output width
    pub ow: usize,
    /// kernel `[kh, kw]`
    pub kernel: [usize; 2],
    /// stride `[sh, sw]`
    pub stride: [usize; 2],
    /// zero padding `[ph, pw]`
    pub padding: [usize; 2],
    /// dilation `[dh, dw]`
    pub dilation: [usize; 2],
    /// groups (`c_in` and `c_out` are multiples of it)
    pub groups: usize,
}

impl Conv2dParams {
    /// One input channel per group, and more than one group: each channel convolved on
    /// its own (depthwise), which both backends run apart from the GEMM-based forms.
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.c_in == self.groups
    }

    /// Elements of the input tensor.
    pub fn input_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }
    /// Elements of the output tensor.
    pub fn output_len(&self) -> usize {
        self.n * self.c_out * self.oh * self.ow
    }
    /// Elements of the weight tensor `[c_out, c_in / groups, kh, kw]`.
    pub fn weight_len(&self) -> usize {
        self.c_out * (self.c_in / self.groups) * self.kernel[0] * self.kernel[1]
    }
    /// Multiply-accumulates of the forward pass.
    pub fn macs(&self) -> usize {
        self.output_len() * (self.c_in / self.groups) * self.kernel[0] * self.kernel[1]
    }

    /// The same convolution with each stride that never steps (one output along its
    /// axis) and each dilation that never spreads (one tap) set to 1, so that no backend
    /// does arithmetic on values that change nothing (a dilation of 2⁶³ under a kernel
    /// one tap wide overflowed the CPU's tap offsets).
    pub fn normalized(mut self) -> Self {
        for (a, out) in [self.oh, self.ow].into_iter().enumerate() {
            if out <= 1 {
                self.stride[a] = 1;
            }
            if self.kernel[a] <= 1 {
                self.dilation[a] = 1;
            }
        }
        self
    }
}

/// The shape arithmetic of a 3-D convolution (PyTorch semantics), per spatial axis
/// `[d, h, w]`, for backends that run one natively (see [`Backend::runs_conv3d`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conv3dParams {
    /// batch
    pub n: usize,
    /// input channels
    pub c_in: usize,
    /// output channels
    pub c_out: usize,
    /// input extent `[d, h, w]`
    pub input: [usize; 3],
    /// output extent `[od, oh, ow]`
    pub output: [usize; 3],
    /// kernel `[kd, kh, kw]`
    pub kernel: [usize; 3],
    /// stride per axis
    pub stride: [usize; 3],
    /// zero padding per axis (both sides)
    pub padding: [usize; 3],
    /// dilation per axis
    pub dilation: [usize; 3],
    /// groups (`c_in` and `c_out` are multiples of it)
    pub groups: usize,
}

impl Conv3dParams {
    /// One input channel per group, and more than one group (see
    /// [`Conv2dParams::is_depthwise`]).
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.c_in == self.groups
    }

    /// Elements of the input tensor.
    pub fn input_len(&self) -> usize {
        self.n * self.c_in * self.input.iter().product::<usize>()
    }
    /// Elements of the output tensor.
    pub fn output_len(&self) -> usize {
        self.n * self.c_out * self.output.iter().product::<usize>()
    }
    /// Elements of the weight tensor `[c_out, c_in / groups, kd, kh, kw]`.
    pub fn weight_len(&self) -> usize {
        self.c_out * (self.c_in / self.groups) * self.kernel.iter().product::<usize>()
    }

    /// The same convolution with strides that never step and dilations that never
    /// spread set to 1 (see [`Conv2dParams::normalized`]).
    pub fn normalized(mut self) -> Self {
        for a in 0..3 {
            if self.output[a] <= 1 {
                self.stride[a] = 1;
            }
            if self.kernel[a] <= 1 {
                self.dilation[a] = 1;
            }
        }
        self
    }
}

/// One Adam (or AdamW) update of a parameter, PyTorch's rule (`torch.optim.Adam`'s
/// single-tensor form): with `g` the gradient (plus `weight_decay · p` unless decoupled),
/// `m ← m + (1 − β1)(g − m)`, `v ← β2·v + (1 − β2)·g²`, and
/// `p ← p·(1 − lr·weight_decay if decoupled) − (lr / bc1) · m / (√v / √bc2 + eps)`.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// the optimizer's settings
    pub opts: crate::optim::AdamOptions,
    /// `1 − β1^t` at step t
    pub bias_correction1: f32,
    /// `1 − β2^t` at step t
    pub bias_correction2: f32,
}

/// One SGD update of a parameter, PyTorch's rule (no dampening): `d = g + weight_decay·p`;
/// with momentum, `buf ← momentum·buf + d` (`buf ← d` at the first step) and then
/// `d ← d + momentum·buf` (Nesterov) or `d ← buf`; `p ← p − lr·d`.
#[derive(Clone, Copy, Debug)]
pub struct SgdStep {
    /// the optimizer's settings
    pub opts: crate::optim::SgdOptions,
}

/// Shape arithmetic of a 2-D pooling window over `[n, c, h, w]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pool2dParams {
    /// batch × channels (pooling treats each plane alike)
    pub planes: usize,
    /// input height
    pub h: usize,
    /// input width
    pub w: usize,
    /// output height
    pub oh: usize,
    /// output width
    pub ow: usize,
    /// window `[kh, kw]`
    pub kernel: [usize; 2],
    /// stride
    pub stride: [usize; 2],
    /// implicit padding before the first cell `[top, left]` (−∞ for max, 0 for average)
    pub padding: [usize; 2],
    /// implicit padding after the last cell `[bottom, right]`: equal to `padding` except
    /// for TensorFlow's SAME padding, which puts the odd cell at the end
    pub padding_end: [usize; 2],
    /// spacing of the window's taps (max pooling only; 1 for average pooling)
    pub dilation: [usize; 2],
    /// average pooling: count padded cells in the divisor
    pub count_include_pad: bool,
}

/// Planes resized from `[h, w]` to `[oh, ow]` (adaptive pooling, nearest upsampling).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resize2dParams {
    /// batch × channels
    pub planes: usize,
    /// input height
    pub h: usize,
    /// input width
    pub w: usize,
    /// output height
    pub oh: usize,
    /// output width
    pub ow: usize,
}

/// Planes resized bilinearly from `[h, w]` to `[oh, ow]` (PyTorch's `mode='bilinear'`,
/// antialias off). Along each axis, output index `i` reads the input at `src = scale·i`
/// with `align_corners`, else at `max(scale·(i + ½) − ½, 0)`, between the cells
/// `i0 = min(⌊src⌋, len − 1)` and `i0 + 1` (`i0` itself at the last cell), weighted
/// `1 − λ` and `λ = clamp(src − i0, 0, 1)`: see [`Bilinear2dParams::taps`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Bilinear2dParams {
    /// batch × channels
    pub planes: usize,
    /// input height
    pub h: usize,
    /// input width
    pub w: usize,
    /// output height
    pub oh: usize,
    /// output width
    pub ow: usize,
    /// the corner cells' centres of input and output coincide
    pub align_corners: bool,
    /// input cells per output cell along height and width (PyTorch's `scale`: `(in − 1) /
    /// (out − 1)` with `align_corners`, else `in / out`, or `1 / scale_factor` when a
    /// scale factor was given)
    pub scale: [f32; 2],
}

impl Bilinear2dParams {
    /// The two input cells output index `i` reads along an axis of `len` cells with
    /// `scale` input cells per output cell, and the second one's weight `λ` (the first
    /// weighs `1 − λ`; both cells are the last one at the far edge). The shader computes
    /// the same in f32.
    pub fn taps(&self, i: usize, len: usize, scale: f32) -> (usize, usize, f32) {
        let src = if self.align_corners {
            scale * i as f32
        } else {
            (scale * (i as f32 + 0.5) - 0.5).max(0.0)
        };
        let i0 = (src.floor() as usize).min(len - 1);
        let lambda = (src - i0 as f32).clamp(0.0, 1.0);
        let i1 = if i0 + 1 < len { i0 + 1 } else { i0 };
        (i0, i1, lambda)
    }
}

/// Counters a backend may report (the CPU backend reports none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Device buffers created so far.
    pub buffers_allocated: usize,
    /// Bytes of device memory held by buffers (in use or cached for reuse).
    pub bytes_allocated: u64,
    /// Largest `bytes_allocated` seen.
    pub peak_bytes: u64,
    /// Buffers cached for reuse.
    pub buffers_cached: usize,
    /// Command buffers submitted.
    pub submissions: usize,
}

/// GPU time spent in one kernel (an entry point) since the last read.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    /// the entry point
    pub name: String,
    /// how many dispatches ran it
    pub dispatches: usize,
    /// their summed GPU time in milliseconds
    pub ms: f64,
}

/// The primitives every backend provides. Ops in `crate::ops` check shapes and build the
/// params; a backend may assume they are valid and consistent with the storages' lengths.
pub trait Backend: Send + Sync {
    /// A human-readable name (`cpu`, or the GPU adapter's name).
    fn name(&self) -> String;
    /// True for backends that run on a GPU.
    fn is_gpu(&self) -> bool {
        false
    }
    /// True for a GPU API implemented on the CPU (lavapipe, WARP): slower than the CPU
    /// backend, so `Device::best()` passes it over.
    fn is_software(&self) -> bool {
        false
    }
    /// The most values one tensor may hold on this device (a GPU binds each tensor to its
    /// shaders whole, up to a size the adapter sets; the CPU is bounded by its memory
    /// limit). Ops check every result against it before anything is allocated.
    fn max_len(&self) -> usize {
        usize::MAX
    }
    /// Copies host data into a new storage.
    fn upload(&self, data: &[f32]) -> Result<Storage>;
    /// Moves host data into a new storage: the CPU keeps the vector itself (no copy).
    fn upload_vec(&self, data: Vec<f32>) -> Result<Storage> {
        self.upload(&data)
    }
    /// Copies an f32 storage back to the host (synchronising pending work).
    fn download(&self, x: &Storage) -> Result<Vec<f32>>;
    /// The values of `x` converted to `to` (f16 rounds to nearest, ties to even).
    fn cast(&self, x: &Storage, to: DType) -> Result<Storage>;
    /// Waits until all recorded work has finished.
    fn sync(&self) -> Result<()> {
        Ok(())
    }
    /// Memory and submission counters.
    fn stats(&self) -> BackendStats {
        BackendStats::default()
    }
    /// Per-kernel GPU times since the last call, slowest first, when this backend was
    /// opened with kernel timing on (`FOVEA_PROFILE=1` for the wgpu backend); `None`
    /// otherwise.
    fn take_kernel_times(&self) -> Option<Vec<KernelTime>> {
        None
    }
    /// Hands the buffers kept for reuse (freed by tensors, idle) back to the system, as
    /// PyTorch's `torch.cuda.empty_cache`; live tensors keep theirs.
    fn release_cached(&self) {}
    /// A storage of `len` copies of `value`.
    fn fill(&self, len: usize, value: f32) -> Result<Storage>;
    /// Elementwise unary op.
    fn unary(&self, x: &Storage, op: UnaryOp) -> Result<Storage>;
    /// [`Backend::unary`] written over `x` itself, where the backend can and nothing else
    /// shares the buffer: whether it did (else `x` is untouched). Inference's activations
    /// then cost no new buffer and no pass of writes into one.
    fn unary_in_place(&self, x: &mut Storage, op: UnaryOp) -> Result<bool> {
        let _ = (x, op);
        Ok(false)
    }
    /// `a += b` over `a`'s own buffer (both f32, of one length), where the backend can and
    /// nothing else shares the buffer: whether it did (else `a` is untouched). Gradients
    /// summed in the backward pass then grow one buffer instead of a new one per sum.
    fn add_in_place(&self, a: &mut Storage, b: &Storage) -> Result<bool> {
        let _ = (a, b);
        Ok(false)
    }
    /// Elementwise binary op with broadcasting.
    fn binary(&self, a: &Storage, b: &Storage, p: &BinaryParams, op: BinaryOp) -> Result<Storage>;
    /// Reduction of the middle axis of `[outer, len, inner]` to `[outer, inner]`.
    fn reduce(&self, x: &Storage, p: &ReduceParams, op: ReduceOp) -> Result<Storage>;
    /// Contiguous copy of a strided view of `x`.
    fn strided_copy(&self, x: &Storage, view: &StridedView) -> Result<Storage>;
    /// Constant padding.
    fn pad(&self, x: &Storage, p: &PadParams) -> Result<Storage>;
    /// Concatenation.
    fn cat(&self, parts: &[&Storage], p: &CatParams) -> Result<Storage>;
    /// Batched matrix multiply.
    fn matmul(&self, a: &Storage, b: &Storage, p: &MatmulParams) -> Result<Storage>;
    /// Per-image Gram matrices `F·Fᵀ` of `[n, c, hw]` features, giving `[n, c, c]`.
    fn gram(&self, f: &Storage, n: usize, c: usize, hw: usize) -> Result<Storage>;
    /// Convolution forward: `[n, c_in, h, w] * [c_out, c_in/g, kh, kw]`, plus `bias[c]`
    /// on each output channel c when given (`[c_out]`, checked by the caller). Added in
    /// the kernel's store, it costs no pass of its own over the output.
    fn conv2d(
        &self,
        x: &Storage,
        w: &Storage,
        bias: Option<&Storage>,
        p: &Conv2dParams,
    ) -> Result<Storage>;
    /// One fused Adam update (see [`AdamStep`]) of a parameter from its gradient and
    /// moments, all of one length: the new parameter, first and second moments.
    fn adam_step(
        &self,
        param: &Storage,
        grad: &Storage,
        m: &Storage,
        v: &Storage,
        s: &AdamStep,
    ) -> Result<[Storage; 3]>;
    /// One fused SGD update (see [`SgdStep`]): the new parameter, and with momentum the new
    /// momentum buffer (`buf` is the previous one, `None` at the first step).
    fn sgd_step(
        &self,
        param: &Storage,
        grad: &Storage,
        buf: Option<&Storage>,
        s: &SgdStep,
    ) -> Result<(Storage, Option<Storage>)>;
    /// Gradient of the convolution with respect to its input, from the output gradient.
    fn conv2d_grad_input(&self, gy: &Storage, w: &Storage, p: &Conv2dParams) -> Result<Storage>;
    /// Gradient of the convolution with respect to its weight.
    fn conv2d_grad_weight(&self, x: &Storage, gy: &Storage, p: &Conv2dParams) -> Result<Storage>;
    /// Whether this backend runs the 3-D convolution `p` as one op of its own
    /// ([`Backend::conv3d`] and its gradients). Where it does not, `Tensor::conv3d`
    /// composes 2-D convolutions over gathered depth taps, which every backend can run.
    fn runs_conv3d(&self, _p: &Conv3dParams) -> bool {
        false
    }
    /// 3-D convolution forward, `[n, c_in, d, h, w] * [c_out, c_in/g, kd, kh, kw]` plus
    /// `bias[c]` when given; called only where [`Backend::runs_conv3d`] says so.
    fn conv3d(
        &self,
        _x: &Storage,
        _w: &Storage,
        _bias: Option<&Storage>,
        p: &Conv3dParams,
    ) -> Result<Storage> {
        Err(no_conv3d(p))
    }
    /// Gradient of [`Backend::conv3d`] with respect to its input.
    fn conv3d_grad_input(&self, _gy: &Storage, _w: &Storage, p: &Conv3dParams) -> Result<Storage> {
        Err(no_conv3d(p))
    }
    /// Gradient of [`Backend::conv3d`] with respect to its weight.
    fn conv3d_grad_weight(&self, _x: &Storage, _gy: &Storage, p: &Conv3dParams) -> Result<Storage> {
        Err(no_conv3d(p))
    }
    /// Max pooling forward.
    fn max_pool2d(&self, x: &Storage, p: &Pool2dParams) -> Result<Storage>;
    /// Max pooling backward: routes each output gradient to its window's arg-max.
    fn max_pool2d_backward(&self, x: &Storage, gy: &Storage, p: &Pool2dParams) -> Result<Storage>;
    /// Max pooling that also gives each output's arg-max: its flat index within the input
    /// plane, as an f32 (exact below 2²⁴; the op checks the plane size).
    fn max_pool2d_with_indices(&self, x: &Storage, p: &Pool2dParams) -> Result<(Storage, Storage)>;
    /// `max_unpool2d`: zeros of the output planes (`oh × ow`) with each input value of a
    /// plane (`h × w`) written at its index. Where two inputs name one cell, either wins.
    fn max_unpool2d(&self, x: &Storage, indices: &Storage, p: &Resize2dParams) -> Result<Storage>;
    /// The gradient of `max_unpool2d`: each input's gradient is the output gradient at its
    /// index (a gather).
    fn max_unpool2d_backward(
        &self,
        gy: &Storage,
        indices: &Storage,
        p: &Resize2dParams,
    ) -> Result<Storage>;
    /// Average pooling forward.
    fn avg_pool2d(&self, x: &Storage, p: &Pool2dParams) -> Result<Storage>;
    /// Average pooling backward.
    fn avg_pool2d_backward(&self, gy: &Storage, p: &Pool2dParams) -> Result<Storage>;
    /// Adaptive average pooling forward (PyTorch's floor/ceil window bounds).
    fn adaptive_avg_pool2d(&self, x: &Storage, p: &Resize2dParams) -> Result<Storage>;
    /// Adaptive average pooling backward.
    fn adaptive_avg_pool2d_backward(&self, gy: &Storage, p: &Resize2dParams) -> Result<Storage>;
    /// Nearest-neighbour upsampling forward.
    fn upsample_nearest2d(&self, x: &Storage, p: &Resize2dParams) -> Result<Storage>;
    /// Nearest-neighbour upsampling backward (sums the copies).
    fn upsample_nearest2d_backward(&self, gy: &Storage, p: &Resize2dParams) -> Result<Storage>;
    /// Bilinear resizing forward (see [`Bilinear2dParams`]).
    fn upsample_bilinear2d(&self, x: &Storage, p: &Bilinear2dParams) -> Result<Storage>;
    /// Bilinear resizing backward: each input cell receives every output gradient whose
    /// taps read it, times the tap's weight.
    fn upsample_bilinear2d_backward(&self, gy: &Storage, p: &Bilinear2dParams) -> Result<Storage>;
    /// Per-channel sums of `a` (see [`ChannelParams`]): `[C]` values `Σ a`; with
    /// `Some((b, centers))`, where `centers` is `[2C]` (`ca` then `cb`), `[2C]` values:
    /// `Σ a` then `Σ (a − ca[c]) · (b − cb[c])`. Batch norm's statistics (the mean, then
    /// the squared deviations from it: no cancellation) and its backward sums. With
    /// `p.relu`, `b` is given and `centers` is `[4C]` (see [`ChannelParams::relu`]).
    fn channel_sums(
        &self,
        a: &Storage,
        b: Option<(&Storage, &Storage)>,
        p: &ChannelParams,
    ) -> Result<Storage>;
    /// A per-channel affine map: `a · k[c] + k[C + c]` with `coef` `[2C]`, or with `b`
    /// and `coef` `[4C]`, `a · k[c] + (b − k[2C + c]) · k[C + c] + k[3C + c]` (`b` centred
    /// before it is scaled, so an offset mean costs no digits). Batch norm's forward and
    /// its input gradient, each in one pass. With `p.relu` and `b`, `coef` is `[6C]` (see
    /// [`ChannelParams::relu`]).
    fn channel_affine(
        &self,
        a: &Storage,
        b: Option<&Storage>,
        coef: &Storage,
        p: &ChannelParams,
    ) -> Result<Storage>;
}

fn no_conv3d(p: &Conv3dParams) -> crate::Error {
    crate::Error::op(
        "conv3d",
        format!("this backend has no 3-D convolution of its own for {p:?}"),
    )
}
