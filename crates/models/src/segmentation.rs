//! Semantic segmentation's measures: per-pixel predictions from class scores, the
//! confusion matrix and what is read from it (pixel accuracy, per-class and mean
//! intersection over union, Dice), and the soft Dice loss. The per-pixel cross-entropy and
//! BCE are ops in fovea-core ([`Tensor::cross_entropy2d`],
//! [`Tensor::bce_with_logits_weighted`]).

use fovea_core::ops::PixelTargets;
use fovea_core::{Error, Result, Tensor};

/// The class of highest score of every pixel of `[N, C, H, W]` scores, `[N, H, W]`
/// row-major (the first of equal scores).
pub fn predict_classes(logits: &Tensor) -> Result<Vec<usize>> {
    let s = logits.shape();
    if s.len() != 4 || s[1] == 0 {
        return Err(Error::op(
            "predict_classes",
            format!("needs [N, C, H, W] scores with C ≥ 1, got {s:?}"),
        ));
    }
    let (c, hw) = (s[1], s[2] * s[3]);
    let v = logits.to_vec()?;
    let mut out = Vec::with_capacity(s[0] * hw);
    for image in v.chunks(c * hw.max(1)).take(s[0]) {
        for p in 0..hw {
            let mut best = 0;
            for k in 1..c {
                if image[k * hw + p] > image[best * hw + p] {
                    best = k;
                }
            }
            out.push(best);
        }
    }
    Ok(out)
}

/// Pixel counts by true class (rows) and predicted class (columns), over every pixel
/// whose truth is not the ignore index. Add batches one at a time; read the metrics at
/// the end. A class that is neither in the truth nor predicted has no IoU or Dice (it is
/// left out of the means, as `nanmean` over the classes does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confusion {
    classes: usize,
    counts: Vec<u64>,
}

