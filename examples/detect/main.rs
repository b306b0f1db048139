//! Detection on real handwriting: MNIST digits placed on 96×96 canvases (1–5 digits,
//! 20–40 px, boxes from their ink). With no arguments it trains a small YOLO-style
//! detector (tiny darknet backbone, a 12×12 grid, anchors chosen by k-means on the
//! training boxes) on canvases of the 8,000 training digits, drawn afresh every epoch,
//! then measures mAP@0.5 (VOC, all-point interpolation) on canvases of the 2,000 held-out
//! digits and writes them with their predicted boxes to `out/detect/`.
//!
//! `--localize` trains the course's classification-with-localisation network on canvases
//! of at most one digit (P_c, box, class) and reports the mean IoU of the predicted boxes;
//! `--landmarks` regresses four landmarks per digit (its topmost, bottommost, leftmost and
//! rightmost ink points) and reports their mean error in pixels.
//!
//! `cargo run --release --example detect -- [--localize | --landmarks] [--epochs N]
//!  [--train N] [--test N] [--batch N] [--lr F] [--width N] [--device cpu|gpu|best] …`

#[path = "../common/mod.rs"]
mod common;
mod detector;
mod localize;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Parser;
use fovea::data::InMemoryDataset;
use fovea::{Device, DeviceExt};
use indicatif::{ProgressBar, ProgressStyle};

/// Train and measure a digit detector (or localiser) on canvases of real MNIST digits.
#[derive(Parser, Clone)]
#[command(long_about = None)]
pub struct Args {
    /// Train the one-object localisation network (P_c, box, class) instead; reports mean IoU.
    #[arg(long, conflicts_with = "landmarks")]
    localize: bool,
    /// Train the landmark network (4 extreme ink points per digit); reports the mean error.
    #[arg(long)]
    landmarks: bool,
    /// Passes over freshly drawn training canvases [default: 8, or 4 with --localize or
    /// --landmarks].
    #[arg(long)]
    epochs: Option<usize>,
    /// Training canvases per epoch (drawn anew each epoch from the training digits).
    #[arg(long, default_value_t = 2500, value_parser = common::args::within(1, 200_000))]
    train: usize,
    /// Held-out canvases (from the test digits) to measure on.
    #[arg(long, default_value_t = 500, value_parser = common::args::within(1, 100_000))]
    test: usize,
    /// Canvases per step [default: 4, or 8 with --localize or --landmarks]. Small
    /// batches learn more per canvas, which is what counts on a CPU; on a GPU larger
    /// batches (and more epochs) make better use of it.
    #[arg(long, value_parser = common::args::within(1, 65_536))]
    batch: Option<usize>,
    /// Adam's learning rate (cosine decay to 2% of it).
    #[arg(long, default_value_t = 3e-3)]
    lr: f32,
    /// Channels of the backbone's first layer (doubling to 8× at the end).
    #[arg(long, default_value_t = 8, value_parser = common::args::within(1, 256))]
    width: usize,
    /// Anchor boxes per cell, chosen by k-means on the training boxes.
    #[arg(long, default_value_t = 3)]
    anchors: usize,
    /// Canvas side in pixels (a multiple of 16).
    #[arg(long, default_value_t = 96, value_parser = common::args::within(32, 1024))]
    size: usize,
    /// cpu, gpu or best.
    #[arg(long, default_value = "best")]
    device: String,
    /// Seed of the weights and of the canvases.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Test canvases drawn with their predictions.
    #[arg(long, default_value_t = 12)]
    pictures: usize,
    /// Folder with the MNIST IDX files (train-* and t10k-*).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where pictures and curves go.
    #[arg(long, default_value = "out/detect")]
    out: PathBuf,
}

impl Args {
    /// The defaults that the README's measurements used, per task.
    pub fn epochs(&self) -> usize {
        self.epochs.unwrap_or(if self.localize || self.landmarks {
            4
        } else {
            8
        })
    }
    pub fn batch(&self) -> usize {
        self.batch.unwrap_or(if self.localize || self.landmarks {
            8
        } else {
            4
        })
    }
}

/// The training and held-out digits, intensities in [0, 1].
pub fn digits(a: &Args) -> Result<(InMemoryDataset, InMemoryDataset)> {
    let dir = a
        .data
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/data/mnist-10k"));
    let load = |split: &str| -> Result<InMemoryDataset> {
        let images = dir.join(format!("{split}-images-idx3-ubyte.gz"));
        let labels = dir.join(format!("{split}-labels-idx1-ubyte.gz"));
        Ok(InMemoryDataset::from_idx(&images, &labels, 10, 0.0, 1.0)?)
    };
    Ok((load("train")?, load("t10k")?))
}

/// A progress bar over an epoch's steps.
pub fn epoch_bar(epoch: usize, epochs: usize, steps: usize) -> Result<ProgressBar> {
    let style =
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")?
            .progress_chars("=> ");
    Ok(ProgressBar::new(steps as u64)
        .with_style(style)
        .with_prefix(format!("{:2}/{epochs}", epoch + 1)))
}

fn main() -> Result<()> {
    let a = Args::parse();
    common::output::ready_dir("--out", &a.out)?;
    anyhow::ensure!(
        a.size >= 32 && a.size.is_multiple_of(16),
        "--size must be a multiple of 16 from 32 up, got {}",
        a.size
    );
    anyhow::ensure!(
        !(a.localize || a.landmarks) || a.size.is_multiple_of(32),
        "--localize and --landmarks need a --size that is a multiple of 32, got {}",
        a.size
    );
    anyhow::ensure!(
        a.batch() > 0 && a.train > 0 && a.test > 0,
        "--batch, --train and --test must be positive"
    );
    let dev = Device::by_name(&a.device)?;
    let (train, test) = digits(&a)?;
    println!(
        "{} training and {} held-out digits; {}×{} canvases on {}",
        train.labels.len(),
        test.labels.len(),
        a.size,
        a.size,
        dev.name()
    );
    if a.localize || a.landmarks {
        localize::run(&a, &train, &test, &dev)
    } else {
        detector::run(&a, &train, &test, &dev)
    }
}
