//! f32 ⇄ f16 storage on the CPU: an f16 tensor keeps `half::f16` values, two bytes each,
//! counted in the live and peak bytes as they are.

use half::{f16, slice::HalfFloatSliceExt};
use rayon::prelude::*;

use super::{count_drop, count_new, data, store_f16_exact, PAR_CHUNK};
use crate::backend::Storage;
use crate::{DType, Error, Result};

/// An f16 tensor's values.
pub(super) struct HalfBuffer(Vec<f16>);

impl HalfBuffer {
    fn new(v: Vec<f16>) -> HalfBuffer {
        count_new(v.len() * 2);
        HalfBuffer(v)
    }
}

impl Drop for HalfBuffer {
    fn drop(&mut self) {
        count_drop(self.0.len() * 2);
    }
}

fn halves(s: &Storage) -> &[f16] {
    &s.downcast::<HalfBuffer>()
        .expect("internal error: an f16 storage without f16 values reached the CPU backend")
        .0
}

/// A zeroed vector of `len` values, allocated fallibly and within the memory limit.
fn zeroed<T: Clone + Default>(len: usize) -> Result<Vec<T>> {
    let bytes = len as u128 * std::mem::size_of::<T>() as u128;
    if bytes > crate::host::memory_limit() as u128 {
        return Err(Error::Backend(format!(
            "{len} values ({}) are more than the host memory the CPU admits",
            crate::host::fmt_bytes(bytes)
        )));
    }
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        Error::Backend(format!(
            "the system refused to allocate {len} values ({})",
            crate::host::fmt_bytes(bytes)
        ))
    })?;
    v.resize(len, T::default());
    Ok(v)
}

/// `f` over matching chunks of `x` and `y`, in parallel. `half`'s slice conversions use
/// the processor's F16C instructions, eight values at a time, where it has them.
fn convert<A: Sync, B: Send>(x: &[A], y: &mut [B], f: impl Fn(&[A], &mut [B]) + Sync) {
    y.par_chunks_mut(PAR_CHUNK)
        .zip(x.par_chunks(PAR_CHUNK))
        .for_each(|(y, x)| f(x, y));
}

pub(super) fn cast(x: &Storage, to: DType) -> Result<Storage> {
    match (x.dtype(), to) {
        (from, to) if from == to => Ok(x.clone()),
        (DType::F32, DType::F16) => {
            let x = data(x);
            let mut y = zeroed::<f16>(x.len())?;
            convert(x, &mut y, |x, y| y.convert_from_f32_slice(x));
            Ok(Storage::typed(y.len(), DType::F16, HalfBuffer::new(y)))
        }
        (DType::F16, DType::F32) => {
            let x = halves(x);
            let mut y = crate::host::zeros(x.len())?;
            convert(x, &mut y, |x, y| x.convert_to_f32_slice(y));
            Ok(store_f16_exact(y))
        }
        (from, to) => unreachable!("no conversion from {from} to {to}"),
    }
}
