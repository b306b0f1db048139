//! What the examples share: charts with plotters, boxes and labels with imageproc, both
//! lettered in the bundled DejaVu Sans so that no system font is needed. Each example
//! includes this file with `#[path = "../common/mod.rs"] mod common;` and uses what it
//! needs.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Once;

use ab_glyph::{FontRef, PxScale};
use anyhow::{Context, Result};
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_rect_mut, draw_hollow_rect_mut, draw_text_mut, text_size};
use imageproc::rect::Rect;
use plotters::prelude::*;

pub mod amp;
pub mod args;
pub mod mnist;
pub mod output;

const FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The bundled font, for imageproc's text.
pub fn font() -> FontRef<'static> {
    FontRef::try_from_slice(FONT_BYTES).expect("assets/fonts/DejaVuSans.ttf is a valid font")
}

fn register_chart_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT_BYTES)
            .map_err(|_| ())
            .expect("assets/fonts/DejaVuSans.ttf is a valid font");
    });
}

/// A line series: its legend label and its (x, y) points.
pub struct Series<'a> {
    pub label: &'a str,
    pub points: &'a [(f64, f64)],
}

/// Draws series sharing one x axis as a PNG chart: a title, labelled axes with ticks, a
/// legend; `y2` series get a second y axis on the right (e.g. loss on the left,
/// accuracy on the right).
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    (y_label, y): (&str, &[Series]),
    (y2_label, y2): (&str, &[Series]),
) -> Result<()> {
    render_png(path, (900, 540), |root| {
        let all = y.iter().chain(y2);
        let xs = all.clone().flat_map(|s| s.points.iter().map(|p| p.0));
        let (x0, x1) = bounds(xs);
        let (a0, a1) = bounds(y.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
        let (b0, b1) = bounds(y2.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 24))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .right_y_label_area_size(if y2.is_empty() { 0 } else { 64 })
            .build_cartesian_2d(x0..x1, a0..a1)?
            .set_secondary_coord(x0..x1, b0..b1);
        draw_axes(&mut chart, x_label, y_label)?;
        if !y2.is_empty() {
            chart
                .configure_secondary_axes()
                .y_desc(y2_label)
                .label_style(("sans-serif", 15))
                .axis_desc_style(("sans-serif", 17))
                .draw()?;
        }
        let colour = |i: usize| Palette99::pick(i).to_rgba();
        for (i, s) in y.iter().enumerate() {
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    colour(i).stroke_width(2),
                ))?
                .label(s.label)
                .legend(move |(x, yy)| {
                    PathElement::new([(x, yy), (x + 20, yy)], colour(i).stroke_width(2))
                });
        }
        for (j, s) in y2.iter().enumerate() {
            let i = y.len() + j;
            chart
                .draw_secondary_series(LineSeries::new(
                    s.points.iter().copied(),
                    colour(i).stroke_width(2),
                ))?
                .label(s.label)
                .legend(move |(x, yy)| {
                    PathElement::new([(x, yy), (x + 20, yy)], colour(i).stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        Ok(())
    })
}

type Plane<'a> = ChartContext<
    'a,
    BitMapBackend<'a>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Renders what `draw` puts on a white `w`×`h` canvas, lettered in the bundled font, into
/// a PNG at `path`.
fn render_png(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    register_chart_font();
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    let img = RgbImage::from_raw(w, h, buf).context("chart buffer")?;
    save_png(&img, path)
}

/// The grid, ticks and axis titles every chart shares.
fn draw_axes(chart: &mut Plane, x_label: &str, y_label: &str) -> Result<()> {
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()?;
    Ok(())
}

/// `(min, max)` of the values, widened a little (and to a unit range when flat).
fn bounds(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-6);
    if hi - lo < 1e-9 {
        return (lo - 0.5, hi + 0.5);
    }
    (lo - pad, hi + pad)
}
/// The per-epoch line of the classification examples (`epoch  N/M  loss L  test accuracy
/// A%`), recorded into the curves that [`accuracy_chart`] draws. Returns the mean loss.
pub fn report_epoch(
    epoch: usize,
    epochs: usize,
    batch_losses: &[fovea::Tensor],
    accuracy: f64,
    losses: &mut Vec<(f64, f64)>,
    accs: &mut Vec<(f64, f64)>,
) -> fovea::Result<f64> {
    let mean = batch_losses
        .iter()
        .map(|l| l.item().map(f64::from))
        .sum::<fovea::Result<f64>>()?
        / batch_losses.len().max(1) as f64;
    println!(
        "epoch {:2}/{epochs}  loss {mean:.4}  test accuracy {:.2}%",
        epoch + 1,
        100.0 * accuracy
    );
    losses.push(((epoch + 1) as f64, mean));
    accs.push(((epoch + 1) as f64, 100.0 * accuracy));
    Ok(mean)
}

/// Training loss on the left axis, test accuracy (%) on the right, by epoch.
pub fn accuracy_chart(
    path: &Path,
    title: &str,
    losses: &[(f64, f64)],
    accs: &[(f64, f64)],
) -> Result<()> {
    line_chart(
        path,
        title,
        "epoch",
        (
            "mean training loss",
            &[Series {
                label: "training loss",
                points: losses,
            }],
        ),
        (
            "test accuracy (%)",
            &[Series {
                label: "test accuracy",
                points: accs,
            }],
        ),
    )
}

/// A colour per class (bright, distinct; index 0 is often the background).
pub fn class_colour(i: usize) -> Rgb<u8> {
    const C: [[u8; 3]; 12] = [
        [0, 0, 0],
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
        [0, 128, 128],
    ];
    Rgb(C[i % C.len()])
}

/// Draws a box (`x1, y1, x2, y2` in pixels) two pixels wide with a label on a filled
/// strip above it (inside the image).
pub fn draw_labelled_box(img: &mut RgbImage, b: [f32; 4], colour: Rgb<u8>, label: &str) {
    let (w, h) = img.dimensions();
    let x1 = b[0].round().clamp(0.0, w as f32 - 1.0) as i32;
    let y1 = b[1].round().clamp(0.0, h as f32 - 1.0) as i32;
    let x2 = b[2].round().clamp(0.0, w as f32 - 1.0) as i32;
    let y2 = b[3].round().clamp(0.0, h as f32 - 1.0) as i32;
    for d in 0..2 {
        let (bw, bh) = ((x2 - x1 - 2 * d).max(1), (y2 - y1 - 2 * d).max(1));
        draw_hollow_rect_mut(
            img,
            Rect::at(x1 + d, y1 + d).of_size(bw as u32, bh as u32),
            colour,
        );
    }
    if label.is_empty() {
        return;
    }
    let font = font();
    let scale = PxScale::from(12.0);
    let (tw, th) = text_size(scale, &font, label);
    let ty = if y1 >= th as i32 + 2 {
        y1 - th as i32 - 2
    } else {
        y1
    };
    draw_filled_rect_mut(img, Rect::at(x1, ty).of_size(tw + 4, th + 2), colour);
    draw_text_mut(img, Rgb([255, 255, 255]), x1 + 2, ty, scale, &font, label);
}

/// Writes a line of text at `(x, y)`.
pub fn draw_label(img: &mut RgbImage, x: i32, y: i32, size: f32, colour: Rgb<u8>, text: &str) {
    draw_text_mut(img, colour, x, y, PxScale::from(size), &font(), text);
}

/// Saves a PNG, creating its folder.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    img.save(path)
        .with_context(|| format!("writing {}", path.display()))
}

