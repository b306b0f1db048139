//! The YOLO-style detector: anchors by k-means, training on fresh canvases each epoch,
//! mAP@0.5 on held-out canvases after each epoch, pictures of the predictions.

use std::time::Instant;

use anyhow::Result;
use fovea::data::{canvas_images, digit_canvases, CanvasOptions, DigitCanvas, InMemoryDataset};
use fovea::models::detection::{
    box_shapes, kmeans_anchors, mean_average_precision, DecodeOptions, Detection, GroundTruth,
    MeanAp, YoloLossOptions, YoloSpec,
};
use fovea::models::Yolo;
use fovea::nn::Module;
use fovea::optim::{Adam, AdamOptions, CosineAnnealing, LrSchedule, Optimizer};
use fovea::{no_grad, Device};
use image::{imageops, Rgb, RgbImage};

use crate::common::{self, Series};
use crate::{epoch_bar, Args};

/// Canvases of `size` pixels with digits scaled as on the default 96 px canvas.
pub fn canvas_options(size: usize) -> CanvasOptions {
    let scale = |v: usize| (v * size / 96).max(8);
    CanvasOptions {
        size,
        digit_size: [scale(20), scale(40)],
        ..Default::default()
    }
}

/// Boxes kept for mAP: VOC ranks every detection, so the threshold only trims noise.
const MAP_DECODE: DecodeOptions = DecodeOptions {
    score_threshold: 0.01,
    iou_threshold: 0.45,
    max_detections: 100,
};
/// Boxes drawn on the pictures.
const SHOW_THRESHOLD: f32 = 0.4;

/// Detections for every canvas, in eval mode, batches of 100.
fn detect(model: &Yolo, canvases: &[DigitCanvas], dev: &Device) -> Result<Vec<Vec<Detection>>> {
    model.eval();
    let mut out = Vec::with_capacity(canvases.len());
    for chunk in canvases.chunks(100) {
        let x = canvas_images(chunk, dev)?;
        let pred = no_grad(|| model.forward(&x))?;
        out.extend(model.spec.decode(&pred, &MAP_DECODE)?);
    }
    model.train();
    Ok(out)
}

fn map_on(
    model: &Yolo,
    canvases: &[DigitCanvas],
    dev: &Device,
) -> Result<(MeanAp, Vec<Vec<Detection>>)> {
    let found = detect(model, canvases, dev)?;
    let truth: Vec<GroundTruth> = canvases
        .iter()
        .map(|c| GroundTruth {
            boxes: c.boxes.clone(),
            labels: c.labels.clone(),
        })
        .collect();
    Ok((mean_average_precision(&found, &truth, 10, 0.5)?, found))
}

