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
            .upsample_nearest2d(&self.storage(), &p)
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
                let s = g.backend().upsample_nearest2d_backward(&g.storage(), &p)?;
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
    /// antialiasing. Written as two matrix products (`Ry · X · Rxᵀ`, each row of `R` holding
    /// a tap pair's weights), so it runs and differentiates on every backend through
    /// `matmul`; fine for the plane sizes of images and feature maps.
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
        let (h, w) = (self.shape()[2], self.shape()[3]);
        let ry = Tensor::from_vec(bilinear_matrix(h, size[0]), &[size[0], h], self.device())?;
        let rx = bilinear_matrix(w, size[1]);
        let rxt: Vec<f32> = (0..w * size[1])
            .map(|k| rx[(k % size[1]) * w + k / size[1]])
            .collect();
        let rxt = Tensor::from_vec(rxt, &[w, size[1]], self.device())?;
        ry.matmul(&self.matmul(&rxt)?)
    }
}

/// The `[out, len]` matrix of PyTorch's bilinear taps along one axis (align_corners=False):
/// source `(i + ½)·len/out − ½`, clamped at 0, between its two neighbours.
fn bilinear_matrix(len: usize, out: usize) -> Vec<f32> {
    let mut m = vec![0.0f32; out * len];
    let scale = len as f64 / out as f64;
    for i in 0..out {
        let src = ((i as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(len - 1);
        let i1 = (i0 + 1).min(len - 1);
        let l = (src - i0 as f64) as f32;
        m[i * len + i0] += 1.0 - l;
        m[i * len + i1] += l;
    }
    m
}
