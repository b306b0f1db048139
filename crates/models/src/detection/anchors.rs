//! Anchor boxes: a grid of them over an image, and anchor shapes chosen by k-means on a
//! data set's box shapes with YOLOv2's distance, 1 − IoU of two boxes sharing a centre
//! (a Euclidean distance on width and height would let large boxes dominate).

use fovea_core::{Error, Result};

/// IoU of two box shapes `[w, h]` placed on one centre: how well an anchor's shape fits
/// a box regardless of where the box is.
pub fn shape_iou(a: [f32; 2], b: [f32; 2]) -> f32 {
    let inter = a[0].min(b[0]) * a[1].min(b[1]);
    inter / (a[0] * a[1] + b[0] * b[1] - inter)
}

/// The shapes `[w, h]` of `xyxy` boxes.
pub fn box_shapes(boxes: &[[f32; 4]]) -> Vec<[f32; 2]> {
    boxes.iter().map(|b| [b[2] - b[0], b[3] - b[1]]).collect()
}

fn check_shapes(op: &'static str, shapes: &[[f32; 2]]) -> Result<()> {
    if let Some((i, s)) = shapes
        .iter()
        .enumerate()
        .find(|(_, s)| !(s[0] > 0.0 && s[1] > 0.0 && s[0].is_finite() && s[1].is_finite()))
    {
        return Err(Error::op(
            op,
            format!("shape {i} {s:?} must have a finite, positive width and height"),
        ));
    }
    Ok(())
}

/// Anchor boxes (`xyxy`, pixels) of every shape in `shapes` (`[w, h]`) centred on every
/// cell of a `grid = [rows, cols]` over an image of `image = [height, width]` pixels; in
/// the order (row, column, shape).
pub fn grid_anchors(
    shapes: &[[f32; 2]],
    grid: [usize; 2],
    image: [f32; 2],
) -> Result<Vec<[f32; 4]>> {
    check_shapes("grid_anchors", shapes)?;
    if grid.contains(&0) || !(image[0] > 0.0 && image[1] > 0.0) {
        return Err(Error::op(
            "grid_anchors",
            format!("needs a non-empty grid and image, got grid {grid:?} over image {image:?}"),
        ));
    }
    let (ch, cw) = (image[0] / grid[0] as f32, image[1] / grid[1] as f32);
    let mut out = Vec::with_capacity(grid[0] * grid[1] * shapes.len());
    for r in 0..grid[0] {
        for c in 0..grid[1] {
            let (cx, cy) = ((c as f32 + 0.5) * cw, (r as f32 + 0.5) * ch);
            for s in shapes {
                out.push([
                    cx - s[0] / 2.0,
                    cy - s[1] / 2.0,
                    cx + s[0] / 2.0,
                    cy + s[1] / 2.0,
                ]);
            }
        }
    }
    Ok(out)
}

/// Anchor shapes fitted to a data set.
#[derive(Clone, Debug, PartialEq)]
pub struct AnchorFit {
    /// `[w, h]` per anchor, by increasing area
    pub anchors: Vec<[f32; 2]>,
    /// mean over the shapes of the IoU with their best anchor (YOLOv2's "Avg IOU")
    pub mean_iou: f32,
    /// rounds until no shape changed cluster (or the cap of 100)
    pub iterations: usize,
}

/// SplitMix64, for the seeded choice of initial centres.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The index of the anchor whose shape fits `s` best (the first of equals).
pub fn best_anchor(s: [f32; 2], anchors: &[[f32; 2]]) -> usize {
    let mut best = 0;
    for (k, a) in anchors.iter().enumerate() {
        if shape_iou(s, *a) > shape_iou(s, anchors[best]) {
            best = k;
        }
    }
    best
}

