//! Image files to and from NCHW tensors (PNG and JPEG through the `image` crate).

use std::path::Path;

use image::imageops::FilterType;
use image::DynamicImage;
use rayon::prelude::*;

use crate::ops::check_output;
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
///
/// The size is checked before the pixels are decoded: the header's dimensions (after the
/// resize) must fit the device, or the call is an error naming the path. The picture is
/// decoded in its own sample type (the `image` crate refuses a decoded size past 512 MiB),
/// resized there, and converted once, into the tensor's f32 values.
pub fn load_image(path: &Path, channels: usize, resize: Resize, device: &Device) -> Result<Tensor> {
    const OP: &str = "load_image";
    if channels != 1 && channels != 3 {
        return Err(Error::op(
            OP,
            format!("channels must be 1 (gray) or 3 (RGB), got {channels}"),
        ));
    }
    let format_err = |msg: String| Error::Format {
        path: path.display().to_string(),
        msg,
    };
    let unreadable = |e: image::ImageError| format_err(format!("cannot read the image: {e}"));
    let open = || image::ImageReader::open(path).map_err(|e| unreadable(e.into()));
    let (w, h) = open()?.into_dimensions().map_err(unreadable)?;
    let (ow, oh) = match resize {
        Resize::Keep => (w, h),
        Resize::Exact { width, height } if width > 0 && height > 0 => (width, height),
        Resize::LongerSide(side) if side > 0 => fit_longer_side(w, h, side),
        other => {
            return Err(Error::op(
                OP,
                format!("resize to {other:?} has a zero side"),
            ))
        }
    };
    let shape = [1, channels, oh as usize, ow as usize];
    check_output(OP, &[&[h as usize, w as usize]], &shape, device)
        .map_err(|e| format_err(e.to_string()))?;
    let resized = (ow, oh) != (w, h);
    if resized {
        resize_fits(w, h, ow, oh).map_err(format_err)?;
    }
    let img = open()?.decode().map_err(unreadable)?;
    let img = if resized {
        img.resize_exact(ow, oh, FilterType::Triangle)
    } else {
        img
    };
    let mut chw = crate::host::zeros(channels * oh as usize * ow as usize)
        .map_err(|e| format_err(e.in_op(OP, &[&shape]).to_string()))?;
    to_planes(&img, channels, &mut chw);
    Tensor::from_vec(chw, &shape, device)
}

/// `img` resized to exactly `width × height` with a triangle filter (`image`'s
/// `resize_exact`), or an error naming both sizes where the resize's buffers would pass
/// the CPU's memory limit: `image` aborts the process on an allocation it cannot make.
pub fn resize_exact(img: &DynamicImage, width: u32, height: u32) -> Result<DynamicImage> {
    let (w, h) = (img.width(), img.height());
    resize_fits(w, h, width, height).map_err(|msg| Error::op("resize_exact", msg))?;
    Ok(img.resize_exact(width, height, FilterType::Triangle))
}

/// Whether resizing `w × h` to `ow × oh` fits the host: `image` filters columns into a
/// `w × oh` buffer of RGBA f32 first, then rows into the `ow × oh` result.
fn resize_fits(w: u32, h: u32, ow: u32, oh: u32) -> std::result::Result<(), String> {
    if ow == 0 || oh == 0 {
        return Err(format!(
            "cannot resize {w}×{h} to {ow}×{oh}: a side is zero"
        ));
    }
    let bytes = (w as u128).max(ow as u128) * oh as u128 * 16;
    if bytes > crate::host::memory_limit() as u128 {
        return Err(format!(
            "resizing {w}×{h} to {ow}×{oh} needs {} of host memory, more than the CPU admits",
            crate::host::fmt_bytes(bytes)
        ));
    }
    Ok(())
}

/// The size `image`'s `resize(side, side)` gives: the aspect ratio kept, the longer side
/// `side` (each side at least 1).
fn fit_longer_side(w: u32, h: u32, side: u32) -> (u32, u32) {
    let ratio = f64::min(side as f64 / w as f64, side as f64 / h as f64);
    let scaled = |v: u32| ((v as f64 * ratio).round() as u32).max(1);
    (scaled(w), scaled(h))
}

