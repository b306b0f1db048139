//! YOLO: an S×S grid over the image, each cell predicting B anchor boxes, each box as
//! `P_c, t_x, t_y, t_h, t_w` (the course's order: objectness, mid-point, height, width)
//! then C class scores, so the head's output is `[N, B·(5 + C), S, S]`.
//!
//! Targets are built on the host once per batch (which cell and anchor each object
//! belongs to is bookkeeping, not arithmetic) and uploaded; the loss is then a handful of
//! whole-tensor ops, so autodiff gives its gradient on any device.

use fovea_core::nn::{Conv2d, Module};
use fovea_core::ops::Conv2dOptions;
use fovea_core::{no_grad, Device, Error, Result, Tensor};

use super::anchors::{best_anchor, shape_iou};
use super::boxes::{batched_nms, check_boxes};

/// Offsets of a box's values within its `5 + C` channels.
pub const PC: usize = 0;
/// First of the four box values `t_x, t_y, t_h, t_w`.
pub const BOX: usize = 1;
/// First class score.
pub const CLASSES: usize = 5;

/// The geometry of a YOLO output: square image and grid, anchor shapes, classes.
#[derive(Clone, Debug, PartialEq)]
pub struct YoloSpec {
    /// side of the (square) input image in pixels
    pub image_size: f32,
    /// S: cells along each side
    pub grid: usize,
    /// B anchor shapes `[w, h]` in pixels
    pub anchors: Vec<[f32; 2]>,
    /// C
    pub classes: usize,
}

/// Where a batch's objects went: per anchor slot `[N, B, S, S]` (flattened row-major),
/// 1 where an object was assigned, its four box targets (`[N, B, 4, S, S]`, matching the
/// head's layout) and its class.
#[derive(Clone, Debug, PartialEq)]
pub struct YoloTargets {
    /// images in the batch
    pub batch: usize,
    /// `[N, B, 1, S, S]`: 1 where a slot holds an object
    pub object: Vec<f32>,
    /// `[N, B, 4, S, S]`: `t_x, t_y` (offset of the centre within its cell, in [0, 1)),
    /// `t_h, t_w` (log of the box's size over the anchor's); 0 where no object
    pub boxes: Vec<f32>,
    /// `[N, B, S, S]`: the class of the slot's object (0 where none)
    pub classes: Vec<usize>,
    /// objects that found no free anchor in their cell (all `B` already taken)
    pub dropped: usize,
}

/// The loss's weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct YoloLossOptions {
    /// weight of the box terms (YOLOv1: 5)
    pub lambda_coord: f32,
    /// weight of the objectness term of slots without an object (YOLOv1: 0.5)
    pub lambda_noobj: f32,
}

impl Default for YoloLossOptions {
    fn default() -> Self {
        YoloLossOptions {
            lambda_coord: 5.0,
            lambda_noobj: 0.5,
        }
    }
}

/// The loss and its parts (each summed over the batch and divided by its size), as
/// 0-dimensional tensors; `total` is their sum and is what to call `backward` on.
pub struct YoloLoss {
    /// everything
    pub total: Tensor,
    /// λ_coord · squared errors of `σ(t̂_x), σ(t̂_y), t̂_h, t̂_w` where an object is
    pub coord: Tensor,
    /// binary cross-entropy of `P_c` against 1 where an object is
    pub object: Tensor,
    /// λ_noobj · binary cross-entropy of `P_c` against 0 where none is
    pub no_object: Tensor,
    /// cross-entropy of the class scores where an object is
    pub class: Tensor,
}

/// A decoded box.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    /// `xyxy` in pixels, clipped to the image
    pub bbox: [f32; 4],
    /// `σ(P_c) · softmax(class scores)[class]`
    pub score: f32,
    /// the most likely class
    pub class: usize,
}

