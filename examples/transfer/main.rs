//! Transfer learning with few labels: the bundled ImageNet MobileNetV2 as the backbone,
//! Fashion-MNIST as the new task (the first `--per-class` training images of each class;
//! grayscale repeated into three channels, resized to `--size` and normalised as ImageNet).
//! For each label budget it compares, in one table:
//!
//! - **scratch**: the same MobileNetV2, randomly initialised, all of it trained;
//! - **cached head**: the backbone frozen and run once over the data (a feature cache on
//!   disk, `out/transfer/*.safetensors`), a new linear head trained on the cache;
//! - **fine-tune**: the cached head's weights, then the last `--blocks` blocks of the
//!   backbone trained too, with a learning rate `--backbone-lr` below the head's.
//!
//! Test accuracy is over the first `--test` of the 10,000 test images (all of them with
//! `--test 10000`); time per epoch is measured, and one epoch of the head with the frozen
//! backbone run every time shows what the cache saves.
//!
//! `cargo run --release --example transfer -- [--per-class N...] [--size N] [--test N]
//!  [--blocks K] [--device cpu|gpu|best]`

#[path = "../common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use fovea::checkpoint;
use fovea::data::{cached_features, CacheKey, DataLoader, Dataset, InMemoryDataset};
use fovea::models::imagenet::{top_k, IMAGENET_MEAN, IMAGENET_STD};
use fovea::models::MobileNetV2;
use fovea::nn::{freeze_depth, AdaptiveAvgPool2d, Linear, Module};
use fovea::optim::{Adam, AdamOptions, Optimizer, ParamGroup};
use fovea::{no_grad, Device, DeviceExt, Tensor};
use indicatif::{ProgressBar, ProgressStyle};

/// Transfer learning on Fashion-MNIST with a pretrained MobileNetV2.
#[derive(Parser)]
#[command(long_about = None)]
struct Args {
    /// Labelled training images per class (one table row group each).
    #[arg(long, num_args = 1.., default_values_t = [50usize, 500])]
    per_class: Vec<usize>,
    /// Side of the square input the 28×28 garments are resized to (at least 32).
    #[arg(long, default_value_t = 64, value_parser = common::args::within(1, 1024))]
    size: usize,
    /// Test images evaluated (the first N of the 10,000).
    #[arg(long, default_value_t = 2000)]
    test: usize,
    /// Backbone blocks (of `features.0` … `features.18`) fine-tuned.
    #[arg(long, default_value_t = 3)]
    blocks: usize,
    /// Epochs of the head on the cache.
    #[arg(long, default_value_t = 30)]
    head_epochs: usize,
    /// Epochs of fine-tuning and of training from scratch.
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Learning rate of the head (Adam) and of training from scratch.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Learning rate of the fine-tuned backbone blocks.
    #[arg(long, default_value_t = 1e-4)]
    backbone_lr: f32,
    /// Images per step.
    #[arg(long, default_value_t = 32, value_parser = common::args::within(1, 65_536))]
    batch: usize,
    /// cpu, gpu or best.
    #[arg(long, default_value = "best")]
    device: String,
    /// Folder of the Fashion-MNIST IDX files.
    #[arg(long)]
    data: Option<PathBuf>,
    /// MobileNetV2 weights (torchvision names).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Where the feature caches go.
    #[arg(long, default_value = "out/transfer")]
    out: PathBuf,
}

/// Garments as an ImageNet network wants them: `[N, 1, 28, 28]` in [0, 1] resized
/// bilinearly to `size`, repeated into three channels and normalised per channel.
struct Prep {
    size: usize,
    mean: Tensor,
    std: Tensor,
}

impl Prep {
    fn new(size: usize, dev: &Device) -> Result<Prep> {
        Ok(Prep {
            size,
            mean: Tensor::from_slice(&IMAGENET_MEAN, &[1, 3, 1, 1], dev)?,
            std: Tensor::from_slice(&IMAGENET_STD, &[1, 3, 1, 1], dev)?,
        })
    }
}

impl Module for Prep {
    fn forward(&self, x: &Tensor) -> fovea::Result<Tensor> {
        let x = x.resize_bilinear([self.size, self.size])?;
        let n = x.shape()[0];
        let x = x.expand(&[n, 3, self.size, self.size])?;
        x.sub(&self.mean)?.div(&self.std)
    }
}

/// Prep, MobileNetV2's `features`, global average pooling and flattening: `[N, 1280]`.
struct Backbone {
    prep: Prep,
    net: MobileNetV2,
}

impl Module for Backbone {
    fn forward(&self, x: &Tensor) -> fovea::Result<Tensor> {
        let h = self.net.features.forward(&self.prep.forward(x)?)?;
        AdaptiveAvgPool2d([1, 1]).forward(&h)?.flatten(1)
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![("features", &self.net.features)]
    }
}

/// A backbone and a head as one network.
struct Classifier<'a> {
    backbone: &'a Backbone,
    head: &'a Linear,
}

