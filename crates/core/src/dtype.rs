//! Element types. Tensors hold f32 unless converted with [`crate::Tensor::to_dtype`].
//!
//! An f16 tensor stores IEEE binary16 values (two bytes each, on the GPU packed two to a
//! 32-bit word, so every adapter holds them without `SHADER_F16`). Ops read its values
//! widened to f32, compute in f32 and round their result back to f16, as PyTorch's f16
//! kernels compute in f32 ("opmath") and store f16: what f16 saves is memory, for the
//! tensors a model keeps (weights, activations saved for backward, datasets).

use std::fmt;

/// A tensor's element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum DType {
    /// IEEE binary32 (the default).
    #[default]
    F32,
    /// IEEE binary16.
    F16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }

    /// PyTorch's name (`float32`, `float16`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