/// How raw outputs become detections.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecodeOptions {
    /// boxes scoring below this are dropped before NMS
    pub score_threshold: f32,
    /// NMS threshold, per class
    pub iou_threshold: f32,
    /// at most this many boxes per image, best first
    pub max_detections: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            score_threshold: 0.3,
            iou_threshold: 0.45,
            max_detections: 100,
        }
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl YoloSpec {
    /// Checks that the image, grid and anchors are usable.
    pub fn new(
        image_size: f32,
        grid: usize,
        anchors: Vec<[f32; 2]>,
        classes: usize,
    ) -> Result<YoloSpec> {
        let shapes_ok = anchors
            .iter()
            .all(|a| a[0] > 0.0 && a[1] > 0.0 && a[0].is_finite() && a[1].is_finite());
        if image_size.is_nan()
            || image_size <= 0.0
            || grid == 0
            || anchors.is_empty()
            || !shapes_ok
            || classes == 0
        {
            return Err(Error::op(
                "YoloSpec::new",
                format!("needs a positive image size, grid, class count and anchor shapes; got image {image_size}, grid {grid}, {classes} classes, anchors {anchors:?}"),
            ));
        }
        Ok(YoloSpec {
            image_size,
            grid,
            anchors,
            classes,
        })
    }

    /// B
    pub fn num_anchors(&self) -> usize {
        self.anchors.len()
    }

    /// Channels of the head's output: `B · (5 + C)`.
    pub fn channels(&self) -> usize {
        self.num_anchors() * (CLASSES + self.classes)
    }

    /// A cell's side in pixels.
    pub fn cell(&self) -> f32 {
        self.image_size / self.grid as f32
    }

    fn check_output(&self, op: &'static str, pred: &Tensor) -> Result<()> {
        let s = self.grid;
        if pred.rank() != 4 || pred.shape()[1..] != [self.channels(), s, s] {
            return Err(Error::op(
                op,
                format!(
                    "needs output [N, {}, {s}, {s}] (B = {} anchors, C = {} classes, S = {s}), got {:?}",
                    self.channels(),
                    self.num_anchors(),
                    self.classes,
                    pred.shape()
                ),
            ));
        }
        Ok(())
    }

    /// Assigns each object to the cell holding its centre and, of that cell's anchors,
    /// the one whose shape fits it best (by [`shape_iou`]); where that anchor is taken by
    /// an earlier object, the next best free one. `boxes[i]` and `labels[i]` are image
    /// `i`'s `xyxy` boxes in pixels and their classes.
    pub fn encode(&self, boxes: &[Vec<[f32; 4]>], labels: &[Vec<usize>]) -> Result<YoloTargets> {
        const OP: &str = "yolo encode";
        if boxes.len() != labels.len() {
            return Err(Error::op(
                OP,
                format!("{} box lists but {} label lists", boxes.len(), labels.len()),
            ));
        }
        let (b_n, s) = (self.num_anchors(), self.grid);
        let n = boxes.len();
        let slots = n * b_n * s * s;
        let mut t = YoloTargets {
            batch: n,
            object: vec![0.0; slots],
            boxes: vec![0.0; slots * 4],
            classes: vec![0; slots],
            dropped: 0,
        };
        let cell = self.cell();
        for (img, (bs, ls)) in boxes.iter().zip(labels).enumerate() {
            check_boxes(OP, bs)?;
            if bs.len() != ls.len() {
                return Err(Error::op(
                    OP,
                    format!("image {img} has {} boxes but {} labels", bs.len(), ls.len()),
                ));
            }
            for (k, (b, &label)) in bs.iter().zip(ls).enumerate() {
                let (w, h) = (b[2] - b[0], b[3] - b[1]);
                let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
                let inside =
                    (0.0..self.image_size).contains(&cx) && (0.0..self.image_size).contains(&cy);
                if label >= self.classes || w <= 0.0 || h <= 0.0 || !inside {
                    return Err(Error::op(
                        OP,
                        format!(
                            "object {k} of image {img} (box {b:?}, class {label}) needs a class below {}, a positive size and its centre inside the {} px image",
                            self.classes, self.image_size
                        ),
                    ));
                }
                let (col, row) = ((cx / cell) as usize, (cy / cell) as usize);
                // Anchors of this cell from best to worst fit; take the first free one.
                let mut order: Vec<usize> = (0..b_n).collect();
                order.sort_by(|&i, &j| {
                    shape_iou([w, h], self.anchors[j])
                        .total_cmp(&shape_iou([w, h], self.anchors[i]))
                });
                debug_assert_eq!(order[0], best_anchor([w, h], &self.anchors));
                let slot = |a: usize| ((img * b_n + a) * s + row) * s + col;
                let Some(a) = order.into_iter().find(|&a| t.object[slot(a)] == 0.0) else {
                    t.dropped += 1;
                    continue;
                };
                let q = slot(a);
                t.object[q] = 1.0;
                t.classes[q] = label;
                let plane = ((img * b_n + a) * 4) * s * s + row * s + col;
                let values = [
                    cx / cell - col as f32,
                    cy / cell - row as f32,
                    (h / self.anchors[a][1]).ln(),
                    (w / self.anchors[a][0]).ln(),
                ];
                for (v, value) in values.into_iter().enumerate() {
                    t.boxes[plane + v * s * s] = value;
                }
            }
        }
        Ok(t)
    }

    /// The loss of raw head outputs `pred` (`[N, B·(5 + C), S, S]`) against `targets`:
    ///
    /// ```text
    /// (1/N) Σ_slots [ 1_obj · λ_coord · ((σ(t̂x) − tx)² + (σ(t̂y) − ty)² + (t̂h − th)² + (t̂w − tw)²)
    ///               + 1_obj · BCE(P̂c, 1) + (1 − 1_obj) · λ_noobj · BCE(P̂c, 0)
    ///               + 1_obj · CE(class scores, class) ]
    /// ```
    ///
    /// Box and class terms count only where an object is (the course's P_c mask); the
    /// objectness term counts everywhere.
    pub fn loss(
        &self,
        pred: &Tensor,
        targets: &YoloTargets,
        opts: &YoloLossOptions,
    ) -> Result<YoloLoss> {
        const OP: &str = "yolo loss";
        self.check_output(OP, pred)?;
        let (n, b, s, c) = (pred.shape()[0], self.num_anchors(), self.grid, self.classes);
        if targets.batch != n || targets.object.len() != n * b * s * s {
            return Err(Error::op(
                OP,
                format!(
                    "targets for {} images do not fit output {:?}",
                    targets.batch,
                    pred.shape()
                ),
            ));
        }
        let dev = pred.device();
        let (obj, noobj, box_t, onehot) = self.upload(targets, opts, dev)?;
        let p = pred.reshape(&[n, b, CLASSES + c, s, s])?;
        let pc = p.narrow(2, PC, 1)?;
        // Stable BCE with logits, element by element: max(x, 0) − x·t + log(1 + e^−|x|).
        let softplus = pc.abs().neg().exp().add_scalar(1.0).log();
        let bce = pc.relu().sub(&pc.mul(&obj)?)?.add(&softplus)?;
        let object = bce.mul(&obj)?.sum();
        let no_object = bce.mul(&noobj)?.sum();
        // σ on the centre offsets only: sizes are free log-scales of the anchor.
        let xy = p.narrow(2, BOX, 2)?.sigmoid();
        let hw = p.narrow(2, BOX + 2, 2)?;
        let coord = Tensor::cat(&[&xy, &hw], 2)?
            .sub(&box_t)?
            .square()
            .mul(&obj)?
            .sum()
            .mul_scalar(opts.lambda_coord);
        // onehot is zero in slots without an object, so only object slots count.
        let class = p
            .narrow(2, CLASSES, c)?
            .log_softmax(2)?
            .mul(&onehot)?
            .sum()
            .neg();
        let inv = 1.0 / n as f32;
        let (coord, object, no_object, class) = (
            coord.mul_scalar(inv),
            object.mul_scalar(inv),
            no_object.mul_scalar(inv),
            class.mul_scalar(inv),
        );
        let total = coord.add(&object)?.add(&no_object)?.add(&class)?;
        Ok(YoloLoss {
            total,
            coord,
            object,
            no_object,
            class,
        })
    }

    /// The target tensors: object mask, λ_noobj-weighted no-object mask, box targets and
    /// one-hot classes (zero where no object).
    fn upload(
        &self,
        t: &YoloTargets,
        opts: &YoloLossOptions,
        dev: &Device,
    ) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
        let (n, b, s, c) = (t.batch, self.num_anchors(), self.grid, self.classes);
        let noobj: Vec<f32> = t
            .object
            .iter()
            .map(|&o| (1.0 - o) * opts.lambda_noobj)
            .collect();
        let mut onehot = vec![0.0; n * b * c * s * s];
        for (q, (&o, &cls)) in t.object.iter().zip(&t.classes).enumerate() {
            if o > 0.0 {
                let (nb, cell) = (q / (s * s), q % (s * s));
                onehot[(nb * c + cls) * s * s + cell] = 1.0;
            }
        }
        Ok((
            Tensor::from_slice(&t.object, &[n, b, 1, s, s], dev)?,
            Tensor::from_vec(noobj, &[n, b, 1, s, s], dev)?,
            Tensor::from_slice(&t.boxes, &[n, b, 4, s, s], dev)?,
            Tensor::from_vec(onehot, &[n, b, c, s, s], dev)?,
        ))
    }

    /// Raw outputs to boxes: centre `((col, row) + σ(t̂x, t̂y)) · cell`, size
    /// `anchor · e^(t̂w, t̂h)`, score `σ(P̂c)` times the best class's softmax probability;
    /// boxes scoring at least `score_threshold` go through NMS per class. One list per
    /// image, best first.
    pub fn decode(&self, pred: &Tensor, opts: &DecodeOptions) -> Result<Vec<Vec<Detection>>> {
        const OP: &str = "yolo decode";
        self.check_output(OP, pred)?;
        let in_unit = |v: f32| (0.0..=1.0).contains(&v);
        if !in_unit(opts.score_threshold) || !in_unit(opts.iou_threshold) {
            return Err(Error::op(
                OP,
                format!(
                    "thresholds must lie in [0, 1], got score {} and IoU {}",
                    opts.score_threshold, opts.iou_threshold
                ),
            ));
        }
        let values = no_grad(|| pred.to_vec())?;
        let (n, b, s, c) = (pred.shape()[0], self.num_anchors(), self.grid, self.classes);
        let (cell, plane) = (self.cell(), s * s);
        let mut out = Vec::with_capacity(n);
        for img in 0..n {
            let mut found: Vec<Detection> = Vec::new();
            for a in 0..b {
                let base = (img * b + a) * (CLASSES + c) * plane;
                let at = |ch: usize, q: usize| values[base + ch * plane + q];
                for q in 0..plane {
                    let (row, col) = ((q / s) as f32, (q % s) as f32);
                    let scores: Vec<f32> = (0..c).map(|k| at(CLASSES + k, q)).collect();
                    let top = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let (class, _) =
                        scores
                            .iter()
                            .enumerate()
                            .fold(
                                (0, f32::NEG_INFINITY),
                                |m, (k, &v)| if v > m.1 { (k, v) } else { m },
                            );
                    let p_class = 1.0 / scores.iter().map(|v| (v - top).exp()).sum::<f32>();
                    let score = sigmoid(at(PC, q)) * p_class;
                    if score.is_nan() || score < opts.score_threshold {
                        continue;
                    }
                    let cx = (col + sigmoid(at(BOX, q))) * cell;
                    let cy = (row + sigmoid(at(BOX + 1, q))) * cell;
                    // Capped so that a wild output gives a huge box, not infinity.
                    let h = self.anchors[a][1] * at(BOX + 2, q).min(10.0).exp();
                    let w = self.anchors[a][0] * at(BOX + 3, q).min(10.0).exp();
                    let clip = |v: f32| v.clamp(0.0, self.image_size);
                    let bbox = [
                        clip(cx - w / 2.0),
                        clip(cy - h / 2.0),
                        clip(cx + w / 2.0),
                        clip(cy + h / 2.0),
                    ];
                    found.push(Detection { bbox, score, class });
                }
            }
            let boxes: Vec<[f32; 4]> = found.iter().map(|d| d.bbox).collect();
            let scores: Vec<f32> = found.iter().map(|d| d.score).collect();
            let classes: Vec<usize> = found.iter().map(|d| d.class).collect();
            let keep = batched_nms(&boxes, &scores, &classes, opts.iou_threshold)
                .map_err(|e| Error::op(OP, format!("image {img}: {e}")))?;
            out.push(
                keep.into_iter()
                    .take(opts.max_detections)
                    .map(|i| found[i])
                    .collect(),
            );
        }
        Ok(out)
    }
}

