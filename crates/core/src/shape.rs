//! Shape arithmetic shared by the ops and both backends.

use crate::{Error, Result};

/// Number of elements of a shape (1 for a scalar `[]`). For shapes that tensors already
/// have (their count is checked when they are made); use [`checked_numel`] for new ones.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Number of elements of a new shape, or an error naming `op` and the shape when the
/// product of its non-zero dimensions does not fit a `usize`. An empty shape must pass
/// too (`[2^40, 2^40, 0]` does not): every partial product of a tensor's dimensions, which
/// strides and kernels compute, then fits as well.
pub fn checked_numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    let nonzero = shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| {
            Error::op(
                op,
                format!("shape {shape:?} has more elements than a usize counts"),
            )
        })?;
    Ok(if shape.contains(&0) { 0 } else { nonzero })
}

/// Bytes of f32 data in a new shape, checked like [`checked_numel`].
pub fn checked_bytes(op: &'static str, shape: &[usize]) -> Result<usize> {
    checked_numel(op, shape)?
        .checked_mul(std::mem::size_of::<f32>())
        .ok_or_else(|| {
            Error::op(
                op,
                format!("shape {shape:?} has more bytes of data than a usize counts"),
            )
        })
}

/// Row-major (C-contiguous) strides of a shape.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// Resolves a possibly negative dimension index against a rank, PyTorch style.
pub fn resolve_dim(op: &'static str, dim: isize, rank: usize) -> Result<usize> {
    let r = rank as isize;
    let d = if dim < 0 { dim + r } else { dim };
    if d < 0 || d >= r {
        return Err(Error::op(
            op,
            format!("dimension {dim} is out of range for a tensor of rank {rank}"),
        ));
    }
    Ok(d as usize)
}

/// The broadcast shape of two shapes (NumPy/PyTorch rules), or an error naming both.
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::op(
                op,
                format!("shapes {a:?} and {b:?} cannot be broadcast together (dimension {i}: {da} vs {db})"),
            ));
        };
    }
    Ok(out)
}

/// Strides for reading a tensor of shape `src` as if it had the (broadcast) shape `out`:
/// broadcast dimensions get stride 0.
pub fn broadcast_strides(src: &[usize], out: &[usize]) -> Vec<usize> {
    let own = contiguous_strides(src);
    let offset = out.len() - src.len();
    (0..out.len())
        .map(|i| {
            if i < offset || src[i - offset] == 1 {
                0
            } else {
                own[i - offset]
            }
        })
        .collect()
}

/// Output length of a convolution or pooling window along one axis, or `None` when the
/// window does not fit at all or its extent (the padded input, the dilated kernel) does
/// not fit a `usize`: see [`conv_extents`] for an error that tells the two apart.
pub fn conv_out_len(
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
) -> Option<usize> {
    let (padded, span) = conv_extents(input, kernel, pad, dilation)?;
    if padded < span || stride == 0 {
        None
    } else {
        Some((padded - span) / stride + 1)
    }
}

/// The padded input length `input + 2·pad` and the dilated kernel's span
/// `dilation·(kernel − 1) + 1` along one axis, or `None` when either overflows. Both stay
/// below `isize::MAX`, so that window arithmetic in signed integers cannot overflow either.
pub fn conv_extents(
    input: usize,
    kernel: usize,
    pad: usize,
    dilation: usize,
) -> Option<(usize, usize)> {
    let limit = isize::MAX as usize;
    let padded = pad.checked_mul(2)?.checked_add(input)?;
    let span = dilation
        .checked_mul(kernel.checked_sub(1)?)?
        .checked_add(1)?;
    (padded <= limit && span <= limit).then_some((padded, span))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(
            broadcast_shapes("t", &[2, 1, 3], &[4, 1]).unwrap(),
            vec![2, 4, 3]
        );
        assert_eq!(broadcast_shapes("t", &[], &[5]).unwrap(), vec![5]);
        assert!(broadcast_shapes("t", &[2, 3], &[4]).is_err());
        assert_eq!(broadcast_strides(&[4, 1], &[2, 4, 3]), vec![0, 1, 0]);
    }

    #[test]
    fn conv_lengths() {
        assert_eq!(conv_out_len(28, 5, 1, 0, 1), Some(24));
        assert_eq!(conv_out_len(7, 3, 2, 1, 2), Some(3));
        assert_eq!(conv_out_len(2, 5, 1, 1, 1), None);
    }

    #[test]
    fn conv_lengths_that_would_wrap_are_none() {
        // Each of these wrapped to a small, wrong length before the arithmetic was checked.
        assert_eq!(conv_out_len(4, 2, 1, 0, 1 << 63), None);
        assert_eq!(conv_out_len(4, 3, 1, usize::MAX / 2, 1), None);
        assert_eq!(conv_out_len(4, 1, 1, 1 << 62, 1), None);
        assert_eq!(conv_extents(4, 0, 0, 1), None);
        // The largest extents that pass still compute exactly.
        let big = (isize::MAX as usize - 4) / 2;
        assert_eq!(conv_out_len(4, 1, big, big, 1), Some(3));
        assert_eq!(conv_extents(5, 3, 2, 4), Some((9, 9)));
    }

    #[test]
    fn element_and_byte_counts_are_checked() {
        assert_eq!(checked_numel("t", &[]).unwrap(), 1);
        assert_eq!(checked_numel("t", &[3, 4]).unwrap(), 12);
        // Empty, but with dimensions whose product (a stride) would overflow.
        assert!(checked_numel("t", &[1 << 40, 1 << 40, 0]).is_err());
        assert_eq!(checked_numel("t", &[usize::MAX, 0, 1]).unwrap(), 0);
        let e = checked_numel("reshape", &[1 << 32, 1 << 32]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("reshape: shape [4294967296, 4294967296]"),
            "{e}"
        );
        assert!(checked_numel("t", &[(1 << 62) + 1, 4]).is_err());
        assert_eq!(checked_bytes("t", &[2, 3]).unwrap(), 24);
        assert!(checked_bytes("t", &[1 << 62]).is_err());
        assert!(checked_bytes("t", &[(1 << 62) - 1]).is_ok());
    }
}