/// `k` anchor shapes by k-means on `shapes` (`[w, h]`) with distance 1 − [`shape_iou`]
/// (YOLOv2): centres start by k-means++ seeding from `seed`, each round assigns every
/// shape to its nearest centre and moves each centre to its members' mean width and
/// height, until no assignment changes.
pub fn kmeans_anchors(shapes: &[[f32; 2]], k: usize, seed: u64) -> Result<AnchorFit> {
    check_shapes("kmeans_anchors", shapes)?;
    if k == 0 || k > shapes.len() {
        return Err(Error::op(
            "kmeans_anchors",
            format!(
                "needs 1 <= k <= {} (the number of shapes), got k = {k}",
                shapes.len()
            ),
        ));
    }
    let mut state = seed;
    let mut uniform = || (splitmix(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
    // k-means++: each next centre is drawn with probability proportional to its squared
    // distance from the nearest centre so far.
    let mut centres = vec![shapes[(uniform() * shapes.len() as f64) as usize % shapes.len()]];
    while centres.len() < k {
        let d2: Vec<f64> = shapes
            .iter()
            .map(|&s| {
                let d = 1.0 - shape_iou(s, centres[best_anchor(s, &centres)]) as f64;
                d * d
            })
            .collect();
        let total: f64 = d2.iter().sum();
        let next = if total > 0.0 {
            let mut t = uniform() * total;
            d2.iter()
                .position(|&d| {
                    t -= d;
                    t < 0.0
                })
                .unwrap_or(shapes.len() - 1)
        } else {
            // Every shape already sits on a centre: the rest are duplicates.
            centres.len() % shapes.len()
        };
        centres.push(shapes[next]);
    }
    let mut assigned = vec![usize::MAX; shapes.len()];
    let mut iterations = 0;
    while iterations < 100 {
        iterations += 1;
        let now: Vec<usize> = shapes.iter().map(|&s| best_anchor(s, &centres)).collect();
        if now == assigned {
            break;
        }
        assigned = now;
        for (c, centre) in centres.iter_mut().enumerate() {
            let (mut sum, mut n) = ([0.0f64; 2], 0usize);
            for (s, _) in shapes.iter().zip(&assigned).filter(|(_, &a)| a == c) {
                sum = [sum[0] + s[0] as f64, sum[1] + s[1] as f64];
                n += 1;
            }
            // An empty cluster keeps its centre.
            if n > 0 {
                *centre = [(sum[0] / n as f64) as f32, (sum[1] / n as f64) as f32];
            }
        }
    }
    centres.sort_by(|a, b| (a[0] * a[1]).total_cmp(&(b[0] * b[1])));
    let mean_iou = shapes
        .iter()
        .map(|&s| shape_iou(s, centres[best_anchor(s, &centres)]) as f64)
        .sum::<f64>()
        / shapes.len() as f64;
    Ok(AnchorFit {
        anchors: centres,
        mean_iou: mean_iou as f32,
        iterations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmeans_finds_two_clear_shape_clusters() {
        let mut shapes = Vec::new();
        for i in 0..20 {
            let d = i as f32 * 0.1;
            shapes.push([10.0 + d, 20.0 - d]);
            shapes.push([40.0 - d, 10.0 + d]);
        }
        let fit = kmeans_anchors(&shapes, 2, 3).unwrap();
        assert!((fit.anchors[0][0] - 10.95).abs() < 1e-3, "{fit:?}");
        assert!((fit.anchors[1][0] - 39.05).abs() < 1e-3, "{fit:?}");
        assert!(fit.mean_iou > 0.9);
        assert!(kmeans_anchors(&shapes, 0, 0).is_err());
        assert!(kmeans_anchors(&[[1.0, 0.0]], 1, 0).is_err());
    }

    #[test]
    fn grid_anchors_are_centred_on_the_cells() {
        let a = grid_anchors(&[[4.0, 2.0], [2.0, 2.0]], [2, 3], [20.0, 30.0]).unwrap();
        assert_eq!(a.len(), 12);
        assert_eq!(a[0], [3.0, 4.0, 7.0, 6.0]);
        // Row 1, column 2, second shape: centre (25, 15).
        assert_eq!(a[11], [24.0, 14.0, 26.0, 16.0]);
    }
}
