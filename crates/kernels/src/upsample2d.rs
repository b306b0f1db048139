//! Host side of `shaders/upsample2d.wgsl`.

use fovea_core::backend::{Resize2dParams, Storage};
use fovea_core::Result;

use crate::adaptive_pool2d::resize;
use crate::context::Ctx;
use crate::source::UPSAMPLE2D;

pub fn forward(ctx: &Ctx, x: &Storage, p: &Resize2dParams) -> Result<Storage> {
    resize(ctx, UPSAMPLE2D, false, x, p)
}

pub fn backward(ctx: &Ctx, gy: &Storage, p: &Resize2dParams) -> Result<Storage> {
    resize(ctx, UPSAMPLE2D, true, gy, p)
}
