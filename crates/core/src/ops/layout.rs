//! Shape and data-movement ops: reshape, permute, narrow, cat, stack, pad, expand.

use super::{check_device, check_output};
use crate::backend::{CatParams, PadParams, StridedView};
use crate::shape::{checked_numel, contiguous_strides, numel, resolve_dim};
use crate::{Error, Result, Tensor};

impl Tensor {
    /// The same data viewed with another shape of the same element count (shares storage).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let n = checked_numel("reshape", shape)?;
        if n != self.numel() {
            return Err(Error::op(
                "reshape",
                format!(
                    "cannot view shape {:?} ({} elements) as {shape:?} ({n} elements)",
                    self.shape(),
                    self.numel(),
                ),
            ));
        }
        let orig = self.shape().to_vec();
        Ok(Tensor::from_op(
            self.storage(),
            shape.to_vec(),
            self.device(),
            "reshape",
            &[self],
            move |g| Ok(vec![Some(g.reshape(&orig)?)]),
        ))
    }

    /// Flattens dimensions `start..` into one (`flatten(1)` turns NCHW into N×CHW).
    pub fn flatten(&self, start: usize) -> Result<Tensor> {
        if start >= self.rank().max(1) {
            return Err(Error::op(
                "flatten",
                format!(
                    "start dimension {start} is out of range for shape {:?}",
                    self.shape()
                ),
            ));
        }
        let mut shape = self.shape()[..start].to_vec();
        shape.push(numel(&self.shape()[start..]));
        self.reshape(&shape)
    }

    /// Inserts a dimension of size 1 at `dim` (negative counts from the end).
    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor> {
        let d = resolve_dim("unsqueeze", dim, self.rank() + 1)?;
        let mut shape = self.shape().to_vec();
        shape.insert(d, 1);
        self.reshape(&shape)
    }

    /// Removes dimension `dim`, which must have size 1.
    pub fn squeeze(&self, dim: isize) -> Result<Tensor> {
        let d = resolve_dim("squeeze", dim, self.rank())?;
        if self.shape()[d] != 1 {
            return Err(Error::op(
                "squeeze",
                format!(
                    "dimension {d} of shape {:?} has size {}, not 1",
                    self.shape(),
                    self.shape()[d]
                ),
            ));
        }
        let mut shape = self.shape().to_vec();
        shape.remove(d);
        self.reshape(&shape)
    }

    pub(crate) fn view_copy(&self, op: &'static str, view: StridedView) -> Result<Tensor> {
        check_output(op, &[self.shape()], &view.shape, self.device())?;
        let s = self
            .backend()
            .strided_copy(&self.f32_storage(), &view)
            .map_err(|e| e.in_op(op, &[self.shape()]))?;
        Ok(Tensor::leaf(s, view.shape, self.device()))
    }

    /// Reorders dimensions: output dimension `i` is input dimension `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let rank = self.rank();
        let mut seen = vec![false; rank];
        if perm.len() != rank
            || perm
                .iter()
                .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::op(
                "permute",
                format!(
                    "{perm:?} is not a permutation of the {rank} dimensions of shape {:?}",
                    self.shape()
                ),
            ));
        }
        let strides = contiguous_strides(self.shape());
        let out = self.view_copy(
            "permute",
            StridedView {
                shape: perm.iter().map(|&p| self.shape()[p]).collect(),
                strides: perm.iter().map(|&p| strides[p]).collect(),
                offset: 0,
            },
        )?;
        let mut inverse = vec![0; rank];
        perm.iter().enumerate().for_each(|(i, &p)| inverse[p] = i);
        Ok(Tensor::from_op(
            out.f32_storage(),
            out.shape().to_vec(),
            self.device(),
            "permute",
            &[self],
            move |g| Ok(vec![Some(g.permute(&inverse)?)]),
        ))
    }

    /// Swaps two dimensions.
    pub fn transpose(&self, dim0: isize, dim1: isize) -> Result<Tensor> {
        let a = resolve_dim("transpose", dim0, self.rank())?;
        let b = resolve_dim("transpose", dim1, self.rank())?;
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// The transpose of a matrix (the last two dimensions).
    pub fn t(&self) -> Result<Tensor> {
        if self.rank() < 2 {
            return Err(Error::op(
                "t",
                format!("needs at least 2 dimensions, got shape {:?}", self.shape()),
            ));
        }
        self.transpose(-2, -1)
    }

    /// Elements `start..start + len` along `dim`.
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        let d = resolve_dim("narrow", dim, self.rank())?;
        let size = self.shape()[d];
        if start.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::op(
                "narrow",
                format!(
                    "range {start}..{} is outside dimension {d} (size {size}) of shape {:?}",
                    start.saturating_add(len),
                    self.shape()
                ),
            ));
        }
        let strides = contiguous_strides(self.shape());
        let mut shape = self.shape().to_vec();
        shape[d] = len;
        let out = self.view_copy(
            "narrow",
            StridedView {
                shape,
                strides: strides.clone(),
                offset: start * strides[d],
            },
        )?;
        let rank = self.rank();
        Ok(Tensor::from_op(
            out.f32_storage(),
            out.shape().to_vec(),
            self.device(),
            "narrow",
            &[self],
            move |g| {
                let mut before = vec![0; rank];
                let mut after = vec![0; rank];
                before[d] = start;
                after[d] = size - start - len;
                Ok(vec![Some(g.pad_dims(&before, &after, 0.0)?)])
            },
        ))
    }

    /// Elements `start..end` along `dim` (alias of [`Tensor::narrow`] by bounds).
    pub fn slice(&self, dim: isize, start: usize, end: usize) -> Result<Tensor> {
        if end < start {
            return Err(Error::op(
                "slice",
                format!("end {end} is before start {start}"),
            ));
        }
        self.narrow(dim, start, end - start)
    }

    /// Broadcasts to `shape` (NumPy rules; materialises the copy).
    pub fn expand(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let ok = shape.len() >= self.rank()
            && self
                .shape()
                .iter()
                .rev()
                .zip(shape.iter().rev())
                .all(|(&s, &t)| s == t || s == 1);
        if !ok {
            return Err(Error::op(
                "expand",
                format!("shape {:?} cannot be broadcast to {shape:?}", self.shape()),
            ));
        }
        let out = self.view_copy(
            "expand",
            StridedView {
                shape: shape.to_vec(),
                strides: crate::shape::broadcast_strides(self.shape(), shape),
                offset: 0,
            },
        )?;
        let orig = self.shape().to_vec();
        Ok(Tensor::from_op(
            out.f32_storage(),
            shape.to_vec(),
            self.device(),
            "expand",
            &[self],
            move |g| Ok(vec![Some(g.sum_to_shape(&orig)?)]),
        ))
    }

    /// Constant padding per dimension (`before[d]`, `after[d]` elements).
    pub(crate) fn pad_dims(&self, before: &[usize], after: &[usize], value: f32) -> Result<Tensor> {
        let shape = (0..self.rank())
            .map(|d| {
                before[d]
                    .checked_add(self.shape()[d])
                    .and_then(|n| n.checked_add(after[d]))
            })
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| {
                Error::op(
                    "pad",
                    format!(
                        "padding {before:?} before and {after:?} after shape {:?} overflows a usize",
                        self.shape()
                    ),
                )
            })?;
        check_output("pad", &[self.shape()], &shape, self.device())?;
        let p = PadParams {
            shape: self.shape().to_vec(),
            before: before.to_vec(),
            after: after.to_vec(),
            value,
        };
        let s = self
            .backend()
            .pad(&self.f32_storage(), &p)
            .map_err(|e| e.in_op("pad", &[self.shape()]))?;
        let (before, orig) = (before.to_vec(), self.shape().to_vec());
        Ok(Tensor::from_op(
            s,
            shape,
            self.device(),
            "pad",
            &[self],
            move |g| {
                let mut t = g.clone();
                for d in 0..orig.len() {
                    if t.shape()[d] != orig[d] {
                        t = t.narrow(d as isize, before[d], orig[d])?;
                    }
                }
                Ok(vec![Some(t)])
            },
        ))
    }

    /// Constant padding in PyTorch's `F.pad` order: `[left, right, top, bottom, …]`, pairs
    /// starting from the last dimension.
    pub fn pad(&self, pads: &[usize], value: f32) -> Result<Tensor> {
        if !pads.len().is_multiple_of(2) || pads.len() / 2 > self.rank() {
            return Err(Error::op(
                "pad",
                format!("needs an even number of pads, at most two per dimension; got {pads:?} for shape {:?}", self.shape()),
            ));
        }
        let rank = self.rank();
        let mut before = vec![0; rank];
        let mut after = vec![0; rank];
        for (i, pair) in pads.chunks(2).enumerate() {
            before[rank - 1 - i] = pair[0];
            after[rank - 1 - i] = pair[1];
        }
        self.pad_dims(&before, &after, value)
    }

    /// Concatenates tensors along `dim`; all other dimensions must agree.
    pub fn cat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| Error::op("cat", "needs at least one tensor"))?;
        check_device("cat", tensors)?;
        let d = resolve_dim("cat", dim, first.rank())?;
        for t in tensors {
            let same = t.rank() == first.rank()
                && (0..t.rank()).all(|i| i == d || t.shape()[i] == first.shape()[i]);
            if !same {
                return Err(Error::op(
                    "cat",
                    format!(
                        "shapes {:?} and {:?} differ outside dimension {d}",
                        first.shape(),
                        t.shape()
                    ),
                ));
            }
        }
        let mut shape = first.shape().to_vec();
        shape[d] = tensors
            .iter()
            .try_fold(0usize, |n, t| n.checked_add(t.shape()[d]))
            .ok_or_else(|| {
                Error::op(
                    "cat",
                    format!("the sizes along dimension {d} overflow a usize when summed"),
                )
            })?;
        let shapes: Vec<&[usize]> = tensors.iter().map(|t| t.shape()).collect();
        check_output("cat", &shapes, &shape, first.device())?;
        let inner = numel(&first.shape()[d + 1..]);
        let p = CatParams {
            outer: numel(&first.shape()[..d]),
            part_lens: tensors.iter().map(|t| t.shape()[d] * inner).collect(),
        };
        let storages: Vec<_> = tensors.iter().map(|t| t.f32_storage()).collect();
        let refs: Vec<_> = storages.iter().collect();
        let s = first
            .backend()
            .cat(&refs, &p)
            .map_err(|e| e.in_op("cat", &shapes))?;
        let sizes: Vec<usize> = tensors.iter().map(|t| t.shape()[d]).collect();
        Ok(Tensor::from_op(
            s,
            shape,
            first.device(),
            "cat",
            tensors,
            move |g| {
                let mut start = 0;
                let mut grads = Vec::with_capacity(sizes.len());
                for &len in &sizes {
                    grads.push(Some(g.narrow(d as isize, start, len)?));
                    start += len;
                }
                Ok(grads)
            },
        ))
    }

    /// Stacks tensors of one shape along a new dimension `dim`.
    pub fn stack(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| Error::op("stack", "needs at least one tensor"))?;
        if let Some(t) = tensors.iter().find(|t| t.shape() != first.shape()) {
            return Err(Error::op(
                "stack",
                format!(
                    "all tensors need one shape; got {:?} and {:?}",
                    first.shape(),
                    t.shape()
                ),
            ));
        }
        let d = resolve_dim("stack", dim, first.rank() + 1)?;
        let expanded = tensors
            .iter()
            .map(|t| t.unsqueeze(d as isize))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&expanded.iter().collect::<Vec<_>>(), d as isize)
    }
}
