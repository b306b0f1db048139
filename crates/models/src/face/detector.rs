//! face-api's tiny face detector: a tiny-YOLOv2-style single-class detector on a
//! depthwise-separable backbone, 5 anchors on an `S/32` grid (13×13 at 416²).

use std::path::Path;

use fovea_core::nn::{LeakyRelu, MaxPool2d, Module, Sequential};
use fovea_core::ops::{Conv2dOptions, Pool2dOptions};
use fovea_core::{Device, Error, Result, Tensor};

use super::layers::{pretrained, SeparableConv, TfConv};
use super::pixels::Pixels;
use crate::detection::nms;

/// The detector's per-channel input mean (RGB, 0..255).
pub const DETECTOR_MEAN: [f32; 3] = [117.001, 114.697, 97.404];

/// Anchor (width, height) in grid cells, in the head's channel order (not sorted).
pub const FACE_ANCHORS: [[f32; 2]; 5] = [
    [1.603231, 2.094468],
    [6.041143, 7.080126],
    [2.882459, 3.518061],
    [4.266906, 5.178857],
    [9.041765, 10.66308],
];

/// One detected face: a box in image pixels `[x, y, w, h]` (not clipped: it may stick out
/// of the image) and its confidence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaceBox {
    /// `[x, y, w, h]` in pixels of the original image
    pub rect: [f32; 4],
    /// sigmoid of the confidence logit
    pub score: f32,
}

/// What [`TinyFaceDetector::detect`] keeps.
#[derive(Clone, Copy, Debug)]
pub struct DetectOptions {
    /// input side `S` (a multiple of 32; 416 by default)
    pub input_size: usize,
    /// boxes need a score strictly above this (0.5)
    pub score_threshold: f32,
    /// NMS drops a box whose IoU with a kept one exceeds this (0.4)
    pub iou_threshold: f32,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            input_size: 416,
            score_threshold: 0.5,
            iou_threshold: 0.4,
        }
    }
}

/// The detector: `conv0` (3×3 VALID), five separable blocks `conv1…conv5` each after a
/// 2×2 SAME max pool, a 2×2 stride-1 SAME pool and the 1×1 head `conv8` (25 channels:
/// anchor `a` owns channels `5a…5a+4` = tx, ty, tw, th, tconf). Leaky ReLU 0.1.
pub struct TinyFaceDetector {
    /// the whole net in order, under the file's names
    pub net: Sequential,
    device: Device,
}

impl TinyFaceDetector {
    /// A randomly initialised detector (seeded).
    pub fn new(seed: u64, dev: &Device) -> TinyFaceDetector {
        let halve = Pool2dOptions {
            same: true,
            ..Pool2dOptions::square(2)
        };
        let keep = Pool2dOptions {
            stride: [1, 1],
            ..halve
        };
        let pad1 = Conv2dOptions {
            padding: [1, 1],
            ..Default::default()
        };
        let valid = Conv2dOptions::default();
        let mut net = Sequential::new()
            .push_named("conv0", TfConv::new((3, 16, 3), valid, true, seed, dev))
            .push(LeakyRelu(0.1));
        let mut c = 16;
        for i in 1..=5 {
            let sep = SeparableConv::new(c, c * 2, pad1, seed + 10 * i as u64, dev);
            net = net
                .push(MaxPool2d(halve))
                .push_named(&format!("conv{i}"), sep)
                .push(LeakyRelu(0.1));
            c *= 2;
        }
        net = net.push(MaxPool2d(keep)).push_named(
            "conv8",
            TfConv::new((512, 25, 1), valid, true, seed + 99, dev),
        );
        TinyFaceDetector {
            net,
            device: dev.clone(),
        }
    }

    /// The bundled weights (`tiny_face_detector.safetensors`), frozen, in eval mode.
    pub fn pretrained(path: &Path, dev: &Device) -> Result<TinyFaceDetector> {
        pretrained(TinyFaceDetector::new(0, dev), path)
    }

    /// Detects faces in an RGB image: pad to a square (bottom/right), resize to `S`,
    /// run, decode every cell and anchor above the threshold, then greedy NMS. An image
    /// without faces gives an empty list.
    pub fn detect(&self, img: &Pixels, opts: DetectOptions) -> Result<Vec<FaceBox>> {
        let s = opts.input_size;
        if s == 0 || !s.is_multiple_of(32) || img.width == 0 || img.height == 0 {
            return Err(Error::op(
                "tiny_face_detector",
                format!(
                    "needs a non-empty image and an input size that is a positive multiple of 32; got a {}×{} image and size {s}",
                    img.width, img.height
                ),
            ));
        }
        let x = img.net_input(s, false, DETECTOR_MEAN, &self.device)?;
        let out = self.forward(&x)?;
        decode_faces(&out, s, img.width, img.height, opts)
    }
}

/// Decodes the `[1, 25, G, G]` head for an original `width × height` image run at input
/// size `s`, then applies NMS (descending score).
pub fn decode_faces(
    out: &Tensor,
    s: usize,
    width: usize,
    height: usize,
    opts: DetectOptions,
) -> Result<Vec<FaceBox>> {
    let sh = out.shape();
    if sh.len() != 4 || sh[0] != 1 || sh[1] != 25 || sh[2] != sh[3] {
        return Err(Error::op(
            "decode_faces",
            format!("needs a [1, 25, G, G] head, got {sh:?}"),
        ));
    }
    let g = sh[2];
    let v = out.to_vec()?;
    let sigmoid = |t: f32| 1.0 / (1.0 + (-t as f64).exp());
    let m = width.max(height) as f64;
    let (rw, rh) = (
        (width as f64 * s as f64 / m).round(),
        (height as f64 * s as f64 / m).round(),
    );
    let (fx, fy) = (s as f64 / rw, s as f64 / rh);
    let mut faces = Vec::new();
    for row in 0..g {
        for col in 0..g {
            for (a, [aw, ah]) in FACE_ANCHORS.iter().enumerate() {
                let t = |k: usize| v[((a * 5 + k) * g + row) * g + col];
                let score = sigmoid(t(4));
                if score <= opts.score_threshold as f64 {
                    continue;
                }
                let cx = (col as f64 + sigmoid(t(0))) / g as f64 * fx;
                let cy = (row as f64 + sigmoid(t(1))) / g as f64 * fy;
                let w = (t(2) as f64).exp() * *aw as f64 / g as f64 * fx;
                let h = (t(3) as f64).exp() * *ah as f64 / g as f64 * fy;
                let rect = [
                    (cx - w / 2.0) * width as f64,
                    (cy - h / 2.0) * height as f64,
                    w * width as f64,
                    h * height as f64,
                ];
                faces.push(FaceBox {
                    rect: rect.map(|x| x as f32),
                    score: score as f32,
                });
            }
        }
    }
    let xyxy: Vec<[f32; 4]> = faces
        .iter()
        .map(|f| {
            [
                f.rect[0],
                f.rect[1],
                f.rect[0] + f.rect[2],
                f.rect[1] + f.rect[3],
            ]
        })
        .collect();
    let scores: Vec<f32> = faces.iter().map(|f| f.score).collect();
    let keep = nms(&xyxy, &scores, opts.iou_threshold)?;
    Ok(keep.into_iter().map(|i| faces[i]).collect())
}

impl Module for TinyFaceDetector {
    /// The raw `[N, 25, S/32, S/32]` head from a preprocessed `[N, 3, S, S]` input.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.net.forward(x)
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        self.net.children()
    }
}
