//! Neural style transfer: paints a content photo in the style of a painting by gradient
//! descent on the image, through VGG16 features (bundled pretrained weights, nothing to
//! download). With no arguments it uses a bundled photo and Starry Night.
//!
//! `cargo run --release --example style_transfer -- [--content P] [--style P] [--size N]
//!  [--steps N] [--content-weight A] [--style-weight B] [--style-layers relu1_1,…]
//!  [--content-layer relu4_2] [--init content|noise] [--optimizer adam|sgd] [--lr F]
//!  [--device cpu|gpu|best] [--weights P] [--out P] [--save-every N]`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use fovea::models::style::{
    content_cost, deprocess_bgr, preprocess_bgr, pretrained_vgg16, style_layer_cost,
};
use fovea::optim::{Adam, AdamOptions, Optimizer, Sgd, SgdOptions};
use fovea::{no_grad, Device, DeviceExt, Tensor};

struct Args {
    content: PathBuf,
    style: PathBuf,
    size: Option<u32>,
    steps: usize,
    alpha: f32,
    beta: f32,
    style_layers: Vec<String>,
    content_layer: String,
    init: String,
    optimizer: String,
    lr: f32,
    device: String,
    weights: PathBuf,
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
        style_layers: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
            .map(String::from)
            .to_vec(),
        content_layer: "relu4_2".into(),
        init: "content".into(),
        optimizer: "adam".into(),
        lr: 4.0,
        device: "best".into(),
        weights: assets.join("weights/vgg16_hed_bsds500.safetensors"),
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
            "--style-layers" => a.style_layers = v()?.split(',').map(String::from).collect(),
            "--content-layer" => a.content_layer = v()?,
            "--init" => a.init = v()?,
            "--optimizer" => a.optimizer = v()?,
            "--lr" => a.lr = v()?.parse()?,
            "--device" => a.device = v()?,
            "--weights" => a.weights = v()?.into(),
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

/// An image as `[1, 3, h, w]` RGB in [0, 1], resized to exactly `w × h`.
fn load_rgb(path: &Path, w: u32, h: u32, dev: &Device) -> Result<Tensor> {
    let img = image::open(path).with_context(|| format!("cannot read image {}", path.display()))?;
    let img = img
        .resize_exact(w, h, image::imageops::FilterType::Triangle)
        .to_rgb32f();
    let (w, h) = (w as usize, h as usize);
    let hwc = img.into_raw();
    let mut chw = vec![0.0; 3 * h * w];
    for (i, px) in hwc.chunks(3).enumerate() {
        for c in 0..3 {
            chw[c * h * w + i] = px[c];
        }
    }
    Ok(Tensor::from_vec(chw, &[1, 3, h, w], dev)?)
}

fn save(x: &Tensor, path: &Path) -> Result<()> {
    let (h, w, rgb) = deprocess_bgr(x)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    image::RgbImage::from_raw(w as u32, h as u32, rgb)
        .context("image size")?
        .save(path)
        .with_context(|| format!("cannot write {}", path.display()))
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

    let vgg = pretrained_vgg16(&a.weights, &dev)?;
    let content = preprocess_bgr(&load_rgb(&a.content, w, h, &dev)?)?;
    let style = preprocess_bgr(&load_rgb(&a.style, w, h, &dev)?)?;
    let style_refs: Vec<&str> = a.style_layers.iter().map(String::as_str).collect();
    let weights = vec![1.0 / style_refs.len() as f32; style_refs.len()];
    let (a_c, grams_s) = no_grad(|| -> Result<_> {
        let a_c = vgg.extract(&content, &[&a.content_layer])?.remove(0);
        let grams = vgg
            .extract(&style, &style_refs)?
            .iter()
            .map(|f| f.gram())
            .collect::<fovea::Result<Vec<_>>>()?;
        Ok((a_c, grams))
    })?;

    let start = if a.init == "noise" {
        Tensor::randn(&[1, 3, h as usize, w as usize], 0, &dev).mul_scalar(40.0)
    } else {
        content.clone()
    };
    let g = start.detach().requires_grad();
    let mut opt: Box<dyn Optimizer> = match a.optimizer.as_str() {
        "adam" => Box::new(Adam::new(
            vec![g.clone()],
            AdamOptions {
                lr: a.lr,
                ..Default::default()
            },
        )),
        "sgd" | "gd" => Box::new(Sgd::new(
            vec![g.clone()],
            SgdOptions {
                lr: a.lr,
                ..Default::default()
            },
        )),
        other => {
            bail!("--optimizer takes adam or sgd, got {other} (L-BFGS is not implemented yet)")
        }
    };
    let mut layers: Vec<&str> = vec![&a.content_layer];
    layers.extend(&style_refs);
    let timer = Instant::now();
    for step in 0..=a.steps {
        opt.zero_grad();
        let feats = vgg.extract(&g, &layers)?;
        let j_content = content_cost(&a_c, &feats[0])?;
        let mut j_style = Tensor::zeros(&[], &dev);
        for ((gram_s, a_g), lambda) in grams_s.iter().zip(&feats[1..]).zip(&weights) {
            j_style = j_style.add(&style_layer_cost(gram_s, a_g)?.mul_scalar(*lambda))?;
        }
        let total = j_content
            .mul_scalar(a.alpha)
            .add(&j_style.mul_scalar(a.beta))?;
        // Only the printed steps read the losses back; the rest stays on the device.
        if step % 10 == 0 || step == a.steps {
            let (jc, js, jt) = (j_content.item()?, j_style.item()?, total.item()?);
            print!(
                "\rstep {step:4}/{}  J {jt:11.4e}  content {jc:10.4e}  style {js:10.4e}  {:5.1} s",
                a.steps,
                timer.elapsed().as_secs_f32()
            );
            std::io::stdout().flush().ok();
        }
        if step == a.steps {
            break;
        }
        total.backward()?;
        opt.step()?;
        if a.save_every > 0 && step % a.save_every == 0 {
            save(&g, &a.out.with_file_name(format!("frame_{step:05}.png")))?;
        }
    }
    println!();
    save(&g, &a.out)?;
    // Content | style | result, side by side, for a quick look.
    let side = a.out.with_file_name(format!(
        "{}_side_by_side.png",
        a.out
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("result")
    ));
    let row = Tensor::cat(&[&content, &style, &g.detach()], 3)?;
    save(&row, &side)?;
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
