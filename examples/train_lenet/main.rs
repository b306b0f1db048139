//! Trains the modern LeNet-5 on real handwritten digits (the bundled MNIST-10k: 8,000
//! training and 2,000 test images, or the full MNIST with `--data DIR`), then saves a
//! checkpoint.
//!
//! `cargo run --release --example train_lenet -- [--epochs N] [--batch N] [--lr F]
//!  [--limit N] [--data DIR] [--device cpu|gpu|best] [--out FILE] [--model modern|classic]
//!  [--seed N] [--resume FILE] [--stop-after N]`
//!
//! After every epoch it writes the model (`FILE`, PyTorch state_dict names) and the whole
//! training state (`FILE` with `.train.safetensors`: optimizer moments, dropout stream,
//! epoch); `--resume` continues from the latter exactly as if never stopped.
//! `--stop-after N` ends the run after epoch N (of `--epochs`, whose schedule it keeps).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use fovea::data::{DataLoader, InMemoryDataset};
use fovea::models::{LeNet5, LeNet5Classic};
use fovea::nn::Module;
use fovea::optim::{Adam, AdamOptions, CosineAnnealing, LrSchedule, Optimizer};
use fovea::{no_grad, Device, DeviceExt};
use indicatif::{ProgressBar, ProgressStyle};

struct Args {
    data: PathBuf,
    epochs: usize,
    batch: Option<usize>,
    lr: Option<f32>,
    seed: u64,
    resume: Option<PathBuf>,
    stop_after: Option<usize>,
    limit: usize,
    device: String,
    out: PathBuf,
    model: String,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        data: Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/data/mnist-10k"),
        epochs: 40,
        batch: None,
        lr: None,
        seed: 0,
        resume: None,
        stop_after: None,
        limit: usize::MAX,
        device: "best".into(),
        out: PathBuf::from("out/train_lenet/lenet5.safetensors"),
        model: "modern".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut v = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => a.data = v()?.into(),
            "--epochs" => a.epochs = v()?.parse()?,
            "--batch" => a.batch = Some(v()?.parse()?),
            "--lr" => a.lr = Some(v()?.parse()?),
            "--seed" => a.seed = v()?.parse()?,
            "--resume" => a.resume = Some(v()?.into()),
            "--stop-after" => a.stop_after = Some(v()?.parse()?),
            "--limit" => a.limit = v()?.parse()?,
            "--device" => a.device = v()?,
            "--out" => a.out = v()?.into(),
            "--model" => a.model = v()?,
            _ => bail!("usage: train_lenet [--epochs N] [--batch N] [--lr F] [--limit N] [--data DIR] [--device cpu|gpu|best] [--out FILE] [--model modern|classic] [--seed N] [--resume FILE] [--stop-after N]"),
        }
    }
    Ok(a)
}

/// MNIST's pixel mean and standard deviation (after scaling to [0, 1]).
const MEAN: f32 = 0.1307;
const STD: f32 = 0.3081;

fn load(dir: &Path, split: &str) -> Result<InMemoryDataset> {
    let images = dir.join(format!("{split}-images-idx3-ubyte.gz"));
    let labels = dir.join(format!("{split}-labels-idx1-ubyte.gz"));
    Ok(InMemoryDataset::from_idx(&images, &labels, 10, MEAN, STD)?)
}

/// Accuracy of `model` in eval mode.
fn accuracy(model: &dyn Module, data: &InMemoryDataset, dev: &Device) -> Result<f64> {
    model.eval();
    let mut correct = 0;
    for batch in DataLoader::new(data, 500, None, dev)? {
        let batch = batch?;
        let logits = no_grad(|| model.forward(&batch.images))?.to_vec()?;
        correct += logits
            .chunks(10)
            .zip(&batch.labels)
            .filter(|(row, &label)| {
                row.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(i, _)| i)
                    == Some(label)
            })
            .count();
    }
    model.train();
    Ok(correct as f64 / data.labels.len().max(1) as f64)
}

