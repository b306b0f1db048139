//! Metric learning from scratch: a Siamese CNN encoder trained with the triplet loss on
//! squared distances (online mining in P×K batches) on the bundled MNIST digits 0–6 only
//! (or, with `--data fashion`, Fashion-MNIST's classes 0–6), then tested one-shot on the
//! classes 7–9 it never saw:
//! - verification: are two images of one class? On balanced pairs, by the weighted-L1 and
//!   the χ² heads (logistic regressions trained on pairs of the seen classes) and by a
//!   distance threshold picked on the seen classes;
//! - recognition: with one reference image per unseen class, name every other image by its
//!   nearest reference (chance 1/3).
//!
//! The same figures for an untrained encoder (with its own heads and threshold) stand
//! beside them. Writes `out/siamese/pca.png` (a 2-D PCA projection of the embeddings of the
//! held-out test images, coloured by class) and `out/siamese/loss.png`.
//!
//! `cargo run --release --example siamese -- [--data mnist|fashion] [--epochs N] [--steps N]
//!  [--per-class K] [--mining batch-all|batch-hard|semi-hard] [--warmup N] [--shift PX] [--rotate DEG]
//!  [--scale F] [--shear DEG] [--margin F]
//!  [--dim N] [--width N] [--grid N] [--lr F]
//!  [--pairs N] [--episodes N] [--fit-images N] [--head-steps N] [--device cpu|gpu|best]
//!  [--seed N] [--out DIR]`

#[path = "../common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use fovea::data::InMemoryDataset;
use fovea::models::metric::{
    balanced_pairs, best_threshold, by_class, mined_triplet_loss, one_shot_recognition, pk_batch,
    threshold_accuracy, Mining,
};
use fovea::models::{PairFeature, SiameseEncoder, VerificationHead};
use fovea::nn::{summary, Module};
use fovea::optim::{Adam, AdamOptions, CosineAnnealing, LrSchedule, Optimizer};
use fovea::{no_grad, Device, DeviceExt, Tensor};
use indicatif::{ProgressBar, ProgressStyle};

/// The digits the encoder trains on; 7, 8 and 9 stay unseen.
const SEEN: usize = 7;

/// Train a Siamese encoder with the triplet loss on digits 0–6 and test it one-shot on 7–9.
#[derive(Parser)]
#[command(about, long_about = None)]
struct Args {
    /// The bundled data set: MNIST digits or Fashion-MNIST garments (classes 0–6 seen).
    #[arg(long, value_enum, default_value_t = Data::Mnist)]
    data: Data,
    /// Training epochs.
    #[arg(long, default_value_t = 6)]
    epochs: usize,
    /// P×K batches per epoch.
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Images per class in a batch (K; P is the 7 seen classes).
    #[arg(long, default_value_t = 8, value_parser = common::args::within(1, 1000))]
    per_class: usize,
    /// Triplet mining: batch-all, batch-hard or semi-hard.
    #[arg(long, default_value = "batch-all")]
    mining: String,
    /// Epochs of batch-all mining before `--mining` takes over.
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// Largest random translation of a training image, in pixels.
    #[arg(long, default_value_t = 3.0)]
    shift: f32,
    /// Largest random rotation of a training image, in degrees.
    #[arg(long, default_value_t = 15.0)]
    rotate: f32,
    /// Largest random change of a training image's size (0.15: 85% to 115%).
    #[arg(long, default_value_t = 0.15)]
    scale: f32,
    /// Largest random shear of a training image, in degrees.
    #[arg(long, default_value_t = 10.0)]
    shear: f32,
    /// Margin α of max(‖a − p‖² − ‖a − n‖² + α, 0) on unit-length embeddings.
    #[arg(long, default_value_t = 0.2)]
    margin: f32,
    /// Embedding size.
    #[arg(long, default_value_t = 128, value_parser = common::args::within(1, 65_536))]
    dim: usize,
    /// Channels of the encoder's first stage (then twice that).
    #[arg(long, default_value_t = 32, value_parser = common::args::within(1, 512))]
    width: usize,
    /// Cells per side of the average pooling before the projection (1: global).
    #[arg(long, default_value_t = 3, value_parser = common::args::within(1, 64))]
    grid: usize,
    /// Peak learning rate (Adam, cosine decay).
    #[arg(long, default_value_t = 2e-3)]
    lr: f32,
    /// Balanced pairs of unseen digits to verify.
    #[arg(long, default_value_t = 2000, value_parser = common::args::within(1, 100_000))]
    pairs: usize,
    /// One-shot recognition episodes (one random reference per unseen class each).
    #[arg(long, default_value_t = 200)]
    episodes: usize,
    /// Images of the seen digits whose pairs fit the heads and the threshold.
    #[arg(long, default_value_t = 2000)]
    fit_images: usize,
    /// Training steps of each verification head (128 pairs each).
    #[arg(long, default_value_t = 300)]
    head_steps: usize,
    /// cpu, gpu or best.
    #[arg(long, default_value = "best")]
    device: String,
    /// Seed of the weights, the batches and the pairs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the pictures go.
    #[arg(long, default_value = "out/siamese")]
    out: PathBuf,
}

