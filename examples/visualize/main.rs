//! What units of a pretrained network respond to. For chosen units of chosen layers it
//! finds, over a set of photos, the nine strongest activations and crops each one's
//! receptive field (from the layers' kernel sizes, strides and paddings,
//! `fovea::nn::receptive_field`) out of its photo: one PNG per layer, a row of 9 patches
//! per unit. It also draws the first layer's filters as colour images and a grid of one
//! photo's feature maps.
//!
//! By default: VGG16 (the bundled HED weights, ImageNet VGG16 fine-tuned on edges) over
//! the bundled photos, 16 units of relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3.
//!
//! `cargo run --release --example visualize -- [--model vgg16|mobilenet_v2]
//!  [--layers NAME...] [--units N...] [--images DIR] [--size N] [--out DIR]`

#[path = "../common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use fovea::checkpoint;
use fovea::models::imagenet::{IMAGENET_MEAN, IMAGENET_STD};
use fovea::models::style::preprocess_bgr;
use fovea::models::{MobileNetV2, Vgg};
use fovea::nn::receptive_field::{receptive_field, windows, ReceptiveField};
use fovea::nn::{Module, Sequential};
use fovea::{no_grad, Device, DeviceExt, Tensor};
use image::imageops::FilterType;
use image::{Rgb, RgbImage};

/// Top-activating patches, first-layer filters and feature maps of a pretrained network.
#[derive(Parser)]
#[command(long_about = None)]
struct Args {
    /// vgg16 (bundled HED weights) or mobilenet_v2 (bundled ImageNet weights).
    #[arg(long, default_value = "vgg16")]
    model: String,
    /// Layers: relu<block>_<n> or a `features` index for VGG16, a `features` index
    /// (0-18) for MobileNetV2. Default: one per block.
    #[arg(long, num_args = 1..)]
    layers: Vec<String>,
    /// Channel indices of the units shown (default: 16 spread over the layer).
    #[arg(long, num_args = 1..)]
    units: Vec<usize>,
    /// Folder of photos (PNG/JPEG; default: the bundled ones).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Photos are resized (short side) and centre-cropped to this square.
    #[arg(long, default_value_t = 224, value_parser = clap::value_parser!(u32).range(1..=8192))]
    size: u32,
    /// The photo whose feature maps are drawn (a file name in --images).
    #[arg(long, default_value = "chelsea.png")]
    feature_image: String,
    /// The layer whose feature maps are drawn (default: the second of --layers).
    #[arg(long)]
    feature_layer: Option<String>,
    /// cpu, gpu or best.
    #[arg(long, default_value = "best")]
    device: String,
    /// Where the PNGs go.
    #[arg(long, default_value = "out/visualize")]
    out: PathBuf,
}

/// The network's trunk, how to name its layers and how it wants its input.
struct Net {
    features: Sequential,
    names: Vec<String>,
    vgg: Option<Vgg>,
    bgr: bool,
}

impl Net {
    fn load(model: &str, root: &Path, dev: &Device) -> Result<Net> {
        match model {
            "vgg16" => {
                let w = root.join("assets/weights/vgg16_hed_bsds500.safetensors");
                let vgg = fovea::models::style::pretrained_vgg16(&w, dev)?;
                Ok(Net {
                    features: Sequential::new(),
                    names: vgg.layer_names().iter().map(|s| s.to_string()).collect(),
                    vgg: Some(vgg),
                    bgr: true,
                })
            }
            "mobilenet_v2" => {
                let w = root.join("assets/weights/mobilenet_v2_imagenet.safetensors");
                let mut net = MobileNetV2::new(1000, 1.0, 0, dev)?;
                checkpoint::load_module(&net, &w)?;
                net.eval();
                Ok(Net {
                    features: std::mem::take(&mut net.features),
                    names: (0..19).map(|i| i.to_string()).collect(),
                    vgg: None,
                    bgr: false,
                })
            }
            other => bail!("--model {other}: use vgg16 or mobilenet_v2"),
        }
    }

    fn trunk(&self) -> &Sequential {
        self.vgg.as_ref().map_or(&self.features, |v| &v.features)
    }

