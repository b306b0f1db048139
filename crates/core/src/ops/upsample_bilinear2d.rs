//! Bilinear interpolation (PyTorch's `F.interpolate(mode='bilinear')`, antialias off), by
//! output size or by scale factor, with `align_corners` either way.

use super::{check_output, check_rank};
use crate::backend::Bilinear2dParams;
use crate::{Error, Result, Tensor};

/// PyTorch's `area_pixel_compute_scale`: input cells per output cell along one axis.
/// `factor` is the scale factor the caller gave (`F.interpolate(scale_factor=…)`), which
/// PyTorch uses as given (its reciprocal) rather than `in / out`.
fn axis_scale(len: usize, out: usize, align_corners: bool, factor: Option<f64>) -> f32 {
    if align_corners {
        if out > 1 {
            (len - 1) as f32 / (out - 1) as f32
        } else {
            0.0
        }
    } else {
        match factor {
            Some(s) => (1.0 / s) as f32,
            None => len as f32 / out as f32,
        }
    }
}

impl Tensor {
    /// Resizes `[N, C, H, W]` to `[N, C, oh, ow]` by bilinear interpolation, as
    /// `F.interpolate(x, size=size, mode='bilinear', align_corners=align_corners)`.
    pub fn interpolate_bilinear(&self, size: [usize; 2], align_corners: bool) -> Result<Tensor> {
        self.bilinear("interpolate_bilinear", size, align_corners, None)
    }

    /// Resizes `[N, C, H, W]` by scale factors `[sh, sw]` to `[⌊H·sh⌋, ⌊W·sw⌋]`, as
    /// `F.interpolate(x, scale_factor=(sh, sw), mode='bilinear', align_corners=…)`: without
    /// `align_corners` the source coordinates use the given factors, not the ratio of the
    /// sizes (they differ when `H·sh` is not whole).
    pub fn interpolate_bilinear_scale(
        &self,
        scale_factor: [f64; 2],
        align_corners: bool,
    ) -> Result<Tensor> {
        const OP: &str = "interpolate_bilinear_scale";
        check_rank(OP, "input", self, 4)?;
        let s = self.shape();
        let size = [0, 1].map(|a| (s[2 + a] as f64 * scale_factor[a]).floor());
        if scale_factor.iter().any(|f| !f.is_finite() || *f <= 0.0) || size.contains(&0.0) {
            return Err(Error::op(
                OP,
                format!(
                    "scale factors {scale_factor:?} must be positive and give a non-empty output for input {s:?}"
                ),
            ));
        }
        let size = size.map(|v| v as usize);
        self.bilinear(OP, size, align_corners, Some(scale_factor))
    }

    fn bilinear(
        &self,
        op: &'static str,
        size: [usize; 2],
        align_corners: bool,
        factor: Option<[f64; 2]>,
    ) -> Result<Tensor> {
        check_rank(op, "input", self, 4)?;
        let s = self.shape();
        if size.contains(&0) || s[2] == 0 || s[3] == 0 {
            return Err(Error::op(
                op,
                format!("needs a non-empty input and output size, got input {s:?} and output size {size:?}"),
            ));
        }
        check_output(op, &[s], &[s[0], s[1], size[0], size[1]], self.device())?;
        let p = Bilinear2dParams {
            planes: s[0] * s[1],
            h: s[2],
            w: s[3],
            oh: size[0],
            ow: size[1],
            align_corners,
            scale: [0, 1]
                .map(|a| axis_scale(s[2 + a], size[a], align_corners, factor.map(|f| f[a]))),
        };
        let out = self
            .backend()
            .upsample_bilinear2d(&self.f32_storage(), &p)
            .map_err(|e| e.in_op(op, &[s]))?;
        let shape = vec![s[0], s[1], p.oh, p.ow];
        let in_shape = s.to_vec();
        Ok(Tensor::from_op(
            out,
            shape,
            self.device(),
            op,
            &[self],
            move |g| {
                let s = g
                    .backend()
                    .upsample_bilinear2d_backward(&g.f32_storage(), &p)
                    .map_err(|e| e.in_backward(op, g.shape()))?;
                Ok(vec![Some(Tensor::leaf(s, in_shape.clone(), g.device()))])
            },
        ))
    }
}
