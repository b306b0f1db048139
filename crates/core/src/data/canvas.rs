//! Digit canvases: real MNIST digits, scaled and placed at random on a blank canvas, with
//! the boxes of their ink and a per-pixel class mask. No detection or segmentation data
//! set ships in any package we can use; these are built from real digits, deterministically
//! from a seed, so that detection and segmentation train and are measured on real
//! handwriting (train canvases from the training digits, test canvases from held-out ones).

use super::InMemoryDataset;
use crate::{Device, Error, Result, Tensor};

/// How canvases are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CanvasOptions {
    /// side of the square canvas in pixels
    pub size: usize,
    /// fewest and most digits per canvas (inclusive)
    pub digits: [usize; 2],
    /// smallest and largest side of a placed digit's 28×28 cell, in pixels (inclusive)
    pub digit_size: [usize; 2],
    /// the most any two digits' ink boxes may overlap (intersection over union); a digit
    /// that finds no place within it after 50 tries is left out
    pub max_iou: f32,
    /// intensity from which a pixel counts as ink (for boxes and masks)
    pub ink: f32,
}

impl Default for CanvasOptions {
    fn default() -> Self {
        CanvasOptions {
            size: 96,
            digits: [1, 5],
            digit_size: [20, 40],
            max_iou: 0.1,
            ink: 0.25,
        }
    }
}

/// One canvas: the picture, each digit's ink box and class, and the class of every pixel.
#[derive(Clone, Debug, PartialEq)]
pub struct DigitCanvas {
    /// `size × size` intensities in [0, 1], row-major
    pub image: Vec<f32>,
    /// each digit's ink box `[x1, y1, x2, y2]` in pixels (x2, y2 exclusive: a box one pixel
    /// wide has x2 = x1 + 1)
    pub boxes: Vec<[f32; 4]>,
    /// each digit's class (0–9)
    pub labels: Vec<usize>,
    /// per pixel: 0 for background, `1 + d` for the ink of a digit of class d (where two
    /// digits' ink meets, the brighter one's)
    pub mask: Vec<u8>,
}

/// The 11 classes of [`DigitCanvas::mask`]: background, then digits 0–9.
pub const MASK_CLASSES: usize = 11;

/// SplitMix64: a small generator whose stream depends only on the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

