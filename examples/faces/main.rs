//! Faces with the bundled pretrained nets: detects every face, finds its 68 landmarks,
//! computes its 128-D descriptor, and recognises it against a database of one photo per
//! person (one-shot). Prints the pairwise distance matrix and which pairs verify as the
//! same person (distance < 0.6), and writes one PNG per photo with the boxes, landmarks
//! and each face's nearest identity and distance (`out/faces/`).
//!
//! `cargo run --release --example faces -- [--image PATH...] [--enroll NAME=PATH...]
//!  [--device cpu|gpu|best] [--threshold 0.6]`

#[path = "../common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use fovea::models::face::{
    face_distance, DetectOptions, Face, FaceDatabase, FaceNets, Pixels, SAME_PERSON_THRESHOLD,
};
use fovea::{no_grad, Device, DeviceExt};
use image::{Rgb, RgbImage};
use imageproc::drawing::draw_filled_circle_mut;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Detect, align, describe and recognise faces with the bundled pretrained nets.
#[derive(Parser)]
#[command(long_about = None)]
struct Args {
    /// Photos to analyse (default: every photo in assets/images/faces).
    #[arg(long, num_args = 1..)]
    image: Vec<PathBuf>,
    /// Known people, one photo each, as NAME=PATH (default: Obama=obama.jpg and
    /// Biden=biden.jpg from assets/images/faces); each photo's highest-scoring face is used.
    #[arg(long, num_args = 1..)]
    enroll: Vec<String>,
    /// Folder holding the three nets' safetensors files.
    #[arg(long, default_value_os_t = Path::new(ROOT).join("assets/weights/faces"))]
    weights: PathBuf,
    /// cpu, gpu or best.
    #[arg(long, default_value = "best")]
    device: String,
    /// Distance below which two faces are the same person.
    #[arg(long, default_value_t = SAME_PERSON_THRESHOLD)]
    threshold: f32,
    /// Detection score threshold.
    #[arg(long, default_value_t = 0.5)]
    score: f32,
    /// Detector input side (a multiple of 32).
    #[arg(long, default_value_t = 416, value_parser = common::args::within(1, 2048))]
    input_size: usize,
    /// Where the annotated photos go.
    #[arg(long, default_value = "out/faces")]
    out: PathBuf,
}

fn load(path: &Path) -> Result<(RgbImage, Pixels)> {
    let img = image::open(path)
        .with_context(|| format!("reading {}", path.display()))?
        .to_rgb8();
    let px = Pixels::from_rgb(&img);
    Ok((img, px))
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The default photos and people: the bundled face photos, Obama and Biden enrolled.
fn defaults(a: &mut Args) -> Result<()> {
    let dir = Path::new(ROOT).join("assets/images/faces");
    if a.image.is_empty() {
        let mut photos: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("jpg" | "png")))
            .collect();
        photos.sort();
        a.image = photos;
    }
    if a.enroll.is_empty() {
        for (who, file) in [("Obama", "obama.jpg"), ("Biden", "biden.jpg")] {
            a.enroll
                .push(format!("{who}={}", dir.join(file).to_string_lossy()));
        }
    }
    Ok(())
}

fn enroll(nets: &FaceNets, people: &[String], opts: DetectOptions) -> Result<FaceDatabase> {
    let mut db = FaceDatabase::new();
    for entry in people {
        let Some((who, path)) = entry.split_once('=') else {
            bail!("--enroll wants NAME=PATH, got {entry:?}");
        };
        let (_, px) = load(Path::new(path))?;
        let faces = no_grad(|| nets.analyse(&px, opts))?;
        let Some(face) = faces.first() else {
            bail!("--enroll {who}: no face found in {path}");
        };
        db.enroll(who, &face.descriptor)?;
        println!("enrolled {who} from {path}");
    }
    Ok(db)
}