/// Writes a 640×360 PNG with the per-epoch mean training loss (red, scaled to its maximum)
/// and the test accuracy (blue, 0–100% bottom to top), gridlines every 10%.
fn plot(losses: &[f64], accuracies: &[f64], path: &Path) -> Result<()> {
    let (w, h, m) = (640u32, 360u32, 20u32);
    let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    for i in 0..=10 {
        let y = m + (h - 2 * m) * i / 10;
        for x in m..w - m {
            img.put_pixel(x, y, image::Rgb([225, 225, 225]));
        }
    }
    let max_loss = losses.iter().cloned().fold(f64::MIN_POSITIVE, f64::max);
    let mut line = |values: &[f64], scale: f64, colour: [u8; 3]| {
        let point = |i: usize| {
            let x = m as f64 + (w - 2 * m) as f64 * i as f64 / (values.len().max(2) - 1) as f64;
            let y = (h - m) as f64 - (h - 2 * m) as f64 * (values[i] / scale).clamp(0.0, 1.0);
            (x, y)
        };
        for i in 1..values.len() {
            let ((x0, y0), (x1, y1)) = (point(i - 1), point(i));
            let steps = ((x1 - x0).abs().max((y1 - y0).abs()) as usize).max(1);
            for k in 0..=steps {
                let t = k as f64 / steps as f64;
                let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
                for (dx, dy) in [(0, 0), (1, 0), (0, 1)] {
                    img.put_pixel(
                        (x as u32 + dx).min(w - 1),
                        (y as u32 + dy).min(h - 1),
                        image::Rgb(colour),
                    );
                }
            }
        }
    };
    line(losses, max_loss, [200, 40, 40]);
    line(accuracies, 1.0, [40, 80, 200]);
    img.save(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn main() -> Result<()> {
    let a = parse()?;
    let dev = Device::by_name(&a.device)?;
    let train = load(&a.data, "train")?.take(a.limit);
    let test = load(&a.data, "t10k")?;
    println!(
        "{} training and {} test images from {} on {}",
        train.labels.len(),
        test.labels.len(),
        a.data.display(),
        dev.name()
    );
    // Measured defaults (README): the sigmoid/RBF classic learns best with smaller,
    // faster steps.
    let (model, lr, batch): (Box<dyn Module>, f32, usize) = match a.model.as_str() {
        "modern" => (Box::new(LeNet5::new(10, 0.1, a.seed, &dev)?), 2e-3, 64),
        "classic" => (Box::new(LeNet5Classic::new(a.seed, &dev)?), 4e-3, 32),
        other => bail!("--model takes modern or classic, got {other}"),
    };
    let (lr, batch) = (a.lr.unwrap_or(lr), a.batch.unwrap_or(batch));
    println!(
        "LeNet-5 ({}): {} parameters",
        a.model,
        model.num_parameters()
    );
    println!(
        "{}",
        fovea::nn::summary(model.as_ref(), &[1, 1, 28, 28], &dev)?
    );
    let mut opt = Adam::new(
        model.parameters(),
        AdamOptions {
            lr,
            ..Default::default()
        },
    );
    let schedule = CosineAnnealing {
        base: lr,
        min: lr * 0.02,
        t_max: a.epochs,
    };
    let state_path = a.out.with_extension("train.safetensors");
    let mut first_epoch = 0;
    let (mut losses, mut accuracies) = (Vec::new(), Vec::new());
    if let Some(path) = &a.resume {
        let progress = fovea::checkpoint::load_training(model.as_ref(), &mut opt, path)?;
        first_epoch = *progress
            .get("epochs_done")
            .with_context(|| format!("{} has no epochs_done counter", path.display()))?
            as usize;
        // The curves so far travel in the state file as f64 bit patterns.
        for e in 0..first_epoch {
            let value = |key: String| progress.get(&key).map(|&b| f64::from_bits(b));
            if let (Some(l), Some(acc)) = (value(format!("loss{e}")), value(format!("acc{e}"))) {
                losses.push(l);
                accuracies.push(acc);
            }
        }
        println!("resumed from {} after epoch {first_epoch}", path.display());
    }
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut last_acc = 0.0;
    let style =
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")?
            .progress_chars("=> ");
    let last = a.stop_after.unwrap_or(a.epochs).min(a.epochs);
    for epoch in first_epoch..last {
        opt.set_lr(schedule.lr_at(epoch));
        let start = Instant::now();
        // Random shifts of up to 2 pixels: 8,000 digits overfit without them.
        let loader = DataLoader::new(&train, batch, Some(a.seed ^ epoch as u64), &dev)?
            .random_shift(2, a.seed ^ (1000 + epoch as u64));
        let bar = ProgressBar::new(loader.batches() as u64)
            .with_style(style.clone())
            .with_prefix(format!("{:2}/{}", epoch + 1, a.epochs));
        let mut seen = 0usize;
        let mut epoch_loss = Vec::new();
        for (i, batch) in loader.enumerate() {
            let batch = batch?;
            opt.zero_grad();
            let loss = model.forward(&batch.images)?.cross_entropy(&batch.labels)?;
            loss.backward()?;
            opt.step()?;
            // Detached: the value only, not the step's whole graph.
            epoch_loss.push(loss.detach());
            seen += batch.labels.len();
            bar.inc(1);
            // Reading the loss waits for the device, so only now and then.
            if i % 25 == 0 {
                let rate = seen as f64 / start.elapsed().as_secs_f64();
                bar.set_message(format!("loss {:.4}  {rate:6.0} img/s", loss.item()?));
            }
        }
        bar.finish_and_clear();
        last_acc = accuracy(model.as_ref(), &test, &dev)?;
        // The epoch's losses are read back once, here, not after every step.
        let values: Vec<f64> = epoch_loss
            .iter()
            .map(|l| l.item().map(f64::from))
            .collect::<fovea::Result<_>>()?;
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        losses.push(mean);
        accuracies.push(last_acc);
        println!(
            "epoch {:2}/{}  loss {mean:.4}  test accuracy {:.2}%  {:6.0} img/s  ({:.1} s)",
            epoch + 1,
            a.epochs,
            100.0 * last_acc,
            seen as f64 / start.elapsed().as_secs_f64(),
            start.elapsed().as_secs_f64()
        );
        fovea::checkpoint::save_module(model.as_ref(), &a.out)?;
        let keys: Vec<(String, u64)> = losses
            .iter()
            .zip(&accuracies)
            .enumerate()
            .flat_map(|(e, (l, acc))| {
                [
                    (format!("loss{e}"), l.to_bits()),
                    (format!("acc{e}"), acc.to_bits()),
                ]
            })
            .chain([("epochs_done".to_string(), epoch as u64 + 1)])
            .collect();
        let progress: Vec<(&str, u64)> = keys.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        fovea::checkpoint::save_training(model.as_ref(), &opt, &progress, &state_path)?;
    }

    let curves = a.out.with_extension("png");
    plot(&losses, &accuracies, &curves)?;
    println!(
        "training curves (red: mean loss per epoch, blue: test accuracy) in {}",
        curves.display()
    );
    println!(
        "final test accuracy {:.2}%; checkpoint written to {} (training state: {})",
        100.0 * last_acc,
        a.out.display(),
        state_path.display()
    );
    Ok(())
}
