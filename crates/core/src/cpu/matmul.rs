//! Batched matmul.

use rayon::prelude::*;

use std::mem::MaybeUninit;

use super::gemm::{gemm_into, Layout};
use crate::backend::MatmulParams;
use crate::host;
use crate::Result;

pub fn matmul(a: &[f32], b: &[f32], p: &MatmulParams) -> Result<Vec<f32>> {
    let MatmulParams { batch, m, k, n, .. } = *p;
    let la = if p.trans_a {
        Layout::trans(m)
    } else {
        Layout::rows(k)
    };
    let lb = if p.trans_b {
        Layout::trans(k)
    } else {
        Layout::rows(n)
    };
    let a_stride = if p.a_shared { 0 } else { m * k };
    let b_stride = if p.b_shared { 0 } else { k * n };
    let one = |(i, c): (usize, &mut [MaybeUninit<f32>])| {
        let a = &a[i * a_stride..];
        let b = &b[i * b_stride..];
        gemm_into(m, k, n, a, la, b, lb, c, Layout::rows(n));
    };
    // SAFETY: each of the `batch` products writes all of its `m × n` values
    // (`gemm_into`); with none, there is nothing to write.
    unsafe {
        host::written(batch * m * n, |out| {
            // (`written` calls this only for a non-empty output.)
            if batch >= rayon::current_num_threads() {
                out.par_chunks_mut(m * n)
                    .enumerate()
                    .for_each(|c| super::threads::task(|| one(c)));
            } else {
                out.chunks_mut(m * n).enumerate().for_each(one);
            }
        })
    }
}