/// The bundled data set the encoder learns from.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Data {
    /// MNIST digits: trains on 0–6, tests on 7–9.
    Mnist,
    /// Fashion-MNIST: trains on T-shirt … Shirt, tests on sneaker, bag and ankle boot.
    Fashion,
}

impl Data {
    fn load(self, split: &str) -> Result<InMemoryDataset> {
        match self {
            Data::Mnist => common::mnist::load(&common::mnist::bundled_dir(), split),
            Data::Fashion => common::mnist::load_fashion(&common::mnist::fashion_dir(), split),
        }
    }

    fn class_name(self, c: usize) -> String {
        match self {
            Data::Mnist => format!("{c}"),
            Data::Fashion => common::mnist::FASHION_CLASSES[c].to_string(),
        }
    }

    /// What the unseen classes are, for the printed lines and the charts.
    fn describe(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Data::Mnist => ("digits", "digits 0-6", "7, 8 and 9"),
            Data::Fashion => (
                "articles",
                "articles 0-6 (T-shirt to shirt)",
                "sneaker, bag and ankle boot",
            ),
        }
    }
}

fn images(data: &InMemoryDataset, idx: &[usize], dev: &Device) -> Result<Tensor> {
    let values: Vec<f32> = idx
        .iter()
        .flat_map(|&i| data.values[i * 784..(i + 1) * 784].iter().copied())
        .collect();
    Ok(Tensor::from_vec(values, &[idx.len(), 1, 28, 28], dev)?)
}

/// A random affine distortion of every training image (torchvision's `RandomAffine`):
/// invariances learned on the seen classes carry over to unseen ones, where memorised
/// shapes do not.
#[derive(Clone, Copy)]
struct Augment {
    /// Largest translation in pixels, each axis.
    shift: f32,
    /// Largest rotation in degrees, either way.
    rotate: f32,
    /// Largest relative change of size, either way.
    scale: f32,
    /// Largest horizontal shear in degrees, either way.
    shear: f32,
}

impl Augment {
    /// The row-major 3×3 matrix of one draw from `u` (five uniforms in [0, 1)): about the
    /// image centre, scale and shear, then rotate, then translate.
    fn matrix(&self, u: &[f32], side: f32) -> [f32; 9] {
        let sym = |v: f32, max: f32| (2.0 * v - 1.0) * max;
        let theta = sym(u[0], self.rotate).to_radians();
        let k = 1.0 + sym(u[1], self.scale);
        let shear = sym(u[2], self.shear).to_radians().tan();
        let (tx, ty) = (sym(u[3], self.shift), sym(u[4], self.shift));
        let (c, s) = (theta.cos() * k, theta.sin() * k);
        // [c −s; s c] · [1 shear; 0 1]
        let (a, b, d, e) = (c, c * shear - s, s, s * shear + c);
        let m = (side - 1.0) / 2.0;
        [
            a,
            b,
            m + tx - a * m - b * m,
            d,
            e,
            m + ty - d * m - e * m,
            0.0,
            0.0,
            1.0,
        ]
    }
}

