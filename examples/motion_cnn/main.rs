//! A 3-D convolutional network tells which way a digit moves: clips of 8 frames of a real
//! MNIST digit sliding across a 32×32 square in one of eight directions. A single frame
//! cannot tell the direction; `conv3d` slides its window through time as well as space.
//! Trains on clips of the 8,000 training digits, reports the accuracy on clips of the
//! 2,000 held-out ones (chance: 12.5%), and writes the curves and a strip of test clips
//! with their predicted directions (`out/motion_cnn/`).
//!
//! `cargo run --release --example motion_cnn -- [--epochs N] [--clips N] [--batch N]
//!  [--lr F] [--device cpu|gpu|best] [--seed N]`

#[path = "../common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use fovea::data::{moving_digits, InMemoryDataset, MovingDigits, MovingOptions, DIRECTION_NAMES};
use fovea::nn::{
    summary, AdaptiveAvgPool3d, BatchNorm3d, Conv3d, Flatten, Linear, MaxPool3d, Module, Relu,
    Sequential,
};
use fovea::ops::{Conv3dOptions, Pool3dOptions};
use fovea::optim::{Adam, AdamOptions, CosineAnnealing, LrSchedule, Optimizer};
use fovea::{no_grad, Device, DeviceExt};
use image::{Rgb, RgbImage};
use indicatif::{ProgressBar, ProgressStyle};

/// Classify the direction of motion of moving-digit clips with a 3-D CNN.
#[derive(Parser)]
#[command(long_about = None)]
struct Args {
    /// Passes over the training clips.
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Training clips (test clips: a quarter as many).
    #[arg(long, default_value_t = 4000, value_parser = common::args::within(1, 100_000))]
    clips: usize,
    /// Clips per step.
    #[arg(long, default_value_t = 32, value_parser = common::args::within(1, 65_536))]
    batch: usize,
    /// Peak learning rate (Adam, cosine decay).
    #[arg(long, default_value_t = 3e-3)]
    lr: f32,
    /// cpu, gpu or best.
    #[arg(long, default_value = "best")]
    device: String,
    /// Seed of the clips, the weights and the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the pictures go.
    #[arg(long, default_value = "out/motion_cnn")]
    out: PathBuf,
}

fn digits(split: &str) -> Result<InMemoryDataset> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/data/mnist-10k");
    Ok(InMemoryDataset::from_idx(
        &dir.join(format!("{split}-images-idx3-ubyte.gz")),
        &dir.join(format!("{split}-labels-idx1-ubyte.gz")),
        10,
        0.0,
        1.0,
    )?)
}

fn model(seed: u64, dev: &Device) -> Result<Sequential> {
    let conv = |cin, cout, s: u64| {
        let opts = Conv3dOptions {
            padding: [1; 3],
            ..Default::default()
        };
        Conv3d::new(cin, cout, [3; 3], opts, false, seed + s, dev)
    };
    let pool = |k: [usize; 3]| {
        MaxPool3d(Pool3dOptions {
            kernel: k,
            stride: k,
            ..Default::default()
        })
    };
    Ok(Sequential::new()
        .push(conv(1, 16, 0)?)
        .push(BatchNorm3d::new(16, dev))
        .push(Relu)
        .push(pool([1, 2, 2]))
        .push(conv(16, 32, 1)?)
        .push(BatchNorm3d::new(32, dev))
        .push(Relu)
        .push(pool([2, 2, 2]))
        .push(conv(32, 64, 2)?)
        .push(BatchNorm3d::new(64, dev))
        .push(Relu)
        .push(AdaptiveAvgPool3d([1, 1, 1]))
        .push(Flatten)
        .push(Linear::try_new(64, 8, true, seed + 3, dev)?))
}

/// Predicted directions of every clip (eval mode).
fn predict(net: &dyn Module, clips: &MovingDigits, dev: &Device) -> Result<Vec<usize>> {
    net.eval();
    let mut out = Vec::new();
    for start in (0..clips.directions.len()).step_by(100) {
        let logits = no_grad(|| net.forward(&clips.tensor(start, 100, dev)?))?.to_vec()?;
        out.extend(
            logits
                .chunks(8)
                .map(|r| fovea::models::imagenet::top_k(r, 1)[0].0),
        );
    }
    net.train();
    Ok(out)
}

