//! Mean average precision as PASCAL VOC measures it (2010 onward): per class, detections
//! of all images ranked by score, each a true positive when it overlaps a not yet matched
//! ground-truth box of its class by at least the IoU threshold, and the area under the
//! precision/recall curve with precision made monotone (all-point interpolation).

use fovea_core::{Error, Result};

use super::boxes::{check_boxes, iou};
use super::yolo::Detection;

/// The ground truth of one image: `xyxy` boxes and their classes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroundTruth {
    /// boxes in pixels
    pub boxes: Vec<[f32; 4]>,
    /// their classes
    pub labels: Vec<usize>,
}

/// mAP and what it averages.
#[derive(Clone, Debug, PartialEq)]
pub struct MeanAp {
    /// the mean of `per_class` over the classes that have ground truth
    pub map: f32,
    /// average precision per class; `None` for a class with no ground-truth box (VOC
    /// leaves such classes out of the mean)
    pub per_class: Vec<Option<f32>>,
}

/// Area under the precision/recall curve, all-point interpolated: precision at each
/// recall is the best precision at that recall or beyond (VOC's `voc_ap` with
/// `use_07_metric=False`). `recall` is non-decreasing.
pub fn average_precision(recall: &[f32], precision: &[f32]) -> f32 {
    let mut mrec = vec![0.0];
    mrec.extend_from_slice(recall);
    mrec.push(1.0);
    let mut mpre = vec![0.0];
    mpre.extend_from_slice(precision);
    mpre.push(0.0);
    for i in (0..mpre.len() - 1).rev() {
        mpre[i] = mpre[i].max(mpre[i + 1]);
    }
    (1..mrec.len())
        .map(|i| (mrec[i] - mrec[i - 1]) * mpre[i])
        .sum()
}

/// VOC mAP of `detections[i]` (image `i`'s boxes) against `truth[i]`, over `classes`
/// classes, a detection matching a box at IoU ≥ `iou_threshold` (0.5 for mAP@0.5).
/// Errors: lists of different lengths, boxes that are not `x1 ≤ x2, y1 ≤ y2`, classes
/// ≥ `classes`, a NaN score, a threshold outside [0, 1].
pub fn mean_average_precision(
    detections: &[Vec<Detection>],
    truth: &[GroundTruth],
    classes: usize,
    iou_threshold: f32,
) -> Result<MeanAp> {
    const OP: &str = "mean_average_precision";
    if detections.len() != truth.len() || !(0.0..=1.0).contains(&iou_threshold) {
        return Err(Error::op(
            OP,
            format!(
                "needs one detection list per image ({} lists for {} images) and a threshold in [0, 1] (got {iou_threshold})",
                detections.len(),
                truth.len()
            ),
        ));
    }
    for (i, (d, t)) in detections.iter().zip(truth).enumerate() {
        check_boxes(OP, &t.boxes)?;
        check_boxes(OP, &d.iter().map(|d| d.bbox).collect::<Vec<_>>())?;
        let bad_class = t
            .labels
            .iter()
            .chain(d.iter().map(|d| &d.class))
            .any(|&c| c >= classes);
        if t.boxes.len() != t.labels.len() || bad_class || d.iter().any(|d| d.score.is_nan()) {
            return Err(Error::op(
                OP,
                format!("image {i}: needs one label per box, classes below {classes} and scores that are numbers"),
            ));
        }
    }
    let per_class = (0..classes)
        .map(|c| class_ap(detections, truth, c, iou_threshold))
        .collect::<Vec<_>>();
    let present: Vec<f32> = per_class.iter().flatten().copied().collect();
    let map = if present.is_empty() {
        0.0
    } else {
        present.iter().sum::<f32>() / present.len() as f32
    };
    Ok(MeanAp { map, per_class })
}

fn class_ap(
    detections: &[Vec<Detection>],
    truth: &[GroundTruth],
    class: usize,
    thr: f32,
) -> Option<f32> {
    let positives: usize = truth
        .iter()
        .map(|t| t.labels.iter().filter(|&&l| l == class).count())
        .sum();
    if positives == 0 {
        return None;
    }
    let mut ranked: Vec<(usize, &Detection)> = detections
        .iter()
        .enumerate()
        .flat_map(|(img, ds)| {
            ds.iter()
                .filter(|d| d.class == class)
                .map(move |d| (img, d))
        })
        .collect();
    // Stable: equal scores keep image order, as VOC's sort does in practice.
    ranked.sort_by(|a, b| b.1.score.total_cmp(&a.1.score));
    let mut taken: Vec<Vec<bool>> = truth.iter().map(|t| vec![false; t.boxes.len()]).collect();
    let (mut tp, mut fp) = (0usize, 0usize);
    let (mut recall, mut precision) = (Vec::new(), Vec::new());
    for (img, d) in ranked {
        // The best-overlapping box of the class, matched or not (VOC: a detection that
        // best overlaps an already matched box is a false positive, a duplicate).
        let best = truth[img]
            .boxes
            .iter()
            .zip(&truth[img].labels)
            .enumerate()
            .filter(|(_, (_, &l))| l == class)
            .map(|(j, (b, _))| (j, iou(b, &d.bbox)))
            .filter(|(_, o)| !o.is_nan())
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((j, o)) if o >= thr && !taken[img][j] => {
                taken[img][j] = true;
                tp += 1;
            }
            _ => fp += 1,
        }
        recall.push(tp as f32 / positives as f32);
        precision.push(tp as f32 / (tp + fp) as f32);
    }
    Some(average_precision(&recall, &precision))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(bbox: [f32; 4], score: f32, class: usize) -> Detection {
        Detection { bbox, score, class }
    }

    #[test]
    fn map_by_hand() {
        // Class 0: two boxes in image 0, one in image 1. Ranked detections: hit, miss,
        // duplicate of the first, hit. Recall 1/3, 1/3, 1/3, 2/3; precision 1, 1/2, 1/3,
        // 1/2. Monotone precision: 1 up to recall 1/3, then 1/2 up to 2/3, then 0:
        // AP = 1/3 · 1 + 1/3 · 1/2 = 0.5.
        let truth = vec![
            GroundTruth {
                boxes: vec![[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]],
                labels: vec![0, 0],
            },
            GroundTruth {
                boxes: vec![[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]],
                labels: vec![0, 1],
            },
        ];
        let dets = vec![
            vec![
                det([0.0, 0.0, 10.0, 10.0], 0.9, 0),
                det([40.0, 40.0, 45.0, 45.0], 0.8, 0),
                det([1.0, 0.0, 10.0, 10.0], 0.7, 0),
            ],
            vec![
                det([0.0, 0.0, 10.0, 9.0], 0.6, 0),
                det([50.0, 50.0, 60.0, 60.0], 0.99, 1),
            ],
        ];
        let m = mean_average_precision(&dets, &truth, 3, 0.5).unwrap();
        assert!((m.per_class[0].unwrap() - 0.5).abs() < 1e-6, "{m:?}");
        assert_eq!(m.per_class[1], Some(1.0));
        assert_eq!(m.per_class[2], None);
        assert!((m.map - 0.75).abs() < 1e-6);
        assert!(mean_average_precision(&dets, &truth, 1, 0.5).is_err());
        assert!(mean_average_precision(&dets, &truth[..1], 3, 0.5).is_err());
    }
}
