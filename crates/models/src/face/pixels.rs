//! Host-side image steps of the face nets, as face-api does them: integer crops, zero
//! padding to a square at the image's own resolution, TensorFlow's legacy bilinear resize
//! (no half-pixel centres, no antialiasing) and mean subtraction. These run once per face
//! on small images, so they stay on the host; the nets then run on any device.

use fovea_core::{Device, Error, Result, Tensor};

/// An RGB image of `f32` values 0..255, row-major `[height, width, 3]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Pixels {
    /// rows
    pub height: usize,
    /// columns
    pub width: usize,
    /// `height · width · 3` values, RGB interleaved
    pub data: Vec<f32>,
}

/// An integer pixel rectangle: left, top, width, height.
pub type PixelRect = [usize; 4];

impl Pixels {
    /// Wraps `[height, width, 3]` values, checking the length.
    pub fn new(height: usize, width: usize, data: Vec<f32>) -> Result<Pixels> {
        if height.checked_mul(width).and_then(|n| n.checked_mul(3)) != Some(data.len()) {
            return Err(Error::op(
                "face pixels",
                format!(
                    "{} values do not make a {height}×{width}×3 image",
                    data.len()
                ),
            ));
        }
        Ok(Pixels {
            height,
            width,
            data,
        })
    }

    /// An 8-bit RGB image's pixels.
    pub fn from_rgb(img: &image::RgbImage) -> Pixels {
        Pixels {
            height: img.height() as usize,
            width: img.width() as usize,
            data: img.as_raw().iter().map(|&v| v as f32).collect(),
        }
    }

    /// The rectangle `[x, y, w, h]`, which must lie inside the image and not be empty.
    pub fn crop(&self, [x, y, w, h]: PixelRect) -> Result<Pixels> {
        if w == 0 || h == 0 || x + w > self.width || y + h > self.height {
            return Err(Error::op(
                "face crop",
                format!(
                    "crop [x {x}, y {y}, w {w}, h {h}] is empty or leaves the {}×{} image",
                    self.width, self.height
                ),
            ));
        }
        let mut data = Vec::with_capacity(w * h * 3);
        for row in y..y + h {
            let start = (row * self.width + x) * 3;
            data.extend_from_slice(&self.data[start..start + w * 3]);
        }
        Ok(Pixels {
            height: h,
            width: w,
            data,
        })
    }

    /// Zero-pads the short axis to a square. `centred`: the landmark and recognition nets'
    /// rule (the odd pixel after); otherwise all of it after, the detector's rule.
    pub fn pad_square(&self, centred: bool) -> Pixels {
        let side = self.height.max(self.width);
        let d = side - self.height.min(self.width);
        let after = if centred { d.div_ceil(2) } else { d };
        let before = d - after;
        let (top, left) = if self.height < self.width {
            (before, 0)
        } else {
            (0, before)
        };
        let mut data = vec![0.0; side * side * 3];
        for row in 0..self.height {
            let src = &self.data[row * self.width * 3..(row + 1) * self.width * 3];
            let dst = ((row + top) * side + left) * 3;
            data[dst..dst + src.len()].copy_from_slice(src);
        }
        Pixels {
            height: side,
            width: side,
            data,
        }
    }

    /// TensorFlow's `resizeBilinear` with `alignCorners = halfPixelCenters = false`:
    /// source coordinate `dst · in/out`, neighbours `floor` and `min(ceil, in − 1)`.
    pub fn resize_tf(&self, height: usize, width: usize) -> Pixels {
        // In f64, as the reference computes it (JavaScript numbers).
        let axis = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f64)> {
            let scale = n_in as f64 / n_out as f64;
            (0..n_out)
                .map(|i| {
                    let src = i as f64 * scale;
                    let lo = src.floor() as usize;
                    (lo, (src.ceil() as usize).min(n_in - 1), src - lo as f64)
                })
                .collect()
        };
        let (ys, xs) = (axis(self.height, height), axis(self.width, width));
        let at = |r: usize, c: usize, ch: usize| self.data[(r * self.width + c) * 3 + ch] as f64;
        let mut data = Vec::with_capacity(height * width * 3);
        for &(y0, y1, fy) in &ys {
            for &(x0, x1, fx) in &xs {
                for ch in 0..3 {
                    let top = at(y0, x0, ch) + (at(y0, x1, ch) - at(y0, x0, ch)) * fx;
                    let bottom = at(y1, x0, ch) + (at(y1, x1, ch) - at(y1, x0, ch)) * fx;
                    data.push((top + (bottom - top) * fy) as f32);
                }
            }
        }
        Pixels {
            height,
            width,
            data,
        }
    }

    /// A `[1, 3, H, W]` tensor of `(pixel − mean) / 255`.
    pub fn to_tensor(&self, mean: [f32; 3], device: &Device) -> Result<Tensor> {
        let plane = self.height * self.width;
        let mut chw = vec![0.0; plane * 3];
        for (i, px) in self.data.chunks_exact(3).enumerate() {
            for ch in 0..3 {
                chw[ch * plane + i] = (px[ch] - mean[ch]) / 255.0;
            }
        }
        Tensor::from_vec(chw, &[1, 3, self.height, self.width], device)
    }

    /// Pads to a square, resizes to `size × size` and normalises: a net's input.
    pub fn net_input(
        &self,
        size: usize,
        centred: bool,
        mean: [f32; 3],
        device: &Device,
    ) -> Result<Tensor> {
        self.pad_square(centred)
            .resize_tf(size, size)
            .to_tensor(mean, device)
    }
}

/// Clips a pixel box `[x, y, w, h]` (which may stick out of the image) to a
/// `width × height` image and floors each of its four numbers, as face-api does before
/// cropping; `None` when nothing of it is inside.
pub fn clip_box(b: [f32; 4], width: usize, height: usize) -> Option<PixelRect> {
    let [x, y, w, h] = b.map(|v| v as f64);
    if ![x, y, w, h].iter().all(|v| v.is_finite()) {
        return None;
    }
    let (x0, y0) = (x.max(0.0), y.max(0.0));
    let w0 = (x + w - x0).min(width as f64 - x0);
    let h0 = (y + h - y0).min(height as f64 - y0);
    let r = [x0, y0, w0, h0].map(|v| v.floor());
    let r = r.map(|v| v.max(0.0) as usize);
    (r[2] > 0 && r[3] > 0 && r[0] < width && r[1] < height).then_some(r)
}
