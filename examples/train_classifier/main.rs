//! Trains a zoo network from scratch on Fashion-MNIST (the bundled 60,000 training and
//! 10,000 test garments): ResNet-18 with a stem for small images (3×3, stride 1, no max
//! pool) by default, or MobileNetV2. Prints the model summary, a progress bar and one line
//! per epoch; after every epoch writes the model (PyTorch `state_dict` names), the whole
//! training state (`*.train.safetensors`; `--resume` continues from it exactly) and a chart
//! of the loss and accuracy curves.
//!
//! `cargo run --release --example train_classifier -- [--model resnet18|mobilenet_v2]
//!  [--width N] [--epochs N] [--batch N] [--lr F] [--limit N] [--data DIR]
//!  [--device cpu|gpu|best] [--out FILE] [--seed N] [--resume FILE] [--stop-after N]
//!  [--autocast]`

#[path = "../common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use common::Series;
use fovea::checkpoint;
use fovea::data::{DataLoader, InMemoryDataset};
use fovea::models::{Block, MobileNetV2, ResNet, ResNetConfig};
use fovea::nn::{summary, Module};
use fovea::optim::{CosineAnnealing, LrSchedule, Optimizer, Sgd, SgdOptions};
use fovea::{no_grad, Device, DeviceExt, Tensor};
use indicatif::{ProgressBar, ProgressStyle};

/// Train a ResNet-18 or MobileNetV2 from scratch on Fashion-MNIST.
#[derive(Parser)]
#[command(long_about = None)]
struct Args {
    /// resnet18 (small-image stem) or mobilenet_v2 (first stride 1).
    #[arg(long, default_value = "resnet18")]
    model: String,
    /// Channels of the first stage (ResNet: 16 by default, torchvision's is 64), or the
    /// width multiplier × 100 (MobileNetV2: 50 by default, torchvision's is 100).
    #[arg(long)]
    width: Option<usize>,
    /// Passes over the training set.
    #[arg(long, default_value_t = 6)]
    epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 128, value_parser = common::args::within(1, 65_536))]
    batch: usize,
    /// Peak learning rate (SGD with Nesterov momentum 0.9, cosine decay over the run).
    #[arg(long, default_value_t = 0.1)]
    lr: f32,
    /// Use only the first N training images.
    #[arg(long)]
    limit: Option<usize>,
    /// Folder of the IDX files (train-/t10k-images-idx3-ubyte.gz and labels).
    #[arg(long)]
    data: Option<PathBuf>,
    /// cpu, gpu or best.
    #[arg(long, default_value = "best")]
    device: String,
    /// Where the model goes (the training state and chart go beside it).
    #[arg(long, default_value = "out/train_classifier/model.safetensors")]
    out: PathBuf,
    /// Seed of the weights, the shuffling and the augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A `*.train.safetensors` file to continue from.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Stop after this epoch (the schedule still spans --epochs).
    #[arg(long)]
    stop_after: Option<usize>,
    /// Mixed precision: products and convolutions in f16 (`fovea::autocast`), the loss
    /// scaled by a `GradScaler`.
    #[arg(long)]
    autocast: bool,
}

fn build(a: &Args, dev: &Device) -> Result<Box<dyn Module>> {
    Ok(match a.model.as_str() {
        "resnet18" => Box::new(ResNet::new(
            ResNetConfig {
                in_channels: 1,
                width: a.width.unwrap_or(16),
                small_input: true,
                ..ResNetConfig::torchvision(Block::Basic, [2, 2, 2, 2], 10)
            },
            a.seed,
            dev,
        )?),
        "mobilenet_v2" => Box::new(MobileNetV2::small_input(
            1,
            10,
            a.width.unwrap_or(50) as f64 / 100.0,
            a.seed,
            dev,
        )?),
        other => bail!("--model {other}: use resnet18 or mobilenet_v2"),
    })
}

