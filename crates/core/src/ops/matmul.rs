//! Batched matrix multiply with broadcast batch dimensions (`torch.matmul` semantics for
//! operands of rank ≥ 1).

use super::{check_device, check_dtypes, check_output};
use crate::backend::MatmulParams;
use crate::shape::{broadcast_shapes, numel};
use crate::{Error, Result, Tensor};

/// `op(a) · op(b)` without graph. Each operand is either a plain matrix (shared by every
/// batch) or carries exactly `batch` leading dimensions.
pub(crate) fn mm(
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
    batch: &[usize],
) -> Result<Tensor> {
    let (ar, br) = (a.rank(), b.rank());
    let (m, k) = if trans_a {
        (a.shape()[ar - 1], a.shape()[ar - 2])
    } else {
        (a.shape()[ar - 2], a.shape()[ar - 1])
    };
    let n = if trans_b {
        b.shape()[br - 2]
    } else {
        b.shape()[br - 1]
    };
    let mut shape = batch.to_vec();
    shape.extend([m, n]);
    check_output("matmul", &[a.shape(), b.shape()], &shape, a.device())?;
    let p = MatmulParams {
        batch: numel(batch),
        m,
        k,
        n,
        trans_a,
        trans_b,
        a_shared: ar == 2,
        b_shared: br == 2,
    };
    let s = a
        .backend()
        .matmul(&a.f32_storage(), &b.f32_storage(), &p)
        .map_err(|e| e.in_op("matmul", &[a.shape(), b.shape()]))?;
    Ok(Tensor::leaf(s, shape, a.device()))
}

impl Tensor {
    /// Matrix product. Rank-1 operands are treated as a row (left) or column (right)
    /// vector and that dimension is dropped from the result; batch dimensions broadcast.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        check_device("matmul", &[self, other])?;
        check_dtypes("matmul", &[self, other])?;
        if self.rank() == 0 || other.rank() == 0 {
            return Err(Error::op(
                "matmul",
                format!(
                    "needs operands of rank ≥ 1, got shapes {:?} and {:?}",
                    self.shape(),
                    other.shape()
                ),
            ));
        }
        let a = if self.rank() == 1 {
            self.unsqueeze(0)?
        } else {
            self.clone()
        };
        let b = if other.rank() == 1 {
            other.unsqueeze(1)?
        } else {
            other.clone()
        };
        let (ar, br) = (a.rank(), b.rank());
        if a.shape()[ar - 1] != b.shape()[br - 2] {
            return Err(Error::op(
                "matmul",
                format!(
                    "inner dimensions differ: shapes {:?} and {:?}",
                    self.shape(),
                    other.shape()
                ),
            ));
        }
        let batch = broadcast_shapes("matmul", &a.shape()[..ar - 2], &b.shape()[..br - 2])?;
        // The result is checked before the operands are broadcast to the batch shape.
        let mut out_shape = batch.clone();
        out_shape.extend([a.shape()[ar - 2], b.shape()[br - 1]]);
        check_output(
            "matmul",
            &[self.shape(), other.shape()],
            &out_shape,
            self.device(),
        )?;
        let fit = |t: &Tensor| -> Result<Tensor> {
            let r = t.rank();
            if r == 2 || t.shape()[..r - 2] == batch[..] {
                return Ok(t.clone());
            }
            let mut shape = batch.clone();
            shape.extend_from_slice(&t.shape()[r - 2..]);
            t.expand(&shape)
        };
        let (a, b) = (fit(&a)?, fit(&b)?);
        let out = mm(&a, &b, false, false, &batch)?;
        let (ac, bc, batch_g) = (a.clone(), b.clone(), batch.clone());
        let y = Tensor::from_op_as(
            crate::autocast::gemm_dtype(&[&a, &b]),
            out.f32_storage(),
            out.shape().to_vec(),
            self.device(),
            "matmul",
            &[&a, &b],
            move |g| {
                let ga = ac
                    .tracks_grad()
                    .then(|| mm(g, &bc, false, true, &batch_g)?.sum_to_shape(ac.shape()))
                    .transpose()?;
                let gb = bc
                    .tracks_grad()
                    .then(|| mm(&ac, g, true, false, &batch_g)?.sum_to_shape(bc.shape()))
                    .transpose()?;
                Ok(vec![ga, gb])
            },
        );
        let mut shape = y.shape().to_vec();
        if other.rank() == 1 {
            shape.pop();
        }
        if self.rank() == 1 {
            shape.remove(shape.len() - if other.rank() == 1 { 1 } else { 2 });
        }
        if shape != y.shape() {
            return y.reshape(&shape);
        }
        Ok(y)
    }
}
