//! Adaptive average pooling (PyTorch's `F.adaptive_avg_pool2d`).

use super::{check_output, check_rank};
use crate::backend::Resize2dParams;
use crate::{Error, Result, Tensor};

/// Checks an NCHW input and a target size, giving the resize params.
pub(crate) fn resize_params(
    op: &'static str,
    x: &Tensor,
    size: [usize; 2],
) -> Result<Resize2dParams> {
    check_rank(op, "input", x, 4)?;
    let s = x.shape();
    if size[0] == 0 || size[1] == 0 || s[2] == 0 || s[3] == 0 {
        return Err(Error::op(
            op,
            format!(
                "needs a non-empty input and output size, got input {s:?} and output size {size:?}"
            ),
        ));
    }
    // Both backends map output cell i to input ⌊i·h/oh⌋: those products must not overflow.
    if s[2].checked_mul(size[0]).is_none() || s[3].checked_mul(size[1]).is_none() {
        return Err(Error::op(
            op,
            format!("input {s:?} resized to {size:?}: the sizes' products overflow a usize"),
        ));
    }
    check_output(op, &[s], &[s[0], s[1], size[0], size[1]], x.device())?;
    Ok(Resize2dParams {
        planes: s[0] * s[1],
        h: s[2],
        w: s[3],
        oh: size[0],
        ow: size[1],
    })
}

impl Tensor {
    /// Averages `[N, C, H, W]` into `[N, C, oh, ow]` cells (`[1, 1]` is global average
    /// pooling).
    pub fn adaptive_avg_pool2d(&self, output_size: [usize; 2]) -> Result<Tensor> {
        let p = resize_params("adaptive_avg_pool2d", self, output_size)?;
        let s = self
            .backend()
            .adaptive_avg_pool2d(&self.f32_storage(), &p)
            .map_err(|e| e.in_op("adaptive_avg_pool2d", &[self.shape()]))?;
        let shape = vec![self.shape()[0], self.shape()[1], p.oh, p.ow];
        let in_shape = self.shape().to_vec();
        Ok(Tensor::from_op(
            s,
            shape,
            self.device(),
            "adaptive_avg_pool2d",
            &[self],
            move |g| {
                let s = g
                    .backend()
                    .adaptive_avg_pool2d_backward(&g.f32_storage(), &p)?;
                Ok(vec![Some(Tensor::leaf(s, in_shape.clone(), g.device()))])
            },
        ))
    }
}
