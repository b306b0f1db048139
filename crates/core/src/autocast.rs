//! Automatic mixed precision (PyTorch's `torch.autocast(dtype=torch.float16)`): inside an
//! [`autocast`] scope, matrix products and convolutions multiply f16 operands and give
//! f16 results.
//!
//! What runs in f16: matmul (and `Linear`, whose bias is cast to f16 too), Gram matrices,
//! and every convolution (forward, both gradients, transposed, grouped, 1-D and 3-D);
//! their results are f16 tensors (two bytes a value), so the activations a network keeps
//! for backward after them (batch norm's input, ReLU's output, a residual sum) are f16
//! too, since other ops keep their input's dtype. Their backward runs as their forward
//! did, whether or not `backward()` is called inside the scope, and the gradients that
//! flow back through f16 activations are f16, as in PyTorch. What runs in f32, as
//! PyTorch's autocast lists it: sums and means, softmax and log-softmax, so the losses
//! built on them give f32; exp, log, powers and reciprocals; batch-norm statistics;
//! optimizers, on f32 parameters (master weights). Two exceptions: a Gram matrix's result stays f32 (its sums over a whole
//! feature map pass f16's range), and 1-D and 2-D depthwise convolutions multiply in f32
//! (memory-bound, not GEMMs), with f16 results.
//!
//! How: each GEMM operand is rounded to the nearest f16 value where the GEMM stages it (on
//! the GPU with WGSL's `quantizeToF16`, which needs no f16 arithmetic, only wgpu's
//! `SHADER_F16_IN_F32` downlevel capability; WGSL leaves ties and values beyond f16's range
//! to the implementation, where the CPU rounds ties to even and gives ±inf). Products of
//! two f16 values are exact in f32, and sums accumulate in f32, as tensor cores do with f16
//! inputs and f32 accumulation; the result is rounded to f16 once. Kernels read f16
//! tensors widened to f32 (see [`crate::DType`]), so the saving is memory, not bandwidth.
//! On the CPU the operands are rounded before the f32 kernels run: the reference the GPU
//! is tested against, with no speed to gain.
//!
//! Gradients of f16 products can underflow or overflow; scale the loss with
//! [`crate::optim::GradScaler`] as with PyTorch's AMP.

use std::cell::Cell;

use crate::tensor::result_dtype;
use crate::{DType, Result, Tensor};

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
}

/// True inside an [`autocast`] scope on this thread (and while the backward of an op
/// recorded in one runs).
pub fn is_autocast_enabled() -> bool {
    ENABLED.with(|e| e.get())
}

/// Runs `f` with matrix products and convolutions in f16 (see the module docs). Like
/// PyTorch's, the state is per thread; [`crate::parallel::DataParallel`]'s replica
/// threads take their caller's.
pub fn autocast<R>(f: impl FnOnce() -> R) -> R {
    scope(true, f)
}

/// Runs `f` with autocast on or off, restoring the previous state after (also on panic).
pub(crate) fn scope<R>(enabled: bool, f: impl FnOnce() -> R) -> R {
    let _guard = Guard::set(enabled);
    f()
}

/// Autocast on or off on this thread until dropped, then as it was.
pub(crate) struct Guard(bool);

impl Guard {
    pub(crate) fn set(enabled: bool) -> Guard {
        Guard(ENABLED.with(|e| e.replace(enabled)))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        ENABLED.with(|e| e.set(self.0));
    }
}

/// The dtype of a matrix product's or convolution's result: f16 under autocast (as
/// PyTorch's autocast gives them), else as the inputs' dtypes give it.
pub(crate) fn gemm_dtype(inputs: &[&Tensor]) -> DType {
    if is_autocast_enabled() {
        DType::F16
    } else {
        result_dtype(inputs)
    }
}

/// `x` widened to f32 under autocast, for the ops PyTorch's autocast runs in f32 (sums,
/// softmax and the losses built on them); else `x` itself.
pub(crate) fn f32_input(x: &Tensor) -> Result<Tensor> {
    if is_autocast_enabled() {
        x.to_dtype(DType::F32)
    } else {
        Ok(x.clone())
    }
}

/// `x` rounded to the nearest f16 value (ties to even; beyond f16's range, ±inf), as f32.
pub(crate) fn round_to_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_restore() {
        assert!(!is_autocast_enabled());
        autocast(|| {
            assert!(is_autocast_enabled());
            scope(false, || assert!(!is_autocast_enabled()));
            assert!(is_autocast_enabled());
        });
        assert!(!is_autocast_enabled());
        let caught = std::panic::catch_unwind(|| autocast(|| panic!("inside")));
        assert!(caught.is_err());
        assert!(!is_autocast_enabled(), "a panic restores the state");
    }

    #[test]
    fn rounding_keeps_eleven_bits() {
        assert_eq!(round_to_f16(1.0 + 1.0 / 1024.0), 1.0 + 1.0 / 1024.0);
        assert_eq!(round_to_f16(1.0 + 1.0 / 4096.0), 1.0);
        assert_eq!(round_to_f16(65504.0), 65504.0);
        assert_eq!(round_to_f16(1e5), f32::INFINITY);
        assert!(round_to_f16(f32::NAN).is_nan());
    }
}
