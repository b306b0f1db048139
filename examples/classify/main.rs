//! Classifies photos with a pretrained ImageNet network: by default the bundled
//! torchvision MobileNetV2 on the bundled photos. Prints each photo's top classes with
//! their probabilities and writes a contact sheet (`out/classify/contact_sheet.png`):
//! every photo as the network saw it (the centre crop) with its top-3 labels.
//!
//! `cargo run --release --example classify -- [--image PATH...] [--model NAME]
//!  [--weights FILE] [--device cpu|gpu|best] [--topk N]`

#[path = "../common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use fovea::checkpoint;
use fovea::models::{
    imagenet, AlexNet, EfficientNet, GoogLeNet, MobileNetV2, MobileNetV3, ResNet, Vgg, VggConfig,
};
use fovea::nn::Module;
use fovea::{no_grad, DType, Device, DeviceExt, Tensor};
use image::{Rgb, RgbImage};

const PHOTOS: [&str; 8] = [
    "chelsea.png",
    "coffee.png",
    "dog.jpg",
    "baboon.jpg",
    "fruits.jpg",
    "apple.jpg",
    "butterfly.jpg",
    "astronaut.png",
];

/// Classify photos with a pretrained ImageNet network.
#[derive(Parser)]
#[command(long_about = None)]
struct Args {
    /// Photos to classify (default: the eight bundled ones).
    #[arg(long, num_args = 1..)]
    image: Vec<PathBuf>,
    /// Network: mobilenet_v2 (bundled weights), mobilenet_v3_small, resnet18, resnet34,
    /// resnet50, alexnet, vgg16, googlenet, efficientnet_b0 … efficientnet_b7.
    #[arg(long, default_value = "mobilenet_v2")]
    model: String,
    /// torchvision weights in safetensors (`state_dict` names); required for every model
    /// but mobilenet_v2.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// cpu, gpu or best.
    #[arg(long, default_value = "best")]
    device: String,
    /// How many classes to print per photo.
    #[arg(long, default_value_t = 5)]
    topk: usize,
    /// Short side after resizing (torchvision: 256).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=8192))]
    resize: u32,
    /// Centre crop fed to the network (torchvision: 224).
    #[arg(long, default_value_t = 224, value_parser = clap::value_parser!(u32).range(1..=8192))]
    crop: u32,
    /// Where the contact sheet goes.
    #[arg(long, default_value = "out/classify")]
    out: PathBuf,
    /// Element type of the weights and activations: f16 halves the memory they take
    /// (ops compute in f32 and round each result to f16).
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Precision,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Precision {
    F32,
    F16,
}

impl Precision {
    fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
        }
    }
}

fn build(name: &str, dev: &Device) -> Result<Box<dyn Module>> {
    Ok(match name {
        "mobilenet_v2" => Box::new(MobileNetV2::new(1000, 1.0, 0, dev)?),
        "mobilenet_v3_small" => Box::new(MobileNetV3::small(1000, 0, dev)?),
        "resnet18" => Box::new(ResNet::resnet18(1000, 0, dev)?),
        "resnet34" => Box::new(ResNet::resnet34(1000, 0, dev)?),
        "resnet50" => Box::new(ResNet::resnet50(1000, 0, dev)?),
        "alexnet" => Box::new(AlexNet::new(1000, 0, dev)?),
        "vgg16" => Box::new(Vgg::new(VggConfig::Vgg16, false, 1000, 0, dev)?),
        "googlenet" => Box::new(GoogLeNet::new(1000, false, 0, dev)?),
        n if n.starts_with("efficientnet_b") => {
            let v: usize = n["efficientnet_b".len()..]
                .parse()
                .with_context(|| format!("--model {n}: use efficientnet_b0 … efficientnet_b7"))?;
            Box::new(EfficientNet::new(v, 1000, 0, dev)?)
        }
        other => bail!("--model {other}: unknown network (see --help)"),
    })
}

