//! Metric learning: online triplet mining and its loss ([`mining`]), the batches it
//! needs (P classes × K items), balanced verification pairs, and the one-shot measures
//! (verification by a distance threshold, recognition by the nearest single reference).
//!
//! Distances, cosine similarity, `normalize` and the triplet losses on given triplets are
//! tensor ops in `fovea_core` (`Tensor::pairwise_distance`, `triplet_margin_loss`,
//! `triplet_squared_loss`, …); the Siamese encoder and the verification heads are in
//! [`crate::SiameseEncoder`] and [`crate::VerificationHead`]. Sampling and scoring here
//! work on host values.

pub mod mining;

pub use mining::{mine, mined_triplet_loss, MinedLoss, Mining, Triplets};

use fovea_core::{rng, Error, Result};

/// Indices of the items of each class in `labels`, for classes below `classes`.
pub fn by_class(labels: &[usize], classes: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        if l < classes {
            out[l].push(i);
        }
    }
    out
}

/// A P×K batch: `per_class` random items of each class in `classes` (drawn without
/// replacement while the class has enough, then again), in class order, so that every
/// anchor has positives. `groups` is [`by_class`]'s output.
pub fn pk_batch(
    groups: &[Vec<usize>],
    classes: &[usize],
    per_class: usize,
    seed: u64,
) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(classes.len() * per_class);
    for (k, &c) in classes.iter().enumerate() {
        let items = groups
            .get(c)
            .filter(|g| !g.is_empty())
            .ok_or_else(|| Error::op("pk_batch", format!("class {c} has no items")))?;
        let mut drawn = 0;
        let mut round = 0u64;
        while drawn < per_class {
            let order = rng::permutation(items.len(), seed ^ (k as u64) << 20 ^ round);
            for &i in order.iter().take(per_class - drawn) {
                out.push(items[i]);
                drawn += 1;
            }
            round += 1;
        }
    }
    Ok(out)
}

/// `count` pairs `(i, j, same)` from `labels`, half of one class and half of two
/// (alternating), drawn from `seed`. Needs a class with two items and two classes.
pub fn balanced_pairs(
    labels: &[usize],
    count: usize,
    seed: u64,
) -> Result<Vec<(usize, usize, bool)>> {
    let classes = labels.iter().max().map_or(0, |&m| m + 1);
    let groups = by_class(labels, classes);
    let multi: Vec<usize> = (0..classes).filter(|&c| groups[c].len() >= 2).collect();
    let present: Vec<usize> = (0..classes).filter(|&c| !groups[c].is_empty()).collect();
    if multi.is_empty() || present.len() < 2 {
        return Err(Error::op(
            "balanced_pairs",
            format!(
                "needs a class with two items and two classes, got {} labels in {} classes",
                labels.len(),
                present.len()
            ),
        ));
    }
    let u = rng::uniform(count * 4, seed);
    let at = |x: f32, n: usize| ((x * n as f32) as usize).min(n - 1);
    Ok((0..count)
        .map(|k| {
            let r = &u[k * 4..k * 4 + 4];
            if k % 2 == 0 {
                let g = &groups[multi[at(r[0], multi.len())]];
                let i = at(r[1], g.len());
                // Any other item of the class: skip i by shifting past it.
                let j = (i + 1 + at(r[2], g.len() - 1)) % g.len();
                (g[i], g[j], true)
            } else {
                let a = at(r[0], present.len());
                let b = (a + 1 + at(r[1], present.len() - 1)) % present.len();
                let (ga, gb) = (&groups[present[a]], &groups[present[b]]);
                (ga[at(r[2], ga.len())], gb[at(r[3], gb.len())], false)
            }
        })
        .collect())
}

/// The share of pairs called correctly when "same" means `distance ≤ threshold`.
pub fn threshold_accuracy(distances: &[f32], same: &[bool], threshold: f32) -> f64 {
    let hits = distances
        .iter()
        .zip(same)
        .filter(|(&d, &s)| (d <= threshold) == s)
        .count();
    hits as f64 / distances.len().max(1) as f64
}

/// The threshold (a midpoint between sorted distances) with the best
/// [`threshold_accuracy`] on these pairs, and that accuracy.
pub fn best_threshold(distances: &[f32], same: &[bool]) -> (f32, f64) {
    let mut order: Vec<usize> = (0..distances.len()).collect();
    order.sort_by(|&a, &b| distances[a].total_cmp(&distances[b]));
    // Below every distance, everything is "different".
    let mut hits = same.iter().filter(|&&s| !s).count();
    let mut best = (hits, f32::NEG_INFINITY);
    for (k, &i) in order.iter().enumerate() {
        hits = if same[i] { hits + 1 } else { hits - 1 };
        let next = order.get(k + 1).map(|&j| distances[j]);
        if next == Some(distances[i]) {
            continue;
        }
        if hits > best.0 {
            let t = next.map_or(distances[i], |n| 0.5 * (distances[i] + n));
            best = (hits, t);
        }
    }
    (best.1, best.0 as f64 / distances.len().max(1) as f64)
}

/// One-shot recognition over `episodes`: each picks one random reference item per class
/// present in `labels` and names every other item by its nearest reference (squared
/// Euclidean distance between rows of `embeddings`, `[N, dim]` row-major). Returns the
/// share named correctly over all episodes; chance is 1 / the number of classes.
pub fn one_shot_recognition(
    embeddings: &[f32],
    dim: usize,
    labels: &[usize],
    episodes: usize,
    seed: u64,
) -> Result<f64> {
    if dim == 0 || embeddings.len() != labels.len() * dim {
        return Err(Error::op(
            "one_shot_recognition",
            format!(
                "needs [N, D] embeddings for N = {} labels, got {} values for D = {dim}",
                labels.len(),
                embeddings.len()
            ),
        ));
    }
    let classes = labels.iter().max().map_or(0, |&m| m + 1);
    let groups: Vec<Vec<usize>> = by_class(labels, classes)
        .into_iter()
        .filter(|g| !g.is_empty())
        .collect();
    if groups.len() < 2 {
        return Err(Error::op(
            "one_shot_recognition",
            format!("needs two classes, got {}", groups.len()),
        ));
    }
    let row = |i: usize| &embeddings[i * dim..(i + 1) * dim];
    let dist =
        |a: &[f32], b: &[f32]| -> f32 { a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum() };
    let (mut hits, mut total) = (0usize, 0usize);
    for e in 0..episodes {
        let u = rng::uniform(groups.len(), seed.wrapping_add(e as u64));
        let refs: Vec<usize> = groups
            .iter()
            .zip(&u)
            .map(|(g, &x)| g[((x * g.len() as f32) as usize).min(g.len() - 1)])
            .collect();
        for (i, &l) in labels.iter().enumerate() {
            if refs.contains(&i) {
                continue;
            }
            let nearest = refs
                .iter()
                .map(|&r| (dist(row(i), row(r)), labels[r]))
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, c)| c);
            hits += usize::from(nearest == Some(l));
            total += 1;
        }
    }
    Ok(hits as f64 / total.max(1) as f64)
}
