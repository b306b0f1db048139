//! Batched matmul.

use rayon::prelude::*;

use super::gemm::{gemm, Layout};
use crate::backend::MatmulParams;
use crate::host;
use crate::Result;

pub fn matmul(a: &[f32], b: &[f32], p: &MatmulParams) -> Result<Vec<f32>> {
    let MatmulParams { batch, m, k, n, .. } = *p;
    let mut out = host::zeros(batch * m * n)?;
    if out.is_empty() {
        return Ok(out);
    }
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
    let one = |(i, c): (usize, &mut [f32])| {
        let a = &a[i * a_stride..];
        let b = &b[i * b_stride..];
        gemm(m, k, n, a, la, b, lb, 0.0, c, Layout::rows(n));
    };
    if batch >= rayon::current_num_threads() {
        out.par_chunks_mut(m * n)
            .enumerate()
            .for_each(|c| super::threads::task(|| one(c)));
    } else {
        out.chunks_mut(m * n).enumerate().for_each(one);
    }
    Ok(out)
}
