//! Classification with localisation and landmark regression, as the course sets them up.
//!
//! Localisation: one output vector per image, `y = [P_c, b_x, b_y, b_h, b_w, c_1 … c_C]`,
//! the box as mid-point, height and width relative to the image ((0, 0) its top-left
//! corner, (1, 1) its bottom-right). Where an object is (`P_c = 1`) every term counts;
//! where none is, only the `P_c` term. As the course suggests for practice: logistic loss
//! on `P_c`, squared error on the box (after a sigmoid), log-likelihood on the classes.
//!
//! Landmarks: `2·L` outputs, the `x, y` of each of `L` points relative to the image,
//! trained with the squared error of every coordinate.

use fovea_core::data::DigitCanvas;
use fovea_core::nn::{Linear, Module, Pass, SummaryRow};
use fovea_core::{no_grad, Device, Error, Result, Tensor};

use super::boxes::{check_boxes, convert_box, BoxFormat};

/// The output vector's `5 + C` entries: `P_c` first.
pub const LOC_PC: usize = 0;
/// First of `b_x, b_y, b_h, b_w`.
pub const LOC_BOX: usize = 1;
/// First class score.
pub const LOC_CLASSES: usize = 5;

/// What an image holds: nothing, or one object's `xyxy` box (pixels) and class.
pub type LocalizationTarget = Option<([f32; 4], usize)>;

/// The course's loss and its parts, means over the batch (0-dimensional tensors).
pub struct LocalizationLoss {
    /// everything: call `backward` on it
    pub total: Tensor,
    /// logistic loss of `P_c`, every image
    pub pc: Tensor,
    /// λ_box · squared error of `b_x, b_y, b_h, b_w`, images with an object
    pub bbox: Tensor,
    /// cross-entropy of the class scores, images with an object
    pub class: Tensor,
}

/// One image's prediction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Localized {
    /// `σ(P_c)`: the probability that an object is there
    pub p_object: f32,
    /// `xyxy` box in pixels
    pub bbox: [f32; 4],
    /// the most likely class
    pub class: usize,
    /// its softmax probability
    pub p_class: f32,
}

/// The classification-with-localisation head: a fully connected layer to `5 + C`
/// outputs.
pub struct LocalizationHead {
    /// `[5 + C, in]`
    pub fc: Linear,
}

impl LocalizationHead {
    /// A head over `in_features` for `classes` classes.
    pub fn new(in_features: usize, classes: usize, seed: u64, dev: &Device) -> Self {
        LocalizationHead {
            fc: Linear::new(in_features, LOC_CLASSES + classes, true, seed, dev),
        }
    }
}

impl Module for LocalizationHead {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc.forward(&x.flatten(1)?)
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        Pass::summary(name, rows).run("fc", &self.fc, &x.flatten(1)?)
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![("fc", &self.fc)]
    }
}

/// The landmark head: a fully connected layer to `2·L` outputs.
pub struct LandmarkHead {
    /// `[2·L, in]`
    pub fc: Linear,
}

impl LandmarkHead {
    /// A head over `in_features` for `landmarks` points.
    pub fn new(in_features: usize, landmarks: usize, seed: u64, dev: &Device) -> Self {
        LandmarkHead {
            fc: Linear::new(in_features, 2 * landmarks, true, seed, dev),
        }
    }
}

impl Module for LandmarkHead {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc.forward(&x.flatten(1)?)
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        Pass::summary(name, rows).run("fc", &self.fc, &x.flatten(1)?)
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![("fc", &self.fc)]
    }
}

fn check_output(op: &'static str, pred: &Tensor, width: usize, n: usize) -> Result<()> {
    if pred.rank() != 2 || pred.shape() != [n, width] {
        return Err(Error::op(
            op,
            format!(
                "needs output [{n}, {width}] for {n} targets, got {:?}",
                pred.shape()
            ),
        ));
    }
    Ok(())
}