/// Copies `src` into `dst` at `(x, y)`.
pub fn paste(dst: &mut RgbImage, src: &RgbImage, x: u32, y: u32) {
    image::imageops::replace(dst, src, x as i64, y as i64);
}

/// A labelled group of 2-D points for [`scatter_chart`].
pub struct PointGroup<'a> {
    pub label: String,
    pub colour: Rgb<u8>,
    pub points: &'a [(f64, f64)],
}

/// Draws groups of points as a PNG scatter plot (small filled circles, a colour and a
/// legend entry per group).
pub fn scatter_chart(
    path: &Path,
    title: &str,
    (x_label, y_label): (&str, &str),
    groups: &[PointGroup],
) -> Result<()> {
    render_png(path, (900, 760), |root| {
        let all = || groups.iter().flat_map(|g| g.points.iter());
        let (x0, x1) = bounds(all().map(|p| p.0));
        let (y0, y1) = bounds(all().map(|p| p.1));
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        draw_axes(&mut chart, x_label, y_label)?;
        for g in groups {
            let c = RGBColor(g.colour[0], g.colour[1], g.colour[2]);
            chart
                .draw_series(
                    g.points
                        .iter()
                        .map(|&p| Circle::new(p, 3, c.mix(0.75).filled())),
                )?
                .label(g.label.as_str())
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, c.filled()));
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        Ok(())
    })
}