pub fn run(a: &Args, train: &InMemoryDataset, test: &InMemoryDataset, dev: &Device) -> Result<()> {
    let start = Instant::now();
    let opts = canvas_options(a.size);
    let held_out = digit_canvases(test, a.test, &opts, a.seed ^ 0xdead_beef)?;
    // Anchor shapes from the training boxes (YOLOv2's k-means, distance 1 − IoU).
    let sample = digit_canvases(train, 2000.min(a.train * 4), &opts, a.seed ^ 0xa5a5)?;
    let shapes: Vec<[f32; 2]> = sample.iter().flat_map(|c| box_shapes(&c.boxes)).collect();
    let fit = kmeans_anchors(&shapes, a.anchors, a.seed)?;
    println!(
        "anchors (w×h px, k-means on {} training boxes, mean IoU {:.3}): {}",
        shapes.len(),
        fit.mean_iou,
        fit.anchors
            .iter()
            .map(|s| format!("{:.1}×{:.1}", s[0], s[1]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let spec = YoloSpec::new(a.size as f32, a.size / 8, fit.anchors.clone(), 10)?;
    let model = Yolo::tiny(spec, 1, a.width, a.seed, dev)?;
    let summary = fovea::nn::summary(&model, &[1, 1, a.size, a.size], dev)?;
    println!(
        "detector: tiny darknet (width {}) + YOLO head, {} parameters, {:.1} M multiply-adds per canvas, output [N, {}, {g}, {g}]",
        a.width,
        summary.params(),
        summary.macs() as f64 / 1e6,
        model.spec.channels(),
        g = model.spec.grid
    );
    let mut opt = Adam::new(
        model.parameters(),
        AdamOptions {
            lr: a.lr,
            ..Default::default()
        },
    );
    let schedule = CosineAnnealing {
        base: a.lr,
        min: a.lr * 0.02,
        t_max: a.epochs(),
    };
    let loss_opts = YoloLossOptions::default();
    let (mut losses, mut maps) = (Vec::new(), Vec::new());
    let mut last = None;
    for epoch in 0..a.epochs() {
        opt.set_lr(schedule.lr_at(epoch));
        let t = Instant::now();
        // Fresh canvases every epoch: the same 8,000 digits, new places, sizes and company.
        let canvases = digit_canvases(
            train,
            a.train,
            &opts,
            a.seed.wrapping_mul(7919) + epoch as u64,
        )?;
        let bar = epoch_bar(epoch, a.epochs(), canvases.len().div_ceil(a.batch()))?;
        let mut step_losses = Vec::new();
        for (i, chunk) in canvases.chunks(a.batch()).enumerate() {
            let x = canvas_images(chunk, dev)?;
            let boxes: Vec<Vec<[f32; 4]>> = chunk.iter().map(|c| c.boxes.clone()).collect();
            let labels: Vec<Vec<usize>> = chunk.iter().map(|c| c.labels.clone()).collect();
            let targets = model.spec.encode(&boxes, &labels)?;
            opt.zero_grad();
            let loss = model.spec.loss(&model.forward(&x)?, &targets, &loss_opts)?;
            loss.total.backward()?;
            opt.step()?;
            step_losses.push(loss.total.detach());
            bar.inc(1);
            // Reading the loss waits for the device, so only now and then.
            if i % 20 == 0 {
                bar.set_message(format!("loss {:.3}", loss.total.item()?));
            }
        }
        bar.finish_and_clear();
        let values: Vec<f64> = step_losses
            .iter()
            .map(|l| l.item().map(f64::from))
            .collect::<fovea::Result<_>>()?;
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        let (m, found) = map_on(&model, &held_out, dev)?;
        println!(
            "epoch {:2}/{}  loss {mean:.4}  mAP@0.5 {:.4}  ({:.1} s)",
            epoch + 1,
            a.epochs(),
            m.map,
            t.elapsed().as_secs_f64()
        );
        losses.push((epoch as f64 + 1.0, mean));
        maps.push((epoch as f64 + 1.0, m.map as f64));
        last = Some((m, found));
    }
    let Some((m, found)) = last else {
        anyhow::bail!("--epochs must be at least 1");
    };
    let per_class: Vec<String> = m
        .per_class
        .iter()
        .enumerate()
        .map(|(c, ap)| ap.map_or(format!("{c}: -"), |ap| format!("{c}: {ap:.3}")))
        .collect();
    println!("AP@0.5 per digit: {}", per_class.join("  "));
    println!(
        "mAP@0.5 on {} held-out canvases: {:.4} (trained {} epochs of {} canvases in {:.1} s on {})",
        held_out.len(),
        m.map,
        a.epochs(),
        a.train,
        start.elapsed().as_secs_f64(),
        dev.name()
    );
    std::fs::create_dir_all(&a.out)?;
    common::line_chart(
        &a.out.join("training.png"),
        "YOLO on digit canvases",
        "epoch",
        (
            "mean training loss",
            &[Series {
                label: "loss",
                points: &losses,
            }],
        ),
        (
            "mAP@0.5 (held out)",
            &[Series {
                label: "mAP@0.5",
                points: &maps,
            }],
        ),
    )?;
    write_pictures(a, &held_out, &found)?;
    println!(
        "pictures of {} held-out canvases and the training curves in {}",
        a.pictures.min(held_out.len()),
        a.out.display()
    );
    Ok(())
}

/// Each picture ×3, boxes scoring at least `SHOW_THRESHOLD` with digit and score; and a
/// contact sheet of them all.
fn write_pictures(a: &Args, canvases: &[DigitCanvas], found: &[Vec<Detection>]) -> Result<()> {
    const ZOOM: u32 = 3;
    let n = a.pictures.min(canvases.len());
    let side = a.size as u32 * ZOOM;
    let cols = 4u32;
    let rows = (n as u32).div_ceil(cols);
    // Grey gaps, so that white canvases do not run into each other.
    let mut sheet = RgbImage::from_pixel(
        cols * (side + 4),
        rows.max(1) * (side + 4),
        Rgb([200, 200, 200]),
    );
    for (i, (c, dets)) in canvases.iter().zip(found).take(n).enumerate() {
        let grey = RgbImage::from_fn(a.size as u32, a.size as u32, |x, y| {
            let v = c.image[y as usize * a.size + x as usize];
            // Ink dark on white, as on paper.
            let g = (255.0 * (1.0 - v)).round() as u8;
            Rgb([g, g, g])
        });
        let mut img = imageops::resize(&grey, side, side, imageops::FilterType::Nearest);
        for d in dets.iter().filter(|d| d.score >= SHOW_THRESHOLD) {
            let b = d.bbox.map(|v| v * ZOOM as f32);
            let label = format!("{} {:.2}", d.class, d.score);
            common::draw_labelled_box(&mut img, b, common::class_colour(d.class + 1), &label);
        }
        common::save_png(&img, &a.out.join(format!("test_{i:02}.png")))?;
        let (x, y) = (
            (i as u32 % cols) * (side + 4) + 2,
            (i as u32 / cols) * (side + 4) + 2,
        );
        common::paste(&mut sheet, &img, x, y);
    }
    common::save_png(&sheet, &a.out.join("detections.png"))
}
