//! Nearest-neighbour upsampling (PyTorch's `F.interpolate(mode='nearest')`) and bilinear
//! resizing (`mode='bilinear', align_corners=False`, no antialiasing).

use super::adaptive_pool2d::resize_params;
use crate::{Error, Result, Tensor};

impl Tensor {
    /// Resizes `[N, C, H, W]` to `[N, C, oh, ow]` by nearest neighbour.
    pub fn upsample_nearest2d(&self, size: [usize; 2]) -> Result<Tensor> {
        let p = resize_params("upsample_nearest2d", self, size)?;
        let s = self
            .backend()
            .upsample_nearest2d(&self.f32_storage(), &p)
            .map_err(|e| e.in_op("upsample_nearest2d", &[self.shape()]))?;
        let shape = vec![self.shape()[0], self.shape()[1], p.oh, p.ow];
        let in_shape = self.shape().to_vec();
        Ok(Tensor::from_op(
            s,
            shape,
            self.device(),
            "upsample_nearest2d",
            &[self],
            move |g| {
                let s = g
                    .backend()
                    .upsample_nearest2d_backward(&g.f32_storage(), &p)?;
                Ok(vec![Some(Tensor::leaf(s, in_shape.clone(), g.device()))])
            },
        ))
    }

    /// Nearest upsampling by an integer factor in both directions.
    pub fn upsample2d(&self, scale: usize) -> Result<Tensor> {
        if scale == 0 || self.rank() != 4 {
            return Err(Error::op(
                "upsample2d",
                format!(
                    "needs an NCHW input and a positive scale, got shape {:?} and scale {scale}",
                    self.shape()
                ),
            ));
        }
        let (h, w) = (self.shape()[2], self.shape()[3]);
        match (h.checked_mul(scale), w.checked_mul(scale)) {
            (Some(oh), Some(ow)) => self.upsample_nearest2d([oh, ow]),
            _ => Err(Error::op(
                "upsample2d",
                format!(
                    "{h}×{w} planes scaled by {scale} overflow a usize (input {:?})",
                    self.shape()
                ),
            )),
        }
    }

    /// Resizes `[N, C, H, W]` to `[N, C, oh, ow]` bilinearly with half-pixel centres, as
    /// PyTorch's `F.interpolate(mode='bilinear', align_corners=False)` without
    /// antialiasing: [`Tensor::interpolate_bilinear`] with `align_corners` false, under
    /// its own name in errors.
    pub fn resize_bilinear(&self, size: [usize; 2]) -> Result<Tensor> {
        if self.rank() != 4 || size.contains(&0) || self.shape()[2] == 0 || self.shape()[3] == 0 {
            return Err(Error::op(
                "resize_bilinear",
                format!(
                    "needs a non-empty NCHW input and a positive size, got shape {:?} and size {size:?}",
                    self.shape()
                ),
            ));
        }
        self.interpolate_bilinear(size, false)
    }
}
