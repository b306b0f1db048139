//! Neural style transfer: paints a content photo in the style of a painting by gradient
//! descent on the image, through VGG features (bundled pretrained VGG16 weights, nothing to
//! download). With no arguments it uses a bundled photo and Starry Night.
//!
//! `cargo run --release --example style_transfer -- [--content P] [--style P] [--size N]
//!  [--steps N] [--content-weight A] [--style-weight B] [--tv-weight G]
//!  [--style-layers relu1_1,…] [--content-layer relu4_2] [--init content|noise]
//!  [--optimizer adam|sgd|lbfgs] [--lr F] [--device cpu|gpu|best] [--weights P]
//!  [--vgg 16|19] [--preprocess caffe|imagenet] [--out P] [--save-every N]`
//!  (`--help` says what each does)
//!
//! `--weights` takes the bundled HED VGG16 (Caffe BGR input, the default) or a torchvision
//! VGG16/VGG19 export in safetensors (ImageNet RGB normalisation, assumed for any other
//! file unless `--preprocess` says otherwise).

#[path = "../common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use fovea::data::{load_image, save_image, Resize};
use fovea::models::style::{pretrained_vgg, Preprocess, StyleTransfer};
use fovea::models::VggConfig;
use fovea::optim::{
    Adam, AdamOptions, Lbfgs, LbfgsOptions, LineSearch, Optimizer, Sgd, SgdOptions,
};
use fovea::{Device, DeviceExt, Tensor};
use indicatif::{ProgressBar, ProgressStyle};

/// Paint a content photo in the style of a painting (neural style transfer through VGG).
#[derive(Parser)]
#[command(long_about = None)]
struct Args {
    /// The photo to repaint (default: the bundled assets/images/chelsea.png).
    #[arg(long)]
    content: Option<PathBuf>,
    /// The painting whose style is copied (default: the bundled Starry Night).
    #[arg(long)]
    style: Option<PathBuf>,
    /// Longer side in pixels, rounded to a multiple of 16 (default: 384 on a GPU, 192 on the
    /// CPU).
    #[arg(long)]
    size: Option<u32>,
    /// Optimizer steps (loss evaluations for lbfgs).
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// Weight of the content cost (alpha).
    #[arg(long, default_value_t = 1.0)]
    content_weight: f32,
    /// Weight of the style cost (beta).
    #[arg(long, default_value_t = 1e4)]
    style_weight: f32,
    /// Weight of the total-variation cost, which smooths the result.
    #[arg(long, default_value_t = 0.0)]
    tv_weight: f32,
    /// VGG layers whose Gram matrices define the style, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1"
    )]
    style_layers: Vec<String>,
    /// VGG layer whose features define the content.
    #[arg(long, default_value = "relu4_2")]
    content_layer: String,
    /// Start from the content photo or from noise.
    #[arg(long, value_enum, default_value_t = Init::Content)]
    init: Init,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    optimizer: OptimizerKind,
    /// Learning rate (default: 4 intensity levels for adam, 1e-3 for sgd, 1 for lbfgs).
    #[arg(long)]
    lr: Option<f32>,
    /// cpu, gpu or best.
    #[arg(long, default_value = "best")]
    device: String,
    /// VGG weights in safetensors: the bundled HED VGG16 (Caffe BGR input, the default) or
    /// a torchvision VGG16/VGG19 export (ImageNet RGB input unless --preprocess says
    /// otherwise).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// VGG depth of --weights.
    #[arg(long, value_enum, default_value_t = VggDepth::Sixteen)]
    vgg: VggDepth,
    /// Input convention of the weights (default: caffe for the bundled weights, imagenet for
    /// any other file).
    #[arg(long, value_enum)]
    preprocess: Option<PreprocessKind>,
    /// Where the result goes (its side-by-side picture lands beside it).
    #[arg(long, default_value = "out/style_transfer/result.png")]
    out: PathBuf,
    /// Also save a frame every N steps (0: never).
    #[arg(long, default_value_t = 0)]
    save_every: usize,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Init {
    Content,
    Noise,
}

