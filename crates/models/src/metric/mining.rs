//! Online triplet mining inside a batch of labelled embeddings: batch-all, batch-hard
//! (Hermans et al. 2017) and semi-hard (FaceNet, as TensorFlow's `triplet_semihard_loss`
//! picks them), on squared Euclidean distances.
//!
//! Mining reads the batch's `[N, N]` distance matrix on the host and picks index triplets;
//! the loss is then a weighted sum of the same matrix's entries, so autodiff carries the
//! gradient back to the embeddings on any device. A batch with one class only (or with no
//! anchor that has both a positive and a negative) is not an error: it has no triplets and
//! its loss is 0 with zero gradients, as an empty mean is taken to be here.

use std::fmt;
use std::str::FromStr;

use fovea_core::{Error, Result, Tensor};

/// How triplets are picked from a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mining {
    /// Every valid triplet `(a, p, n)` (`a ≠ p` of one class, `n` of another); the loss is
    /// the mean over the active ones (loss > 0), Hermans et al.'s "BA≠0".
    BatchAll,
    /// Per anchor, its farthest positive and its nearest negative; the mean over anchors.
    BatchHard,
    /// Per positive pair `(a, p)`, the nearest negative farther than `p`
    /// (`d(a,n) > d(a,p)`), or the farthest negative when none is; the mean over positive
    /// pairs (TensorFlow's `triplet_semihard_loss`).
    SemiHard,
}

impl FromStr for Mining {
    type Err = Error;
    fn from_str(s: &str) -> Result<Mining> {
        match s {
            "batch-all" | "all" => Ok(Mining::BatchAll),
            "batch-hard" | "hard" => Ok(Mining::BatchHard),
            "semi-hard" | "semihard" => Ok(Mining::SemiHard),
            other => Err(Error::op(
                "mining",
                format!("unknown strategy {other:?}: use batch-all, batch-hard or semi-hard"),
            )),
        }
    }
}

impl fmt::Display for Mining {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mining::BatchAll => "batch-all",
            Mining::BatchHard => "batch-hard",
            Mining::SemiHard => "semi-hard",
        })
    }
}

/// Mined triplets of batch indices and what the loss divides by.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Triplets {
    /// `(anchor, positive, negative)` indices into the batch.
    pub triplets: Vec<[usize; 3]>,
    /// Triplets whose hinge `d(a,p) − d(a,n) + margin` is positive.
    pub active: usize,
    /// The mean's denominator: `active` for batch-all, the triplet count otherwise.
    pub divisor: usize,
}

/// The loss of a mined batch and its counts.
pub struct MinedLoss {
    /// The 0-dimensional mean triplet loss (0 when there are no triplets).
    pub loss: Tensor,
    /// The mined triplets.
    pub triplets: Triplets,
}

fn check_labels(op: &'static str, n: usize, dist_len: usize, labels: &[usize]) -> Result<()> {
    if labels.len() != n || dist_len != n * n {
        return Err(Error::op(
            op,
            format!(
                "needs an [N, N] distance matrix and N labels, got {dist_len} distances and {} labels for N = {n}",
                labels.len()
            ),
        ));
    }
    Ok(())
}

