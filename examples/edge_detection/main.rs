//! Edge detection, the opening example of the course notes: convolve a photo with the
//! Sobel and Scharr kernels through `conv2d`, write each response and the gradient
//! magnitude as PNGs, then learn a 3×3 filter from scratch by gradient descent so that
//! its response matches the vertical Sobel response.
//!
//! `cargo run --release --example edge_detection -- [--image PATH] [--size N]
//!  [--steps N] [--out DIR] [--device cpu|gpu|best]`

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use fovea::ops::Conv2dOptions;
use fovea::{no_grad, Device, DeviceExt, Tensor};

struct Args {
    image: PathBuf,
    size: u32,
    steps: usize,
    out: PathBuf,
    device: String,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        image: Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/images/chelsea.png"),
        size: 256,
        steps: 300,
        out: PathBuf::from("out/edge_detection"),
        device: "best".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--image" => args.image = value()?.into(),
            "--size" => {
                args.size = value()?
                    .parse()
                    .context("--size takes a number of pixels")?
            }
            "--steps" => args.steps = value()?.parse().context("--steps takes a number")?,
            "--out" => args.out = value()?.into(),
            "--device" => args.device = value()?,
            "-h" | "--help" => {
                println!("usage: edge_detection [--image PATH] [--size N] [--steps N] [--out DIR] [--device cpu|gpu|best]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other} (try --help)"),
        }
    }
    Ok(args)
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
    let args = parse_args()?;
    let dev = Device::by_name(&args.device)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let x = load_gray(&args.image, args.size, &dev)?;
    println!(
        "{} as {:?} on {}",
        args.image.display(),
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
    for (name, kx, ky) in [("sobel", sobel_x, sobel_y), ("scharr", scharr_x, scharr_y)] {
        let gx = x.conv2d(&kernel(kx, &dev)?, None, same)?;
        let gy = x.conv2d(&kernel(ky, &dev)?, None, same)?;
        let mag = gx.square().add(&gy.square())?.sqrt();
        save_abs(&gx, &args.out.join(format!("{name}_vertical_edges.png")))?;
        save_abs(&gy, &args.out.join(format!("{name}_horizontal_edges.png")))?;
        save_abs(&mag, &args.out.join(format!("{name}_magnitude.png")))?;
    }
    println!("wrote Sobel and Scharr responses to {}", args.out.display());

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
