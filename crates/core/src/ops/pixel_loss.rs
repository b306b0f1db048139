//! Per-pixel classification losses: `[N, C, H, W]` logits against `[N, H, W]` class ids
//! (semantic segmentation), with PyTorch's class weights, ignore index and reductions.
//!
//! The targets stay on the host, where they come from (masks) and where they are checked;
//! what reaches the device is one value per pixel, turned into a one-hot there by
//! comparing it with the class ids. The loss is then `log_softmax` times that (weighted)
//! one-hot, summed: a gather written with differentiable ops, so its gradient is theirs.

use super::check_rank;
use crate::backend::BinaryOp;
use crate::{Device, Error, Result, Tensor};

/// How a loss over many pixels is reduced (PyTorch's `reduction`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// the (weighted) mean over the counted pixels
    #[default]
    Mean,
    /// the sum over the counted pixels
    Sum,
    /// one loss per pixel, `[N, H, W]` (PyTorch's `'none'`; ignored pixels give 0)
    None,
}

/// The class id of every pixel of a batch, `[N, H, W]`, held on the host (PyTorch's
/// integer target tensor). Ids are signed so that an ignore index such as −100 fits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PixelTargets {
    shape: [usize; 3],
    ids: Vec<i64>,
}

impl PixelTargets {
    /// Targets of `shape` `[N, H, W]` from ids in row-major order.
    pub fn new(ids: Vec<i64>, shape: [usize; 3]) -> Result<PixelTargets> {
        let len = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if len != Some(ids.len()) {
            return Err(Error::op(
                "PixelTargets::new",
                format!("{} ids cannot fill shape {shape:?}", ids.len()),
            ));
        }
        Ok(PixelTargets { shape, ids })
    }

    /// Targets from `H × W` masks of class ids (one per image of the batch), such as
    /// [`crate::data::DigitCanvas::mask`].
    pub fn from_masks<M: AsRef<[u8]>>(masks: &[M], h: usize, w: usize) -> Result<PixelTargets> {
        let Some(hw) = h.checked_mul(w) else {
            return Err(Error::op(
                "PixelTargets::from_masks",
                format!("masks of {h} × {w} pixels overflow a usize"),
            ));
        };
        if let Some((i, m)) = masks
            .iter()
            .enumerate()
            .find(|(_, m)| m.as_ref().len() != hw)
        {
            return Err(Error::op(
                "PixelTargets::from_masks",
                format!(
                    "mask {i} has {} pixels, not {h} × {w} = {hw}",
                    m.as_ref().len(),
                ),
            ));
        }
        let ids = masks
            .iter()
            .flat_map(|m| m.as_ref().iter().map(|&c| c as i64))
            .collect();
        PixelTargets::new(ids, [masks.len(), h, w])
    }

    /// `[N, H, W]`.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// The ids, row-major.
    pub fn ids(&self) -> &[i64] {
        &self.ids
    }

    /// Fails unless the targets fit `[N, C, H, W]` logits: the shape `[N, H, W]`, and every
    /// id a class below C or the ignore index.
    pub fn check(&self, op: &'static str, logits: &[usize], ignore_index: i64) -> Result<()> {
        if logits.len() != 4 || logits[0] != self.shape[0] || logits[2..] != self.shape[1..] {
            return Err(Error::op(
                op,
                format!(
                    "targets of shape {:?} do not fit logits of shape {logits:?} (targets must be [N, H, W] for [N, C, H, W] logits)",
                    self.shape
                ),
            ));
        }
        let c = logits[1] as i64;
        let bad = self
            .ids
            .iter()
            .position(|&t| t != ignore_index && !(0..c).contains(&t));
        if let Some(i) = bad {
            let (hw, w) = (self.shape[1] * self.shape[2], self.shape[2]);
            return Err(Error::op(
                op,
                format!(
                    "target {} at [{}, {}, {}] is neither a class of 0..{c} (logits {logits:?}) nor the ignore index {ignore_index}",
                    self.ids[i],
                    i / hw,
                    (i % hw) / w,
                    i % w
                ),
            ));
        }
        Ok(())
    }

