//! Automatic mixed precision (PyTorch's `torch.autocast(dtype=torch.float16)`): inside an
//! [`autocast`] scope, matrix products and convolutions multiply f16 operands.
//!
//! What runs in f16: matmul (and `Linear`), Gram matrices, and every convolution form that
//! runs as a GEMM (forward, both gradients, transposed, grouped, 1-D and 3-D); their
//! backward runs as their forward did, whether or not `backward()` is called inside the
//! scope. What stays f32, as PyTorch's autocast lists it: reductions, softmax, losses
//! (pairwise distances included), batch-norm statistics, elementwise ops and optimizers;
//! 1-D and 2-D depthwise convolutions too (memory-bound, not GEMMs; a 3-D depthwise one
//! of more than one depth tap runs as a grouped 2-D GEMM and is rounded).
//!
//! How: each operand is rounded to the nearest f16 value where the GEMM stages it (on the
//! GPU with WGSL's `quantizeToF16`, which needs no f16 arithmetic, only wgpu's
//! `SHADER_F16_IN_F32` downlevel capability; WGSL leaves ties and values beyond f16's range
//! to the implementation, where the CPU rounds ties to even and gives ±inf). Products of two f16 values are exact in f32, and sums accumulate in f32,
//! as tensor cores do with f16 inputs and f32 accumulation. Tensors stay f32 in memory,
//! so nothing is saved in memory or bandwidth. On the CPU the operands are rounded before
//! the f32 kernels run: the reference the GPU is tested against, at the cost of a pass
//! over each operand, with no speed to gain.
//!
//! Gradients of f16 products can underflow; scale the loss with
//! [`crate::optim::GradScaler`] as with PyTorch's AMP.

use std::cell::Cell;

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
