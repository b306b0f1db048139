//! Edge detection, the opening example of the course notes: convolve a photo with the
//! Sobel and Scharr kernels through `conv2d`, write each response and the gradient
//! magnitude as PNGs, then learn a 3×3 filter from scratch by gradient descent so that
//! its response matches the vertical Sobel response. Finally the learned detector, HED
//! (the bundled VGG16 with its side outputs and fusion), and a side-by-side PNG: photo,
//! Sobel magnitude, HED edges (`side_by_side.png`).
//!
//! `cargo run --release --example edge_detection -- [--image PATH] [--size N]
//!  [--steps N] [--out DIR] [--device cpu|gpu|best] [--hed-weights FILE]`

#[path = "../common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use fovea::models::style::preprocess_bgr;
use fovea::models::Hed;
use fovea::nn::Module;
use fovea::ops::Conv2dOptions;
use fovea::{no_grad, Device, DeviceExt, Tensor};
use image::{Rgb, RgbImage};

/// Sobel and Scharr edges, a 3×3 filter learned to match Sobel, and HED's learned edges.
#[derive(Parser)]
#[command(long_about = None)]
struct Args {
    /// The photo (default: the bundled chelsea.png).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Longer side of the resized photo, in pixels.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=8192))]
    size: u32,
    /// Gradient-descent steps of the learned filter.
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Where the PNGs go.
    #[arg(long, default_value = "out/edge_detection")]
    out: PathBuf,
    /// cpu, gpu or best.
    #[arg(long, default_value = "best")]
    device: String,
    /// HED weights (default: the bundled vgg16_hed_bsds500.safetensors).
    #[arg(long)]
    hed_weights: Option<PathBuf>,
}

/// A photo as a `[1, 3, H, W]` RGB tensor in [0, 1], its longer side resized to `size`.
fn load_rgb(path: &Path, size: u32, dev: &Device) -> Result<(Tensor, RgbImage)> {
    let img = image::open(path).with_context(|| format!("cannot read image {}", path.display()))?;
    let img = img.resize(size, size, image::imageops::FilterType::Triangle);
    let rgb8 = img.to_rgb8();
    let f = img.to_rgb32f();
    let (w, h) = (f.width() as usize, f.height() as usize);
    let mut chw = vec![0.0f32; 3 * h * w];
    for (i, p) in f.pixels().enumerate() {
        for c in 0..3 {
            chw[c * h * w + i] = p.0[c];
        }
    }
    Ok((Tensor::from_vec(chw, &[1, 3, h, w], dev)?, rgb8))
}

/// A `[1, 1, H, W]` map as an RGB picture: `v / peak` in gray (white is the peak).
fn gray_picture(t: &Tensor, peak: Option<f32>) -> Result<RgbImage> {
    let (h, w) = (t.shape()[2] as u32, t.shape()[3] as u32);
    let v = t.to_vec()?;
    let peak = peak.unwrap_or_else(|| v.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12));
    let px: Vec<u8> = v
        .iter()
        .flat_map(|x| {
            let g = (x.abs() / peak * 255.0).round().min(255.0) as u8;
            [g, g, g]
        })
        .collect();
    RgbImage::from_raw(w, h, px).context("image buffer size")
}

/// Pictures side by side with a caption above each.
fn side_by_side(panels: &[(&str, RgbImage)]) -> RgbImage {
    let (gap, caption) = (8u32, 24u32);
    let w: u32 = panels.iter().map(|(_, p)| p.width() + gap).sum::<u32>() + gap;
    let h = panels.iter().map(|(_, p)| p.height()).max().unwrap_or(0) + caption + gap;
    let mut sheet = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let mut x = gap;
    for (label, p) in panels {
        common::draw_label(&mut sheet, x as i32, 4, 18.0, Rgb([0, 0, 0]), label);
        common::paste(&mut sheet, p, x, caption);
        x += p.width() + gap;
    }
    sheet
}

/// A photo as a `[1, 1, H, W]` grayscale tensor in [0, 1], its longer side resized to
/// `size`.
fn load_gray(path: &Path, size: u32, dev: &Device) -> Result<Tensor> {
    let img = image::open(path).with_context(|| format!("cannot read image {}", path.display()))?;
    let img = img
        .resize(size, size, image::imageops::FilterType::Triangle)
        .to_luma32f();
    let (w, h) = img.dimensions();
    Ok(Tensor::from_vec(
        img.into_raw(),
        &[1, 1, h as usize, w as usize],
        dev,
    )?)
}