    /// True for each pixel that counts (its id is not `ignore_index`).
    pub fn counted(&self, ignore_index: i64) -> impl Iterator<Item = bool> + '_ {
        self.ids.iter().map(move |&t| t != ignore_index)
    }

    /// The `[N, C, H, W]` one-hot of the targets (all zeros at ignored pixels), after
    /// [`PixelTargets::check`]. Built on the device from one value per pixel.
    pub fn one_hot(&self, classes: usize, ignore_index: i64, device: &Device) -> Result<Tensor> {
        let [n, h, w] = self.shape;
        self.check("one_hot", &[n, classes, h, w], ignore_index)?;
        let ids: Vec<f32> = self
            .ids
            .iter()
            .map(|&t| if t == ignore_index { -1.0 } else { t as f32 })
            .collect();
        let ids = Tensor::from_vec(ids, &[n, 1, h, w], device)?;
        let classes =
            Tensor::arange(0.0, classes as f32, 1.0, device)?.reshape(&[1, classes, 1, 1])?;
        ids.zip_raw(&classes, BinaryOp::Eq, "one_hot")
    }

    /// `[N, 1, H, W]`: 1 at counted pixels, 0 at ignored ones.
    pub fn counted_mask(&self, ignore_index: i64, device: &Device) -> Result<Tensor> {
        let [n, h, w] = self.shape;
        let m = self.counted(ignore_index).map(|c| c as u8 as f32).collect();
        Tensor::from_vec(m, &[n, 1, h, w], device)
    }
}

/// Options of [`Tensor::cross_entropy2d`]; `Default` gives PyTorch's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropy2dOptions {
    /// a weight per class (`[C]`), or all ones
    pub weight: Option<Vec<f32>>,
    /// pixels with this target count for nothing (PyTorch's default −100); it may also be
    /// a real class id, which is then left out
    pub ignore_index: i64,
    /// how the per-pixel losses are combined
    pub reduction: Reduction,
}

impl Default for CrossEntropy2dOptions {
    fn default() -> Self {
        CrossEntropy2dOptions {
            weight: None,
            ignore_index: -100,
            reduction: Reduction::Mean,
        }
    }
}

impl Tensor {
    /// Cross-entropy of `[N, C, H, W]` logits against `[N, H, W]` class ids, as PyTorch's
    /// `F.cross_entropy(logits, target, weight, ignore_index=…, reduction=…)`: per pixel
    /// `w[t]·(−log softmax(x)[t])`; the mean divides the sum by `Σ w[t]` over the counted
    /// pixels (NaN when no pixel counts, as in PyTorch), `Reduction::None` gives `[N, H, W]`
    /// with 0 at ignored pixels. A 0-dimensional tensor otherwise.
    pub fn cross_entropy2d(
        &self,
        target: &PixelTargets,
        opts: &CrossEntropy2dOptions,
    ) -> Result<Tensor> {
        const OP: &str = "cross_entropy2d";
        check_rank(OP, "logits", self, 4)?;
        let c = self.shape()[1];
        // A weight per class is built below: the classes of empty logits may be vast.
        super::check_output(OP, &[self.shape()], &[1, c, 1, 1], self.device())?;
        let ignore = opts.ignore_index;
        target.check(OP, self.shape(), ignore)?;
        if let Some(w) = &opts.weight {
            if w.len() != c {
                return Err(Error::op(
                    OP,
                    format!(
                        "weight has {} values for {c} classes (logits {:?})",
                        w.len(),
                        self.shape()
                    ),
                ));
            }
        }
        // Ignoring a real class is weighing it 0: then ignored pixels add nothing to the
        // sum nor to the mean's divisor, exactly as in PyTorch.
        let mut weight = opts.weight.clone().unwrap_or_else(|| vec![1.0; c]);
        if (0..c as i64).contains(&ignore) {
            weight[ignore as usize] = 0.0;
        }
        let mut pick = target.one_hot(c, ignore, self.device())?;
        if weight.iter().any(|&v| v != 1.0) {
            let w = Tensor::from_vec(weight.clone(), &[1, c, 1, 1], self.device())?;
            pick = pick.zip_raw(&w, BinaryOp::Mul, OP)?;
        }
        let picked = self.log_softmax(1)?.mul(&pick)?;
        Ok(match opts.reduction {
            Reduction::None => picked.sum_dims(&[1], false)?.neg(),
            Reduction::Sum => picked.sum().neg(),
            Reduction::Mean => {
                let total: f64 = target
                    .ids()
                    .iter()
                    .filter(|&&t| t != ignore)
                    .map(|&t| weight[t as usize] as f64)
                    .sum();
                picked.sum().mul_scalar((-1.0 / total) as f32)
            }
        })
    }
}