/// Picks triplets from the row-major `[N, N]` squared distances `dist` of a batch whose
/// classes are `labels` (see [`Mining`]). Ties go to the lowest index.
pub fn mine(dist: &[f32], labels: &[usize], margin: f32, mining: Mining) -> Result<Triplets> {
    let n = labels.len();
    check_labels("mine_triplets", n, dist.len(), labels)?;
    if !margin.is_finite() {
        return Err(Error::op(
            "mine_triplets",
            format!("margin must be finite, got {margin}"),
        ));
    }
    let d = |i: usize, j: usize| dist[i * n + j];
    let hinge = |t: &[usize; 3]| d(t[0], t[1]) - d(t[0], t[2]) + margin;
    let positives = |a: usize| (0..n).filter(move |&p| p != a && labels[p] == labels[a]);
    let negatives = |a: usize| (0..n).filter(move |&j| labels[j] != labels[a]);
    // The first index with the extreme value of `key` (strictly better replaces).
    let pick = |it: &mut dyn Iterator<Item = usize>, a: usize, farthest: bool| {
        it.fold(None, |best: Option<usize>, j| match best {
            Some(b) if (farthest && d(a, j) <= d(a, b)) || (!farthest && d(a, j) >= d(a, b)) => {
                Some(b)
            }
            _ => Some(j),
        })
    };
    let mut triplets = Vec::new();
    for a in 0..n {
        if negatives(a).next().is_none() {
            continue;
        }
        match mining {
            Mining::BatchAll => {
                for p in positives(a) {
                    triplets.extend(negatives(a).map(|j| [a, p, j]));
                }
            }
            Mining::BatchHard => {
                let p = pick(&mut positives(a), a, true);
                let j = pick(&mut negatives(a), a, false);
                if let (Some(p), Some(j)) = (p, j) {
                    triplets.push([a, p, j]);
                }
            }
            Mining::SemiHard => {
                for p in positives(a) {
                    let dp = d(a, p);
                    let j = pick(&mut negatives(a).filter(|&j| d(a, j) > dp), a, false)
                        .or_else(|| pick(&mut negatives(a), a, true));
                    triplets.extend(j.map(|j| [a, p, j]));
                }
            }
        }
    }
    let active = triplets.iter().filter(|t| hinge(t) > 0.0).count();
    let divisor = match mining {
        Mining::BatchAll => active,
        _ => triplets.len(),
    };
    Ok(Triplets {
        triplets,
        active,
        divisor,
    })
}

impl Triplets {
    /// `Σ max(D[a,p] − D[a,n] + margin, 0) / divisor` over the triplets, from the `[N, N]`
    /// squared distance tensor `dist` the triplets were mined from (0 for no triplets).
    ///
    /// The hinge is decided on `dist`'s values, so the loss is linear in `dist` with host
    /// weights: one `[N, N]` product instead of an `[N, N, N]` tensor, and the gradient is
    /// exactly the hinge's (0 where inactive).
    pub fn loss(&self, dist: &Tensor, margin: f32) -> Result<Tensor> {
        let n = dist.shape().first().copied().unwrap_or(0);
        if dist.rank() != 2 || dist.shape()[1] != n {
            return Err(Error::op(
                "triplet_loss",
                format!("needs an [N, N] distance matrix, got {:?}", dist.shape()),
            ));
        }
        if let Some(t) = self.triplets.iter().find(|t| t.iter().any(|&i| i >= n)) {
            return Err(Error::op(
                "triplet_loss",
                format!("triplet {t:?} is out of range for {n} embeddings"),
            ));
        }
        self.loss_from(dist, &dist.to_vec()?, margin)
    }

    /// [`Triplets::loss`] with `dist`'s values already on the host.
    fn loss_from(&self, dist: &Tensor, host: &[f32], margin: f32) -> Result<Tensor> {
        let n = dist.shape()[0];
        let mut weights = vec![0.0f32; n * n];
        let mut count = 0usize;
        for &[a, p, j] in &self.triplets {
            if host[a * n + p] - host[a * n + j] + margin > 0.0 {
                weights[a * n + p] += 1.0;
                weights[a * n + j] -= 1.0;
                count += 1;
            }
        }
        let scale = 1.0 / self.divisor.max(1) as f32;
        let w = Tensor::from_vec(weights, &[n, n], dist.device())?;
        Ok(dist
            .mul(&w)?
            .sum()
            .add_scalar(margin * count as f32)
            .mul_scalar(scale))
    }
}

/// Mines `embeddings` (`[N, D]`) of classes `labels` and returns the mean triplet loss on
/// squared Euclidean distances, `max(‖a − p‖² − ‖a − n‖² + margin, 0)`, with the triplets.
pub fn mined_triplet_loss(
    embeddings: &Tensor,
    labels: &[usize],
    margin: f32,
    mining: Mining,
) -> Result<MinedLoss> {
    if embeddings.rank() != 2 || embeddings.shape()[0] != labels.len() {
        return Err(Error::op(
            "mined_triplet_loss",
            format!(
                "needs [N, D] embeddings and N labels, got shape {:?} and {} labels",
                embeddings.shape(),
                labels.len()
            ),
        ));
    }
    let dist = embeddings.squared_distance_matrix(embeddings)?;
    let host = dist.to_vec()?;
    let triplets = mine(&host, labels, margin, mining)?;
    let loss = triplets.loss_from(&dist, &host, margin)?;
    Ok(MinedLoss { loss, triplets })
}
