//! A Siamese encoder (one small CNN applied to every image, its output an L2-normalised
//! embedding) and the verification heads that decide from two embeddings whether they
//! show one identity: DeepFace's weighted L1 and χ² forms, trained as a binary classifier
//! on pairs.

use fovea_core::nn::{
    AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, Module, Relu, Sequential,
};
use fovea_core::ops::{Conv2dOptions, Pool2dOptions};
use fovea_core::{Device, Error, Result, Tensor};

/// The smallest norm an embedding is divided by (`F.normalize`'s eps).
const NORM_EPS: f32 = 1e-12;

/// A CNN from `[N, C, H, W]` images to `[N, dim]` embeddings of unit length: three 3×3
/// conv–batch-norm–ReLU stages (`width`, 2·`width`, 2·`width` channels; 2×2 max pooling
/// after the first two), average pooling to a `grid`×`grid` map (global for
/// [`SiameseEncoder::new`]), a linear projection, `normalize`.
pub struct SiameseEncoder {
    /// the convolutional trunk (`features.*`)
    pub features: Sequential,
    /// the projection to the embedding (`embed`)
    pub embed: Linear,
    dim: usize,
}

impl SiameseEncoder {
    /// An encoder of `in_channels` images into `dim`-dimensional embeddings, with global
    /// average pooling, initialised from `seed`.
    pub fn new(
        in_channels: usize,
        width: usize,
        dim: usize,
        seed: u64,
        device: &Device,
    ) -> Result<SiameseEncoder> {
        SiameseEncoder::with_grid(in_channels, width, dim, 1, seed, device)
    }

    /// As [`SiameseEncoder::new`], but the last feature map is average-pooled to
    /// `grid`×`grid` cells rather than to one, so the projection sees where each feature
    /// lies, not only whether it is present.
    pub fn with_grid(
        in_channels: usize,
        width: usize,
        dim: usize,
        grid: usize,
        seed: u64,
        device: &Device,
    ) -> Result<SiameseEncoder> {
        if in_channels == 0 || width == 0 || dim == 0 || grid == 0 {
            return Err(Error::op(
                "SiameseEncoder",
                format!(
                    "in_channels ({in_channels}), width ({width}), dim ({dim}) and grid ({grid}) must be positive"
                ),
            ));
        }
        let pad = Conv2dOptions {
            padding: [1, 1],
            ..Default::default()
        };
        let conv = |cin, cout, s: u64| Conv2d::new(cin, cout, [3, 3], pad, false, seed + s, device);
        let features = Sequential::new()
            .push(conv(in_channels, width, 0)?)
            .push(BatchNorm2d::new(width, device))
            .push(Relu)
            .push(MaxPool2d(Pool2dOptions::square(2)))
            .push(conv(width, 2 * width, 1)?)
            .push(BatchNorm2d::new(2 * width, device))
            .push(Relu)
            .push(MaxPool2d(Pool2dOptions::square(2)))
            .push(conv(2 * width, 2 * width, 2)?)
            .push(BatchNorm2d::new(2 * width, device))
            .push(Relu)
            .push(AdaptiveAvgPool2d([grid, grid]))
            .push(Flatten);
        Ok(SiameseEncoder {
            features,
            embed: Linear::try_new(2 * width * grid * grid, dim, true, seed + 3, device)?,
            dim,
        })
    }

    /// The embedding size.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Both images of each pair through the one (shared) encoder, in one batch.
    pub fn forward_pair(&self, x1: &Tensor, x2: &Tensor) -> Result<(Tensor, Tensor)> {
        if x1.shape() != x2.shape() || x1.rank() != 4 {
            return Err(Error::op(
                "SiameseEncoder::forward_pair",
                format!(
                    "needs two [N, C, H, W] batches of one shape, got {:?} and {:?}",
                    x1.shape(),
                    x2.shape()
                ),
            ));
        }
        let n = x1.shape()[0];
        let e = self.forward(&Tensor::cat(&[x1, x2], 0)?)?;
        Ok((e.narrow(0, 0, n)?, e.narrow(0, n, n)?))
    }
}

