//! Automatic mixed precision (PyTorch's `torch.autocast(dtype=torch.float16)`): inside an
//! [`autocast`] scope, matrix products and convolutions multiply f16 operands.
//!
//! What runs in f16: matmul (and `Linear`), Gram matrices, and every convolution form that
//! runs as a GEMM (forward, both gradients, transposed, grouped, 1-D and 3-D); their
//! backward runs as their forward did, whether or not `backward()` is called inside the
//! scope. What stays f32, as PyTorch's autocast lists it: reductions, softmax, losses,
//! batch-norm statistics, elementwise ops and optimizers; depthwise convolutions too (they
//! are memory-bound, not GEMMs).
//!
//! How: operands are rounded to f16 where the GEMM stages them (on the GPU, its
//! workgroup tiles hold `f16`, which needs the adapter's `SHADER_F16`; an adapter without
//! it is an error naming it). Products of two f16 values are exact in f32, and sums
//! accumulate in f32, as tensor cores do with f16 inputs and f32 accumulation. Tensors
//! stay f32 in memory. On the CPU the operands are rounded the same way before the f32
//! kernels run: the reference the GPU is tested against, at a cost of one pass over each
//! operand and with no speed to gain.
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
/// PyTorch's, the state is per thread.
pub fn autocast<R>(f: impl FnOnce() -> R) -> R {
    scope(true, f)
}

/// Runs `f` with autocast on or off, restoring the previous state after (also on panic).
pub(crate) fn scope<R>(enabled: bool, f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ENABLED.with(|e| e.set(self.0));
        }
    }
    let _restore = Restore(ENABLED.with(|e| e.replace(enabled)));
    f()
}

/// `x` rounded to the nearest f16 value (ties to even; beyond f16's range, ±inf), as f32.
pub fn round_to_f16(x: f32) -> f32 {
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
