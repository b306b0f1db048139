//! The face pipeline: detect → crop → 68 landmarks → dlib-aligned crop → 128-D
//! descriptor, then verification (distance below a threshold) and one-shot recognition
//! against a database of one descriptor per person.

use std::path::Path;

use fovea_core::nn::Module;
use fovea_core::{Device, Error, Result};

use super::detector::{DetectOptions, FaceBox, TinyFaceDetector};
use super::landmarks::{FaceLandmark68Net, FACE_MEAN, LANDMARK_SIZE};
use super::pixels::{clip_box, PixelRect, Pixels};
use super::recognition::{FaceRecognitionNet, RECOGNITION_SIZE};

/// The distance below which dlib's descriptors call two faces the same person.
pub const SAME_PERSON_THRESHOLD: f32 = 0.6;

/// File names of the three nets in a weights directory.
pub const FACE_WEIGHT_FILES: [&str; 3] = [
    "tiny_face_detector.safetensors",
    "face_landmark_68.safetensors",
    "face_recognition.safetensors",
];

/// Everything the pipeline finds about one face.
#[derive(Clone, Debug)]
pub struct Face {
    /// the detection (box in image pixels, possibly sticking out of the image)
    pub detection: FaceBox,
    /// 68 points `[x, y]` in image pixels, iBUG order (36–41: the eye on the image's left)
    pub landmarks: Vec<[f32; 2]>,
    /// the dlib-aligned crop the descriptor was computed from
    pub aligned: PixelRect,
    /// the 128-D descriptor (not normalised; compare with [`face_distance`])
    pub descriptor: Vec<f32>,
}

/// The three pretrained nets.
pub struct FaceNets {
    /// the tiny face detector
    pub detector: TinyFaceDetector,
    /// the 68-point landmark net
    pub landmarks: FaceLandmark68Net,
    /// the descriptor ResNet
    pub recognition: FaceRecognitionNet,
    device: Device,
}

impl FaceNets {
    /// Loads the three nets from `dir` (the names in [`FACE_WEIGHT_FILES`]).
    pub fn pretrained(dir: &Path, device: &Device) -> Result<FaceNets> {
        let [d, l, r] = FACE_WEIGHT_FILES.map(|f| dir.join(f));
        Ok(FaceNets {
            detector: TinyFaceDetector::pretrained(&d, device)?,
            landmarks: FaceLandmark68Net::pretrained(&l, device)?,
            recognition: FaceRecognitionNet::pretrained(&r, device)?,
            device: device.clone(),
        })
    }

    /// Every face in the image with its landmarks and descriptor, by descending detection
    /// score. An image without faces gives an empty list; a detection with no pixel inside
    /// the image is left out (it has nothing to look at).
    pub fn analyse(&self, img: &Pixels, opts: DetectOptions) -> Result<Vec<Face>> {
        let mut faces = Vec::new();
        for det in self.detector.detect(img, opts)? {
            let Some(crop) = clip_box(det.rect, img.width, img.height) else {
                continue;
            };
            let landmarks = self.landmarks_in(img, crop)?;
            let aligned = dlib_crop(&landmarks, crop, img.width, img.height)?;
            let descriptor = self.descriptor_of(img, aligned)?;
            faces.push(Face {
                detection: det,
                landmarks,
                aligned,
                descriptor,
            });
        }
        Ok(faces)
    }

    /// The 68 landmarks of the face in the pixel rectangle `crop`, in image pixels.
    ///
    /// face-api shifts the points back by the raw detection box, so a box sticking out of
    /// the image moves them off the face; this shifts them by the crop's own origin.
    pub fn landmarks_in(&self, img: &Pixels, crop: PixelRect) -> Result<Vec<[f32; 2]>> {
        let face = img.crop(crop)?;
        let x = face.net_input(LANDMARK_SIZE, true, FACE_MEAN, &self.device)?;
        let rel = self.landmarks.forward(&x)?.to_vec()?;
        let [x0, y0, w0, h0] = crop.map(|v| v as f64);
        let side = LANDMARK_SIZE as f64;
        let s = side / w0.max(h0);
        let (ws, hs) = (w0 * s, h0 * s);
        let pad_x = if ws < hs { (hs - ws) / 2.0 } else { 0.0 };
        let pad_y = if hs < ws { (ws - hs) / 2.0 } else { 0.0 };
        Ok(rel
            .chunks_exact(2)
            .map(|p| {
                [
                    ((p[0] as f64 * side - pad_x) / ws * w0 + x0) as f32,
                    ((p[1] as f64 * side - pad_y) / hs * h0 + y0) as f32,
                ]
            })
            .collect())
    }

