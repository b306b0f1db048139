//! Gram matrices `F·Fᵀ`, computed on and above the diagonal only and mirrored below it:
//! each band of [`BAND`] rows is one GEMM from its diagonal block to the last column, so
//! 256 channels take 10 of the 16 blocks of 64² a plain product computes.

use rayon::prelude::*;

use super::gemm::{gemm, Layout};
use crate::host;
use crate::Result;

/// Rows per band. Bands this tall keep the GEMM's packing (each band packs its rows and
/// every column right of its diagonal) small beside its products.
const BAND: usize = 64;

/// The `n` Gram matrices of `f` (`n` × `c` rows of `hw` values), `n` × `c` × `c`.
pub fn gram(f: &[f32], n: usize, c: usize, hw: usize) -> Result<Vec<f32>> {
    let mut out = host::zeros(n * c * c)?;
    if out.is_empty() {
        return Ok(out);
    }
    let bands = c.div_ceil(BAND);
    let mut tasks: Vec<(usize, usize, &mut [f32])> = Vec::with_capacity(n * bands);
    for (i, g) in out.chunks_mut(c * c).enumerate() {
        let mut rows: Vec<Option<&mut [f32]>> = g.chunks_mut(BAND * c).map(Some).collect();
        // The longest band beside the shortest, and so on inwards, so that the pool's
        // halving of the list gives each half about as many products.
        let (mut lo, mut hi) = (0, bands);
        while lo < hi {
            for a in [lo, hi - 1].into_iter().take(hi - lo) {
                tasks.push((i, a, rows[a].take().expect("each band once")));
            }
            (lo, hi) = (lo + 1, hi - 1);
        }
    }
    tasks.into_par_iter().for_each(|(i, a, rows)| {
        let (r0, m) = (a * BAND, rows.len() / c);
        let f_r = &f[(i * c + r0) * hw..(i + 1) * c * hw];
        let (lf, lt) = (Layout::rows(hw), Layout::trans(hw));
        let out = &mut rows[r0..];
        gemm(m, hw, c - r0, f_r, lf, f_r, lt, 0.0, out, Layout::rows(c));
    });
    for g in out.chunks_mut(c * c) {
        for r in 1..c {
            // Columns left of `r`'s band: computed by earlier bands, as rows.
            for s in 0..r - r % BAND {
                g[r * c + s] = g[s * c + r];
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every entry, above, on and below the diagonal, against the definition, for channel
    /// counts that fill no band, one band, and bands with a partial last one.
    #[test]
    fn gram_matches_definition() {
        for &(n, c, hw) in &[(1, 1, 1), (2, 5, 7), (1, 64, 3), (2, 130, 33)] {
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
