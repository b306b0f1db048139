//! Image files to and from NCHW tensors (PNG and JPEG through the `image` crate).

use std::path::Path;

use image::imageops::FilterType;

use crate::{Device, Error, Result, Tensor};

/// How [`load_image`] sizes the picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resize {
    /// as stored
    Keep,
    /// exactly `width × height` (the aspect ratio may change)
    Exact {
        /// columns
        width: u32,
        /// rows
        height: u32,
    },
    /// the longer side scaled to this many pixels, keeping the aspect ratio
    LongerSide(u32),
}

/// Reads an image file as a `[1, channels, H, W]` tensor with values in [0, 1]: 3 channels
/// give RGB, 1 gives luma. Unreadable files are errors that name the path.
pub fn load_image(path: &Path, channels: usize, resize: Resize, device: &Device) -> Result<Tensor> {
    if channels != 1 && channels != 3 {
        return Err(Error::op(
            "load_image",
            format!("channels must be 1 (gray) or 3 (RGB), got {channels}"),
        ));
    }
    let img = image::open(path).map_err(|e| Error::Format {
        path: path.display().to_string(),
        msg: format!("cannot read the image: {e}"),
    })?;
    let img = match resize {
        Resize::Keep => img,
        Resize::Exact { width, height } if width > 0 && height > 0 => {
            img.resize_exact(width, height, FilterType::Triangle)
        }
        Resize::LongerSide(side) if side > 0 => img.resize(side, side, FilterType::Triangle),
        other => {
            return Err(Error::op(
                "load_image",
                format!("resize to {other:?} has a zero side"),
            ))
        }
    };
    let (w, h) = (img.width() as usize, img.height() as usize);
    let hwc = if channels == 3 {
        img.to_rgb32f().into_raw()
    } else {
        img.to_luma32f().into_raw()
    };
    Tensor::from_vec(
        hwc_to_chw(&hwc, channels, h * w),
        &[1, channels, h, w],
        device,
    )
}

/// Writes a `[1, C, H, W]` or `[C, H, W]` tensor with C = 1 or 3 as an image (the format
/// follows the extension), clamping values to [0, 1]. The file is written whole or not
/// at all.
pub fn save_image(t: &Tensor, path: &Path) -> Result<()> {
    let s = t.shape();
    let dims = match s.len() {
        4 if s[0] == 1 => &s[1..],
        3 => s,
        _ => &[][..],
    };
    let (c, h, w) = match *dims {
        [c @ (1 | 3), h, w] if h > 0 && w > 0 => (c, h, w),
        _ => {
            return Err(Error::op(
                "save_image",
                format!("expects [1, C, H, W] or [C, H, W] with C = 1 or 3, got {s:?}"),
            ))
        }
    };
    let chw = t.to_vec()?;
    let bytes: Vec<u8> = (0..h * w)
        .flat_map(|i| (0..c).map(move |ch| (ch, i)))
        .map(|(ch, i)| (chw[ch * h * w + i].clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let color = if c == 3 {
        image::ExtendedColorType::Rgb8
    } else {
        image::ExtendedColorType::L8
    };
    let format = image::ImageFormat::from_path(path).map_err(|e| Error::Format {
        path: path.display().to_string(),
        msg: e.to_string(),
    })?;
    let mut encoded = std::io::Cursor::new(Vec::new());
    image::write_buffer_with_format(&mut encoded, &bytes, w as u32, h as u32, color, format)
        .map_err(|e| Error::Format {
            path: path.display().to_string(),
            msg: format!("cannot encode the image: {e}"),
        })?;
    crate::checkpoint::write_atomically(path, encoded.get_ref())
}

/// Reads a segmentation mask: an 8-bit gray image whose value at each pixel is its class
/// id (0 is usually the background), checked against the shape of the image it labels
/// (its last two dimensions are H and W: `[1, C, H, W]` as [`load_image`] gives, or
/// `[C, H, W]`). Returns the `H × W` ids row-major. A mask of another size or colour type
/// is an error naming the file and both shapes.
pub fn load_mask(path: &Path, image_shape: &[usize]) -> Result<Vec<u8>> {
    let shown = path.display().to_string();
    let img = image::open(path).map_err(|e| Error::Format {
        path: shown.clone(),
        msg: format!("cannot read the mask: {e}"),
    })?;
    let Some(gray) = img.as_luma8() else {
        return Err(Error::Format {
            path: shown,
            msg: format!(
                "a mask must be an 8-bit gray image of class ids, this one is {:?}",
                img.color()
            ),
        });
    };
    let (h, w) = (gray.height() as usize, gray.width() as usize);
    let fits = image_shape.len() >= 2 && image_shape[image_shape.len() - 2..] == [h, w];
    if !fits {
        return Err(Error::Format {
            path: shown,
            msg: format!("the mask is {h} × {w} (H × W) but its image has shape {image_shape:?}"),
        });
    }
    Ok(gray.as_raw().clone())
}

fn hwc_to_chw(hwc: &[f32], c: usize, plane: usize) -> Vec<f32> {
    let mut chw = vec![0.0; hwc.len()];
    for (i, px) in hwc.chunks(c).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            chw[ch * plane + i] = v;
        }
    }
    chw
}
