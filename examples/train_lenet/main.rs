//! Trains the modern LeNet-5 on real handwritten digits (the bundled MNIST-10k: 8,000
//! training and 2,000 test images, or the full MNIST with `--data DIR`), then saves a
//! checkpoint.
//!
//! `cargo run --release --example train_lenet -- [--epochs N] [--batch N] [--lr F]
//!  [--limit N] [--data DIR] [--device cpu|gpu|best] [--out FILE] [--model modern|classic]
//!  [--seed N] [--resume FILE] [--stop-after N] [--autocast]` (`--help` says what each does)
//!
//! After every epoch it writes the model (`FILE`, PyTorch state_dict names) and the whole
//! training state (`FILE` with `.train.safetensors`: optimizer moments, dropout stream,
//! epoch); `--resume` continues from the latter exactly as if never stopped.
//! `--stop-after N` ends the run after epoch N (of `--epochs`, whose schedule it keeps).

#[path = "../common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use fovea::data::DataLoader;
use fovea::models::{LeNet5, LeNet5Classic};
use fovea::nn::Module;
use fovea::optim::{Adam, AdamOptions, CosineAnnealing, LrSchedule, Optimizer};
use fovea::{Device, DeviceExt};
use indicatif::{ProgressBar, ProgressStyle};

/// Train LeNet-5 on handwritten digits and save a checkpoint and its training curves.
#[derive(Parser)]
#[command(long_about = None)]
struct Args {
    /// Passes over the training digits (the cosine schedule spans them all).
    #[arg(long, default_value_t = 40)]
    epochs: usize,
    /// Digits per step (default: 64 for modern, 32 for classic).
    #[arg(long, value_parser = common::args::within(1, 65_536))]
    batch: Option<usize>,
    /// Peak learning rate, Adam with cosine decay (default: 2e-3 for modern, 4e-3 for
    /// classic).
    #[arg(long)]
    lr: Option<f32>,
    /// Train on the first N training digits only.
    #[arg(long, default_value_t = usize::MAX, hide_default_value = true)]
    limit: usize,
    /// A folder with MNIST's four idx .gz files (default: the bundled MNIST-10k).
    #[arg(long)]
    data: Option<PathBuf>,
    /// cpu, gpu or best.
    #[arg(long, default_value = "best")]
    device: String,
    /// Where the checkpoint goes; the training state and the chart land beside it.
    #[arg(long, default_value = "out/train_lenet/lenet5.safetensors")]
    out: PathBuf,
    /// modern (ReLU, max pooling, dropout) or classic (LeCun's 1998 sigmoid/RBF).
    #[arg(long, value_parser = ["modern", "classic"], default_value = "modern")]
    model: String,
    /// Seed of the weights, the shuffling, the shifts and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Continue from a training state (`<out>.train.safetensors`) exactly where it stopped.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// End the run after this epoch, keeping the schedule of --epochs.
    #[arg(long)]
    stop_after: Option<usize>,
    /// Mixed precision: products and convolutions in f16 (`fovea::autocast`), the loss
    /// scaled by a `GradScaler`.
    #[arg(long)]
    autocast: bool,
}

fn main() -> Result<()> {
    let a = Args::parse();
    common::output::ready_file("--out", &a.out, false)?;
    let dev = Device::by_name(&a.device)?;
    let data = a.data.clone().unwrap_or_else(common::mnist::bundled_dir);
    let train = common::mnist::load(&data, "train")?.take(a.limit);
    let test = common::mnist::load(&data, "t10k")?;
    println!(
        "{} training and {} test images from {} on {}",
        train.labels.len(),
        test.labels.len(),
        data.display(),
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
    let mut amp = common::amp::Amp::new(a.autocast)?;
    let state_path = a.out.with_extension("train.safetensors");
    let mut first_epoch = 0;
    let (mut losses, mut accuracies) = (Vec::new(), Vec::new());
    if let Some(path) = &a.resume {
        let progress = fovea::checkpoint::load_training(model.as_ref(), &mut opt, path)?;
        first_epoch = *progress
            .get("epochs_done")
            .with_context(|| format!("{} has no epochs_done counter", path.display()))?
            as usize;
        amp.restore(&progress)?;
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
            let loss =
                amp.forward(|| model.forward(&batch.images)?.cross_entropy(&batch.labels))?;
            amp.backward_and_step(&loss, &mut opt)?;
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
        last_acc = common::mnist::accuracy(model.as_ref(), &test, &dev)?;
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
            .chain(amp.progress())
            .collect();
        let progress: Vec<(&str, u64)> = keys.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        fovea::checkpoint::save_training(model.as_ref(), &opt, &progress, &state_path)?;
    }

    let curves = a.out.with_extension("png");
    let by_epoch = |values: &[f64], scale: f64| -> Vec<(f64, f64)> {
        let points = values.iter().enumerate();
        points.map(|(e, v)| ((e + 1) as f64, scale * v)).collect()
    };
    common::accuracy_chart(
        &curves,
        &format!("LeNet-5 ({}) on handwritten digits", a.model),
        &by_epoch(&losses, 1.0),
        &by_epoch(&accuracies, 100.0),
    )?;
    println!(
        "training curves (mean loss and test accuracy per epoch) in {}",
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