/// Draws the faces: box, landmarks and "name distance" (red when unknown).
fn annotate(img: &RgbImage, faces: &[Face], labels: &[String], known: &[bool]) -> RgbImage {
    // Large photos are drawn at most 800 px on their long side, so labels stay readable.
    let scale = (800.0 / img.width().max(img.height()) as f32).min(1.0);
    let (w, h) = (
        (img.width() as f32 * scale).round() as u32,
        (img.height() as f32 * scale).round() as u32,
    );
    let mut out = image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle);
    for (i, f) in faces.iter().enumerate() {
        let colour = if known[i] {
            Rgb([40, 200, 60])
        } else {
            Rgb([230, 40, 40])
        };
        let [x, y, bw, bh] = f.detection.rect.map(|v| v * scale);
        common::draw_labelled_box(&mut out, [x, y, x + bw, y + bh], colour, &labels[i]);
        for p in &f.landmarks {
            let c = ((p[0] * scale).round() as i32, (p[1] * scale).round() as i32);
            draw_filled_circle_mut(&mut out, c, 2, Rgb([255, 220, 0]));
        }
    }
    out
}

fn main() -> Result<()> {
    let mut a = Args::parse();
    common::output::ready_dir("--out", &a.out)?;
    defaults(&mut a)?;
    let dev = Device::by_name(&a.device)?;
    println!("device: {}", dev.name());
    let nets = FaceNets::pretrained(&a.weights, &dev)?;
    let opts = DetectOptions {
        input_size: a.input_size,
        score_threshold: a.score,
        ..Default::default()
    };
    let mut db = enroll(&nets, &a.enroll, opts)?;
    db.threshold = a.threshold;
    let mut all: Vec<(String, Vec<f32>)> = Vec::new();
    let start = Instant::now();
    for path in &a.image {
        let (img, px) = load(path)?;
        let t = Instant::now();
        let faces = no_grad(|| nets.analyse(&px, opts))?;
        let name = name_of(path);
        println!(
            "{name}: {} face(s) in {:.2} s",
            faces.len(),
            t.elapsed().as_secs_f32()
        );
        let (mut labels, mut known) = (Vec::new(), Vec::new());
        for (i, f) in faces.iter().enumerate() {
            let m = db.identify(&f.descriptor)?.context("nobody enrolled")?;
            let who = m.name.clone().unwrap_or_else(|| "unknown".into());
            let [x, y, w, h] = f.detection.rect;
            println!(
                "  face {i}: box [{x:.0}, {y:.0}, {w:.0}, {h:.0}] score {:.3} → {who} (nearest {} at {:.3})",
                f.detection.score, m.nearest, m.distance
            );
            labels.push(format!("{who} {:.2}", m.distance));
            known.push(m.name.is_some());
            all.push((format!("{name}#{i}"), f.descriptor.clone()));
        }
        let png = a.out.join(format!(
            "{}.png",
            name.rsplit_once('.').map_or(&*name, |s| s.0)
        ));
        common::save_png(&annotate(&img, &faces, &labels, &known), &png)?;
    }
    println!(
        "{} photo(s) in {:.1} s; annotated photos in {}",
        a.image.len(),
        start.elapsed().as_secs_f32(),
        a.out.display()
    );
    print_matrix(&all, a.threshold)
}

/// The pairwise distance matrix, then every pair that verifies.
fn print_matrix(all: &[(String, Vec<f32>)], threshold: f32) -> Result<()> {
    if all.is_empty() {
        return Ok(());
    }
    let width = all.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    println!("\npairwise descriptor distances (< {threshold} = same person):");
    print!("{:width$}", "");
    for j in 0..all.len() {
        print!(" {j:>6}");
    }
    println!();
    let mut same = Vec::new();
    for (i, (ni, di)) in all.iter().enumerate() {
        print!("{ni:width$}");
        for (j, (nj, dj)) in all.iter().enumerate() {
            let d = face_distance(di, dj)?;
            print!(" {d:>6.3}");
            if j > i && d < threshold {
                same.push(format!("{ni} ~ {nj} ({d:.3})"));
            }
        }
        println!("  [{i}]");
    }
    println!("\npairs that verify ({}):", same.len());
    for s in same {
        println!("  {s}");
    }
    Ok(())
}
