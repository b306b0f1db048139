//! WGSL text for the register-tiled GEMM loop that matmul, convolution and Gram share.
//!
//! Why generated: GPU drivers do not unroll naga's loops, and a dynamically indexed
//! accumulator array spills to memory. On an H100 the same 128×128-tile algorithm ran at
//! 0.7 TFLOP/s written with loops and at 32 TFLOP/s fully unrolled with named vec4
//! accumulators (issue 3). Unrolled by hand the kernel would be hundreds of near-identical
//! lines; here it is one loop in Rust.
//!
//! The shape: 16×16 threads; each thread owns `G×4` rows and `G×4` columns of the output
//! tile (in `G` bands of 64, so that neighbouring threads read neighbouring vec4s of
//! workgroup memory), held in `G²·4` named `vec4` accumulators. The tile is `64G × 64G`
//! and its K-slice `16/G` deep, so every slice is 1024 values of A and of B: one vec4 per
//! thread each. G = 2 is the 128×128 tile with 8×8 outputs per thread and BK = 8 from the
//! issue; G = 1 is a 64×64 tile for small matrices. The next slice's values are fetched
//! into registers while the current one is multiplied, so global latency overlaps the
//! arithmetic.
//!
//! The shader that includes the generated text supplies, for a workgroup `z`:
//! - `gemm_skip(z, wid) -> bool`: true when the workgroup has nothing to do (uniform
//!   across the workgroup);
//! - `gemm_k_range(z) -> vec2<u32>`: the K range this workgroup sums; its start, and its
//!   end unless it is the matrix's K, must be multiples of the slice depth;
//! - for each operand, the pair of functions the entry names (`X` below):
//!   `X_at(z, outer) -> S`, called once per thread before the K loop, computes whatever the
//!   loads need about the thread's outer index (a row of A, a column of B; any type `S`),
//!   so index arithmetic that does not change along K (divisions, above all) is done once
//!   rather than per value; `X(z, s, k) -> vec4<f32>` returns four values: for an operand
//!   contiguous along K, those at `k..k+4` of the one outer index; for an operand contiguous
//!   along the outer index, those of `outer..outer+4` at `k`. Values outside the matrix must
//!   be 0 (the last slice runs past K, and the prefetch one slice further);
//! - the store the entry names: `S(z, row, col, v: vec4<f32>)` writes `v` to
//!   `(row, col..col+4)`, skipping cells outside the matrix.

use std::fmt::Write;

/// Which index runs along memory for an operand, so that neighbouring threads load
/// neighbouring addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contiguous {
    /// along K (A stored `[m, k]`, B stored `[n, k]`)
    K,
    /// along the output dimension (A stored `[k, m]`, B stored `[k, n]`)
    Outer,
}

/// How the generated loop reads one operand.
#[derive(Clone, Copy, Debug)]
pub struct Operand {
    /// memory order, which decides how the threads share a slice
    pub order: Contiguous,
    /// the shader's load function (`{load}_at` is its per-thread set-up)
    pub load: &'static str,
}

/// One generated entry point.
#[derive(Clone, Copy, Debug)]
pub struct GemmEntry {
    /// entry point name
    pub name: &'static str,
    /// bands per thread: 1 (64×64 tile) or 2 (128×128 tile)
    pub bands: u32,
    /// the left operand (rows of the output)
    pub a: Operand,
    /// the right operand (columns of the output)
    pub b: Operand,
    /// the shader's store function
    pub store: &'static str,
}

impl GemmEntry {
    /// Output tile edge.
    pub const fn tile(&self) -> usize {
        64 * self.bands as usize
    }
    /// K-slice depth.
    pub const fn depth(&self) -> usize {
        16 / self.bands as usize
    }
}

/// Fewest 128×128 tiles (over every matrix of a dispatch) for which the big tile beats
/// the 64×64 one: below it, the small tile keeps more of the GPU busy.
const MIN_BIG_TILES: usize = 64;

/// Tile bands for `count` output matrices of `m × n`: 2 (128×128) when both edges exceed a
/// small tile and there are enough big tiles, else 1 (64×64).
pub fn bands_for(m: usize, n: usize, count: usize) -> usize {
    let big = m > 64 && n > 64 && m.div_ceil(128) * n.div_ceil(128) * count >= MIN_BIG_TILES;
    1 + big as usize
}

/// The per-thread part of one operand's slice load: which outer index and which K offset
/// within the slice the thread reads, and how its vec4 lands in the workgroup tile.
struct Fetch {
    /// WGSL for the thread's first outer index within the tile
    outer: String,
    /// WGSL for the thread's K offset within the slice
    k: String,
    /// WGSL statements that store the fetched vec4 `v` into `tile`
    put: String,
}

fn fetch(order: Contiguous, tile: &str, reg: &str, edge: u32, depth: u32) -> Fetch {
    let quads = edge / 4;
    match order {
        // Thread t reads four consecutive outer indices at one k: one vec4 store.
        Contiguous::Outer => Fetch {
            outer: format!("(t % {quads}u) * 4u"),
            k: format!("t / {quads}u"),
            put: format!("        {tile}[(t / {quads}u) * {quads}u + t % {quads}u] = {reg};\n"),
        },
        // Thread t reads four consecutive k of one outer index: four component stores.
        Contiguous::K => {
            let per_row = depth / 4;
            let mut put = String::new();
            for (d, comp) in ["x", "y", "z", "w"].iter().enumerate() {
                let _ = writeln!(
                    put,
                    "        {tile}[((t % {per_row}u) * 4u + {d}u) * {quads}u + (t / {per_row}u) / 4u][(t / {per_row}u) % 4u] = {reg}.{comp};"
                );
            }
            Fetch {
                outer: format!("t / {per_row}u"),
                k: format!("(t % {per_row}u) * 4u"),
                put,
            }
        }
    }
}