/// A 28×28 digit resampled to `s × s` (bilinear, cell centres aligned).
fn scale_digit(d: &[f32], s: usize) -> Vec<f32> {
    let r = 28.0 / s as f32;
    let mut out = vec![0.0; s * s];
    for y in 0..s {
        let fy = ((y as f32 + 0.5) * r - 0.5).clamp(0.0, 27.0);
        let (y0, ty) = (fy.floor() as usize, fy.fract());
        let y1 = (y0 + 1).min(27);
        for x in 0..s {
            let fx = ((x as f32 + 0.5) * r - 0.5).clamp(0.0, 27.0);
            let (x0, tx) = (fx.floor() as usize, fx.fract());
            let x1 = (x0 + 1).min(27);
            let top = d[y0 * 28 + x0] * (1.0 - tx) + d[y0 * 28 + x1] * tx;
            let bottom = d[y1 * 28 + x0] * (1.0 - tx) + d[y1 * 28 + x1] * tx;
            out[y * s + x] = top * (1.0 - ty) + bottom * ty;
        }
    }
    out
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes (0 when either is empty).
fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// `count` canvases from the 28×28 digits of `source` (values in [0, 1]: load it with
/// mean 0 and std 1), digits drawn at random with replacement. The same source, count,
/// options and seed give the same canvases.
pub fn digit_canvases(
    source: &InMemoryDataset,
    count: usize,
    opts: &CanvasOptions,
    seed: u64,
) -> Result<Vec<DigitCanvas>> {
    const OP: &str = "digit_canvases";
    if source.shape != [1, 28, 28] || source.labels.is_empty() {
        return Err(Error::op(
            OP,
            format!(
                "needs a non-empty set of 1×28×28 digits, got items of shape {:?} ({} items)",
                source.shape,
                source.labels.len()
            ),
        ));
    }
    let [lo, hi] = opts.digit_size;
    let [dmin, dmax] = opts.digits;
    if lo == 0 || lo > hi || hi > opts.size || dmin > dmax {
        return Err(Error::op(
            OP,
            format!(
                "digit sizes {:?} must be positive, ordered and fit a {} px canvas; digit counts {:?} must be ordered",
                opts.digit_size, opts.size, opts.digits
            ),
        ));
    }
    let mut rng = Rng(seed);
    let s = opts.size;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let mut c = DigitCanvas {
            image: vec![0.0; s * s],
            boxes: Vec::new(),
            labels: Vec::new(),
            mask: vec![0; s * s],
        };
        let n = rng.range(dmin, dmax);
        for _ in 0..n {
            let k = rng.range(0, source.labels.len() - 1);
            let side = rng.range(lo, hi);
            let digit = scale_digit(&source.values[k * 784..(k + 1) * 784], side);
            // The ink's extent within the digit's cell.
            let (mut x0, mut y0, mut x1, mut y1) = (side, side, 0, 0);
            for (i, &v) in digit.iter().enumerate() {
                if v >= opts.ink {
                    let (y, x) = (i / side, i % side);
                    (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
                }
            }
            if x1 == 0 {
                continue; // a blank digit has no box
            }
            let placed = (0..50).find_map(|_| {
                let (px, py) = (rng.range(0, s - side), rng.range(0, s - side));
                let b = [
                    (px + x0) as f32,
                    (py + y0) as f32,
                    (px + x1) as f32,
                    (py + y1) as f32,
                ];
                c.boxes
                    .iter()
                    .all(|o| iou(o, &b) <= opts.max_iou)
                    .then_some((px, py, b))
            });
            let Some((px, py, b)) = placed else { continue };
            let label = source.labels[k];
            for y in 0..side {
                for x in 0..side {
                    let v = digit[y * side + x];
                    let q = (py + y) * s + px + x;
                    if v > c.image[q] {
                        c.image[q] = v;
                        if v >= opts.ink {
                            c.mask[q] = 1 + label as u8;
                        }
                    }
                }
            }
            c.boxes.push(b);
            c.labels.push(label);
        }
        out.push(c);
    }
    Ok(out)
}

/// The canvases' pictures as one `[N, 1, size, size]` tensor.
pub fn canvas_images(canvases: &[DigitCanvas], device: &Device) -> Result<Tensor> {
    let s = canvases
        .first()
        .map_or(0, |c| (c.image.len() as f64).sqrt() as usize);
    let values: Vec<f32> = canvases
        .iter()
        .flat_map(|c| c.image.iter().copied())
        .collect();
    Tensor::from_vec(values, &[canvases.len(), 1, s, s], device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits() -> InMemoryDataset {
        // Two synthetic 28×28 "digits": a bar and a square of ink, classes 3 and 7.
        let mut values = vec![0.0; 2 * 784];
        for y in 4..24 {
            values[y * 28 + 14] = 1.0;
            values[784 + y * 28 + 4..784 + y * 28 + 24].fill(1.0);
        }
        InMemoryDataset {
            shape: vec![1, 28, 28],
            values,
            labels: vec![3, 7],
            classes: 10,
            background: 0.0,
        }
    }

    #[test]
    fn canvases_are_deterministic_and_boxes_hold_the_ink() {
        let opts = CanvasOptions::default();
        let a = digit_canvases(&digits(), 20, &opts, 5).unwrap();
        assert_eq!(a, digit_canvases(&digits(), 20, &opts, 5).unwrap());
        assert_ne!(a, digit_canvases(&digits(), 20, &opts, 6).unwrap());
        for c in &a {
            assert!((1..=5).contains(&c.labels.len()) && c.labels.len() == c.boxes.len());
            for (i, b) in c.boxes.iter().enumerate() {
                // Each box touches ink on all four sides (the ink may be another digit's
                // where two overlap) and overlaps the others by at most max_iou.
                assert!(b[0] < b[2] && b[1] < b[3] && b[2] <= 96.0 && b[3] <= 96.0);
                let ink = |x: usize, y: usize| c.image[y * 96 + x] >= opts.ink;
                let [x1, y1, x2, y2] = b.map(|v| v as usize);
                let (x2, y2) = (x2 - 1, y2 - 1);
                assert!((y1..=y2).any(|y| ink(x1, y)) && (y1..=y2).any(|y| ink(x2, y)));
                assert!((x1..=x2).any(|x| ink(x, y1)) && (x1..=x2).any(|x| ink(x, y2)));
                for other in &c.boxes[..i] {
                    assert!(iou(b, other) <= opts.max_iou);
                }
            }
            // Every masked pixel lies in a box of its class.
            for (q, &m) in c.mask.iter().enumerate() {
                let (x, y) = ((q % 96) as f32, (q / 96) as f32);
                assert!(
                    m == 0
                        || c.boxes.iter().zip(&c.labels).any(|(b, &l)| {
                            1 + l as u8 == m && b[0] <= x && x < b[2] && b[1] <= y && y < b[3]
                        })
                );
            }
            assert!(c.image.iter().all(|v| (0.0..=1.0).contains(v)));
            assert!(c.mask.iter().all(|&m| m == 0 || m == 4 || m == 8));
        }
    }

    #[test]
    fn bad_sources_and_options_are_errors() {
        let mut bad = digits();
        bad.shape = vec![1, 28, 27];
        assert!(digit_canvases(&bad, 1, &CanvasOptions::default(), 0).is_err());
        let too_big = CanvasOptions {
            digit_size: [20, 200],
            ..Default::default()
        };
        assert!(digit_canvases(&digits(), 1, &too_big, 0).is_err());
    }
}