#[derive(Clone, Copy, ValueEnum)]
enum OptimizerKind {
    Adam,
    /// Plain gradient descent.
    #[value(alias = "gd")]
    Sgd,
    Lbfgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum VggDepth {
    #[value(name = "16")]
    Sixteen,
    #[value(name = "19")]
    Nineteen,
}

#[derive(Clone, Copy, ValueEnum)]
enum PreprocessKind {
    /// BGR, mean subtracted, 0..255 (Caffe, the bundled weights).
    Caffe,
    /// RGB normalised by ImageNet's mean and deviation (torchvision).
    Imagenet,
}

/// Writes the network input `x` as a picture, creating its folder.
fn save(x: &Tensor, pre: Preprocess, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(save_image(&pre.invert(x)?, path)?)
}

fn main() -> Result<()> {
    let a = Args::parse();
    common::output::ready_file("--out", &a.out, true)?;
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let content_path = a
        .content
        .clone()
        .unwrap_or_else(|| assets.join("images/chelsea.png"));
    let style_path = a
        .style
        .clone()
        .unwrap_or_else(|| assets.join("images/starry_night.jpg"));
    let pre = match (a.preprocess, &a.weights) {
        (Some(PreprocessKind::Caffe), _) | (None, None) => Preprocess::CaffeBgr,
        (Some(PreprocessKind::Imagenet), _) | (None, Some(_)) => Preprocess::ImageNetRgb,
    };
    let weights = a
        .weights
        .clone()
        .unwrap_or_else(|| assets.join("weights/vgg16_hed_bsds500.safetensors"));
    let vgg_config = match a.vgg {
        VggDepth::Sixteen => VggConfig::Vgg16,
        VggDepth::Nineteen => VggConfig::Vgg19,
    };
    let dev = Device::by_name(&a.device)?;
    // A size that finishes in about a minute: smaller on the CPU.
    let size = a.size.unwrap_or(if dev.is_gpu() { 384 } else { 192 });
    let (cw, ch) = image::image_dimensions(&content_path)
        .with_context(|| format!("cannot read {}", content_path.display()))?;
    // Multiples of 16 keep every pooling stage exact (the weights were trained with
    // Keras 'same' pooling, which differs from PyTorch's only on odd sizes).
    let scale = size as f32 / cw.max(ch) as f32;
    let (w, h) = (
        ((cw as f32 * scale / 16.0).round().max(1.0) * 16.0) as u32,
        ((ch as f32 * scale / 16.0).round().max(1.0) * 16.0) as u32,
    );
    println!(
        "{} ({w}×{h}) in the style of {} on {}",
        content_path.display(),
        style_path.display(),
        dev.name()
    );

    let vgg = pretrained_vgg(vgg_config, &weights, &dev)?;
    let exact = Resize::Exact {
        width: w,
        height: h,
    };
    let content = pre.apply(&load_image(&content_path, 3, exact, &dev)?)?;
    let style = pre.apply(&load_image(&style_path, 3, exact, &dev)?)?;
    let style_refs: Vec<&str> = a.style_layers.iter().map(String::as_str).collect();
    let mut problem = StyleTransfer::new(vgg, &content, &style, &a.content_layer, &style_refs)?;
    problem.alpha = a.content_weight;
    problem.beta = a.style_weight;
    problem.tv_weight = a.tv_weight;

    let start = if a.init == Init::Noise {
        Tensor::randn(&[1, 3, h as usize, w as usize], 0, &dev).mul_scalar(40.0 * pre.level())
    } else {
        content.clone()
    };
    let g = start.detach().requires_grad();
    // Step sizes in 8-bit intensity levels, so they mean the same under both conventions.
    let level_lr = |levels: f32| a.lr.unwrap_or(levels * pre.level());
    enum Opt {
        First(Box<dyn Optimizer>),
        Lbfgs(Lbfgs),
    }
    let mut opt = match a.optimizer {
        OptimizerKind::Adam => Opt::First(Box::new(Adam::new(
            vec![g.clone()],
            AdamOptions {
                lr: level_lr(4.0),
                ..Default::default()
            },
        ))),
        OptimizerKind::Sgd => Opt::First(Box::new(Sgd::new(
            vec![g.clone()],
            SgdOptions {
                lr: a.lr.unwrap_or(1e-3),
                ..Default::default()
            },
        ))),
        // Ten iterations per call (one loss evaluation each), so the bar moves.
        OptimizerKind::Lbfgs => Opt::Lbfgs(Lbfgs::new(
            vec![g.clone()],
            LbfgsOptions {
                lr: a.lr.unwrap_or(1.0),
                max_iter: 10,
                // Never accepts a step that raises the cost, and grows PyTorch's tiny first
                // step to the scale of a cost measured on 0..255 pixels.
                line_search: Some(LineSearch::Armijo),
                ..Default::default()
            },
        )?),
    };
    let bar = ProgressBar::new(a.steps as u64).with_style(
        ProgressStyle::with_template("step {pos}/{len} [{bar:30}] {msg} ({elapsed}, eta {eta})")?
            .progress_chars("=> "),
    );
    // indicatif hides itself when stderr is not a terminal, and its println with it.
    let say = |line: String| {
        if bar.is_hidden() {
            println!("{line}");
        } else {
            bar.println(line);
        }
    };
    let timer = Instant::now();
    let report = |step: usize, c: &fovea::models::style::Costs| -> Result<String> {
        let line = format!(
            "step {step:4}/{}  J {:11.4e}  content {:10.4e}  style {:10.4e}  tv {:9.3e}  {:5.1} s",
            a.steps,
            c.total.item()?,
            c.content.item()?,
            c.style.item()?,
            c.tv.item()?,
            timer.elapsed().as_secs_f32()
        );
        Ok(line)
    };
    let mut step = 0;
    while step < a.steps {
        match &mut opt {
            Opt::First(opt) => {
                opt.zero_grad();
                let c = problem.costs(&g)?;
                // Only every tenth step reads the losses back; the rest stays on the device.
                if step % 10 == 0 {
                    say(report(step, &c)?);
                }
                c.total.backward()?;
                opt.step()?;
                step += 1;
            }
            Opt::Lbfgs(opt) => {
                let mut closure = || {
                    g.zero_grad();
                    let c = problem.costs(&g)?;
                    c.total.backward()?;
                    Ok(c.total)
                };
                let before = opt.func_evals();
                opt.step(&mut closure)?;
                step += (opt.func_evals() - before).max(1);
                if step < a.steps {
                    say(report(step, &fovea::no_grad(|| problem.costs(&g))?)?);
                }
            }
        }
        bar.set_position(step.min(a.steps) as u64);
        if a.save_every > 0 && step % a.save_every == 0 {
            save(
                &g,
                pre,
                &a.out.with_file_name(format!("frame_{step:05}.png")),
            )?;
        }
    }
    bar.finish_and_clear();
    println!("{}", report(a.steps, &problem.costs(&g)?)?);
    save(&g, pre, &a.out)?;
    // Content | style | result, side by side, for a quick look.
    let side = a.out.with_file_name(format!(
        "{}_side_by_side.png",
        a.out
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("result")
    ));
    let row = Tensor::cat(&[&content, &style, &g.detach()], 3)?;
    save(&row, pre, &side)?;
    let stats = dev.stats();
    if dev.is_gpu() {
        println!(
            "peak GPU memory in fovea's buffers: {:.1} MiB",
            stats.peak_bytes as f64 / (1 << 20) as f64
        );
    }
    println!("wrote {}", a.out.display());
    Ok(())
}
