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
