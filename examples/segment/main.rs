//! Semantic segmentation of real handwritten digits: a U-Net learns to label every pixel
//! of digit canvases (MNIST digits scaled and placed on a blank canvas, see
//! `fovea::data::digit_canvases`) as background or as the ink of digit 0–9, 11 classes.
//! Training canvases are drawn afresh each epoch from the 8,000 training digits; the test
//! canvases come from the 2,000 held-out digits. Prints the mean IoU and pixel accuracy on
//! the test canvases after each epoch and writes, under `out/segment/`, input | truth |
//! prediction side by side for some test canvases (a colour per class) and the curves.
//!
//! Measured with the defaults on a 2-core CPU: mIoU 0.81, pixel accuracy 97.9%, about ten
//! minutes.
//!
//! `cargo run --release --example segment -- [--epochs N] [--train N] [--test N]
//!  [--size PX] [--width N] [--depth N] [--bilinear] [--batch N] [--lr F]
//!  [--background-weight F] [--dice F]
//!  [--device cpu|gpu|best] [--seed N] [--out DIR]`

#[path = "../common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Result};
use clap::Parser;
use common::Series;
use fovea::data::{
    canvas_images, digit_canvases, CanvasOptions, DigitCanvas, InMemoryDataset, MASK_CLASSES,
};
use fovea::models::segmentation::{predict_classes, soft_dice_loss, Confusion, DiceOptions};
use fovea::models::{UNet, UNetConfig};
use fovea::nn::Module;
use fovea::ops::{CrossEntropy2dOptions, PixelTargets};
use fovea::optim::{Adam, AdamOptions, CosineAnnealing, LrSchedule, Optimizer};
use fovea::{no_grad, Device, DeviceExt, Tensor};
use image::{Rgb, RgbImage};
use indicatif::{ProgressBar, ProgressStyle};

/// Train a U-Net to segment digit canvases.
#[derive(Parser)]
#[command(long_about = None)]
struct Args {
    /// Passes over freshly drawn training canvases.
    #[arg(long, default_value_t = 12, value_parser = common::args::within(1, 100_000))]
    epochs: usize,
    /// Training canvases per epoch.
    #[arg(long, default_value_t = 1200, value_parser = common::args::within(1, 100_000))]
    train: usize,
    /// Test canvases (from the held-out digits).
    #[arg(long, default_value_t = 300, value_parser = common::args::within(1, 100_000))]
    test: usize,
    /// Side of the square canvases in pixels (a multiple of 2^depth).
    #[arg(long, default_value_t = 48, value_parser = common::args::within(1, 1024))]
    size: usize,
    /// Fewest and most digits on one canvas.
    #[arg(long, num_args = 2, default_values_t = [3, 6])]
    digits: Vec<usize>,
    /// Smallest and largest side of a placed digit's 28×28 cell, in pixels (default: half
    /// to two thirds of the canvas side, about MNIST's own size on the default canvas).
    #[arg(long, num_args = 2)]
    digit_size: Option<Vec<usize>>,
    /// Channels of the U-Net's first level (the paper: 64).
    #[arg(long, default_value_t = 16, value_parser = common::args::within(1, 256))]
    width: usize,
    /// Levels of the U-Net (the paper: 4).
    #[arg(long, default_value_t = 3)]
    depth: usize,
    /// Bilinear upsampling instead of transposed convolutions.
    #[arg(long)]
    bilinear: bool,
    /// Canvases per training step (small batches: more steps for the same arithmetic,
    /// which is what the digits' classes need most).
    #[arg(long, default_value_t = 8, value_parser = common::args::within(1, 65_536))]
    batch: usize,
    /// Adam's learning rate (then a cosine decay over the run).
    #[arg(long, default_value_t = 3e-3)]
    lr: f32,
    /// Class weight of the background in the cross-entropy (the digits' is 1): most
    /// pixels are background, and at full weight they drown out what tells the digits
    /// apart.
    #[arg(long, default_value_t = 0.2)]
    background_weight: f32,
    /// Weight of the soft Dice loss added to the cross-entropy (0: cross-entropy alone).
    #[arg(long, default_value_t = 0.0)]
    dice: f32,
    /// cpu, gpu or best.
    #[arg(long, default_value = "best")]
    device: String,
    /// Seed of the canvases and the initial weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the pictures go.
    #[arg(long, default_value = "out/segment")]
    out: PathBuf,
    /// Test canvases shown in the side-by-side picture.
    #[arg(long, default_value_t = 8)]
    show: usize,
}

fn digits(split: &str) -> Result<InMemoryDataset> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/data/mnist-10k");
    // Values in [0, 1], as the canvases need (mean 0, std 1).
    Ok(InMemoryDataset::from_idx(
        &dir.join(format!("{split}-images-idx3-ubyte.gz")),
        &dir.join(format!("{split}-labels-idx1-ubyte.gz")),
        10,
        0.0,
        1.0,
    )?)
}