/// Images `idx`, each distorted by its own draw of `aug` from `seed` (bilinear, the
/// uncovered border filled with the background).
fn augmented_images(
    data: &InMemoryDataset,
    idx: &[usize],
    aug: Augment,
    seed: u64,
    dev: &Device,
) -> Result<Tensor> {
    use imageproc::geometric_transformations::{warp_into, Border, Interpolation, Projection};
    type Plane = image::ImageBuffer<image::Luma<f32>, Vec<f32>>;
    let u = fovea::rng::uniform(5 * idx.len(), seed);
    let mut values = Vec::with_capacity(idx.len() * 784);
    let mut out = Plane::new(28, 28);
    for (k, &i) in idx.iter().enumerate() {
        let src = Plane::from_raw(28, 28, data.values[i * 784..(i + 1) * 784].to_vec())
            .expect("28×28 values");
        let projection = Projection::from_matrix(aug.matrix(&u[5 * k..5 * k + 5], 28.0))
            .ok_or_else(|| anyhow::anyhow!("the distortion of image {i} cannot be inverted"))?;
        warp_into(
            &src,
            projection,
            Interpolation::Bilinear,
            Border::Constant(image::Luma([data.background])),
            &mut out,
        );
        values.extend_from_slice(out.as_raw());
    }
    Ok(Tensor::from_vec(values, &[idx.len(), 1, 28, 28], dev)?)
}

/// The embeddings of items `idx`, row after row, in evaluation mode.
fn embed(
    net: &SiameseEncoder,
    data: &InMemoryDataset,
    idx: &[usize],
    dev: &Device,
) -> Result<Vec<f32>> {
    net.eval();
    let mut out = Vec::with_capacity(idx.len() * net.dim());
    for chunk in idx.chunks(500) {
        let x = images(data, chunk, dev)?;
        out.extend(no_grad(|| net.forward(&x))?.to_vec()?);
    }
    net.train();
    Ok(out)
}

