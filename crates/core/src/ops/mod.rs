//! Every op: validation (clear errors, never panics on user input), graph recording and
//! the backward rule, right below the forward. Ops are methods on [`Tensor`].

mod adaptive_pool2d;
mod batch_norm;
mod binary;
mod conv2d;
mod conv_nd;
mod conv_transpose2d;
mod dropout;
mod elementwise;
mod gram;
mod layout;
mod linear;
mod loss;
mod matmul;
mod metric;
mod pixel_loss;
mod pool2d;
mod pool_nd;
mod reduce;
mod softmax;
mod upsample2d;
mod upsample_bilinear2d;

pub use batch_norm::BatchNormOptions;
pub use conv2d::Conv2dOptions;
pub use conv_nd::{Conv1dOptions, Conv3dOptions};
pub use conv_transpose2d::ConvTranspose2dOptions;
pub use pixel_loss::{CrossEntropy2dOptions, PixelTargets, Reduction};
pub use pool2d::Pool2dOptions;
pub use pool_nd::{Pool1dOptions, Pool3dOptions};

use crate::{Error, Result, Tensor};

/// Fails when the tensors do not all live on one device.
pub(crate) fn check_device(op: &'static str, tensors: &[&Tensor]) -> Result<()> {
    let first = tensors[0].device();
    for t in &tensors[1..] {
        if !t.device().same(first) {
            return Err(Error::DeviceMismatch {
                op,
                devices: (first.name(), t.device().name()),
            });
        }
    }
    Ok(())
}

/// Fails when a matrix product or convolution meets tensors of two dtypes outside
/// autocast (PyTorch's rule: these do not promote). Backward rules may mix them: the
/// engine casts each gradient back to its input's dtype.
pub(crate) fn check_dtypes(op: &'static str, tensors: &[&Tensor]) -> Result<()> {
    if crate::autocast::is_autocast_enabled() || crate::autograd::in_backward() {
        return Ok(());
    }
    let first = tensors[0].dtype();
    match tensors[1..].iter().find(|t| t.dtype() != first) {
        None => Ok(()),
        Some(t) => Err(Error::op(
            op,
            format!(
                "tensors of two dtypes met: {} {:?} and {} {:?}; convert one with .to_dtype() (or run under fovea::autocast)",
                first,
                tensors[0].shape(),
                t.dtype(),
                t.shape()
            ),
        )),
    }
}

/// Unwraps a backend result in an op whose signature cannot fail on user input: an error
/// here means the device itself failed (lost, out of memory).
pub(crate) fn on_device<T>(r: Result<T>, op: &str) -> T {
    r.unwrap_or_else(|e| panic!("fovea: {op} failed on the device: {e}"))
}

/// Fails unless `t` has the given rank.
pub(crate) fn check_rank(op: &'static str, what: &str, t: &Tensor, rank: usize) -> Result<()> {
    if t.rank() != rank {
        return Err(Error::op(
            op,
            format!(
                "{what} must have {rank} dimensions, got shape {:?}",
                t.shape()
            ),
        ));
    }
    Ok(())
}

/// A pair of positive sizes (kernel, stride, dilation).
pub(crate) fn check_positive(op: &'static str, what: &str, v: [usize; 2]) -> Result<()> {
    if v[0] == 0 || v[1] == 0 {
        return Err(Error::op(op, format!("{what} must be positive, got {v:?}")));
    }
    Ok(())
}

/// The element count of a result of `shape` that `op` is about to make on `device`, checked
/// before anything is allocated or recorded: the count must fit a `usize` and be at most
/// what one tensor may hold there ([`crate::Device::max_len`]: on a GPU the most values it
/// binds to a shader, on the CPU its memory limit). Errors name the op and the shapes of
/// its `inputs` (for a constructor, the shape asked for).
pub(crate) fn check_output(
    op: &'static str,
    inputs: &[&[usize]],
    shape: &[usize],
    device: &crate::Device,
) -> Result<usize> {
    let len = crate::shape::checked_numel(op, shape).map_err(|_| {
        Error::Backend(format!(
            "a result of shape {shape:?} has more elements than a usize counts"
        ))
        .in_op(op, inputs)
    })?;
    let max = device.max_len();
    if len > max {
        let bytes = |n: usize| crate::host::fmt_bytes(n as u128 * 4);
        let holder = if device.is_gpu() {
            "this GPU binds to a shader; use a smaller batch or image, or the CPU device"
        } else {
            "one tensor may hold on the CPU (its memory, or FOVEA_CPU_MEMORY_LIMIT)"
        };
        return Err(Error::Backend(format!(
            "a result of shape {shape:?} ({len} values, {}) is more than the {max} values ({}) {holder}",
            bytes(len),
            bytes(max)
        ))
        .in_op(op, inputs));
    }
    Ok(len)
}

/// Fails when a window's extents along either axis, the padded input `input + 2·padding`
/// or the dilated kernel `dilation·(kernel − 1) + 1`, overflow (see
/// [`crate::shape::conv_extents`]); a window that merely does not fit is left to the op.
pub(crate) fn check_extents(
    op: &'static str,
    input: [usize; 2],
    kernel: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
) -> Result<()> {
    for a in 0..2 {
        if crate::shape::conv_extents(input[a], kernel[a].max(1), padding[a], dilation[a]).is_none()
        {
            return Err(Error::op(
                op,
                format!(
                    "input size {input:?} with padding {padding:?}, or kernel {kernel:?} with dilation {dilation:?}, spans more than an isize counts"
                ),
            ));
        }
    }
    Ok(())
}
