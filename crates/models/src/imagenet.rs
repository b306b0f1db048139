//! ImageNet conventions: torchvision's evaluation preprocessing (short side resized with a
//! bilinear filter, centre crop, per-channel normalisation), class names and top-k.

use std::path::Path;

use fovea_core::{Device, Error, Result, Tensor};
use image::DynamicImage;

/// The per-channel mean of ImageNet's RGB values in [0, 1].
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// The per-channel standard deviation of ImageNet's RGB values in [0, 1].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// torchvision's `Resize(resize)`, `CenterCrop(crop)`, `ToTensor()`, `Normalize(mean,
/// std)` on a decoded image: `[1, 3, crop, crop]`. The short side becomes `resize` (the
/// long one `⌊resize · long / short⌋`) with a triangle filter widened on downscaling, as
/// PIL's bilinear is; the crop's offset rounds half to even, as Python's `round`.
pub fn preprocess(img: &DynamicImage, resize: u32, crop: u32, device: &Device) -> Result<Tensor> {
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 || resize < crop || crop == 0 {
        return Err(Error::op(
            "imagenet::preprocess",
            format!("cannot resize a {w}×{h} image to a short side of {resize} and crop {crop}×{crop} (resize must be at least the crop)"),
        ));
    }
    let (nw, nh) = if w <= h {
        (resize, (resize as u64 * h as u64 / w as u64) as u32)
    } else {
        ((resize as u64 * w as u64 / h as u64) as u32, resize)
    };
    let img = fovea_core::data::resize_exact(img, nw, nh)?.to_rgb32f();
    let offset = |len: u32| ((len - crop) as f64 / 2.0).round_ties_even() as u32;
    let (left, top) = (offset(nw), offset(nh));
    let c = crop as usize;
    let mut chw = vec![0.0f32; 3 * c * c];
    for y in 0..c {
        for x in 0..c {
            let p = img.get_pixel(left + x as u32, top + y as u32).0;
            for ch in 0..3 {
                chw[ch * c * c + y * c + x] = (p[ch] - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch];
            }
        }
    }
    Tensor::from_vec(chw, &[1, 3, c, c], device)
}

/// Reads an image file and [`preprocess`]es it.
pub fn load(path: &Path, resize: u32, crop: u32, device: &Device) -> Result<Tensor> {
    let img = image::open(path).map_err(|e| Error::Format {
        path: path.display().to_string(),
        msg: format!("cannot read the image: {e}"),
    })?;
    preprocess(&img, resize, crop, device)
}

/// Class names, one per line (`imagenet_classes.txt`).
pub fn class_names(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(text.lines().map(str::to_string).collect())
}

/// The `k` largest values with their indices, largest first (ties by lower index).
pub fn top_k(values: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    order.into_iter().take(k).map(|i| (i, values[i])).collect()
}
