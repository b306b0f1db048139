//! Fully connected layer (PyTorch's `F.linear`): `y = x · Wᵀ + b` with `W: [out, in]`.

use super::matmul::mm;
use super::{check_device, check_dtypes};
use crate::{Error, Result, Tensor};

impl Tensor {
    /// Applies `[out, in]` weights (and an optional `[out]` bias) to the last dimension of
    /// `[…, in]`.
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        const OP: &str = "linear";
        check_device(OP, &[self, weight])?;
        check_dtypes(OP, &[self, weight])?;
        if let Some(b) = bias {
            check_dtypes(OP, &[self, b])?;
        }
        let in_f = *self.shape().last().unwrap_or(&0);
        if self.rank() == 0 || weight.rank() != 2 || weight.shape()[1] != in_f {
            return Err(Error::op(
                OP,
                format!(
                    "weight must be [out, {in_f}] for input {:?}, got {:?}",
                    self.shape(),
                    weight.shape()
                ),
            ));
        }
        let out_f = weight.shape()[0];
        let rows = self.numel() / in_f.max(1);
        let x2 = self.reshape(&[rows, in_f])?;
        let y = mm(&x2, weight, false, true, &[])?;
        let (xc, wc) = (x2.clone(), weight.clone());
        let y = Tensor::from_op_as(
            crate::autocast::gemm_dtype(&[&x2, weight]),
            y.f32_storage(),
            vec![rows, out_f],
            self.device(),
            OP,
            &[&x2, weight],
            move |g| {
                let gx = xc
                    .tracks_grad()
                    .then(|| mm(g, &wc, false, false, &[]))
                    .transpose()?;
                let gw = wc
                    .tracks_grad()
                    .then(|| mm(g, &xc, true, false, &[]))
                    .transpose()?;
                Ok(vec![gx, gw])
            },
        );
        let mut shape = self.shape().to_vec();
        *shape.last_mut().expect("rank checked") = out_f;
        let y = y.reshape(&shape)?;
        match bias {
            None => Ok(y),
            // Under autocast the bias joins the f16 result as f16 (PyTorch casts it).
            Some(b) if b.shape() == [out_f] => y.add(&b.to_dtype(y.dtype())?),
            Some(b) => Err(Error::op(
                OP,
                format!("bias must have shape [{out_f}], got {:?}", b.shape()),
            )),
        }
    }
}