impl Module for Classifier<'_> {
    fn forward(&self, x: &Tensor) -> fovea::Result<Tensor> {
        self.head.forward(&self.backbone.forward(x)?)
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![("backbone", self.backbone), ("head", self.head)]
    }
}

fn load(dir: &Path, split: &str) -> Result<InMemoryDataset> {
    InMemoryDataset::from_idx(
        &dir.join(format!("{split}-images-idx3-ubyte.gz")),
        &dir.join(format!("{split}-labels-idx1-ubyte.gz")),
        10,
        0.0,
        1.0,
    )
    .with_context(|| format!("loading Fashion-MNIST from {}", dir.display()))
}

/// The first `n` items of each class, in data-set order.
fn per_class(data: &InMemoryDataset, n: usize) -> InMemoryDataset {
    let size: usize = data.shape.iter().product();
    let mut count = [0usize; 10];
    let (mut values, mut labels) = (Vec::new(), Vec::new());
    for (i, &l) in data.labels.iter().enumerate() {
        if count[l] < n {
            count[l] += 1;
            values.extend_from_slice(&data.values[i * size..(i + 1) * size]);
            labels.push(l);
        }
    }
    InMemoryDataset {
        values,
        labels,
        ..data.clone()
    }
}

fn accuracy(model: &dyn Module, data: &dyn Dataset, dev: &Device) -> Result<f64> {
    model.eval();
    let mut hit = 0;
    for b in DataLoader::new(data, 100, None, dev)? {
        let b = b?;
        let logits = no_grad(|| model.forward(&b.images))?.to_vec()?;
        hit += logits
            .chunks(10)
            .zip(&b.labels)
            .filter(|(row, &l)| top_k(row, 1)[0].0 == l)
            .count();
    }
    Ok(hit as f64 / data.len() as f64)
}

/// One epoch of `model` over `data` (shuffled by `seed`); returns its seconds.
fn epoch(
    model: &dyn Module,
    opt: &mut dyn Optimizer,
    data: &dyn Dataset,
    batch: usize,
    seed: u64,
    dev: &Device,
    bar: &ProgressBar,
) -> Result<f64> {
    let start = Instant::now();
    for b in DataLoader::new(data, batch, Some(seed), dev)? {
        let b = b?;
        opt.zero_grad();
        let loss = model.forward(&b.images)?.cross_entropy(&b.labels)?;
        loss.backward()?;
        opt.step()?;
        bar.inc(1);
    }
    dev.sync()?;
    Ok(start.elapsed().as_secs_f64())
}

struct Row {
    labels: usize,
    method: String,
    epochs: usize,
    accuracy: f64,
    secs_per_epoch: f64,
}

fn bar(len: usize, what: &str) -> Result<ProgressBar> {
    let b = ProgressBar::new(len as u64);
    b.set_style(
        ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} ({elapsed})")?
            .progress_chars("=> "),
    );
    b.set_prefix(what.to_string());
    Ok(b)
}