/// Test accuracy (eval mode) and per-class accuracy.
fn evaluate(model: &dyn Module, data: &InMemoryDataset, dev: &Device) -> Result<(f64, [f64; 10])> {
    model.eval();
    let (mut hit, mut seen) = ([0usize; 10], [0usize; 10]);
    for batch in DataLoader::new(data, 500, None, dev)? {
        let batch = batch?;
        let logits = no_grad(|| model.forward(&batch.images))?.to_vec()?;
        for (row, &label) in logits.chunks(10).zip(&batch.labels) {
            let guess = fovea::models::imagenet::top_k(row, 1)[0].0;
            seen[label] += 1;
            hit[label] += (guess == label) as usize;
        }
    }
    model.train();
    let total = hit.iter().sum::<usize>() as f64 / seen.iter().sum::<usize>().max(1) as f64;
    Ok((
        total,
        std::array::from_fn(|c| hit[c] as f64 / seen[c].max(1) as f64),
    ))
}

fn main() -> Result<()> {
    let a = Args::parse();
    common::output::ready_file("--out", &a.out, false)?;
    let dev = Device::by_name(&a.device)?;
    let data = a.data.clone().unwrap_or_else(common::mnist::fashion_dir);
    let train = common::mnist::load_fashion(&data, "train")?.take(a.limit.unwrap_or(usize::MAX));
    let test = common::mnist::load_fashion(&data, "t10k")?;
    println!(
        "{} training and {} test images from {} on {}",
        train.labels.len(),
        test.labels.len(),
        data.display(),
        dev.name()
    );
    let model = build(&a, &dev)?;
    println!("{}", summary(model.as_ref(), &[1, 1, 28, 28], &dev)?);
    let mut opt = Sgd::new(
        model.parameters(),
        SgdOptions {
            lr: a.lr,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
        },
    );
    let steps_per_epoch = train.labels.len().div_ceil(a.batch);
    let schedule = CosineAnnealing {
        base: a.lr,
        min: 0.0,
        t_max: a.epochs * steps_per_epoch,
    };
    let mut amp = common::amp::Amp::new(a.autocast)?;
    let state_path = a.out.with_extension("train.safetensors");
    let (mut first_epoch, mut curves) = (0, Vec::<[f64; 3]>::new());
    if let Some(path) = &a.resume {
        let progress = checkpoint::load_training(model.as_ref(), &mut opt, path)?;
        first_epoch = *progress
            .get("epochs_done")
            .with_context(|| format!("{} has no epochs_done counter", path.display()))?
            as usize;
        amp.restore(&progress)?;
        // The curves so far travel in the state file as f64 bit patterns.
        for e in 0..first_epoch {
            let v = |k: &str| progress.get(&format!("{k}{e}")).map(|&b| f64::from_bits(b));
            if let (Some(l), Some(tr), Some(te)) = (v("loss"), v("train_acc"), v("test_acc")) {
                curves.push([l, tr, te]);
            }
        }
        println!("resumed from {} after epoch {first_epoch}", path.display());
    }
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let style =
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")?
            .progress_chars("=> ");
    let run_start = Instant::now();
    let last = a.stop_after.unwrap_or(a.epochs).min(a.epochs);
    let mut per_class = [0.0; 10];
    for epoch in first_epoch..last {
        let start = Instant::now();
        // Shifts of up to 2 pixels and mirror images: garments look alike either way round.
        let loader = DataLoader::new(&train, a.batch, Some(a.seed ^ epoch as u64), &dev)?
            .random_shift(2, a.seed ^ (1000 + epoch as u64))
            .random_flip(a.seed ^ (2000 + epoch as u64));
        let bar = ProgressBar::new(loader.batches() as u64)
            .with_style(style.clone())
            .with_prefix(format!("{:2}/{}", epoch + 1, a.epochs));
        let (mut losses, mut hits, mut seen) = (Vec::<Tensor>::new(), 0usize, 0usize);
        for (i, batch) in loader.enumerate() {
            let batch = batch?;
            opt.set_lr(schedule.lr_at(epoch * steps_per_epoch + i));
            opt.zero_grad();
            let (logits, loss) = amp.forward(|| -> fovea::Result<_> {
                let logits = model.forward(&batch.images)?;
                let loss = logits.cross_entropy(&batch.labels)?;
                Ok((logits, loss))
            })?;
            amp.backward_and_step(&loss, &mut opt)?;
            losses.push(loss.detach());
            // Training accuracy from the same logits, counted now and then (a read-back
            // waits for the device).
            if i % 10 == 0 {
                let rows = logits.detach().to_vec()?;
                for (row, &l) in rows.chunks(10).zip(&batch.labels) {
                    hits += (fovea::models::imagenet::top_k(row, 1)[0].0 == l) as usize;
                }
                seen += batch.labels.len();
                bar.set_message(format!("loss {:.4}", loss.item()?));
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        let train_secs = start.elapsed().as_secs_f64();
        let (acc, classes) = evaluate(model.as_ref(), &test, &dev)?;
        per_class = classes;
        let values: Vec<f64> = losses
            .iter()
            .map(|l| l.item().map(f64::from))
            .collect::<fovea::Result<_>>()?;
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        let train_acc = hits as f64 / seen.max(1) as f64;
        curves.push([mean, train_acc, acc]);
        let secs = start.elapsed().as_secs_f64();
        println!(
            "epoch {:2}/{}  loss {mean:.4}  train accuracy {:.2}%  test accuracy {:.2}%  {:.0} img/s training  ({secs:.0} s with the test)",
            epoch + 1,
            a.epochs,
            100.0 * train_acc,
            100.0 * acc,
            train.labels.len() as f64 / train_secs,
        );
        checkpoint::save_module(model.as_ref(), &a.out)?;
        let keys: Vec<(String, u64)> = curves
            .iter()
            .enumerate()
            .flat_map(|(e, c)| {
                [("loss", c[0]), ("train_acc", c[1]), ("test_acc", c[2])]
                    .map(|(k, v)| (format!("{k}{e}"), v.to_bits()))
            })
            .chain([("epochs_done".to_string(), epoch as u64 + 1)])
            .chain(amp.progress())
            .collect();
        let progress: Vec<(&str, u64)> = keys.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        checkpoint::save_training(model.as_ref(), &opt, &progress, &state_path)?;
        chart(&curves, &a)?;
    }
    if let Some(&[_, _, acc]) = curves.last() {
        println!("\nper class on the test set:");
        for (name, p) in common::mnist::FASHION_CLASSES.iter().zip(per_class) {
            println!("  {name:12} {:6.2}%", 100.0 * p);
        }
        println!(
            "final test accuracy {:.2}% after {} epochs ({:.0} s this run); model in {}, training state in {}, curves in {}",
            100.0 * acc,
            curves.len(),
            run_start.elapsed().as_secs_f64(),
            a.out.display(),
            state_path.display(),
            a.out.with_extension("png").display()
        );
    }
    Ok(())
}

fn chart(curves: &[[f64; 3]], a: &Args) -> Result<()> {
    let pts = |k: usize| -> Vec<(f64, f64)> {
        curves
            .iter()
            .enumerate()
            .map(|(e, c)| ((e + 1) as f64, if k == 0 { c[0] } else { 100.0 * c[k] }))
            .collect()
    };
    let (loss, train, test) = (pts(0), pts(1), pts(2));
    common::line_chart(
        &a.out.with_extension("png"),
        &format!("{} on Fashion-MNIST", a.model),
        "epoch",
        (
            "mean training loss",
            &[Series {
                label: "training loss",
                points: &loss,
            }],
        ),
        (
            "accuracy (%)",
            &[
                Series {
                    label: "training accuracy",
                    points: &train,
                },
                Series {
                    label: "test accuracy",
                    points: &test,
                },
            ],
        ),
    )
}