/// A batch: the pictures as `[N, 1, S, S]` and their masks as targets.
fn batch(canvases: &[DigitCanvas], side: usize, dev: &Device) -> Result<(Tensor, PixelTargets)> {
    let masks: Vec<&[u8]> = canvases.iter().map(|c| c.mask.as_slice()).collect();
    Ok((
        canvas_images(canvases, dev)?,
        PixelTargets::from_masks(&masks, side, side)?,
    ))
}

/// The predicted classes of every test canvas (eval mode) and their confusion matrix.
fn evaluate(
    model: &UNet,
    test: &[DigitCanvas],
    side: usize,
    dev: &Device,
) -> Result<(Vec<usize>, Confusion)> {
    model.eval();
    let mut pred = Vec::with_capacity(test.len() * side * side);
    let mut m = Confusion::new(MASK_CLASSES);
    for chunk in test.chunks(50) {
        let (x, t) = batch(chunk, side, dev)?;
        let p = predict_classes(&no_grad(|| model.forward(&x))?)?;
        m.add(&p, t.ids(), -100)?;
        pred.extend(p);
    }
    model.train();
    Ok((pred, m))
}

/// A class map as a picture, each class in its colour, scaled up `zoom` times.
fn colour_mask(classes: impl Fn(usize) -> usize, side: usize, zoom: u32) -> RgbImage {
    RgbImage::from_fn(side as u32 * zoom, side as u32 * zoom, |x, y| {
        common::class_colour(classes((y / zoom) as usize * side + (x / zoom) as usize))
    })
}

/// Rows of input | truth | prediction, under a legend of the class colours.
fn side_by_side(test: &[DigitCanvas], pred: &[usize], side: usize, rows: usize) -> RgbImage {
    let (zoom, pad, legend) = (3u32, 6u32, 26u32);
    let tile = side as u32 * zoom;
    let rows = rows.min(test.len()) as u32;
    let mut img = RgbImage::from_pixel(
        3 * tile + 4 * pad,
        legend + rows * (tile + pad) + pad,
        Rgb([255, 255, 255]),
    );
    for (i, name) in ["input", "truth", "prediction"].iter().enumerate() {
        let x = pad + i as u32 * (tile + pad);
        common::draw_label(&mut img, x as i32, 2, 15.0, Rgb([0, 0, 0]), name);
    }
    // The legend: background, then one swatch per digit, along the bottom of the title row.
    for c in 0..MASK_CLASSES {
        let x = pad + c as u32 * 3 * (tile + pad) / MASK_CLASSES as u32;
        let swatch = RgbImage::from_pixel(8, 8, common::class_colour(c));
        common::paste(&mut img, &swatch, x, 18);
        let label = if c == 0 {
            "bg".to_string()
        } else {
            (c - 1).to_string()
        };
        common::draw_label(&mut img, x as i32 + 10, 14, 11.0, Rgb([60, 60, 60]), &label);
    }
    let plane = side * side;
    for (r, c) in test.iter().take(rows as usize).enumerate() {
        let y = legend + r as u32 * (tile + pad);
        let input = RgbImage::from_fn(tile, tile, |x, yy| {
            let v = c.image[(yy / zoom) as usize * side + (x / zoom) as usize];
            let g = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            Rgb([g, g, g])
        });
        let truth = colour_mask(|q| c.mask[q] as usize, side, zoom);
        let p = &pred[r * plane..(r + 1) * plane];
        let predicted = colour_mask(|q| p[q], side, zoom);
        for (i, t) in [input, truth, predicted].iter().enumerate() {
            common::paste(&mut img, t, pad + i as u32 * (tile + pad), y);
        }
    }
    img
}