/// The course's loss of raw outputs `pred` (`[N, 5 + C]`) against `targets` on images of
/// `image_size` pixels:
/// `(1/N) Σ_i [ BCE(P̂c, y1) + y1 · (λ_box · Σ_k (σ(b̂_k) − b_k)² + CE(ĉ, class)) ]`.
///
/// The course weighs the terms equally (`lambda_box` = 1). Box errors relative to the
/// image are small numbers (5 px on 96 px squares to 0.003), so beside the class term
/// they barely train the shared layers; YOLO's λ_coord answers the same problem.
pub fn localization_loss(
    pred: &Tensor,
    targets: &[LocalizationTarget],
    classes: usize,
    image_size: f32,
    lambda_box: f32,
) -> Result<LocalizationLoss> {
    const OP: &str = "localization_loss";
    let n = targets.len();
    check_output(OP, pred, LOC_CLASSES + classes, n)?;
    if n == 0 || image_size.is_nan() || image_size <= 0.0 {
        return Err(Error::op(
            OP,
            format!("needs at least one target and a positive image size, got {n} targets and size {image_size}"),
        ));
    }
    let (mut present, mut boxes, mut onehot) =
        (vec![0.0; n], vec![0.0; n * 4], vec![0.0; n * classes]);
    for (i, t) in targets.iter().enumerate() {
        let Some((b, c)) = *t else { continue };
        check_boxes(OP, &[b])?;
        if c >= classes {
            return Err(Error::op(
                OP,
                format!("target {i} has class {c}, but the head has {classes} classes"),
            ));
        }
        present[i] = 1.0;
        let course = convert_box(b, BoxFormat::Xyxy, BoxFormat::Cxcyhw);
        for k in 0..4 {
            boxes[i * 4 + k] = course[k] / image_size;
        }
        onehot[i * classes + c] = 1.0;
    }
    let dev = pred.device();
    let y1 = Tensor::from_vec(present, &[n, 1], dev)?;
    let b = Tensor::from_vec(boxes, &[n, 4], dev)?;
    let onehot = Tensor::from_vec(onehot, &[n, classes], dev)?;
    let pc = pred.narrow(1, LOC_PC, 1)?;
    let softplus = pc.abs().neg().exp().add_scalar(1.0).log();
    let inv = 1.0 / n as f32;
    let pc_loss = pc
        .relu()
        .sub(&pc.mul(&y1)?)?
        .add(&softplus)?
        .sum()
        .mul_scalar(inv);
    let bbox = pred
        .narrow(1, LOC_BOX, 4)?
        .sigmoid()
        .sub(&b)?
        .square()
        .mul(&y1)?
        .sum()
        .mul_scalar(inv * lambda_box);
    // The one-hot rows of images without an object are zero: no class term there.
    let class = pred
        .narrow(1, LOC_CLASSES, classes)?
        .log_softmax(1)?
        .mul(&onehot)?
        .sum()
        .mul_scalar(-inv);
    Ok(LocalizationLoss {
        total: pc_loss.add(&bbox)?.add(&class)?,
        pc: pc_loss,
        bbox,
        class,
    })
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Raw `[N, 5 + C]` outputs to one prediction per image (box in pixels of an image of
/// `image_size`).
pub fn decode_localization(
    pred: &Tensor,
    classes: usize,
    image_size: f32,
) -> Result<Vec<Localized>> {
    let n = pred.shape().first().copied().unwrap_or(0);
    check_output("decode_localization", pred, LOC_CLASSES + classes, n)?;
    let v = no_grad(|| pred.to_vec())?;
    Ok(v.chunks(LOC_CLASSES + classes)
        .map(|row| {
            let course: [f32; 4] = std::array::from_fn(|k| sigmoid(row[LOC_BOX + k]) * image_size);
            let scores = &row[LOC_CLASSES..];
            let (class, top) =
                scores
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |m, (k, &s)| if s > m.1 { (k, s) } else { m },
                    );
            Localized {
                p_object: sigmoid(row[LOC_PC]),
                bbox: convert_box(course, BoxFormat::Cxcyhw, BoxFormat::Xyxy),
                class,
                p_class: 1.0 / scores.iter().map(|s| (s - top).exp()).sum::<f32>(),
            }
        })
        .collect())
}

/// Squared error of raw `[N, 2·L]` outputs against `targets[i]` (image `i`'s `L` points
/// `[x, y]` in pixels), coordinates relative to the image: `(1/N) Σ_i Σ_l (x̂ − x)² + (ŷ − y)²`.
pub fn landmark_loss(pred: &Tensor, targets: &[Vec<[f32; 2]>], image_size: f32) -> Result<Tensor> {
    const OP: &str = "landmark_loss";
    let n = targets.len();
    let l = targets.first().map_or(0, Vec::len);
    check_output(OP, pred, 2 * l, n)?;
    if n == 0
        || l == 0
        || targets.iter().any(|t| t.len() != l)
        || image_size.is_nan()
        || image_size <= 0.0
    {
        return Err(Error::op(
            OP,
            format!("needs the same positive number of points for each of at least one image and a positive image size, got {:?} points, size {image_size}", targets.iter().map(Vec::len).collect::<Vec<_>>()),
        ));
    }
    let flat: Vec<f32> = targets
        .iter()
        .flatten()
        .flat_map(|p| [p[0] / image_size, p[1] / image_size])
        .collect();
    if flat.iter().any(|v| !v.is_finite()) {
        return Err(Error::op(OP, "landmark coordinates must be finite"));
    }
    let t = Tensor::from_vec(flat, &[n, 2 * l], pred.device())?;
    Ok(pred.sub(&t)?.square().sum().mul_scalar(1.0 / n as f32))
}

/// Raw `[N, 2·L]` outputs to `L` points `[x, y]` in pixels per image.
pub fn decode_landmarks(pred: &Tensor, image_size: f32) -> Result<Vec<Vec<[f32; 2]>>> {
    if pred.rank() != 2 || !pred.shape()[1].is_multiple_of(2) {
        return Err(Error::op(
            "decode_landmarks",
            format!("needs output [N, 2·L], got {:?}", pred.shape()),
        ));
    }
    let w = pred.shape()[1];
    let v = no_grad(|| pred.to_vec())?;
    Ok(v.chunks(w.max(1))
        .map(|row| {
            row.chunks(2)
                .map(|p| [p[0] * image_size, p[1] * image_size])
                .collect()
        })
        .collect())
}

/// Four landmarks of digit `index` of a canvas: its topmost, bottommost, leftmost and
/// rightmost ink points (pixel centres, `[x, y]`), the ink being the pixels inside its
/// box that the canvas's mask gives its class. Where a row or column holds several
/// extreme pixels, the point is their middle. These four points pin the digit's extent
/// and something of its shape (where the stroke reaches each side), which a box alone
/// does not.
pub fn ink_landmarks(canvas: &DigitCanvas, index: usize) -> Result<[[f32; 2]; 4]> {
    const OP: &str = "ink_landmarks";
    let (Some(b), Some(&label)) = (canvas.boxes.get(index), canvas.labels.get(index)) else {
        return Err(Error::op(
            OP,
            format!(
                "digit {index} of a canvas with {} digits",
                canvas.boxes.len()
            ),
        ));
    };
    let side = (canvas.mask.len() as f64).sqrt() as usize;
    let [x1, y1, x2, y2] = b.map(|v| (v.max(0.0) as usize).min(side));
    let ink: Vec<(usize, usize)> = (y1..y2)
        .flat_map(|y| (x1..x2).map(move |x| (x, y)))
        .filter(|&(x, y)| canvas.mask[y * side + x] == 1 + label as u8)
        .collect();
    if ink.is_empty() {
        return Err(Error::op(
            OP,
            format!("digit {index} has no ink in its box {b:?}"),
        ));
    }
    let middle = |pts: Vec<usize>| pts.iter().sum::<usize>() as f32 / pts.len() as f32 + 0.5;
    let extreme = |pick: &dyn Fn(&(usize, usize)) -> usize,
                   other: &dyn Fn(&(usize, usize)) -> usize,
                   max: bool| {
        let v = if max {
            ink.iter().map(pick).max()
        } else {
            ink.iter().map(pick).min()
        }
        .expect("ink is not empty");
        let along = middle(ink.iter().filter(|p| pick(p) == v).map(other).collect());
        (v as f32 + 0.5, along)
    };
    let (x, y) = (|p: &(usize, usize)| p.0, |p: &(usize, usize)| p.1);
    let (top_y, top_x) = extreme(&y, &x, false);
    let (bottom_y, bottom_x) = extreme(&y, &x, true);
    let (left_x, left_y) = extreme(&x, &y, false);
    let (right_x, right_y) = extreme(&x, &y, true);
    Ok([
        [top_x, top_y],
        [bottom_x, bottom_y],
        [left_x, left_y],
        [right_x, right_y],
    ])
}
