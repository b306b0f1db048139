//! Gram matrices of feature maps (the style representation of neural style transfer).

use super::matmul::mm;
use crate::{Error, Result, Tensor};

impl Tensor {
    /// For `[N, C, H, W]` features, the unnormalised `[N, C, C]` Gram matrices
    /// `G[n, k, k'] = Σ_ij F[n, k, i, j] · F[n, k', i, j]`.
    pub fn gram(&self) -> Result<Tensor> {
        if self.rank() != 4 {
            return Err(Error::op(
                "gram",
                format!("needs [N, C, H, W] features, got shape {:?}", self.shape()),
            ));
        }
        let [n, c, h, w] = [
            self.shape()[0],
            self.shape()[1],
            self.shape()[2],
            self.shape()[3],
        ];
        super::check_output("gram", &[self.shape()], &[n, c, c], self.device())?;
        let f = self.detach().reshape(&[n, c, h * w])?;
        // The backend's Gram kernel: on the GPU it computes only the upper triangle.
        let g = self
            .backend()
            .gram(&f.f32_storage(), n, c, h * w)
            .map_err(|e| e.in_op("gram", &[self.shape()]))?;
        let in_shape = self.shape().to_vec();
        // Under autocast the result stays f32: its sums over a whole feature map pass
        // f16's range.
        let dtype = if crate::is_autocast_enabled() {
            crate::DType::F32
        } else {
            crate::tensor::result_dtype(&[self])
        };
        Ok(Tensor::from_op_as(
            dtype,
            g,
            vec![n, c, c],
            self.device(),
            "gram",
            &[self],
            move |gy| {
                // dG/dF = (gy + gyᵀ) · F
                let sym = gy.add(&gy.transpose(1, 2)?)?;
                Ok(vec![Some(
                    mm(&sym, &f, false, false, &[n])?.reshape(&in_shape)?,
                )])
            },
        ))
    }
}