/// The WGSL of one entry point (workgroup arrays included, named after the entry).
pub fn entry_source(e: &GemmEntry) -> String {
    let g = e.bands;
    let (edge, depth, quads) = (64 * g, 16 / g, 16 * g);
    let (sa, sb) = (format!("{}_a", e.name), format!("{}_b", e.name));
    let fa = fetch(e.a.order, &sa, "na", edge, depth);
    let fb = fetch(e.b.order, &sb, "nb", edge, depth);
    let (la, lb) = (e.a.load, e.b.load);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "var<workgroup> {sa}: array<vec4<f32>, 256>;\nvar<workgroup> {sb}: array<vec4<f32>, 256>;\n"
    );
    let _ = writeln!(
        s,
        "@compute @workgroup_size(16, 16)\nfn {}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {{",
        e.name
    );
    let _ = writeln!(
        s,
        "    let z = wid.z;\n    if (gemm_skip(z, wid)) {{\n        return;\n    }}\n    let kr = gemm_k_range(z);\n    let row0 = wid.y * {edge}u;\n    let col0 = wid.x * {edge}u;\n    let t = lid.y * 16u + lid.x;"
    );
    let _ = writeln!(
        s,
        "    let sa = {la}_at(z, row0 + {});\n    let sb = {lb}_at(z, col0 + {});\n    let ka = {};\n    let kb = {};",
        fa.outer, fb.outer, fa.k, fb.k
    );
    for r in 0..4 * g {
        for h in 0..g {
            let _ = writeln!(s, "    var c{r}_{h} = vec4<f32>(0.0);");
        }
    }
    let _ = writeln!(
        s,
        "    var na = {la}(z, sa, kr.x + ka);\n    var nb = {lb}(z, sb, kr.x + kb);\n    for (var k0 = kr.x; k0 < kr.y; k0 += {depth}u) {{"
    );
    s.push_str(&fa.put);
    s.push_str(&fb.put);
    let _ = writeln!(
        s,
        "        workgroupBarrier();\n        na = {la}(z, sa, k0 + {depth}u + ka);\n        nb = {lb}(z, sb, k0 + {depth}u + kb);"
    );
    for kk in 0..depth {
        let _ = writeln!(s, "        {{");
        for band in 0..g {
            let _ = writeln!(
                s,
                "            let a{band} = {sa}[{}u + lid.y];\n            let b{band} = {sb}[{}u + lid.x];",
                kk * quads + band * 16,
                kk * quads + band * 16
            );
        }
        for band in 0..g {
            for (r, comp) in ["x", "y", "z", "w"].iter().enumerate() {
                for h in 0..g {
                    let _ = writeln!(
                        s,
                        "            c{}_{h} += a{band}.{comp} * b{h};",
                        band as usize * 4 + r
                    );
                }
            }
        }
        let _ = writeln!(s, "        }}");
    }
    let _ = writeln!(s, "        workgroupBarrier();\n    }}");
    for band in 0..g {
        for r in 0..4 {
            let row = format!("row0 + {}u + lid.y * 4u + {r}u", band * 64);
            for h in 0..g {
                let _ = writeln!(
                    s,
                    "    {}(z, {row}, col0 + {}u + lid.x * 4u, c{}_{h});",
                    e.store,
                    h * 64,
                    band * 4 + r
                );
            }
        }
    }
    let _ = writeln!(s, "}}");
    s
}

/// The WGSL of several entry points.
pub fn source(entries: &[GemmEntry]) -> String {
    entries
        .iter()
        .map(entry_source)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_big_tile_is_unrolled_into_named_accumulators() {
        let op = |order, load| Operand { order, load };
        let e = GemmEntry {
            name: "g",
            bands: 2,
            a: op(Contiguous::K, "la"),
            b: op(Contiguous::Outer, "lb"),
            store: "st",
        };
        let src = entry_source(&e);
        // 8 rows × 2 column bands of vec4 accumulators, no loop inside the K slice, and
        // 8 × 8 outputs stored per thread as 16 vec4s.
        assert_eq!(src.matches("var c").count(), 16);
        assert_eq!(src.matches("for (").count(), 1, "only the K loop remains");
        assert_eq!(src.matches(" += a").count(), 8 * 16);
        assert_eq!(src.matches("st(z, ").count(), 16);
        // The per-thread set-up runs once, outside the loop; each operand is fetched
        // twice in the text (the first slice, then the prefetch inside the loop).
        let (before, inside) = src.split_once("for (").unwrap();
        assert!(before.contains("la_at(z, ") && before.contains("lb_at(z, "));
        assert!(!inside.contains("_at(z, "));
        assert_eq!(src.matches("la(z, sa, ").count(), 2);
        assert_eq!(src.matches("lb(z, sb, ").count(), 2);
        assert_eq!((e.tile(), e.depth()), (128, 8));
    }
}