fn main() -> Result<()> {
    let a = Args::parse();
    common::output::ready_dir("--out", &a.out)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dev = Device::by_name(&a.device)?;
    let model = build(&a.model, &dev)?;
    let weights = match (&a.weights, a.model.as_str()) {
        (Some(w), _) => w.clone(),
        (None, "mobilenet_v2") => root.join("assets/weights/mobilenet_v2_imagenet.safetensors"),
        (None, m) => bail!("--model {m} has no bundled weights: pass --weights FILE (torchvision's state_dict as safetensors)"),
    };
    // A torchvision GoogLeNet checkpoint carries the auxiliary classifiers, which
    // inference does not use: load what the model has and say what was left out.
    let report = checkpoint::load_module_with(model.as_ref(), &weights, a.model != "googlenet")
        .with_context(|| format!("loading {}", weights.display()))?;
    if !report.unexpected.is_empty() {
        eprintln!(
            "not used from {}: {} tensors",
            weights.display(),
            report.unexpected.len()
        );
    }
    if !report.missing.is_empty() {
        bail!("{} lacks {:?}", weights.display(), report.missing);
    }
    model.eval();
    model.to_dtype(a.dtype.dtype())?;
    let names = imagenet::class_names(&root.join("assets/weights/imagenet_classes.txt"))?;
    let photos: Vec<PathBuf> = if a.image.is_empty() {
        PHOTOS
            .iter()
            .map(|p| root.join("assets/images").join(p))
            .collect()
    } else {
        a.image.clone()
    };
    println!(
        "{} on {} ({} parameters, {})",
        a.model,
        dev.name(),
        model.num_parameters(),
        a.dtype.dtype()
    );
    let mut sheet_tiles = Vec::new();
    for path in &photos {
        let x = imagenet::load(path, a.resize, a.crop, &dev)?;
        let t = Instant::now();
        let input = x.to_dtype(a.dtype.dtype())?;
        let probs = no_grad(|| model.forward(&input)?.softmax(1))?.to_vec()?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let top = imagenet::top_k(&probs, a.topk.max(3));
        println!("\n{} ({ms:.0} ms)", path.display());
        for &(i, p) in top.iter().take(a.topk) {
            println!("  {p:6.3}  {}", names.get(i).map_or("?", |s| s.as_str()));
        }
        sheet_tiles.push((tile(&x)?, top));
    }
    let sheet = contact_sheet(&sheet_tiles, &names, a.crop);
    let out = a.out.join("contact_sheet.png");
    common::save_png(&sheet, &out)?;
    println!("\nwrote {}", out.display());
    println!(
        "peak memory on {}: {:.1} MiB",
        dev.name(),
        dev.backend().stats().peak_bytes as f64 / (1 << 20) as f64
    );
    Ok(())
}

/// The network's input as a picture (normalisation undone).
fn tile(x: &Tensor) -> Result<RgbImage> {
    let s = x.shape();
    let (h, w) = (s[2], s[3]);
    let v = x.to_vec()?;
    Ok(RgbImage::from_fn(w as u32, h as u32, |i, j| {
        let px = |c: usize| {
            let z = v[c * h * w + j as usize * w + i as usize];
            ((z * imagenet::IMAGENET_STD[c] + imagenet::IMAGENET_MEAN[c]).clamp(0.0, 1.0) * 255.0)
                .round() as u8
        };
        Rgb([px(0), px(1), px(2)])
    }))
}

/// Four photos a row, each above its top-3 labels.
fn contact_sheet(tiles: &[(RgbImage, Vec<(usize, f32)>)], names: &[String], crop: u32) -> RgbImage {
    let (cols, text_h, pad) = (4u32, 58u32, 8u32);
    let rows = (tiles.len() as u32).div_ceil(cols);
    let (cw, ch) = (crop + pad, crop + text_h + pad);
    let mut sheet = RgbImage::from_pixel(cols * cw + pad, rows * ch + pad, Rgb([255, 255, 255]));
    for (k, (img, top)) in tiles.iter().enumerate() {
        let (x, y) = (pad + (k as u32 % cols) * cw, pad + (k as u32 / cols) * ch);
        common::paste(&mut sheet, img, x, y);
        for (line, &(i, p)) in top.iter().take(3).enumerate() {
            let name = names
                .get(i)
                .map_or("?", |s| s.split(',').next().unwrap_or(s));
            let label: String = format!("{:.2} {name}", p).chars().take(30).collect();
            let colour = if line == 0 {
                Rgb([0, 0, 0])
            } else {
                Rgb([90, 90, 90])
            };
            common::draw_label(
                &mut sheet,
                x as i32,
                (y + crop + 3 + 18 * line as u32) as i32,
                14.0,
                colour,
                &label,
            );
        }
    }
    sheet
}