/// The rows `idx` of host embeddings as a `[n, dim]` tensor.
fn rows(emb: &[f32], dim: usize, idx: impl Iterator<Item = usize>, dev: &Device) -> Result<Tensor> {
    let v: Vec<f32> = idx
        .flat_map(|i| emb[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    let n = v.len() / dim;
    Ok(Tensor::from_vec(v, &[n, dim], dev)?)
}

/// Embeddings with their labels.
struct Embedded {
    values: Vec<f32>,
    dim: usize,
    labels: Vec<usize>,
}

struct Scores {
    l1: f64,
    chi2: f64,
    threshold: f64,
    /// The best threshold's accuracy when picked on the unseen test pairs themselves: not a
    /// result, a measure of how well the seen digits' threshold transfers.
    oracle: f64,
    recognition: f64,
}

/// Trains a verification head on pairs of `seen` embeddings and returns its accuracy on
/// the `test` pairs of `unseen` ones.
fn head_accuracy(
    feature: PairFeature,
    seen: &Embedded,
    unseen: &Embedded,
    test: &[(usize, usize, bool)],
    a: &Args,
    dev: &Device,
) -> Result<f64> {
    let dim = seen.dim;
    let head = VerificationHead::new(dim, feature, a.seed + 17, dev);
    let mut opt = Adam::new(
        head.parameters(),
        AdamOptions {
            lr: 0.02,
            ..Default::default()
        },
    );
    for step in 0..a.head_steps {
        let pairs = balanced_pairs(&seen.labels, 128, a.seed ^ (step as u64) << 8)?;
        let e1 = rows(&seen.values, dim, pairs.iter().map(|p| p.0), dev)?;
        let e2 = rows(&seen.values, dim, pairs.iter().map(|p| p.1), dev)?;
        let same: Vec<bool> = pairs.iter().map(|p| p.2).collect();
        opt.zero_grad();
        head.loss(&e1, &e2, &same)?.backward()?;
        opt.step()?;
    }
    let e1 = rows(&unseen.values, dim, test.iter().map(|p| p.0), dev)?;
    let e2 = rows(&unseen.values, dim, test.iter().map(|p| p.1), dev)?;
    let logits = no_grad(|| head.logits(&e1, &e2))?.to_vec()?;
    let hits = logits
        .iter()
        .zip(test)
        .filter(|(&l, p)| (l > 0.0) == p.2)
        .count();
    Ok(hits as f64 / test.len().max(1) as f64)
}

fn squared(emb: &[f32], dim: usize, i: usize, j: usize) -> f32 {
    (0..dim)
        .map(|k| (emb[i * dim + k] - emb[j * dim + k]).powi(2))
        .sum()
}

/// Verification and recognition of the unseen digits by `net`.
fn evaluate(
    net: &SiameseEncoder,
    seen_items: (&InMemoryDataset, &[usize]),
    unseen_items: (&InMemoryDataset, &[usize]),
    a: &Args,
    dev: &Device,
) -> Result<Scores> {
    let embedded = |(data, idx): (&InMemoryDataset, &[usize])| -> Result<Embedded> {
        Ok(Embedded {
            values: embed(net, data, idx, dev)?,
            dim: net.dim(),
            labels: idx.iter().map(|&i| data.labels[i]).collect(),
        })
    };
    let (seen, unseen) = (embedded(seen_items)?, embedded(unseen_items)?);
    let dim = seen.dim;
    let test = balanced_pairs(&unseen.labels, a.pairs, a.seed + 1)?;
    let fit = balanced_pairs(&seen.labels, a.pairs, a.seed + 2)?;
    let dist = |e: &Embedded, p: &[(usize, usize, bool)]| -> (Vec<f32>, Vec<bool>) {
        p.iter()
            .map(|&(i, j, s)| (squared(&e.values, dim, i, j), s))
            .unzip()
    };
    let (fit_d, fit_s) = dist(&seen, &fit);
    let (thr, _) = best_threshold(&fit_d, &fit_s);
    let (test_d, test_s) = dist(&unseen, &test);
    Ok(Scores {
        l1: head_accuracy(PairFeature::L1, &seen, &unseen, &test, a, dev)?,
        chi2: head_accuracy(PairFeature::ChiSquared, &seen, &unseen, &test, a, dev)?,
        threshold: threshold_accuracy(&test_d, &test_s, thr),
        oracle: best_threshold(&test_d, &test_s).1,
        recognition: one_shot_recognition(
            &unseen.values,
            dim,
            &unseen.labels,
            a.episodes,
            a.seed + 3,
        )?,
    })
}

/// The projection of the rows of `emb` (`[n, dim]`) on their first two principal axes,
/// by power iteration on the covariance with deflation.
fn pca_2d(emb: &[f32], dim: usize) -> Vec<(f64, f64)> {
    let n = emb.len() / dim;
    let mut mean = vec![0.0f64; dim];
    for r in emb.chunks(dim) {
        r.iter()
            .zip(&mut mean)
            .for_each(|(&v, m)| *m += v as f64 / n as f64);
    }
    let mut cov = vec![0.0f64; dim * dim];
    for r in emb.chunks(dim) {
        for i in 0..dim {
            for j in 0..dim {
                cov[i * dim + j] += (r[i] as f64 - mean[i]) * (r[j] as f64 - mean[j]);
            }
        }
    }
    let mut axes: Vec<Vec<f64>> = Vec::new();
    for k in 0..2 {
        let mut v: Vec<f64> = (0..dim)
            .map(|i| 1.0 + ((i * 7 + k * 3) % 5) as f64)
            .collect();
        for _ in 0..500 {
            let mut w: Vec<f64> = (0..dim)
                .map(|i| (0..dim).map(|j| cov[i * dim + j] * v[j]).sum())
                .collect();
            for ax in &axes {
                let d: f64 = w.iter().zip(ax).map(|(a, b)| a * b).sum();
                w.iter_mut().zip(ax).for_each(|(x, a)| *x -= d * a);
            }
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-30);
            v = w.into_iter().map(|x| x / norm).collect();
        }
        axes.push(v);
    }
    emb.chunks(dim)
        .map(|r| {
            let c: Vec<f64> = r.iter().zip(&mean).map(|(&v, m)| v as f64 - m).collect();
            let p = |ax: &[f64]| c.iter().zip(ax).map(|(a, b)| a * b).sum::<f64>();
            (p(&axes[0]), p(&axes[1]))
        })
        .collect()
}

fn pca_chart(
    net: &SiameseEncoder,
    test: &InMemoryDataset,
    a: &Args,
    dev: &Device,
) -> Result<PathBuf> {
    let all: Vec<usize> = (0..test.labels.len()).collect();
    let emb = embed(net, test, &all, dev)?;
    let points = pca_2d(&emb, net.dim());
    let per_class: Vec<Vec<(f64, f64)>> = (0..10)
        .map(|c| {
            points
                .iter()
                .zip(&test.labels)
                .filter(|(_, &l)| l == c)
                .map(|(p, _)| *p)
                .collect()
        })
        .collect();
    let groups: Vec<common::PointGroup> = per_class
        .iter()
        .enumerate()
        .map(|(c, pts)| common::PointGroup {
            label: if c < SEEN {
                a.data.class_name(c)
            } else {
                format!("{} (unseen)", a.data.class_name(c))
            },
            colour: common::class_colour(c + 1),
            points: pts,
        })
        .collect();
    let path = a.out.join("pca.png");
    common::scatter_chart(
        &path,
        &format!(
            "Embeddings of the {} held-out {} (PCA), trained on {} only",
            test.labels.len(),
            a.data.describe().0,
            a.data.describe().1
        ),
        ("first principal axis", "second principal axis"),
        &groups,
    )?;
    Ok(path)
}

fn print_scores(what: &str, s: &Scores) {
    println!(
        "{what:<10} verification: L1 head {:.2}%  χ² head {:.2}%  distance threshold {:.2}%  |  one-shot recognition {:.2}%",
        100.0 * s.l1,
        100.0 * s.chi2,
        100.0 * s.threshold,
        100.0 * s.recognition
    );
    println!(
        "{what:<10} (threshold picked on the unseen test pairs themselves, for reference only: {:.2}%)",
        100.0 * s.oracle
    );
}

fn main() -> Result<()> {
    let a = Args::parse();
    common::output::ready_dir("--out", &a.out)?;
    let mining: Mining = a.mining.parse()?;
    if !(0.0..1.0).contains(&a.scale) || !(0.0..60.0).contains(&a.shear) {
        anyhow::bail!(
            "--scale {} must lie in [0, 1) and --shear {} in [0, 60) degrees",
            a.scale,
            a.shear
        );
    }
    let aug = Augment {
        shift: a.shift,
        rotate: a.rotate,
        scale: a.scale,
        shear: a.shear,
    };
    let dev = Device::by_name(&a.device)?;
    let (train, test) = (a.data.load("train")?, a.data.load("t10k")?);
    let (kind, seen_what, unseen_what) = a.data.describe();
    let seen_idx: Vec<usize> = (0..train.labels.len())
        .filter(|&i| train.labels[i] < SEEN)
        .collect();
    let unseen_idx: Vec<usize> = (0..test.labels.len())
        .filter(|&i| test.labels[i] >= SEEN)
        .collect();
    let groups = by_class(&train.labels, SEEN);
    let classes: Vec<usize> = (0..SEEN).collect();
    let net = SiameseEncoder::with_grid(1, a.width, a.dim, a.grid, a.seed, &dev)?;
    println!("{}", summary(&net, &[1, 1, 28, 28], &dev)?);
    println!(
        "training on {} images of the {seen_what}; testing on {} held-out images of the unseen {kind} ({unseen_what}; {} balanced pairs: chance 50%; one-shot recognition among 3: chance 33.33%)",
        seen_idx.len(),
        unseen_idx.len(),
        a.pairs
    );
    let seen_items = (&train, &seen_idx[..a.fit_images.min(seen_idx.len())]);
    let unseen_items = (&test, &unseen_idx[..]);
    let untrained = evaluate(&net, seen_items, unseen_items, &a, &dev)?;
    print_scores("untrained", &untrained);

    let mut opt = Adam::new(
        net.parameters(),
        AdamOptions {
            lr: a.lr,
            ..Default::default()
        },
    );
    let schedule = CosineAnnealing {
        base: a.lr,
        min: a.lr * 0.02,
        t_max: a.epochs * a.steps,
    };
    let style =
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} ({elapsed}) {msg}")?;
    let mut curve = Vec::new();
    let start = Instant::now();
    for epoch in 0..a.epochs {
        let bar = ProgressBar::new(a.steps as u64)
            .with_style(style.clone())
            .with_prefix(format!("{:2}/{}", epoch + 1, a.epochs));
        let (mut losses, mut active, mut total) = (Vec::new(), 0usize, 0usize);
        for step in 0..a.steps {
            let t = epoch * a.steps + step;
            let idx = pk_batch(
                &groups,
                &classes,
                a.per_class,
                a.seed.wrapping_mul(1 << 32) ^ t as u64,
            )?;
            let labels: Vec<usize> = idx.iter().map(|&i| train.labels[i]).collect();
            let x = augmented_images(&train, &idx, aug, a.seed ^ (t as u64) << 20, &dev)?;
            opt.set_lr(schedule.lr_at(t));
            opt.zero_grad();
            let how = if epoch < a.warmup {
                Mining::BatchAll
            } else {
                mining
            };
            let mined = mined_triplet_loss(&net.forward(&x)?, &labels, a.margin, how)?;
            mined.loss.backward()?;
            opt.step()?;
            active += mined.triplets.active;
            total += mined.triplets.triplets.len();
            losses.push(mined.loss.detach());
            bar.inc(1);
        }
        bar.finish_and_clear();
        let mean = losses
            .iter()
            .map(|l| l.item().map(f64::from))
            .sum::<fovea::Result<f64>>()?
            / losses.len().max(1) as f64;
        curve.push(((epoch + 1) as f64, mean));
        println!(
            "epoch {:2}/{}  triplet loss {mean:.4}  active triplets {:.1}% of {total}",
            epoch + 1,
            a.epochs,
            100.0 * active as f64 / total.max(1) as f64
        );
    }
    let seconds = start.elapsed().as_secs_f64();
    let trained = evaluate(&net, seen_items, unseen_items, &a, &dev)?;
    print_scores("untrained", &untrained);
    print_scores("trained", &trained);
    println!(
        "trained for {} steps of {} images ({mining} mining, margin {}) in {seconds:.0} s on {}",
        a.epochs * a.steps,
        SEEN * a.per_class,
        a.margin,
        dev.name()
    );
    common::line_chart(
        &a.out.join("loss.png"),
        &format!("Triplet loss ({mining} mining) on the {seen_what}"),
        "epoch",
        (
            "mean triplet loss",
            &[common::Series {
                label: "training loss",
                points: &curve,
            }],
        ),
        ("", &[]),
    )?;
    let path = pca_chart(&net, &test, &a, &dev)?;
    println!("PCA of the test embeddings in {}", path.display());
    Ok(())
}
