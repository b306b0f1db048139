//! Shape arithmetic shared by the ops and both backends.

use crate::{Error, Result};

/// Number of elements of a shape (1 for a scalar `[]`).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
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
/// window does not fit at all.
pub fn conv_out_len(
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
) -> Option<usize> {
    let span = dilation * (kernel - 1) + 1;
    let padded = input + 2 * pad;
    if padded < span || stride == 0 {
        None
    } else {
        Some((padded - span) / stride + 1)
    }
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
}
