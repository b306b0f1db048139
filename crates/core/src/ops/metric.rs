//! Distances, similarities and triplet losses between embeddings (PyTorch's
//! `F.pairwise_distance`, `F.cosine_similarity`, `F.normalize`, `F.triplet_margin_loss`),
//! composed of differentiable ops so that autodiff and both backends carry them.

use super::check_device;
use crate::{Error, Result, Tensor};

/// Fails unless `a` and `b` are `[N, D]` embeddings of one shape with `D ≥ 1`.
fn check_pair(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    check_device(op, &[a, b])?;
    if a.rank() != 2 || a.shape() != b.shape() || a.shape()[1] == 0 {
        return Err(Error::op(
            op,
            format!(
                "needs two [N, D] embeddings of one shape with D ≥ 1, got {:?} and {:?}",
                a.shape(),
                b.shape()
            ),
        ));
    }
    Ok(())
}

/// Fails unless anchor, positive and negative are `[N, D]` embeddings of one shape.
fn check_triplet(op: &'static str, a: &Tensor, p: &Tensor, n: &Tensor) -> Result<()> {
    check_device(op, &[a, p, n])?;
    if a.rank() != 2 || a.shape() != p.shape() || a.shape() != n.shape() || a.shape()[1] == 0 {
        return Err(Error::op(
            op,
            format!(
                "needs anchor, positive and negative [N, D] embeddings of one shape with D ≥ 1, got {:?}, {:?} and {:?}",
                a.shape(),
                p.shape(),
                n.shape()
            ),
        ));
    }
    Ok(())
}

/// `max(‖t‖₂, eps)` along `dim` (kept), as `sqrt(max(Σ t², eps²))`: clamping before the
/// root keeps the root's gradient finite for a zero row (a clamp after it would multiply
/// an infinite derivative by 0).
fn clamped_norm(t: &Tensor, dim: isize, eps: f32) -> Result<Tensor> {
    Ok(t.square()
        .sum_dims(&[dim], true)?
        .clamp(eps * eps, f32::INFINITY)
        .sqrt())
}

impl Tensor {
    /// `‖x1 − x2 + eps‖₂` per row of two `[N, D]` tensors, as `[N]` (PyTorch's
    /// `F.pairwise_distance(x1, x2, p=2, eps)`: eps goes into every component of the
    /// difference, which also keeps the square root's gradient finite at `x1 = x2`).
    pub fn pairwise_distance(&self, other: &Tensor, eps: f32) -> Result<Tensor> {
        check_pair("pairwise_distance", self, other)?;
        self.sub(other)?
            .add_scalar(eps)
            .square()
            .sum_dims(&[1], false)
            .map(|s| s.sqrt())
    }

    /// `‖x1 − x2‖²` per row of two `[N, D]` tensors, as `[N]` (no eps: the square has a
    /// finite gradient everywhere).
    pub fn squared_distance(&self, other: &Tensor) -> Result<Tensor> {
        check_pair("squared_distance", self, other)?;
        self.sub(other)?.square().sum_dims(&[1], false)
    }

    /// `x / max(‖x‖₂, eps)` along `dim` (PyTorch's `F.normalize(x, p=2, dim, eps)`):
    /// rows of unit length, a zero row stays zero instead of turning into NaN.
    pub fn normalize(&self, dim: isize, eps: f32) -> Result<Tensor> {
        if self.rank() == 0 {
            return Err(Error::op(
                "normalize",
                format!("needs at least one dimension, got shape {:?}", self.shape()),
            ));
        }
        self.div(&clamped_norm(self, dim, eps)?)
    }

    /// Cosine similarity along `dim` (PyTorch's `F.cosine_similarity(x1, x2, dim, eps)`):
    /// `Σ (x1 / max(‖x1‖, eps)) · (x2 / max(‖x2‖, eps))`, each side normalised first as
    /// PyTorch 2 does, so values stay within [−1, 1]. The shapes must be equal.
    pub fn cosine_similarity(&self, other: &Tensor, dim: isize, eps: f32) -> Result<Tensor> {
        check_device("cosine_similarity", &[self, other])?;
        if self.shape() != other.shape() || self.rank() == 0 {
            return Err(Error::op(
                "cosine_similarity",
                format!(
                    "needs two tensors of one shape with at least one dimension, got {:?} and {:?}",
                    self.shape(),
                    other.shape()
                ),
            ));
        }
        let unit = |t: &Tensor| t.div(&clamped_norm(t, dim, eps)?);
        unit(self)?.mul(&unit(other)?)?.sum_dims(&[dim], false)
    }

    /// Mean over the `N` triplets of `max(‖a − p + eps‖ − ‖a − n + eps‖ + margin, 0)`
    /// (PyTorch's `F.triplet_margin_loss(a, p, n, margin, p=2, eps, swap=False)`), as a
    /// 0-dimensional tensor; 0 when `N = 0`.
    pub fn triplet_margin_loss(
        &self,
        positive: &Tensor,
        negative: &Tensor,
        margin: f32,
        eps: f32,
    ) -> Result<Tensor> {
        check_triplet("triplet_margin_loss", self, positive, negative)?;
        let d_ap = self.pairwise_distance(positive, eps)?;
        let d_an = self.pairwise_distance(negative, eps)?;
        Ok(d_ap.sub(&d_an)?.add_scalar(margin).relu().mean())
    }

    /// Mean over the `N` triplets of `max(‖a − p‖² − ‖a − n‖² + margin, 0)`, FaceNet's
    /// triplet loss on squared distances, as a 0-dimensional tensor; 0 when `N = 0`.
    pub fn triplet_squared_loss(
        &self,
        positive: &Tensor,
        negative: &Tensor,
        margin: f32,
    ) -> Result<Tensor> {
        check_triplet("triplet_squared_loss", self, positive, negative)?;
        let d_ap = self.squared_distance(positive)?;
        let d_an = self.squared_distance(negative)?;
        Ok(d_ap.sub(&d_an)?.add_scalar(margin).relu().mean())
    }

    /// All squared distances between the rows of `[N, D]` and `[M, D]`, as `[N, M]`:
    /// `‖x_i‖² + ‖y_j‖² − 2 x_i·y_j` through one matmul, clamped at 0 against rounding.
    pub fn squared_distance_matrix(&self, other: &Tensor) -> Result<Tensor> {
        check_device("squared_distance_matrix", &[self, other])?;
        if self.rank() != 2 || other.rank() != 2 || self.shape()[1] != other.shape()[1] {
            return Err(Error::op(
                "squared_distance_matrix",
                format!(
                    "needs [N, D] and [M, D] embeddings, got {:?} and {:?}",
                    self.shape(),
                    other.shape()
                ),
            ));
        }
        let sq_a = self.square().sum_dims(&[1], true)?;
        let sq_b = other.square().sum_dims(&[1], true)?.t()?;
        // f32 under autocast too: the subtraction cancels for near neighbours, leaving f16's
        // error on ‖a‖² (PyTorch keeps cdist in f32 likewise).
        let dot = crate::autocast::scope(false, || self.float()?.matmul(&other.float()?.t()?))?;
        Ok(sq_a.add(&sq_b)?.sub(&dot.mul_scalar(2.0))?.relu())
    }
}