fn main() -> Result<()> {
    let a = Args::parse();
    common::output::ready_dir("--out", &a.out)?;
    let dev = Device::by_name(&a.device)?;
    let opts = MovingOptions::default();
    let train = moving_digits(&digits("train")?, a.clips, &opts, a.seed)?;
    let test = moving_digits(&digits("t10k")?, a.clips / 4, &opts, a.seed ^ 0x7e57)?;
    let net = model(a.seed, &dev)?;
    println!(
        "{}",
        summary(&net, &[1, 1, opts.frames, opts.size, opts.size], &dev)?
    );
    let mut opt = Adam::new(
        net.parameters(),
        AdamOptions {
            lr: a.lr,
            ..Default::default()
        },
    );
    let steps = a.clips.div_ceil(a.batch);
    let schedule = CosineAnnealing {
        base: a.lr,
        min: a.lr * 0.02,
        t_max: a.epochs * steps,
    };
    let style = ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} ({elapsed})")?;
    let (mut losses, mut accs) = (Vec::new(), Vec::new());
    let start = Instant::now();
    let mut predictions = Vec::new();
    for epoch in 0..a.epochs {
        let order = fovea::rng::permutation(a.clips, a.seed ^ (epoch as u64 + 1));
        let bar = ProgressBar::new(steps as u64)
            .with_style(style.clone())
            .with_prefix(format!("{:2}/{}", epoch + 1, a.epochs));
        let mut epoch_loss = Vec::new();
        for (i, idx) in order.chunks(a.batch).enumerate() {
            // A batch of clips in shuffled order, gathered from the contiguous store.
            let per = opts.frames * opts.size * opts.size;
            let values: Vec<f32> = idx
                .iter()
                .flat_map(|&k| train.clips[k * per..(k + 1) * per].iter().copied())
                .collect();
            let x = fovea::Tensor::from_vec(
                values,
                &[idx.len(), 1, opts.frames, opts.size, opts.size],
                &dev,
            )?;
            let labels: Vec<usize> = idx.iter().map(|&k| train.directions[k]).collect();
            opt.set_lr(schedule.lr_at(epoch * steps + i));
            opt.zero_grad();
            let loss = net.forward(&x)?.cross_entropy(&labels)?;
            loss.backward()?;
            opt.step()?;
            epoch_loss.push(loss.detach());
            bar.inc(1);
        }
        bar.finish_and_clear();
        predictions = predict(&net, &test, &dev)?;
        let hits = predictions
            .iter()
            .zip(&test.directions)
            .filter(|(p, t)| p == t)
            .count();
        let acc = hits as f64 / test.directions.len() as f64;
        common::report_epoch(epoch, a.epochs, &epoch_loss, acc, &mut losses, &mut accs)?;
    }
    common::accuracy_chart(
        &a.out.join("curves.png"),
        "3-D CNN: direction of moving digits",
        &losses,
        &accs,
    )?;
    filmstrip(&test, &predictions, &a.out.join("clips.png"))?;
    if let Some(&(_, acc)) = accs.last() {
        println!(
            "test accuracy {acc:.2}% on {} clips of held-out digits (chance 12.5%) after {:.0} s on {}; pictures in {}",
            test.directions.len(),
            start.elapsed().as_secs_f64(),
            dev.name(),
            a.out.display()
        );
    }
    Ok(())
}

/// Eight test clips, one row each: the frames side by side, then the true and predicted
/// directions (green when right, red when wrong).
fn filmstrip(clips: &MovingDigits, predicted: &[usize], path: &Path) -> Result<()> {
    let o = clips.opts;
    let (s, pad, text) = (o.size as u32 * 2, 4u32, 190u32);
    let rows = 8.min(predicted.len()) as u32;
    let width = o.frames as u32 * (s + pad) + text;
    let mut img = RgbImage::from_pixel(width, rows * (s + pad) + pad, Rgb([255, 255, 255]));
    for (r, &guess) in predicted.iter().enumerate().take(rows as usize) {
        for f in 0..o.frames {
            let frame = &clips.clips[(r * o.frames + f) * o.size * o.size..][..o.size * o.size];
            let tile = RgbImage::from_fn(s, s, |x, y| {
                let v = (frame[(y / 2) as usize * o.size + (x / 2) as usize] * 255.0) as u8;
                Rgb([v, v, v])
            });
            common::paste(
                &mut img,
                &tile,
                f as u32 * (s + pad),
                pad + r as u32 * (s + pad),
            );
        }
        let truth = clips.directions[r];
        let colour = if truth == guess {
            Rgb([0, 140, 0])
        } else {
            Rgb([200, 0, 0])
        };
        let x = (o.frames as u32 * (s + pad) + 6) as i32;
        let y = (pad + r as u32 * (s + pad)) as i32;
        common::draw_label(
            &mut img,
            x,
            y + 10,
            15.0,
            Rgb([0, 0, 0]),
            &format!("moves {}", DIRECTION_NAMES[truth]),
        );
        common::draw_label(
            &mut img,
            x,
            y + 32,
            15.0,
            colour,
            &format!("predicted {}", DIRECTION_NAMES[guess]),
        );
    }
    common::save_png(&img, path)
}