/// The detection head: a 1×1 convolution from the backbone's features to
/// `B·(5 + C)` channels per cell.
pub struct YoloHead {
    /// `[B·(5 + C), in, 1, 1]` with bias
    pub conv: Conv2d,
}

impl YoloHead {
    /// A head for `spec` over `in_channels` features. The objectness biases start at
    /// log(0.01/0.99), so that at first every slot predicts "no object" with
    /// probability 0.99 and the many empty slots do not swamp the first steps.
    pub fn new(in_channels: usize, spec: &YoloSpec, seed: u64, dev: &Device) -> Result<YoloHead> {
        let conv = Conv2d::new(
            in_channels,
            spec.channels(),
            [1, 1],
            Conv2dOptions::default(),
            true,
            seed,
            dev,
        )?;
        let per = CLASSES + spec.classes;
        let mut bias = conv.bias.as_ref().expect("created with bias").to_vec()?;
        for a in 0..spec.num_anchors() {
            bias[a * per + PC] = (0.01f32 / 0.99).ln();
        }
        let bias_t = Tensor::from_vec(bias, &[spec.channels()], dev)?;
        no_grad(|| {
            conv.bias
                .as_ref()
                .expect("created with bias")
                .assign(&bias_t)
        })?;
        Ok(YoloHead { conv })
    }
}

impl Module for YoloHead {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv.forward(x)
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![("conv", &self.conv)]
    }
}