impl Confusion {
    /// An empty matrix over `classes` classes.
    pub fn new(classes: usize) -> Confusion {
        Confusion {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    /// Counts predictions against truths (the same pixels in the same order); truths
    /// equal to `ignore_index` are skipped. Fails, counting nothing, on lengths that
    /// differ or on a class out of range.
    pub fn add(&mut self, pred: &[usize], truth: &[i64], ignore_index: i64) -> Result<()> {
        const OP: &str = "Confusion::add";
        if pred.len() != truth.len() {
            return Err(Error::op(
                OP,
                format!("{} predictions for {} true pixels", pred.len(), truth.len()),
            ));
        }
        let k = self.classes;
        let bad_truth = truth
            .iter()
            .position(|&t| t != ignore_index && !(0..k as i64).contains(&t));
        let bad_pred = pred.iter().position(|&p| p >= k);
        if let Some(i) = bad_truth {
            return Err(Error::op(
                OP,
                format!("true class {} at pixel {i} is outside 0..{k} and not the ignore index {ignore_index}", truth[i]),
            ));
        }
        if let Some(i) = bad_pred {
            return Err(Error::op(
                OP,
                format!("predicted class {} at pixel {i} is outside 0..{k}", pred[i]),
            ));
        }
        for (&p, &t) in pred.iter().zip(truth) {
            if t != ignore_index {
                self.counts[t as usize * k + p] += 1;
            }
        }
        Ok(())
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Pixels of true class `truth` predicted as `pred`.
    pub fn count(&self, truth: usize, pred: usize) -> u64 {
        self.counts[truth * self.classes + pred]
    }

    /// Counted pixels.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// (true positives, false positives, false negatives) of class `c`.
    fn tp_fp_fn(&self, c: usize) -> (u64, u64, u64) {
        let tp = self.count(c, c);
        let predicted: u64 = (0..self.classes).map(|t| self.count(t, c)).sum();
        let actual: u64 = (0..self.classes).map(|p| self.count(c, p)).sum();
        (tp, predicted - tp, actual - tp)
    }

    /// The share of counted pixels predicted right (NaN when none was counted).
    pub fn pixel_accuracy(&self) -> f64 {
        let right: u64 = (0..self.classes).map(|c| self.count(c, c)).sum();
        right as f64 / self.total() as f64
    }

    /// Each class's `TP / (TP + FP + FN)`; `None` for a class neither true nor predicted
    /// anywhere.
    pub fn iou_per_class(&self) -> Vec<Option<f64>> {
        (0..self.classes)
            .map(|c| {
                let (tp, fp, fneg) = self.tp_fp_fn(c);
                let union = tp + fp + fneg;
                (union > 0).then(|| tp as f64 / union as f64)
            })
            .collect()
    }

    /// The mean of [`Confusion::iou_per_class`] over the classes that have one (NaN when
    /// none has).
    pub fn mean_iou(&self) -> f64 {
        mean_of_some(&self.iou_per_class())
    }

    /// Each class's Dice coefficient `2·TP / (2·TP + FP + FN)`; `None` for a class
    /// neither true nor predicted anywhere.
    pub fn dice_per_class(&self) -> Vec<Option<f64>> {
        (0..self.classes)
            .map(|c| {
                let (tp, fp, fneg) = self.tp_fp_fn(c);
                let sum = 2 * tp + fp + fneg;
                (sum > 0).then(|| 2.0 * tp as f64 / sum as f64)
            })
            .collect()
    }

    /// The mean of [`Confusion::dice_per_class`] over the classes that have one.
    pub fn dice(&self) -> f64 {
        mean_of_some(&self.dice_per_class())
    }
}

fn mean_of_some(v: &[Option<f64>]) -> f64 {
    let some: Vec<f64> = v.iter().flatten().copied().collect();
    some.iter().sum::<f64>() / some.len() as f64
}

/// The confusion matrix of one set of predictions (see [`Confusion::add`]).
pub fn confusion(
    pred: &[usize],
    truth: &[i64],
    classes: usize,
    ignore_index: i64,
) -> Result<Confusion> {
    let mut m = Confusion::new(classes);
    m.add(pred, truth, ignore_index)?;
    Ok(m)
}

/// Options of [`soft_dice_loss`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiceOptions {
    /// added to both sides of each class's ratio: keeps a class absent from the batch and
    /// its predictions at a loss near 0, and the gradient finite
    pub smooth: f32,
    /// pixels with this target count for nothing
    pub ignore_index: i64,
}

impl Default for DiceOptions {
    fn default() -> Self {
        DiceOptions {
            smooth: 1.0,
            ignore_index: -100,
        }
    }
}

/// The soft Dice loss of `[N, C, H, W]` logits against `[N, H, W]` class ids: with `p`
/// the softmax over the classes and `y` the one-hot targets (both zero at ignored
/// pixels), `1 − mean_c (2·Σ p_c·y_c + s) / (Σ p_c + Σ y_c + s)`, the sums over the whole
/// batch. Differentiable in the logits.
pub fn soft_dice_loss(
    logits: &Tensor,
    target: &PixelTargets,
    opts: &DiceOptions,
) -> Result<Tensor> {
    const OP: &str = "soft_dice_loss";
    target.check(OP, logits.shape(), opts.ignore_index)?;
    let dev = logits.device();
    let c = logits.shape()[1];
    let y = target.one_hot(c, opts.ignore_index, dev)?;
    let p = logits
        .softmax(1)?
        .mul(&target.counted_mask(opts.ignore_index, dev)?)?;
    let dims = [0, 2, 3];
    let inter = p.mul(&y)?.sum_dims(&dims, false)?;
    let card = p.sum_dims(&dims, false)?.add(&y.sum_dims(&dims, false)?)?;
    let s = opts.smooth;
    let dice = inter.affine(2.0, s).div(&card.add_scalar(s))?;
    Ok(dice.mean().affine(-1.0, 1.0))
}
