//! Host side of `shaders/layout.wgsl`: strided copies, padding, concatenation.

use fovea_core::backend::{CatParams, PadParams, Storage, StridedView};
use fovea_core::shape::numel;
use fovea_core::Result;

use crate::binary::dims8;
use crate::context::{buf, Ctx};
use crate::source::LAYOUT;

wgsl_struct! {
    pub(crate) struct Params {
        n: u32,
        rank: u32,
        offset: u32,
        value: f32,
        shape: [u32; 8],
        /// strided_copy: source strides; pad: input shape
        aux: [u32; 8],
        /// pad: elements added before each dimension
        before: [u32; 8],
    }
}

pub fn strided_copy(ctx: &Ctx, x: &Storage, v: &StridedView) -> Result<Storage> {
    let n = numel(&v.shape);
    let y = ctx.alloc(n)?;
    let p = Params {
        n: n as u32,
        rank: v.shape.len() as u32,
        offset: v.offset as u32,
        value: 0.0,
        shape: dims8("strided_copy", &v.shape)?,
        aux: dims8("strided_copy", &v.strides)?,
        before: [0; 8],
    };
    ctx.dispatch(
        LAYOUT,
        "strided_copy",
        bytemuck::bytes_of(&p),
        &[(1, buf(x)), (2, buf(&y))],
        ctx.groups_1d(n),
    )?;
    Ok(y)
}

pub fn pad(ctx: &Ctx, x: &Storage, pp: &PadParams) -> Result<Storage> {
    let out: Vec<usize> = (0..pp.shape.len())
        .map(|d| pp.before[d] + pp.shape[d] + pp.after[d])
        .collect();
    let n = numel(&out);
    let y = ctx.alloc(n)?;
    let p = Params {
        n: n as u32,
        rank: out.len() as u32,
        offset: 0,
        value: pp.value,
        shape: dims8("pad", &out)?,
        aux: dims8("pad", &pp.shape)?,
        before: dims8("pad", &pp.before)?,
    };
    ctx.dispatch(
        LAYOUT,
        "pad",
        bytemuck::bytes_of(&p),
        &[(1, buf(x)), (2, buf(&y))],
        ctx.groups_1d(n),
    )?;
    Ok(y)
}

/// One dispatch per part (concatenations have few parts), each writing its own columns.
pub fn cat(ctx: &Ctx, parts: &[&Storage], cp: &CatParams) -> Result<Storage> {
    let total: usize = cp.part_lens.iter().sum();
    let y = ctx.alloc(cp.outer * total)?;
    let mut offset = 0;
    for (part, &len) in parts.iter().zip(&cp.part_lens) {
        let n = cp.outer * len;
        let mut shape = [0u32; 8];
        shape[0] = total as u32;
        let p = Params {
            n: n as u32,
            rank: len as u32,
            offset: offset as u32,
            value: 0.0,
            shape,
            aux: [0; 8],
            before: [0; 8],
        };
        ctx.dispatch(
            LAYOUT,
            "cat_part",
            bytemuck::bytes_of(&p),
            &[(1, buf(part)), (2, buf(&y))],
            ctx.groups_1d(n),
        )?;
        offset += len;
    }
    Ok(y)
}
