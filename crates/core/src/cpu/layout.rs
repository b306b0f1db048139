//! Data movement: strided copies (permute, narrow, expand), constant padding, concatenation.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::PAR_CHUNK;
use crate::backend::{CatParams, PadParams, StridedView};
use crate::host;
use crate::shape::{contiguous_strides, numel};
use crate::Result;

pub fn strided_copy(x: &[f32], v: &StridedView) -> Result<Vec<f32>> {
    let n = numel(&v.shape);
    if n == 0 {
        return Ok(Vec::new());
    }
    let inner = *v.shape.last().unwrap_or(&1);
    let s_last = *v.strides.last().unwrap_or(&0);
    let out_strides = contiguous_strides(&v.shape);
    let rows_per_chunk = (PAR_CHUNK / inner).max(1);
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(inner * rows_per_chunk)
            .enumerate()
            .for_each(|(chunk, o)| {
                for (r, orow) in o.chunks_mut(inner).enumerate() {
                    let mut rem = (chunk * rows_per_chunk + r) * inner;
                    let mut off = v.offset;
                    for (&os, &st) in out_strides.iter().zip(&v.strides) {
                        off += rem / os * st;
                        rem %= os;
                    }
                    if s_last == 1 {
                        orow.iter_mut()
                            .zip(&x[off..off + inner])
                            .for_each(|(o, &v)| *o = MaybeUninit::new(v));
                    } else {
                        orow.iter_mut()
                            .enumerate()
                            .for_each(|(j, o)| *o = MaybeUninit::new(x[off + j * s_last]));
                    }
                }
            });
    };
    // SAFETY: the chunks cover `out` by whole rows of `inner`, each written in full.
    unsafe { host::written(n, fill) }
}

pub fn pad(x: &[f32], p: &PadParams) -> Result<Vec<f32>> {
    let rank = p.shape.len();
    let out_shape: Vec<usize> = (0..rank)
        .map(|d| p.before[d] + p.shape[d] + p.after[d])
        .collect();
    let n = numel(&out_shape);
    if rank == 0 {
        return host::copied(x);
    }
    let mut out = host::filled(n, p.value)?;
    if n == 0 || x.is_empty() {
        return Ok(out);
    }
    let inner_out = out_shape[rank - 1];
    let inner_in = p.shape[rank - 1];
    let in_strides = contiguous_strides(&p.shape);
    let out_strides = contiguous_strides(&out_shape);
    out.par_chunks_mut(inner_out)
        .enumerate()
        .for_each(|(row, orow)| {
            let mut rem = row * inner_out;
            let mut src = 0;
            for d in 0..rank - 1 {
                let idx = rem / out_strides[d];
                rem %= out_strides[d];
                if idx < p.before[d] || idx >= p.before[d] + p.shape[d] {
                    return;
                }
                src += (idx - p.before[d]) * in_strides[d];
            }
            let b = p.before[rank - 1];
            orow[b..b + inner_in].copy_from_slice(&x[src..src + inner_in]);
        });
    Ok(out)
}

pub fn cat(parts: &[&[f32]], p: &CatParams) -> Result<Vec<f32>> {
    let total: usize = p.part_lens.iter().sum();
    let mut out = host::zeros(p.outer * total)?;
    if total == 0 {
        return Ok(out);
    }
    out.par_chunks_mut(total).enumerate().for_each(|(o, orow)| {
        let mut at = 0;
        for (part, &len) in parts.iter().zip(&p.part_lens) {
            orow[at..at + len].copy_from_slice(&part[o * len..(o + 1) * len]);
            at += len;
        }
    });
    Ok(out)
}