fn main() -> Result<()> {
    let a = Args::parse();
    common::output::ready_dir("--out", &a.out)?;
    let dev = Device::by_name(&a.device)?;
    let multiple = 1usize << a.depth.min(16);
    ensure!(
        a.size > 0 && a.size.is_multiple_of(multiple),
        "--size {} must be a positive multiple of 2^depth = {multiple}",
        a.size
    );
    ensure!(
        a.batch > 0 && a.train > 0 && a.test > 0,
        "--batch, --train and --test must be positive"
    );
    let start = Instant::now();
    let (train_digits, test_digits) = (digits("train")?, digits("t10k")?);
    let digit_size = match a.digit_size.as_deref() {
        Some(&[lo, hi]) => [lo, hi],
        _ => [a.size / 2, a.size * 2 / 3],
    };
    let opts = CanvasOptions {
        size: a.size,
        digits: [a.digits[0], a.digits[1]],
        digit_size,
        ..Default::default()
    };
    let test = digit_canvases(&test_digits, a.test, &opts, a.seed ^ 0x7e57)?;
    let model = UNet::new(
        UNetConfig {
            in_channels: 1,
            classes: MASK_CLASSES,
            width: a.width,
            depth: a.depth,
            bilinear: a.bilinear,
        },
        a.seed,
        &dev,
    )?;
    let s = fovea::nn::summary(&model, &[1, 1, a.size, a.size], &dev)?;
    println!(
        "U-Net (width {}, depth {}, {}) on {}: {} parameters, {:.1} M MACs per {}×{} canvas",
        a.width,
        a.depth,
        if a.bilinear {
            "bilinear"
        } else {
            "transposed convolutions"
        },
        dev.name(),
        s.params(),
        s.macs() as f64 / 1e6,
        a.size,
        a.size
    );
    println!(
        "{} training canvases per epoch from {} digits, {} test canvases from {} held-out digits",
        a.train,
        train_digits.labels.len(),
        a.test,
        test_digits.labels.len()
    );
    let steps_per_epoch = a.train.div_ceil(a.batch);
    let schedule = CosineAnnealing {
        base: a.lr,
        min: a.lr * 0.02,
        t_max: a.epochs * steps_per_epoch,
    };
    let mut opt = Adam::new(
        model.parameters(),
        AdamOptions {
            lr: a.lr,
            ..Default::default()
        },
    );
    let mut weight = vec![1.0; MASK_CLASSES];
    weight[0] = a.background_weight;
    let ce = CrossEntropy2dOptions {
        weight: Some(weight),
        ..Default::default()
    };
    let dice = DiceOptions::default();
    let style =
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")?
            .progress_chars("=> ");
    let (mut loss_curve, mut miou_curve, mut acc_curve) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    for epoch in 0..a.epochs {
        let t0 = Instant::now();
        // Fresh canvases every epoch: new placements, sizes and digit pairings of the
        // same training digits.
        let train = digit_canvases(
            &train_digits,
            a.train,
            &opts,
            a.seed.wrapping_add(1 + epoch as u64),
        )?;
        let bar = ProgressBar::new(steps_per_epoch as u64)
            .with_style(style.clone())
            .with_prefix(format!("{:2}/{}", epoch + 1, a.epochs));
        let mut losses = Vec::new();
        for (i, chunk) in train.chunks(a.batch).enumerate() {
            opt.set_lr(schedule.lr_at(epoch * steps_per_epoch + i));
            let (x, t) = batch(chunk, a.size, &dev)?;
            opt.zero_grad();
            let logits = model.forward(&x)?;
            let mut loss = logits.cross_entropy2d(&t, &ce)?;
            if a.dice > 0.0 {
                loss = loss.add(&soft_dice_loss(&logits, &t, &dice)?.mul_scalar(a.dice))?;
            }
            loss.backward()?;
            opt.step()?;
            // Detached: the value only, read back at the end of the epoch.
            losses.push(loss.detach());
            bar.inc(1);
            if i % 10 == 0 {
                bar.set_message(format!("loss {:.4}", loss.item()?));
            }
        }
        bar.finish_and_clear();
        let values: Vec<f32> = losses
            .iter()
            .map(Tensor::item)
            .collect::<fovea::Result<_>>()?;
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64;
        let (pred, m) = evaluate(&model, &test, a.size, &dev)?;
        let (miou, acc) = (m.mean_iou(), m.pixel_accuracy());
        println!(
            "epoch {:2}/{}  loss {mean:.4}  test mIoU {miou:.4}  pixel accuracy {:.2}%  ({:.1} s)",
            epoch + 1,
            a.epochs,
            100.0 * acc,
            t0.elapsed().as_secs_f64()
        );
        let x = (epoch + 1) as f64;
        loss_curve.push((x, mean));
        miou_curve.push((x, miou));
        acc_curve.push((x, acc));
        last = Some((pred, m));
    }
    let (pred, m) = last.expect("at least one epoch");
    println!("\nper-class IoU on the test canvases:");
    for (c, iou) in m.iou_per_class().iter().enumerate() {
        let name = if c == 0 {
            "background".to_string()
        } else {
            format!("digit {}", c - 1)
        };
        match iou {
            Some(v) => println!("  {name:<10} {v:.4}"),
            None => println!("  {name:<10} absent"),
        }
    }
    println!(
        "test mIoU {:.4}  pixel accuracy {:.2}%  Dice {:.4}  ({} test canvases, {:.0} s in all on {})",
        m.mean_iou(),
        100.0 * m.pixel_accuracy(),
        m.dice(),
        a.test,
        start.elapsed().as_secs_f64(),
        dev.name()
    );
    let pictures = a.out.join("predictions.png");
    common::save_png(&side_by_side(&test, &pred, a.size, a.show), &pictures)?;
    let curves = a.out.join("curves.png");
    common::line_chart(
        &curves,
        "U-Net on digit canvases",
        "epoch",
        (
            "training loss",
            &[Series {
                label: "mean loss",
                points: &loss_curve,
            }],
        ),
        (
            "test",
            &[
                Series {
                    label: "mIoU",
                    points: &miou_curve,
                },
                Series {
                    label: "pixel accuracy",
                    points: &acc_curve,
                },
            ],
        ),
    )?;
    println!("wrote {} and {}", pictures.display(), curves.display());
    Ok(())
}