fn main() -> Result<()> {
    let a = Args::parse();
    common::output::ready_dir("--out", &a.out)?;
    if a.size < 32 {
        bail!(
            "--size {}: MobileNetV2 needs at least 32×32 inputs (it downsamples 32×)",
            a.size
        );
    }
    if a.blocks > 19 {
        bail!(
            "--blocks {}: MobileNetV2 has 19 blocks (features.0 … features.18)",
            a.blocks
        );
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dev = Device::by_name(&a.device)?;
    let dir = a
        .data
        .clone()
        .unwrap_or_else(|| root.join("assets/data/fashion-mnist"));
    let weights = a
        .weights
        .clone()
        .unwrap_or_else(|| root.join("assets/weights/mobilenet_v2_imagenet.safetensors"));
    let full = load(&dir, "train")?;
    let test = load(&dir, "t10k")?.take(a.test);
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    println!(
        "MobileNetV2 (ImageNet) on Fashion-MNIST at {0}×{0}, {1} test images, on {2}",
        a.size,
        test.labels.len(),
        dev.name()
    );
    let pretrained = || -> Result<Backbone> {
        let net = MobileNetV2::new(1000, 1.0, 0, &dev)?;
        checkpoint::load_module_with(&net, &weights, true)
            .with_context(|| format!("loading {}", weights.display()))?;
        Ok(Backbone {
            prep: Prep::new(a.size, &dev)?,
            net,
        })
    };
    let mut rows = Vec::new();
    let mut speedups = Vec::new();
    for &n in &a.per_class {
        let train = per_class(&full, n);
        let count = train.labels.len();
        let steps = count.div_ceil(a.batch);

        // Frozen backbone + cached features.
        let backbone = pretrained()?;
        backbone.freeze();
        backbone.eval();
        let t = Instant::now();
        let key = CacheKey::new("mobilenet_v2 imagenet", &backbone, &train, &dev)?;
        let path = a
            .out
            .join(format!("features_{n}_per_class_{}px.safetensors", a.size));
        let (cache, read) = cached_features(&path, &key, &backbone, &train, 10, 100, &dev)?;
        let test_key = CacheKey::new("mobilenet_v2 imagenet", &backbone, &test, &dev)?;
        let test_path = a.out.join(format!(
            "features_test{}_{}px.safetensors",
            test.labels.len(),
            a.size
        ));
        let (test_cache, _) =
            cached_features(&test_path, &test_key, &backbone, &test, 10, 100, &dev)?;
        println!(
            "{n} per class: features {} {} ({:.1} s)",
            if read { "read from" } else { "cached to" },
            path.display(),
            t.elapsed().as_secs_f64()
        );
        let head = Linear::try_new(1280, 10, true, 7, &dev)?;
        let opts = AdamOptions {
            lr: a.lr,
            ..Default::default()
        };
        let mut opt = Adam::new(head.parameters(), opts);
        let pb = bar(a.head_epochs * steps, &format!("{n}/class head on cache"))?;
        let mut cached_secs = 0.0;
        for e in 0..a.head_epochs {
            cached_secs += epoch(&head, &mut opt, &cache, a.batch, e as u64, &dev, &pb)?;
        }
        pb.finish_and_clear();
        let cached_per_epoch = cached_secs / a.head_epochs.max(1) as f64;
        rows.push(Row {
            labels: count,
            method: "frozen backbone + new head (cached features)".into(),
            epochs: a.head_epochs,
            accuracy: accuracy(&head, &test_cache, &dev)?,
            secs_per_epoch: cached_per_epoch,
        });

        // The same head trained one epoch with the backbone run on every batch: the
        // epoch the cache replaces.
        let head2 = Linear::try_new(1280, 10, true, 7, &dev)?;
        let mut opt2 = Adam::new(head2.parameters(), opts);
        let uncached = Classifier {
            backbone: &backbone,
            head: &head2,
        };
        let pb = bar(steps, &format!("{n}/class head, no cache"))?;
        let uncached_secs = epoch(&uncached, &mut opt2, &train, a.batch, 0, &dev, &pb)?;
        pb.finish_and_clear();
        speedups.push((count, uncached_secs, cached_per_epoch));

        // Fine-tuning: start from the cached head, train the last blocks too.
        freeze_depth(&backbone, "features", 19 - a.blocks)?;
        let tuned = Classifier {
            backbone: &backbone,
            head: &head,
        };
        let blocks: Vec<Tensor> = backbone
            .parameters()
            .into_iter()
            .filter(|p| p.is_requires_grad())
            .collect();
        let mut opt = Adam::with_groups(
            vec![
                ParamGroup::with_lr(blocks, a.backbone_lr),
                ParamGroup::new(head.parameters()),
            ],
            opts,
        )?;
        let pb = bar(a.epochs * steps, &format!("{n}/class fine-tune"))?;
        let mut secs = 0.0;
        for e in 0..a.epochs {
            // Batch norm keeps its ImageNet statistics: a few hundred garments would
            // estimate them worse.
            tuned.eval();
            secs += epoch(&tuned, &mut opt, &train, a.batch, 100 + e as u64, &dev, &pb)?;
        }
        pb.finish_and_clear();
        rows.push(Row {
            labels: count,
            method: format!("fine-tune last {} blocks (lr {})", a.blocks, a.backbone_lr),
            epochs: a.epochs,
            accuracy: accuracy(&tuned, &test, &dev)?,
            secs_per_epoch: secs / a.epochs.max(1) as f64,
        });

        // From scratch: the same network, random weights, everything trained.
        let scratch = Backbone {
            prep: Prep::new(a.size, &dev)?,
            net: MobileNetV2::new(1000, 1.0, 3, &dev)?,
        };
        let head3 = Linear::try_new(1280, 10, true, 7, &dev)?;
        let model = Classifier {
            backbone: &scratch,
            head: &head3,
        };
        let mut opt = Adam::new(model.parameters(), opts);
        let pb = bar(a.epochs * steps, &format!("{n}/class scratch"))?;
        let mut secs = 0.0;
        for e in 0..a.epochs {
            model.train();
            secs += epoch(&model, &mut opt, &train, a.batch, 200 + e as u64, &dev, &pb)?;
        }
        pb.finish_and_clear();
        rows.push(Row {
            labels: count,
            method: "from scratch (random init, all trained)".into(),
            epochs: a.epochs,
            accuracy: accuracy(&model, &test, &dev)?,
            secs_per_epoch: secs / a.epochs.max(1) as f64,
        });
    }

    println!();
    println!(
        "| labels | method | epochs | test accuracy ({} images) | s / epoch |",
        test.labels.len()
    );
    println!("| ---: | --- | ---: | ---: | ---: |");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.1}% | {:.2} |",
            r.labels,
            r.method,
            r.epochs,
            100.0 * r.accuracy,
            r.secs_per_epoch
        );
    }
    println!();
    for (count, uncached, cached) in speedups {
        println!(
            "{count} labels: a head epoch takes {cached:.3} s on the cache and {uncached:.2} s running the frozen backbone: {:.0}× faster",
            uncached / cached.max(1e-9)
        );
    }
    Ok(())
}
