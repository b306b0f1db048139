//! Gram matrices `F·Fᵀ`, computed on and above the diagonal only and mirrored below it,
//! by the channel products of `conv_channels.rs`: each panel of rows of `G` takes the
//! place of a block of output channels (its rows of features packed a pass at a time),
//! and each column from the panel's diagonal block on that of an output position, which
//! reads its own row of features, copied a slab at a time to rows [`LD`] apart.
//!
//! `matrixmultiply` (a GEMM per band of 64 rows, as before) transposed both operands as
//! it packed them, gathering each step's values from rows 64 KiB apart: its packing took
//! 28–32% of the time, its products 26%. On a 2-core Zen 4 (2026-12-03, three rounds
//! alternating with PyTorch 2.15, fastest) 256 channels of 128² took 18.0 → 7.7 ms
//! (PyTorch: 11.7–13.0), and the other style layers of a 512² VGG-19 image about half
//! as long as before (64 of 512²: 38 → 18 ms; 512 of 32²: 4.0 → 2.2).

use rayon::prelude::*;

use super::by_cpu;
use super::conv_channels::sums;
use super::conv_direct::Pairs;
use super::transpose::panel_into;
use crate::host;
use crate::Result;

/// Rows per task where the images' pieces are too few to share between the threads:
/// the band's rows share each pass's copy of the features, two panels of 32 (four of 16
/// without AVX-512).
const BAND: usize = 64;

/// Features per piece: each image's sums are split into pieces of this many columns of
/// features, summed on their own and then added in order, so that the threads share
/// the columns, each reading its pieces once, rather than all reading them again for
/// each band. Fixed, so the sums' order does not depend on the number of threads.
const PIECE: usize = 4096;

/// Diagonal blocks: the products of each row from its block's first column, the entries
/// left of that mirrored. Every panel starts at a multiple of it (panels are 16 or 32
/// rows).
const DIAG: usize = 16;

/// Columns of features per pass: a panel's packed values (8 KiB with 16 rows) and each
/// block's rows stay in the first-level cache while the pass runs.
const K_CHUNK: usize = 128;

/// Features per copy: runs of 2 KiB per row, long enough for the processor to fetch
/// ahead along each (copying each pass's 512 bytes per row, the 128² row took 8.6 ms
/// against 7.7).
const SLAB: usize = 512;

/// Row stride of the copy: the rows of the features are 64 KiB apart in a 128² map's
/// Gram matrix, so a block's 12 rows fell in one set of the first-level cache, eight
/// ways deep; 528 values apart they spread over the sets.
const LD: usize = SLAB + 16;

/// The `n` Gram matrices of `f` (`n` × `c` rows of `hw` values), `n` × `c` × `c`.
pub fn gram(f: &[f32], n: usize, c: usize, hw: usize) -> Result<Vec<f32>> {
    assert!(f.len() >= n * c * hw, "gram: features too short");
    let mut out = host::zeros(n * c * c)?;
    if out.is_empty() || hw == 0 {
        return Ok(out);
    }
    let pieces = hw.div_ceil(PIECE);
    let band_rows = if n * pieces >= 2 * rayon::current_num_threads() {
        c
    } else {
        BAND
    };
    let mut parts = if pieces == 1 {
        Vec::new()
    } else {
        host::zeros(n * pieces * c * c)?
    };
    let sums = if pieces == 1 { &mut out } else { &mut parts };
    let bands = c.div_ceil(band_rows);
    let mut tasks: Vec<(usize, usize, &mut [f32])> = Vec::with_capacity(n * pieces * bands);
    for (ip, g) in sums.chunks_mut(c * c).enumerate() {
        let mut rows: Vec<Option<&mut [f32]>> = g.chunks_mut(band_rows * c).map(Some).collect();
        // The longest band beside the shortest, and so on inwards, so that the pool's
        // halving of the list gives each half about as many products.
        let (mut lo, mut hi) = (0, bands);
        while lo < hi {
            for a in [lo, hi - 1].into_iter().take(hi - lo) {
                tasks.push((ip, a * band_rows, rows[a].take().expect("each band once")));
            }
            (lo, hi) = (lo + 1, hi - 1);
        }
    }
    tasks.into_par_iter().try_for_each(|(ip, r0, rows)| {
        let (i, q) = (ip / pieces, ip % pieces);
        let k = q * PIECE..hw.min((q + 1) * PIECE);
        band(&f[i * c * hw..][..c * hw], (c, hw), k, r0, rows)
    })?;
    if pieces > 1 {
        out.par_chunks_mut(c * c)
            .zip(parts.par_chunks(pieces * c * c))
            .for_each(|(g, parts)| {
                for (r, row) in g.chunks_mut(c).enumerate() {
                    let from = r - r % DIAG;
                    for part in parts.chunks(c * c) {
                        let src = &part[r * c + from..][..c - from];
                        for (v, &p) in row[from..].iter_mut().zip(src) {
                            *v += p;
                        }
                    }
                }
            });
    }
    for g in out.chunks_mut(c * c) {
        for r in 1..c {
            for s in 0..r - r % DIAG {
                g[r * c + s] = g[s * c + r];
            }
        }
    }
    Ok(out)
}

