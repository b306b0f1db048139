//! Sum, mean and max over dimensions (with keepdim) or over everything.

use super::{check_output, on_device};
use crate::backend::{BinaryOp, ReduceOp, ReduceParams};
use crate::shape::{numel, resolve_dim};
use crate::{DType, Error, Result, Tensor};

impl Tensor {
    /// A sum's result dtype: f32 under autocast (PyTorch lists sum as f32), else the
    /// input's.
    fn sum_dtype(&self) -> DType {
        if crate::is_autocast_enabled() {
            DType::F32
        } else {
            self.dtype()
        }
    }

    /// Reduces dimension `d` to size 1 (keepdim), recording the graph.
    pub(crate) fn reduce_dim(&self, d: usize, op: ReduceOp) -> Tensor {
        let dtype = match op {
            ReduceOp::Sum => self.sum_dtype(),
            _ => self.dtype(),
        };
        self.reduce_dim_as(d, op, dtype)
    }

    /// [`Tensor::reduce_dim`] with a result of `dtype`: the kernels sum in f32, and
    /// sums over several steps keep f32 until the last, so that an f16 sum or mean
    /// rounds once and overflows only if its result does.
    fn reduce_dim_as(&self, d: usize, op: ReduceOp, dtype: DType) -> Tensor {
        let shape = self.shape();
        let p = ReduceParams {
            outer: numel(&shape[..d]),
            len: shape[d],
            inner: numel(&shape[d + 1..]),
        };
        let storage = on_device(self.backend().reduce(&self.f32_storage(), &p, op), "reduce");
        let mut out_shape = shape.to_vec();
        out_shape[d] = 1;
        // A sum's gradient needs only the input's shape; a max's needs both values.
        let in_shape = self.shape().to_vec();
        let kept = (op == ReduceOp::Max).then(|| {
            let y = Tensor::leaf(storage.clone(), out_shape.clone(), self.device());
            (self.detach(), y)
        });
        Tensor::from_op_as(
            dtype,
            storage,
            out_shape,
            self.device(),
            "reduce",
            &[self],
            move |g| {
                let g = g.expand(&in_shape)?;
                Ok(vec![Some(match &kept {
                    None => g,
                    Some((x, y)) => {
                        // Ties share the gradient evenly (torch.amax semantics).
                        let mask = x.zip_raw(y, BinaryOp::Eq, "max")?;
                        let count = mask.reduce_dim(d, ReduceOp::Sum);
                        g.mul(&mask)?.div(&count)?
                    }
                })])
            },
        )
    }

    /// Reduces `dims`; a sum's result is f32 (cast by the caller).
    fn reduce_dims(
        &self,
        name: &'static str,
        dims: &[isize],
        keepdim: bool,
        op: ReduceOp,
    ) -> Result<Tensor> {
        let mut resolved = Vec::with_capacity(dims.len());
        for &d in dims {
            let d = resolve_dim(name, d, self.rank())?;
            if resolved.contains(&d) {
                return Err(Error::op(
                    name,
                    format!("dimension {d} appears twice in {dims:?}"),
                ));
            }
            resolved.push(d);
        }
        if self.rank() == 0 {
            return Ok(self.clone());
        }
        // Summing an empty dimension makes values out of nothing: check the result first,
        // and reduce empty dimensions last, so that no step in between holds more than it.
        let mut kept = self.shape().to_vec();
        resolved.iter().for_each(|&d| kept[d] = 1);
        check_output(name, &[self.shape()], &kept, self.device())?;
        resolved.sort_by_key(|&d| self.shape()[d] == 0);
        if op == ReduceOp::Max && resolved.iter().any(|&d| self.shape()[d] == 0) {
            return Err(Error::op(
                name,
                format!(
                    "cannot take the max over an empty dimension of shape {:?}",
                    self.shape()
                ),
            ));
        }
        let mut t = self.clone();
        for &d in &resolved {
            t = match op {
                ReduceOp::Sum => t.reduce_dim_as(d, op, DType::F32),
                _ => t.reduce_dim(d, op),
            };
        }
        if keepdim {
            return Ok(t);
        }
        let shape: Vec<usize> = (0..self.rank())
            .filter(|d| !resolved.contains(d))
            .map(|d| self.shape()[d])
            .collect();
        t.reshape(&shape)
    }

    fn flat(&self) -> Tensor {
        on_device(self.reshape(&[self.numel()]), "reshape")
    }

    /// Sum of all elements, as a 0-dimensional tensor.
    pub fn sum(&self) -> Tensor {
        on_device(self.flat().reduce_dim(0, ReduceOp::Sum).reshape(&[]), "sum")
    }

    /// Mean of all elements, as a 0-dimensional tensor (divided before an f16 result is
    /// rounded, as PyTorch's).
    pub fn mean(&self) -> Tensor {
        let sum = self.flat().reduce_dim_as(0, ReduceOp::Sum, DType::F32);
        let mean = sum.div_scalar(self.numel().max(1) as f32);
        on_device(
            mean.reshape(&[]).and_then(|m| m.to_dtype(self.sum_dtype())),
            "mean",
        )
    }

    /// Sum over `dims` (negative counts from the end); `keepdim` keeps them as size 1.
    pub fn sum_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        self.reduce_dims("sum", dims, keepdim, ReduceOp::Sum)?
            .to_dtype(self.sum_dtype())
    }

    /// Mean over `dims`.
    pub fn mean_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let s = self.reduce_dims("mean", dims, keepdim, ReduceOp::Sum)?;
        let count = (self.numel() / s.numel().max(1)).max(1);
        s.div_scalar(count as f32).to_dtype(self.sum_dtype())
    }

    /// Maximum over `dims`; ties share the gradient.
    pub fn max_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        self.reduce_dims("max", dims, keepdim, ReduceOp::Max)
    }

    /// Maximum of all elements (an error for an empty tensor).
    pub fn max(&self) -> Result<Tensor> {
        if self.numel() == 0 {
            return Err(Error::op("max", "cannot take the max of an empty tensor"));
        }
        self.flat().reduce_dim(0, ReduceOp::Max).reshape(&[])
    }
}
