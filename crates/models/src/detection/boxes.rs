//! Boxes: formats, intersection over union, and non-max suppression with torchvision's
//! semantics. Boxes are `[f32; 4]` on the host: NMS is a sequential, data-dependent
//! algorithm over a few hundred candidates, which a GPU would only slow down. Format
//! conversion also has a tensor form, differentiable, for losses written on boxes.

use std::str::FromStr;

use fovea_core::{Error, Result, Tensor};

/// How the four numbers of a box are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoxFormat {
    /// corners: `x1, y1, x2, y2` (torchvision's `xyxy`, the format of every function here)
    Xyxy,
    /// top-left corner and size: `x1, y1, w, h` (`xywh`)
    Xywh,
    /// centre and size: `cx, cy, w, h` (`cxcywh`)
    Cxcywh,
    /// the course's mid-point, height, width: `b_x, b_y, b_h, b_w`
    Cxcyhw,
}

impl FromStr for BoxFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<BoxFormat> {
        Ok(match s {
            "xyxy" => BoxFormat::Xyxy,
            "xywh" => BoxFormat::Xywh,
            "cxcywh" => BoxFormat::Cxcywh,
            "cxcyhw" => BoxFormat::Cxcyhw,
            _ => {
                return Err(Error::op(
                    "box_convert",
                    format!("unknown box format {s:?}: use xyxy, xywh, cxcywh or cxcyhw"),
                ))
            }
        })
    }
}

/// One box from `from` to `to`.
pub fn convert_box(b: [f32; 4], from: BoxFormat, to: BoxFormat) -> [f32; 4] {
    let [x1, y1, x2, y2] = match from {
        BoxFormat::Xyxy => b,
        BoxFormat::Xywh => [b[0], b[1], b[0] + b[2], b[1] + b[3]],
        BoxFormat::Cxcywh => [
            b[0] - b[2] / 2.0,
            b[1] - b[3] / 2.0,
            b[0] + b[2] / 2.0,
            b[1] + b[3] / 2.0,
        ],
        BoxFormat::Cxcyhw => [
            b[0] - b[3] / 2.0,
            b[1] - b[2] / 2.0,
            b[0] + b[3] / 2.0,
            b[1] + b[2] / 2.0,
        ],
    };
    let (w, h) = (x2 - x1, y2 - y1);
    let (cx, cy) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
    match to {
        BoxFormat::Xyxy => [x1, y1, x2, y2],
        BoxFormat::Xywh => [x1, y1, w, h],
        BoxFormat::Cxcywh => [cx, cy, w, h],
        BoxFormat::Cxcyhw => [cx, cy, h, w],
    }
}

/// `[N, 4]` boxes from `from` to `to` (torchvision's `box_convert`), differentiable.
pub fn box_convert(boxes: &Tensor, from: BoxFormat, to: BoxFormat) -> Result<Tensor> {
    if boxes.rank() != 2 || boxes.shape()[1] != 4 {
        return Err(Error::op(
            "box_convert",
            format!("needs boxes of shape [N, 4], got {:?}", boxes.shape()),
        ));
    }
    if from == to {
        return Ok(boxes.clone());
    }
    let col = |i: usize| boxes.narrow(1, i, 1);
    let (a, b, c, d) = (col(0)?, col(1)?, col(2)?, col(3)?);
    // Through corners: every format converts to and from them in one step.
    let [x1, y1, x2, y2] = match from {
        BoxFormat::Xyxy => [a, b, c, d],
        BoxFormat::Xywh => [a.clone(), b.clone(), a.add(&c)?, b.add(&d)?],
        BoxFormat::Cxcywh | BoxFormat::Cxcyhw => {
            let (w, h) = if from == BoxFormat::Cxcywh {
                (c, d)
            } else {
                (d, c)
            };
            let (hw, hh) = (w.mul_scalar(0.5), h.mul_scalar(0.5));
            [a.sub(&hw)?, b.sub(&hh)?, a.add(&hw)?, b.add(&hh)?]
        }
    };
    let cols = match to {
        BoxFormat::Xyxy => [x1, y1, x2, y2],
        BoxFormat::Xywh => [x1.clone(), y1.clone(), x2.sub(&x1)?, y2.sub(&y1)?],
        BoxFormat::Cxcywh | BoxFormat::Cxcyhw => {
            let cx = x1.add(&x2)?.mul_scalar(0.5);
            let cy = y1.add(&y2)?.mul_scalar(0.5);
            let (w, h) = (x2.sub(&x1)?, y2.sub(&y1)?);
            if to == BoxFormat::Cxcywh {
                [cx, cy, w, h]
            } else {
                [cx, cy, h, w]
            }
        }
    };
    Tensor::cat(&cols.iter().collect::<Vec<_>>(), 1)
}

/// Fails unless every box is `x1 ≤ x2, y1 ≤ y2` with finite coordinates (zero width or
/// height is allowed: such a box has area 0).
pub fn check_boxes(op: &'static str, boxes: &[[f32; 4]]) -> Result<()> {
    for (i, b) in boxes.iter().enumerate() {
        if !b.iter().all(|v| v.is_finite()) || b[2] < b[0] || b[3] < b[1] {
            return Err(Error::op(
                op,
                format!("box {i} {b:?} is not [x1, y1, x2, y2] with finite x1 <= x2 and y1 <= y2"),
            ));
        }
    }
    Ok(())
}

/// Area of an `xyxy` box.
pub fn box_area(b: &[f32; 4]) -> f32 {
    (b[2] - b[0]) * (b[3] - b[1])
}