    /// The descriptor of the face in the pixel rectangle `crop` (see [`dlib_crop`]).
    pub fn descriptor_of(&self, img: &Pixels, crop: PixelRect) -> Result<Vec<f32>> {
        let face = img.crop(crop)?;
        let x = face.net_input(RECOGNITION_SIZE, true, FACE_MEAN, &self.device)?;
        self.recognition.forward(&x)?.to_vec()
    }
}

/// face-api's "dlib alignment": an axis-aligned square around the eyes and mouth,
/// `size = ⌊mean(|M − L|, |M − R|) / 0.45⌋` from the left eye, right eye and mouth
/// centres, placed at `ref − (0.5, 0.43)·size` with `ref` their mean, clipped to the
/// image. `crop` is the landmark crop the points came from.
pub fn dlib_crop(
    points: &[[f32; 2]],
    crop: PixelRect,
    width: usize,
    height: usize,
) -> Result<PixelRect> {
    if points.len() != 68 {
        return Err(Error::op(
            "dlib_crop",
            format!("needs 68 landmarks, got {}", points.len()),
        ));
    }
    let mean = |r: std::ops::Range<usize>| {
        let n = r.len() as f64;
        let (sx, sy) = points[r].iter().fold((0.0, 0.0), |(sx, sy), p| {
            (sx + p[0] as f64, sy + p[1] as f64)
        });
        [sx / n, sy / n]
    };
    let (l, r, m) = (mean(36..42), mean(42..48), mean(48..68));
    let dist = |a: [f64; 2], b: [f64; 2]| (a[0] - b[0]).hypot(a[1] - b[1]);
    let size = ((dist(m, l) + dist(m, r)) / 2.0 / 0.45).floor();
    let reference = [(l[0] + r[0] + m[0]) / 3.0, (l[1] + r[1] + m[1]) / 3.0];
    let x = (reference[0] - 0.5 * size).max(0.0).floor();
    let y = (reference[1] - 0.43 * size).max(0.0).floor();
    let w = size.min(crop[2] as f64 + x);
    let h = size.min(crop[3] as f64 + y);
    clip_box([x, y, w, h].map(|v| v as f32), width, height).ok_or_else(|| {
        Error::op(
            "dlib_crop",
            format!("the aligned face [{x}, {y}, {w}, {h}] has no pixel inside the {width}×{height} image"),
        )
    })
}

/// Euclidean distance between two descriptors of the same length.
pub fn face_distance(a: &[f32], b: &[f32]) -> Result<f32> {
    if a.len() != b.len() || a.is_empty() {
        return Err(Error::op(
            "face_distance",
            format!(
                "needs two non-empty descriptors of one size, got {} and {} values",
                a.len(),
                b.len()
            ),
        ));
    }
    let sq: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    Ok(sq.sqrt() as f32)
}

/// Verification: is `a` the person `b` claims to be (distance below `threshold`)?
pub fn verify(a: &[f32], b: &[f32], threshold: f32) -> Result<bool> {
    Ok(face_distance(a, b)? < threshold)
}

/// A known person's best match.
#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    /// the enrolled name, or `None` when even the nearest is not below the threshold
    pub name: Option<String>,
    /// the nearest enrolled person, whatever the threshold says
    pub nearest: String,
    /// distance to the nearest
    pub distance: f32,
}

/// One-shot recognition: one descriptor per person, nearest neighbour with a threshold.
#[derive(Clone, Debug, Default)]
pub struct FaceDatabase {
    entries: Vec<(String, Vec<f32>)>,
    /// below this distance a face is that person (0.6 by default)
    pub threshold: f32,
}

impl FaceDatabase {
    /// An empty database with the 0.6 threshold.
    pub fn new() -> FaceDatabase {
        FaceDatabase {
            entries: Vec::new(),
            threshold: SAME_PERSON_THRESHOLD,
        }
    }

    /// Adds a person from one descriptor; every descriptor must have the same size.
    pub fn enroll(&mut self, name: &str, descriptor: &[f32]) -> Result<()> {
        if let Some((_, first)) = self.entries.first() {
            face_distance(first, descriptor)?;
        } else if descriptor.is_empty() {
            return Err(Error::op("face_database", "an empty descriptor"));
        }
        self.entries.push((name.to_string(), descriptor.to_vec()));
        Ok(())
    }

    /// How many people are enrolled.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nobody is enrolled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The nearest enrolled person; `None` when the database is empty.
    pub fn identify(&self, descriptor: &[f32]) -> Result<Option<Match>> {
        let mut best: Option<(usize, f32)> = None;
        for (i, (_, d)) in self.entries.iter().enumerate() {
            let dist = face_distance(d, descriptor)?;
            if best.is_none_or(|(_, b)| dist < b) {
                best = Some((i, dist));
            }
        }
        Ok(best.map(|(i, distance)| {
            let nearest = self.entries[i].0.clone();
            Match {
                name: (distance < self.threshold).then(|| nearest.clone()),
                nearest,
                distance,
            }
        }))
    }
}