/// Writes a `[1, 1, H, W]` response as a PNG, mapping `|v|` linearly so that the largest
/// magnitude is white.
fn save_abs(t: &Tensor, path: &Path) -> Result<()> {
    let (h, w) = (t.shape()[2] as u32, t.shape()[3] as u32);
    let v = t.to_vec()?;
    let peak = v.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
    let px: Vec<u8> = v
        .iter()
        .map(|x| (x.abs() / peak * 255.0).round() as u8)
        .collect();
    image::GrayImage::from_raw(w, h, px)
        .context("image buffer size")?
        .save(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn kernel(values: [f32; 9], dev: &Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(values.to_vec(), &[1, 1, 3, 3], dev)?)
}

fn print_kernel(name: &str, k: &[f32]) {
    println!("{name}:");
    for row in k.chunks(3) {
        println!("  [{:7.3} {:7.3} {:7.3}]", row[0], row[1], row[2]);
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    common::output::ready_dir("--out", &args.out)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let image_path = args
        .image
        .clone()
        .unwrap_or_else(|| root.join("assets/images/chelsea.png"));
    let dev = Device::by_name(&args.device)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let x = load_gray(&image_path, args.size, &dev)?;
    println!(
        "{} as {:?} on {}",
        image_path.display(),
        x.shape(),
        dev.name()
    );

    let same = Conv2dOptions {
        padding: [1, 1],
        ..Default::default()
    };
    let sobel_x = [-1.0, 0.0, 1.0, -2.0, 0.0, 2.0, -1.0, 0.0, 1.0];
    let sobel_y = [-1.0, -2.0, -1.0, 0.0, 0.0, 0.0, 1.0, 2.0, 1.0];
    let scharr_x = [-3.0, 0.0, 3.0, -10.0, 0.0, 10.0, -3.0, 0.0, 3.0];
    let scharr_y = [-3.0, -10.0, -3.0, 0.0, 0.0, 0.0, 3.0, 10.0, 3.0];
    let mut sobel_magnitude = None;
    for (name, kx, ky) in [("sobel", sobel_x, sobel_y), ("scharr", scharr_x, scharr_y)] {
        let gx = x.conv2d(&kernel(kx, &dev)?, None, same)?;
        let gy = x.conv2d(&kernel(ky, &dev)?, None, same)?;
        let mag = gx.square().add(&gy.square())?.sqrt();
        save_abs(&gx, &args.out.join(format!("{name}_vertical_edges.png")))?;
        save_abs(&gy, &args.out.join(format!("{name}_horizontal_edges.png")))?;
        save_abs(&mag, &args.out.join(format!("{name}_magnitude.png")))?;
        if name == "sobel" {
            sobel_magnitude = Some(mag);
        }
    }
    println!("wrote Sobel and Scharr responses to {}", args.out.display());

    // HED: edges learned from people's outlines (BSDS500), beside Sobel's gradients.
    let weights = args
        .hed_weights
        .clone()
        .unwrap_or_else(|| root.join("assets/weights/vgg16_hed_bsds500.safetensors"));
    let hed = Hed::pretrained(&weights, &dev)
        .with_context(|| format!("loading HED weights {}", weights.display()))?;
    let (rgb, photo) = load_rgb(&image_path, args.size, &dev)?;
    let edges = no_grad(|| hed.forward(&preprocess_bgr(&rgb)?))?;
    let hed_picture = gray_picture(&edges, Some(1.0))?;
    common::save_png(&hed_picture, &args.out.join("hed_edges.png"))?;
    let sobel = gray_picture(
        sobel_magnitude.as_ref().context("no Sobel magnitude")?,
        None,
    )?;
    let sheet = side_by_side(&[
        ("photo", photo),
        ("Sobel magnitude", sobel),
        ("HED (fused)", hed_picture),
    ]);
    common::save_png(&sheet, &args.out.join("side_by_side.png"))?;
    let strong = edges.to_vec()?.iter().filter(|&&p| p > 0.5).count();
    println!(
        "HED: {strong} of {} pixels are edges (p > 0.5); wrote hed_edges.png and side_by_side.png",
        edges.numel()
    );

    // Learn a 3×3 filter whose response matches the vertical Sobel response. Standardising
    // the image removes the dominant DC direction of the patch covariance, so plain
    // gradient descent with momentum converges in a few hundred steps.
    let mean = x.mean();
    let centred = x.sub(&mean)?;
    let std = centred.square().mean().sqrt();
    let xs = centred.div(&std)?;
    let target = xs.conv2d(&kernel(sobel_x, &dev)?, None, same)?;
    let w = Tensor::randn(&[1, 1, 3, 3], 7, &dev)
        .mul_scalar(0.1)
        .detach()
        .requires_grad();
    let mut velocity = Tensor::zeros(&[1, 1, 3, 3], &dev);
    let (lr, momentum) = (0.05, 0.9);
    let mut loss_value = f32::NAN;
    for step in 0..=args.steps {
        w.zero_grad();
        let loss = xs.conv2d(&w, None, same)?.mse_loss(&target)?;
        loss.backward()?;
        // Reading the loss back waits for the device: only when it is printed.
        if step % 50 == 0 || step == args.steps {
            loss_value = loss.item()?;
            println!("step {step:4}  loss {loss_value:.6}");
        }
        no_grad(|| -> Result<()> {
            let g = w.grad().context("the filter got no gradient")?;
            velocity = velocity.mul_scalar(momentum).add(&g)?;
            w.assign(&w.sub(&velocity.mul_scalar(lr))?)?;
            Ok(())
        })?;
    }
    let learned = w.to_vec()?;
    print_kernel("learned filter", &learned);
    print_kernel("Sobel (vertical edges)", &sobel_x);
    let max_diff = learned
        .iter()
        .zip(sobel_x)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!("largest difference to Sobel: {max_diff:.4} (final loss {loss_value:.2e})");
    save_abs(
        &xs.conv2d(&w, None, same)?,
        &args.out.join("learned_vertical_edges.png"),
    )?;
    Ok(())
}