impl Module for SiameseEncoder {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.embed
            .forward(&self.features.forward(x)?)?
            .normalize(1, NORM_EPS)
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![("features", &self.features), ("embed", &self.embed)]
    }
}

/// How a verification head compares two embeddings, feature by feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairFeature {
    /// `|f_i − f_j|` (DeepFace's weighted L1).
    L1,
    /// `(f_i − f_j)² / (|f_i| + |f_j|)`, the χ² form: for non-negative features, as in
    /// DeepFace, the denominator is `f_i + f_j`; the absolute values keep it positive for
    /// signed embeddings, and it is clamped at 1e-6 so equal zero features give 0, not NaN.
    ChiSquared,
}

/// `σ(Σ_k w_k · φ(f_i, f_j)_k + b)`: a logistic regression on a per-feature comparison
/// `φ` of two embeddings ([`PairFeature`]), trained with binary cross-entropy on pairs
/// labelled same / different. `forward` takes the `[N, D]` pair features; [`Self::logits`]
/// takes the two embeddings.
pub struct VerificationHead {
    /// `w` and `b` (`fc.weight [1, D]`, `fc.bias [1]`)
    pub fc: Linear,
    /// the comparison
    pub feature: PairFeature,
}

impl VerificationHead {
    /// A head for `dim`-dimensional embeddings, initialised from `seed`.
    pub fn new(dim: usize, feature: PairFeature, seed: u64, device: &Device) -> VerificationHead {
        VerificationHead {
            fc: Linear::new(dim, 1, true, seed, device),
            feature,
        }
    }

    /// `φ(f_i, f_j)` for two `[N, D]` embeddings, as `[N, D]`.
    pub fn pair_features(&self, e1: &Tensor, e2: &Tensor) -> Result<Tensor> {
        const OP: &str = "VerificationHead";
        if e1.rank() != 2 || e1.shape() != e2.shape() {
            return Err(Error::op(
                OP,
                format!(
                    "needs two [N, D] embeddings of one shape, got {:?} and {:?}",
                    e1.shape(),
                    e2.shape()
                ),
            ));
        }
        let diff = e1.sub(e2)?;
        match self.feature {
            PairFeature::L1 => Ok(diff.abs()),
            PairFeature::ChiSquared => {
                let denom = e1.abs().add(&e2.abs())?.clamp(1e-6, f32::INFINITY);
                diff.square().div(&denom)
            }
        }
    }

    /// The logits `Σ_k w_k φ_k + b` of pairs `(e1[n], e2[n])`, as `[N]`.
    pub fn logits(&self, e1: &Tensor, e2: &Tensor) -> Result<Tensor> {
        let n = e1.shape().first().copied().unwrap_or(0);
        let features = self.pair_features(e1, e2)?;
        let d = self.fc.weight.shape()[1];
        if features.shape()[1] != d {
            return Err(Error::op(
                "VerificationHead",
                format!(
                    "was made for {d}-dimensional embeddings, got {:?}",
                    features.shape()
                ),
            ));
        }
        self.forward(&features)?.reshape(&[n])
    }

    /// The mean binary cross-entropy of the pairs' logits against `same` (1 for one
    /// identity, 0 for two).
    pub fn loss(&self, e1: &Tensor, e2: &Tensor, same: &[bool]) -> Result<Tensor> {
        let logits = self.logits(e1, e2)?;
        let t: Vec<f32> = same.iter().map(|&s| f32::from(u8::from(s))).collect();
        if t.len() != logits.shape()[0] {
            return Err(Error::op(
                "VerificationHead::loss",
                format!("{} labels for {} pairs", t.len(), logits.shape()[0]),
            ));
        }
        let n = t.len();
        logits.bce_with_logits(&Tensor::from_vec(t, &[n], logits.device())?)
    }
}

impl Module for VerificationHead {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc.forward(x)
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![("fc", &self.fc)]
    }
}