/// Writes the picture's RGB (or luma) planes into `chw`, scaled to [0, 1] (clamped: float
/// pictures may hold more, and luma's weights round past 1 in f32), from the decoded
/// samples directly: no f32 copy of the whole picture besides `chw` itself.
fn to_planes(img: &DynamicImage, channels: usize, chw: &mut [f32]) {
    use DynamicImage as D;
    match img {
        D::ImageLuma8(b) => planes(b.as_raw(), 1, channels, 255.0, chw),
        D::ImageLumaA8(b) => planes(b.as_raw(), 2, channels, 255.0, chw),
        D::ImageRgb8(b) => planes(b.as_raw(), 3, channels, 255.0, chw),
        D::ImageRgba8(b) => planes(b.as_raw(), 4, channels, 255.0, chw),
        D::ImageLuma16(b) => planes(b.as_raw(), 1, channels, 65535.0, chw),
        D::ImageLumaA16(b) => planes(b.as_raw(), 2, channels, 65535.0, chw),
        D::ImageRgb16(b) => planes(b.as_raw(), 3, channels, 65535.0, chw),
        D::ImageRgba16(b) => planes(b.as_raw(), 4, channels, 65535.0, chw),
        D::ImageRgb32F(b) => planes(b.as_raw(), 3, channels, 1.0, chw),
        D::ImageRgba32F(b) => planes(b.as_raw(), 4, channels, 1.0, chw),
        other => planes(other.to_rgba32f().as_raw(), 4, channels, 1.0, chw),
    }
}

/// `cin` interleaved samples per pixel (gray, gray+alpha, RGB or RGBA) into `channels`
/// planes: gray is repeated for RGB, RGB weighted into luma (sRGB's Rec. 709 weights, as
/// the `image` crate uses) for gray, alpha dropped.
fn planes<T: Copy + Into<f32> + Sync>(
    samples: &[T],
    cin: usize,
    channels: usize,
    max: f32,
    chw: &mut [f32],
) {
    let plane = samples.len() / cin;
    let value = |v: T| (v.into() / max).clamp(0.0, 1.0);
    chw.par_chunks_mut(plane.max(1))
        .enumerate()
        .for_each(|(ch, out)| {
            out.par_chunks_mut(1 << 14)
                .enumerate()
                .for_each(|(chunk, out)| {
                    let first = chunk << 14;
                    for (i, o) in out.iter_mut().enumerate() {
                        let px = &samples[(first + i) * cin..][..cin];
                        *o = match (cin, channels) {
                            (1 | 2, _) => value(px[0]),
                            (_, 3) => value(px[ch]),
                            _ => {
                                let [r, g, b] = [0, 1, 2].map(|c| value(px[c]) as f64);
                                ((0.2126 * r + 0.7152 * g + 0.0722 * b) as f32).clamp(0.0, 1.0)
                            }
                        };
                    }
                });
        });
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
    let unreadable = |e: image::ImageError| Error::Format {
        path: shown.clone(),
        msg: format!("cannot read the mask: {e}"),
    };
    let open = || image::ImageReader::open(path).map_err(|e| unreadable(e.into()));
    // The header's size is checked first: a mask of the wrong size is never decoded.
    let (w, h) = open()?.into_dimensions().map_err(unreadable)?;
    let (h, w) = (h as usize, w as usize);
    let fits = image_shape.len() >= 2 && image_shape[image_shape.len() - 2..] == [h, w];
    if !fits {
        return Err(Error::Format {
            path: path.display().to_string(),
            msg: format!("the mask is {h} × {w} (H × W) but its image has shape {image_shape:?}"),
        });
    }
    let img = open()?.decode().map_err(unreadable)?;
    let Some(gray) = img.as_luma8() else {
        return Err(Error::Format {
            path: path.display().to_string(),
            msg: format!(
                "a mask must be an 8-bit gray image of class ids, this one is {:?}",
                img.color()
            ),
        });
    };
    Ok(gray.as_raw().clone())
}