/// Rows `r0..` (as many as `rows` holds, `c` values each) of the Gram matrix of one
/// image's features `f` over their columns `k`, each row from its diagonal block's first
/// column to the last.
fn band(
    f: &[f32],
    (c, hw): (usize, usize),
    k: std::ops::Range<usize>,
    r0: usize,
    rows: &mut [f32],
) -> Result<()> {
    assert!(
        f.len() >= c * hw
            && k.end <= hw
            && rows.len() <= (c - r0) * c
            && rows.len().is_multiple_of(c)
            && r0.is_multiple_of(DIAG),
        "gram: band out of range"
    );
    let mut copy = host::zeros((c - r0) * LD)?;
    products(f, (c, hw), (k.start, k.end), r0, rows, &mut copy);
    Ok(())
}

/// [`panels`] built for the processor.
fn products(
    f: &[f32],
    size: (usize, usize),
    k: (usize, usize),
    r0: usize,
    rows: &mut [f32],
    copy: &mut [f32],
) {
    by_cpu!(
        panels(f: &[f32], size: (usize, usize), k: (usize, usize), r0: usize, rows: &mut [f32],
            copy: &mut [f32]),
        // The channel products' blocks, whose sums the compiler keeps in registers
        // (`conv_channels::block`).
        avx512: [6, 16, 2, true],
        avx2: [6, 16, 1, true],
        base: [4, 8, 1, false]
    )
}

/// A panel of rows: its first in the band, how many, and per column its first feature
/// in the copy and its index.
struct Panel {
    p0: usize,
    ov: usize,
    at: Vec<(usize, usize)>,
}

/// Slab by slab of `SLAB` features copied to `copy` (rows `LD` apart), and in each,
/// pass by pass of `K_CHUNK`: the band's rows `V` at a time, each panel packed and run
/// over every block of `P` columns from its diagonal block on. The partial sums of all panels stay
/// in a buffer between passes; within a column the sums run over the features in order.
#[inline(always)]
fn panels<const P: usize, const V: usize, const W: usize, const FMA: bool>(
    f: &[f32],
    (c, hw): (usize, usize),
    (k_lo, k_hi): (usize, usize),
    r0: usize,
    rows: &mut [f32],
    copy: &mut [f32],
) {
    let offs: Vec<usize> = (0..K_CHUNK.min(k_hi - k_lo)).collect();
    let lanes = V * W;
    let mut packed = vec![0.0f32; offs.len() * lanes];
    let m = rows.len() / c;
    // Per panel: its first row in the band, its rows, and its columns' first feature in
    // `copy` (the last block repeating the last column).
    let panels: Vec<Panel> = (0..m)
        .step_by(lanes)
        .map(|p0| {
            let s0 = (r0 + p0) - (r0 + p0) % DIAG;
            let mut at: Vec<(usize, usize)> = (s0..c).map(|s| ((s - r0) * LD, s)).collect();
            let last = *at.last().expect("a column");
            at.resize(at.len().next_multiple_of(P), last);
            Panel {
                p0,
                ov: lanes.min(m - p0),
                at,
            }
        })
        .collect();
    let mut parts: Vec<Vec<[[[f32; V]; W]; P]>> = panels
        .iter()
        .map(|p| vec![[[[0.0f32; V]; W]; P]; p.at.len() / P])
        .collect();
    for c0 in (k_lo..k_hi).step_by(SLAB) {
        let cw = SLAB.min(k_hi - c0);
        for s in r0..c {
            copy[(s - r0) * LD..][..cw].copy_from_slice(&f[s * hw + c0..][..cw]);
        }
        for k0 in (0..cw).step_by(K_CHUNK) {
            let kc = K_CHUNK.min(cw - k0);
            let x = &copy[k0..];
            let pairs = Pairs::new(&offs[..kc]);
            for (Panel { p0, ov, at }, part) in panels.iter().zip(parts.iter_mut()) {
                let wk = &mut packed[..kc * lanes];
                panel_into(&x[p0 * LD..], LD, (*ov, kc), wk, lanes);
                let first = c0 + k0 == k_lo;
                for (acc, at) in part.iter_mut().zip(at.chunks_exact(P)) {
                    sums::<P, V, W, FMA>(acc, wk, x, at, &pairs, None, first);
                }
            }
        }
    }
    for (Panel { p0, ov, at }, part) in panels.iter().zip(&parts) {
        for (sums, &(_, s)) in part.iter().flatten().zip(at) {
            for (o, &v) in sums.as_flattened()[..*ov].iter().enumerate() {
                rows[(p0 + o) * c + s] = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every entry, above, on and below the diagonal, against the definition, for channel
    /// counts that fill no band, one band, and bands with a partial last one, and feature
    /// maps shorter than, as long as and longer than a chunk, and split into pieces (whole
    /// matrices per task with two images, bands with one).
    #[test]
    fn gram_matches_definition() {
        for &(n, c, hw) in &[
            (1, 1, 1),
            (2, 5, 7),
            (1, 16, 128),
            (1, 64, 3),
            (2, 130, 33),
            (1, 37, 300),
            (2, 40, 4100),
            (1, 70, 4097),
        ] {
            let f: Vec<f32> = (0..n * c * hw)
                .map(|i| ((i * 7) % 13) as f32 - 6.0)
                .collect();
            let g = gram(&f, n, c, hw).unwrap();
            for i in 0..n {
                for r in 0..c {
                    for s in 0..c {
                        let want: f32 = (0..hw)
                            .map(|k| f[(i * c + r) * hw + k] * f[(i * c + s) * hw + k])
                            .sum();
                        assert_eq!(g[(i * c + r) * c + s], want, "n{i} ({r}, {s}) of {c}");
                    }
                }
            }
        }
    }
}
