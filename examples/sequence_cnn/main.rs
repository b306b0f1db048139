//! A 1-D convolutional network reads each bundled MNIST digit as a sequence of 28 pixel
//! columns (28 channels, length 28) and classifies it: `conv1d` slides along the columns
//! as it would along an ECG or audio. Trains on the 8,000 training digits, reports the
//! accuracy on the 2,000 held-out ones and writes the curves
//! (`out/sequence_cnn/curves.png`).
//!
//! `cargo run --release --example sequence_cnn -- [--epochs N] [--batch N] [--lr F]
//!  [--device cpu|gpu|best] [--seed N]`

#[path = "../common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use fovea::data::InMemoryDataset;
use fovea::nn::{
    summary, AdaptiveAvgPool1d, BatchNorm1d, Conv1d, Flatten, Linear, MaxPool1d, Module, Relu,
    Sequential,
};
use fovea::ops::{Conv1dOptions, Pool1dOptions};
use fovea::optim::{Adam, AdamOptions, CosineAnnealing, LrSchedule, Optimizer};
use fovea::{no_grad, Device, DeviceExt, Tensor};
use indicatif::{ProgressBar, ProgressStyle};

/// Classify MNIST digits read as sequences of pixel columns with a 1-D CNN.
#[derive(Parser)]
#[command(long_about = None)]
struct Args {
    /// Passes over the 8,000 training digits.
    #[arg(long, default_value_t = 8)]
    epochs: usize,
    /// Digits per step.
    #[arg(long, default_value_t = 64, value_parser = common::args::within(1, 65_536))]
    batch: usize,
    /// Peak learning rate (Adam, cosine decay).
    #[arg(long, default_value_t = 2e-3)]
    lr: f32,
    /// cpu, gpu or best.
    #[arg(long, default_value = "best")]
    device: String,
    /// Seed of the weights and the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the chart goes.
    #[arg(long, default_value = "out/sequence_cnn")]
    out: PathBuf,
}

/// Digits `idx` as `[n, 28 rows (channels), 28 columns (length)]`: the image transposed, so
/// that the sequence runs over columns and each step sees a whole column.
fn sequences(data: &InMemoryDataset, idx: &[usize], dev: &Device) -> Result<(Tensor, Vec<usize>)> {
    let mut values = Vec::with_capacity(idx.len() * 784);
    for &i in idx {
        let img = &data.values[i * 784..(i + 1) * 784];
        values.extend((0..28).flat_map(|row| (0..28).map(move |col| img[row * 28 + col])));
    }
    let x = Tensor::from_vec(values, &[idx.len(), 28, 28], dev)?;
    Ok((x, idx.iter().map(|&i| data.labels[i]).collect()))
}

fn model(seed: u64, dev: &Device) -> Result<Sequential> {
    let conv = |cin, cout, k: usize, s: u64| {
        let opts = Conv1dOptions {
            padding: k / 2,
            ..Default::default()
        };
        Conv1d::new(cin, cout, [k], opts, false, seed + s, dev)
    };
    Ok(Sequential::new()
        .push(conv(28, 64, 5, 0)?)
        .push(BatchNorm1d::new(64, dev))
        .push(Relu)
        .push(MaxPool1d(Pool1dOptions::default()))
        .push(conv(64, 128, 5, 1)?)
        .push(BatchNorm1d::new(128, dev))
        .push(Relu)
        .push(MaxPool1d(Pool1dOptions::default()))
        .push(conv(128, 128, 3, 2)?)
        .push(BatchNorm1d::new(128, dev))
        .push(Relu)
        .push(AdaptiveAvgPool1d(1))
        .push(Flatten)
        .push(Linear::try_new(128, 10, true, seed + 3, dev)?))
}

fn accuracy(model: &dyn Module, data: &InMemoryDataset, dev: &Device) -> Result<f64> {
    model.eval();
    let mut hits = 0;
    let all: Vec<usize> = (0..data.labels.len()).collect();
    for idx in all.chunks(500) {
        let (x, labels) = sequences(data, idx, dev)?;
        let logits = no_grad(|| model.forward(&x))?.to_vec()?;
        hits += logits
            .chunks(10)
            .zip(&labels)
            .filter(|(row, &l)| fovea::models::imagenet::top_k(row, 1)[0].0 == l)
            .count();
    }
    model.train();
    Ok(hits as f64 / data.labels.len() as f64)
}

fn main() -> Result<()> {
    let a = Args::parse();
    common::output::ready_dir("--out", &a.out)?;
    let dev = Device::by_name(&a.device)?;
    let dir = common::mnist::bundled_dir();
    let (train, test) = (
        common::mnist::load(&dir, "train")?,
        common::mnist::load(&dir, "t10k")?,
    );
    let net = model(a.seed, &dev)?;
    println!("{}", summary(&net, &[1, 28, 28], &dev)?);
    let mut opt = Adam::new(
        net.parameters(),
        AdamOptions {
            lr: a.lr,
            ..Default::default()
        },
    );
    let steps = train.labels.len().div_ceil(a.batch);
    let schedule = CosineAnnealing {
        base: a.lr,
        min: a.lr * 0.02,
        t_max: a.epochs * steps,
    };
    let style = ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} ({elapsed})")?;
    let (mut losses, mut accs) = (Vec::new(), Vec::new());
    let start = Instant::now();
    for epoch in 0..a.epochs {
        let order = fovea::rng::permutation(train.labels.len(), a.seed ^ epoch as u64);
        let bar = ProgressBar::new(steps as u64)
            .with_style(style.clone())
            .with_prefix(format!("{:2}/{}", epoch + 1, a.epochs));
        let mut epoch_loss = Vec::new();
        for (i, idx) in order.chunks(a.batch).enumerate() {
            let (x, labels) = sequences(&train, idx, &dev)?;
            opt.set_lr(schedule.lr_at(epoch * steps + i));
            opt.zero_grad();
            let loss = net.forward(&x)?.cross_entropy(&labels)?;
            loss.backward()?;
            opt.step()?;
            epoch_loss.push(loss.detach());
            bar.inc(1);
        }
        bar.finish_and_clear();
        let acc = accuracy(&net, &test, &dev)?;
        common::report_epoch(epoch, a.epochs, &epoch_loss, acc, &mut losses, &mut accs)?;
    }
    common::accuracy_chart(
        &a.out.join("curves.png"),
        "1-D CNN on MNIST digits read column by column",
        &losses,
        &accs,
    )?;
    if let Some(&(_, acc)) = accs.last() {
        println!(
            "test accuracy {acc:.2}% on the {} held-out digits after {:.0} s on {}; curves in {}",
            test.labels.len(),
            start.elapsed().as_secs_f64(),
            dev.name(),
            a.out.join("curves.png").display()
        );
    }
    Ok(())
}