/// Intersection over union of two valid `xyxy` boxes. As in torchvision: 0 when they
/// only touch, and NaN (0/0) when both have zero area.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    inter / (box_area(a) + box_area(b) - inter)
}

/// The `N × M` matrix of IoUs (row-major: `out[i * M + j]` = IoU of `a[i]` and `b[j]`),
/// torchvision's `box_iou`. Empty inputs give an empty matrix; an entry between two
/// zero-area boxes is NaN, as in torchvision.
pub fn box_iou(a: &[[f32; 4]], b: &[[f32; 4]]) -> Result<Vec<f32>> {
    check_boxes("box_iou", a)?;
    check_boxes("box_iou", b)?;
    Ok(a.iter()
        .flat_map(|x| b.iter().map(move |y| iou(x, y)))
        .collect())
}

/// Checks NMS arguments: one finite score per valid box, a threshold in [0, 1], and (for
/// `batched_nms`) one class per box.
fn check_nms(
    op: &'static str,
    boxes: &[[f32; 4]],
    scores: &[f32],
    classes: Option<&[usize]>,
    iou_threshold: f32,
) -> Result<()> {
    check_boxes(op, boxes)?;
    let n_classes = classes.map_or(boxes.len(), <[usize]>::len);
    if scores.len() != boxes.len() || n_classes != boxes.len() {
        return Err(Error::op(
            op,
            format!(
                "needs one score (and class) per box: {} boxes, {} scores, {n_classes} classes",
                boxes.len(),
                scores.len()
            ),
        ));
    }
    if let Some(i) = scores.iter().position(|s| s.is_nan()) {
        return Err(Error::op(op, format!("score {i} is NaN")));
    }
    if !(0.0..=1.0).contains(&iou_threshold) {
        return Err(Error::op(
            op,
            format!("iou_threshold must lie in [0, 1], got {iou_threshold}"),
        ));
    }
    Ok(())
}

/// Greedy suppression in decreasing score order; only boxes of one class suppress each
/// other.
fn greedy(boxes: &[[f32; 4]], scores: &[f32], classes: &[usize], thr: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    // A stable sort: equal scores keep index order, as torchvision does.
    order.sort_by(|&i, &j| scores[j].total_cmp(&scores[i]));
    let mut dead = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        if dead[i] {
            continue;
        }
        keep.push(i);
        for &j in &order[k + 1..] {
            // Strictly greater: an IoU equal to the threshold keeps the box, and NaN (two
            // zero-area boxes) never suppresses.
            if !dead[j] && classes[j] == classes[i] && iou(&boxes[i], &boxes[j]) > thr {
                dead[j] = true;
            }
        }
    }
    keep
}

/// Non-max suppression (torchvision's `nms`): the indices of the boxes kept, in
/// decreasing score order (equal scores: lower index first). A box is dropped when its
/// IoU with a kept box of higher score is greater than `iou_threshold` (strictly). No
/// boxes give no indices. Errors: lengths that differ, a NaN score, a box with
/// `x2 < x1` or `y2 < y1` or a non-finite coordinate, a threshold outside [0, 1].
pub fn nms(boxes: &[[f32; 4]], scores: &[f32], iou_threshold: f32) -> Result<Vec<usize>> {
    check_nms("nms", boxes, scores, None, iou_threshold)?;
    Ok(greedy(boxes, scores, &vec![0; boxes.len()], iou_threshold))
}

/// Non-max suppression within each class (torchvision's `batched_nms`): boxes of
/// different classes never suppress each other. Same order, semantics and errors as
/// [`nms`].
pub fn batched_nms(
    boxes: &[[f32; 4]],
    scores: &[f32],
    classes: &[usize],
    iou_threshold: f32,
) -> Result<Vec<usize>> {
    check_nms("batched_nms", boxes, scores, Some(classes), iou_threshold)?;
    Ok(greedy(boxes, scores, classes, iou_threshold))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip_through_corners() {
        let b = [2.0, 4.0, 10.0, 7.0];
        for f in [
            BoxFormat::Xyxy,
            BoxFormat::Xywh,
            BoxFormat::Cxcywh,
            BoxFormat::Cxcyhw,
        ] {
            let there = convert_box(b, BoxFormat::Xyxy, f);
            assert_eq!(convert_box(there, f, BoxFormat::Xyxy), b, "{f:?}");
        }
        // The course's b_x, b_y, b_h, b_w: height before width.
        assert_eq!(
            convert_box(b, BoxFormat::Xyxy, BoxFormat::Cxcyhw),
            [6.0, 5.5, 3.0, 8.0]
        );
        assert!("yxyx".parse::<BoxFormat>().is_err());
    }

    #[test]
    fn nms_keeps_ties_in_index_order_and_suppresses_only_above_the_threshold() {
        let boxes = [
            [0.0, 0.0, 3.0, 1.0],
            [1.0, 0.0, 4.0, 1.0],
            [2.0, 0.0, 5.0, 1.0],
        ];
        // IoU of neighbours is exactly 0.5: kept at 0.5, suppressed below.
        assert_eq!(nms(&boxes, &[0.9, 0.8, 0.7], 0.5).unwrap(), vec![0, 1, 2]);
        assert_eq!(nms(&boxes, &[0.9, 0.8, 0.7], 0.3).unwrap(), vec![0, 2]);
        assert_eq!(nms(&boxes, &[0.5, 0.5, 0.5], 0.3).unwrap(), vec![0, 2]);
        assert_eq!(
            batched_nms(&boxes, &[0.9, 0.8, 0.7], &[0, 1, 0], 0.3).unwrap(),
            vec![0, 1, 2]
        );
        assert_eq!(nms(&[], &[], 0.5).unwrap(), Vec::<usize>::new());
    }
}