    fn default_layers(&self) -> Vec<String> {
        let l: &[&str] = if self.vgg.is_some() {
            &["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"]
        } else {
            &["1", "3", "6", "13", "17"]
        };
        l.iter().map(|s| s.to_string()).collect()
    }

    /// The `features` index of a layer name; an unknown one lists the valid names.
    fn index(&self, name: &str) -> Result<usize> {
        let found = match &self.vgg {
            Some(v) => v.layer_index(name).ok(),
            None => name.parse::<usize>().ok().filter(|&i| i < 19),
        };
        found.with_context(|| {
            format!(
                "--layers {name:?}: no such layer; valid ones are {} (or a features index below {})",
                self.names.join(", "),
                self.trunk().len()
            )
        })
    }

    fn input(&self, rgb: &Tensor) -> Result<Tensor> {
        if self.bgr {
            return Ok(preprocess_bgr(rgb)?);
        }
        let dev = rgb.device();
        let mean = Tensor::from_slice(&IMAGENET_MEAN, &[1, 3, 1, 1], dev)?;
        let std = Tensor::from_slice(&IMAGENET_STD, &[1, 3, 1, 1], dev)?;
        Ok(rgb.sub(&mean)?.div(&std)?)
    }

    /// The receptive field of the units at `features` index `i`.
    fn field(&self, i: usize) -> Result<ReceptiveField> {
        let mut w = Vec::new();
        for (_, child) in self.trunk().children().into_iter().take(i + 1) {
            w.extend(windows(child));
        }
        Ok(receptive_field(&w)?)
    }
}

/// A photo resized (short side) and centre-cropped to `size`², as a picture and as a
/// `[1, 3, size, size]` tensor in [0, 1].
fn load_photo(path: &Path, size: u32, dev: &Device) -> Result<(RgbImage, Tensor)> {
    let img = image::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let img = img
        .resize_to_fill(size, size, FilterType::Triangle)
        .to_rgb8();
    let s = size as usize;
    let mut chw = vec![0.0f32; 3 * s * s];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            chw[c * s * s + i] = p.0[c] as f32 / 255.0;
        }
    }
    Ok((img, Tensor::from_vec(chw, &[1, 3, s, s], dev)?))
}

/// One activation: value, photo, row, column.
type Hit = (f32, usize, usize, usize);

/// The nine strongest activations of `unit` over all photos, no two of one photo closer
/// than half the receptive field (near-duplicates of one patch).
fn top9(acts: &[Vec<f32>], shape: [usize; 3], unit: usize, rf: &ReceptiveField) -> Vec<Hit> {
    let [_, h, w] = shape;
    let mut all: Vec<Hit> = Vec::new();
    for (img, a) in acts.iter().enumerate() {
        let plane = &a[unit * h * w..(unit + 1) * h * w];
        all.extend(
            plane
                .iter()
                .enumerate()
                .map(|(k, &v)| (v, img, k / w, k % w)),
        );
    }
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let min_gap = (rf.size as f64 / 2.0 / rf.jump as f64).max(1.0);
    let mut out: Vec<Hit> = Vec::new();
    for hit in all {
        let close = out.iter().any(|o| {
            o.1 == hit.1
                && ((o.2 as f64 - hit.2 as f64).abs() < min_gap
                    && (o.3 as f64 - hit.3 as f64).abs() < min_gap)
        });
        if !close {
            out.push(hit);
            if out.len() == 9 {
                break;
            }
        }
    }
    out
}

