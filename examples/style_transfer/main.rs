//! Neural style transfer: paints a content photo in the style of a painting by gradient
//! descent on the image, through VGG features (bundled pretrained VGG16 weights, nothing to
//! download). With no arguments it uses a bundled photo and Starry Night.
//!
//! `cargo run --release --example style_transfer -- [--content P] [--style P] [--size N]
//!  [--steps N] [--content-weight A] [--style-weight B] [--tv-weight G]
//!  [--style-layers relu1_1,…] [--content-layer relu4_2] [--init content|noise]
//!  [--optimizer adam|sgd|lbfgs] [--lr F] [--device cpu|gpu|best] [--weights P]
//!  [--vgg 16|19] [--preprocess caffe|imagenet] [--out P] [--save-every N]`
//!
//! `--weights` takes the bundled HED VGG16 (Caffe BGR input, the default) or a torchvision
//! VGG16/VGG19 export in safetensors (ImageNet RGB normalisation, assumed for any other
//! file unless `--preprocess` says otherwise).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use fovea::data::{load_image, save_image, Resize};
use fovea::models::style::{pretrained_vgg, Preprocess, StyleTransfer};
use fovea::models::VggConfig;
use fovea::optim::{
    Adam, AdamOptions, Lbfgs, LbfgsOptions, LineSearch, Optimizer, Sgd, SgdOptions,
};
use fovea::{Device, DeviceExt, Tensor};
use indicatif::{ProgressBar, ProgressStyle};

struct Args {
    content: PathBuf,
    style: PathBuf,
    size: Option<u32>,
    steps: usize,
    alpha: f32,
    beta: f32,
    tv_weight: f32,
    style_layers: Vec<String>,
    content_layer: String,
    init: String,
    optimizer: String,
    lr: Option<f32>,
    device: String,
    weights: PathBuf,
    vgg: VggConfig,
    preprocess: Option<Preprocess>,
    out: PathBuf,
    save_every: usize,
}

fn parse() -> Result<Args> {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let mut a = Args {
        content: assets.join("images/chelsea.png"),
        style: assets.join("images/starry_night.jpg"),
        size: None,
        steps: 200,
        alpha: 1.0,
        beta: 1e4,
        tv_weight: 0.0,
        style_layers: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
            .map(String::from)
            .to_vec(),
        content_layer: "relu4_2".into(),
        init: "content".into(),
        optimizer: "adam".into(),
        lr: None,
        device: "best".into(),
        weights: assets.join("weights/vgg16_hed_bsds500.safetensors"),
        vgg: VggConfig::Vgg16,
        preprocess: None,
        out: PathBuf::from("out/style_transfer/result.png"),
        save_every: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut v = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--content" => a.content = v()?.into(),
            "--style" => a.style = v()?.into(),
            "--size" => a.size = Some(v()?.parse()?),
            "--steps" => a.steps = v()?.parse()?,
            "--content-weight" => a.alpha = v()?.parse()?,
            "--style-weight" => a.beta = v()?.parse()?,
            "--tv-weight" => a.tv_weight = v()?.parse()?,
            "--style-layers" => a.style_layers = v()?.split(',').map(String::from).collect(),
            "--content-layer" => a.content_layer = v()?,
            "--init" => a.init = v()?,
            "--optimizer" => a.optimizer = v()?,
            "--lr" => a.lr = Some(v()?.parse()?),
            "--device" => a.device = v()?,
            "--weights" => {
                a.weights = v()?.into();
                a.preprocess = a.preprocess.or(Some(Preprocess::ImageNetRgb));
            }
            "--vgg" => {
                a.vgg = match v()?.as_str() {
                    "16" => VggConfig::Vgg16,
                    "19" => VggConfig::Vgg19,
                    other => bail!("--vgg takes 16 or 19, got {other}"),
                }
            }
            "--preprocess" => {
                a.preprocess = Some(match v()?.as_str() {
                    "caffe" => Preprocess::CaffeBgr,
                    "imagenet" => Preprocess::ImageNetRgb,
                    other => bail!("--preprocess takes caffe or imagenet, got {other}"),
                })
            }
            "--out" => a.out = v()?.into(),
            "--save-every" => a.save_every = v()?.parse()?,
            _ => {
                bail!("unknown argument {flag}; see the header of examples/style_transfer/main.rs")
            }
        }
    }
    if a.init != "content" && a.init != "noise" {
        bail!("--init takes content or noise, got {}", a.init);
    }
    Ok(a)
}

/// Writes the network input `x` as a picture, creating its folder.
fn save(x: &Tensor, pre: Preprocess, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(save_image(&pre.invert(x)?, path)?)
}

fn main() -> Result<()> {
    let a = parse()?;
    let dev = Device::by_name(&a.device)?;
    // A size that finishes in about a minute: smaller on the CPU.
    let size = a.size.unwrap_or(if dev.is_gpu() { 384 } else { 192 });
    let (cw, ch) = image::image_dimensions(&a.content)
        .with_context(|| format!("cannot read {}", a.content.display()))?;
    // Multiples of 16 keep every pooling stage exact (the weights were trained with
    // Keras 'same' pooling, which differs from PyTorch's only on odd sizes).
    let scale = size as f32 / cw.max(ch) as f32;
    let (w, h) = (
        ((cw as f32 * scale / 16.0).round().max(1.0) * 16.0) as u32,
        ((ch as f32 * scale / 16.0).round().max(1.0) * 16.0) as u32,
    );
    println!(
        "{} ({w}×{h}) in the style of {} on {}",
        a.content.display(),
        a.style.display(),
        dev.name()
    );

    let pre = a.preprocess.unwrap_or(Preprocess::CaffeBgr);
    let vgg = pretrained_vgg(a.vgg, &a.weights, &dev)?;
    let exact = Resize::Exact {
        width: w,
        height: h,
    };
    let content = pre.apply(&load_image(&a.content, 3, exact, &dev)?)?;
    let style = pre.apply(&load_image(&a.style, 3, exact, &dev)?)?;
    let style_refs: Vec<&str> = a.style_layers.iter().map(String::as_str).collect();
    let mut problem = StyleTransfer::new(vgg, &content, &style, &a.content_layer, &style_refs)?;
    problem.alpha = a.alpha;
    problem.beta = a.beta;
    problem.tv_weight = a.tv_weight;

    let start = if a.init == "noise" {
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
    let mut opt = match a.optimizer.as_str() {
        "adam" => Opt::First(Box::new(Adam::new(
            vec![g.clone()],
            AdamOptions {
                lr: level_lr(4.0),
                ..Default::default()
            },
        ))),
        "sgd" | "gd" => Opt::First(Box::new(Sgd::new(
            vec![g.clone()],
            SgdOptions {
                lr: a.lr.unwrap_or(1e-3),
                ..Default::default()
            },
        ))),
        // Ten iterations per call (one loss evaluation each), so the bar moves.
        "lbfgs" => Opt::Lbfgs(Lbfgs::new(
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
        other => bail!("--optimizer takes adam, sgd or lbfgs, got {other}"),
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