fn main() -> Result<()> {
    let a = Args::parse();
    common::output::ready_dir("--out", &a.out)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dev = Device::by_name(&a.device)?;
    let net = Net::load(&a.model, root, &dev)?;
    let layers = if a.layers.is_empty() {
        net.default_layers()
    } else {
        a.layers.clone()
    };
    let idx = layers
        .iter()
        .map(|l| net.index(l))
        .collect::<Result<Vec<_>>>()?;
    for (l, &i) in layers.iter().zip(&idx) {
        let rf = net.field(i)?;
        if (a.size as usize) < rf.jump {
            bail!(
                "--size {}: too small for layer {l}, whose units are {} pixels apart; photos must be at least {}×{}",
                a.size, rf.jump, rf.jump, rf.jump
            );
        }
    }
    let dir = a
        .images
        .clone()
        .unwrap_or_else(|| root.join("assets/images"));
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        bail!("no PNG or JPEG photos in {}", dir.display());
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    println!(
        "{} over {} photos from {} at {}×{} on {}",
        a.model,
        paths.len(),
        dir.display(),
        a.size,
        a.size,
        dev.name()
    );

    // Activations of every chosen layer for every photo (host copies).
    let mut photos = Vec::new();
    let mut acts: Vec<Vec<Vec<f32>>> = vec![Vec::new(); idx.len()];
    let mut shapes = vec![[0usize; 3]; idx.len()];
    for p in &paths {
        let (img, rgb) = load_photo(p, a.size, &dev)?;
        let x = net.input(&rgb)?;
        let out = no_grad(|| net.trunk().forward_at(&x, &idx))?;
        for (k, t) in out.iter().enumerate() {
            shapes[k] = [t.shape()[1], t.shape()[2], t.shape()[3]];
            acts[k].push(t.to_vec()?);
        }
        photos.push(img);
    }

    let cell = 64u32;
    let label_w = 56u32;
    for (k, (layer, &i)) in layers.iter().zip(&idx).enumerate() {
        let channels = shapes[k][0];
        let [_, h, w] = shapes[k];
        // Units silent on every photo (many after HED's fine-tuning) have no top nine.
        let live: Vec<usize> = (0..channels)
            .filter(|&u| {
                acts[k]
                    .iter()
                    .any(|a| a[u * h * w..(u + 1) * h * w].iter().any(|&v| v > 0.0))
            })
            .collect();
        let units: Vec<usize> = if a.units.is_empty() {
            let n = 16.min(live.len());
            (0..n).map(|j| live[j * live.len() / n]).collect()
        } else {
            a.units.clone()
        };
        if let Some(&u) = units.iter().find(|&&u| u >= channels) {
            bail!(
                "--units {u}: layer {layer} has {channels} units (0 to {})",
                channels - 1
            );
        }
        if let Some(u) = units.iter().find(|u| !live.contains(u)) {
            println!("{layer}: unit {u} is zero on every photo; its patches are arbitrary");
        }
        println!(
            "{layer}: {} of {channels} units respond to some photo",
            live.len()
        );
        let rf = net.field(i)?;
        let mut sheet = RgbImage::from_pixel(
            label_w + 9 * (cell + 2),
            units.len() as u32 * (cell + 2) + 30,
            Rgb([255, 255, 255]),
        );
        common::draw_label(
            &mut sheet,
            4,
            4,
            18.0,
            Rgb([0, 0, 0]),
            &format!(
                "{} {layer}: top-9 patches ({}×{} receptive field)",
                a.model, rf.size, rf.size
            ),
        );
        for (row, &u) in units.iter().enumerate() {
            let y0 = 30 + row as u32 * (cell + 2);
            common::draw_label(
                &mut sheet,
                4,
                y0 as i32 + 22,
                16.0,
                Rgb([0, 0, 0]),
                &format!("#{u}"),
            );
            for (col, &(_, img, y, x)) in top9(&acts[k], shapes[k], u, &rf).iter().enumerate() {
                let s = a.size as usize;
                let (y_lo, y_hi) = rf.span(y, s);
                let (x_lo, x_hi) = rf.span(x, s);
                let patch = image::imageops::crop_imm(
                    &photos[img],
                    x_lo as u32,
                    y_lo as u32,
                    (x_hi - x_lo).max(1) as u32,
                    (y_hi - y_lo).max(1) as u32,
                )
                .to_image();
                let patch = image::imageops::resize(&patch, cell, cell, FilterType::Nearest);
                common::paste(&mut sheet, &patch, label_w + col as u32 * (cell + 2), y0);
            }
        }
        let path = a.out.join(format!("top9_{layer}.png"));
        common::save_png(&sheet, &path)?;
        println!(
            "{layer}: receptive field {}, jump {}: wrote {}",
            rf.size,
            rf.jump,
            path.display()
        );
    }

    // The first convolution's filters as colour images (each scaled to its own range).
    let (_, first) = net
        .trunk()
        .named_parameters()
        .into_iter()
        .find(|(n, p)| n.ends_with("weight") && p.rank() == 4)
        .context("the trunk has no convolution")?;
    let (n, kh, kw) = (first.shape()[0], first.shape()[2], first.shape()[3]);
    let w = first.to_vec()?;
    let (scale, cols) = (24u32, 8u32);
    let rows = (n as u32).div_ceil(cols);
    let mut sheet = RgbImage::from_pixel(
        cols * (kw as u32 * scale + 4),
        rows * (kh as u32 * scale + 4),
        Rgb([255, 255, 255]),
    );
    for f in 0..n {
        let v = &w[f * 3 * kh * kw..(f + 1) * 3 * kh * kw];
        let (lo, hi) = v
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &x| (l.min(x), h.max(x)));
        let mut img = RgbImage::new(kw as u32, kh as u32);
        for y in 0..kh {
            for x in 0..kw {
                let c = |ch: usize| {
                    (((v[ch * kh * kw + y * kw + x] - lo) / (hi - lo).max(1e-12)) * 255.0) as u8
                };
                // The HED VGG16 takes BGR: its channel 0 is blue.
                let px = if net.bgr {
                    [c(2), c(1), c(0)]
                } else {
                    [c(0), c(1), c(2)]
                };
                img.put_pixel(x as u32, y as u32, Rgb(px));
            }
        }
        let img = image::imageops::resize(
            &img,
            kw as u32 * scale,
            kh as u32 * scale,
            FilterType::Nearest,
        );
        let (r, c) = (f as u32 / cols, f as u32 % cols);
        common::paste(
            &mut sheet,
            &img,
            c * (kw as u32 * scale + 4),
            r * (kh as u32 * scale + 4),
        );
    }
    let path = a.out.join("first_layer_filters.png");
    common::save_png(&sheet, &path)?;
    println!(
        "{n} first-layer filters ({kh}×{kw}): wrote {}",
        path.display()
    );

    // One photo's feature maps at one layer.
    let fl = a
        .feature_layer
        .clone()
        .unwrap_or_else(|| layers[layers.len().min(2) - 1].clone());
    let fi = net.index(&fl)?;
    let photo = paths
        .iter()
        .position(|p| p.file_name().is_some_and(|n| n == a.feature_image.as_str()))
        .with_context(|| {
            format!(
                "--feature-image {}: not among the photos in {}",
                a.feature_image,
                dir.display()
            )
        })?;
    let (_, rgb) = load_photo(&paths[photo], a.size, &dev)?;
    let x = net.input(&rgb)?;
    let maps = no_grad(|| net.trunk().forward_at(&x, &[fi]))?.remove(0);
    let (c, h, w) = (
        maps.shape()[1],
        maps.shape()[2] as u32,
        maps.shape()[3] as u32,
    );
    let v = maps.to_vec()?;
    let shown = c.min(64);
    let cols = 8u32;
    let mut sheet = RgbImage::from_pixel(
        cols * (w + 2),
        (shown as u32).div_ceil(cols) * (h + 2),
        Rgb([255, 255, 255]),
    );
    for m in 0..shown {
        let plane = &v[m * (h * w) as usize..(m + 1) * (h * w) as usize];
        let peak = plane.iter().fold(0f32, |p, &x| p.max(x)).max(1e-12);
        let img = RgbImage::from_fn(w, h, |x, y| {
            let g = (plane[(y * w + x) as usize].max(0.0) / peak * 255.0) as u8;
            Rgb([g, g, g])
        });
        common::paste(
            &mut sheet,
            &img,
            (m as u32 % cols) * (w + 2),
            (m as u32 / cols) * (h + 2),
        );
    }
    let path = a.out.join(format!("feature_maps_{fl}.png"));
    common::save_png(&sheet, &path)?;
    println!(
        "{} of {c} feature maps of {fl} for {}: wrote {}",
        shown,
        a.feature_image,
        path.display()
    );
    Ok(())
}
