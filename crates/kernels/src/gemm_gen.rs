//! WGSL text for the register-tiled GEMM loop that matmul and convolution share.
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
//! and its K-slice `16/G` deep, so every slice is 1024 values of A and of B: one vec4
//! (four scalar loads) per thread each. G = 2 is the 128×128 tile with 8×8 outputs per
//! thread and BK = 8 from the issue; G = 1 is a 64×64 tile for small matrices.
//!
//! The shader that includes the generated text supplies, for a workgroup `z`:
//! `gemm_skip(z, wid) -> bool` (true: the workgroup has nothing to do; it must be uniform
//! across the workgroup), `gemm_k_range(z) -> vec2<u32>` (the K range this workgroup sums), `gemm_load_a(z, row,
//! k)`, `gemm_load_b(z, k, col)` (each 0 outside the matrix) and `gemm_store(z, row, col,
//! v)` (which ignores cells outside the matrix).

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

/// One generated entry point.
#[derive(Clone, Copy, Debug)]
pub struct GemmEntry {
    /// entry point name
    pub name: &'static str,
    /// bands per thread: 1 (64×64 tile) or 2 (128×128 tile)
    pub bands: u32,
    /// memory order of A
    pub a: Contiguous,
    /// memory order of B
    pub b: Contiguous,
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

/// Code that fills `tile` (a `array<vec4<f32>, 256>` laid out `[k][outer / 4]`) for one
/// operand: `load(outer, k)` is the WGSL call that reads one value.
fn load_tile(
    out: &mut String,
    tile: &str,
    base: &str,
    order: Contiguous,
    edge: u32,
    depth: u32,
    load: &str,
) {
    let quads = edge / 4;
    match order {
        Contiguous::Outer => {
            // Thread t reads four consecutive outer indices at one k: one vec4 store.
            let _ = writeln!(
                out,
                "        {{\n            let o = (t % {quads}u) * 4u;\n            let kk = t / {quads}u;\n            let kg = k0 + kk;\n            let ok = kg < k_end;"
            );
            let vals: Vec<String> = (0..4)
                .map(|d| {
                    format!(
                        "select(0.0, {}, ok)",
                        load.replace("OUTER", &format!("{base} + o + {d}u"))
                            .replace("KIDX", "kg")
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "            {tile}[kk * {quads}u + o / 4u] = vec4<f32>({});\n        }}",
                vals.join(", ")
            );
        }
        Contiguous::K => {
            // Thread t reads four consecutive k of one outer index: four component stores.
            let per_row = depth / 4;
            let _ = writeln!(
                out,
                "        {{\n            let o = t / {per_row}u;\n            let kq = (t % {per_row}u) * 4u;"
            );
            for d in 0..4 {
                let call = load
                    .replace("OUTER", &format!("{base} + o"))
                    .replace("KIDX", &format!("k0 + kq + {d}u"));
                let _ = writeln!(
                    out,
                    "            {tile}[(kq + {d}u) * {quads}u + o / 4u][o % 4u] = select(0.0, {call}, k0 + kq + {d}u < k_end);"
                );
            }
            let _ = writeln!(out, "        }}");
        }
    }
}

/// The WGSL of one entry point (workgroup arrays included, named after the entry).
pub fn entry_source(e: &GemmEntry) -> String {
    let g = e.bands;
    let (edge, depth, quads) = (64 * g, 16 / g, 16 * g);
    let (sa, sb) = (format!("{}_a", e.name), format!("{}_b", e.name));
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
        "    let z = wid.z;\n    if (gemm_skip(z, wid)) {{\n        return;\n    }}\n    let kr = gemm_k_range(z);\n    let k_end = kr.y;\n    let row0 = wid.y * {edge}u;\n    let col0 = wid.x * {edge}u;\n    let t = lid.y * 16u + lid.x;"
    );
    for r in 0..4 * g {
        for h in 0..g {
            let _ = writeln!(s, "    var c{r}_{h} = vec4<f32>(0.0);");
        }
    }
    let _ = writeln!(s, "    for (var k0 = kr.x; k0 < k_end; k0 += {depth}u) {{");
    load_tile(
        &mut s,
        &sa,
        "row0",
        e.a,
        edge,
        depth,
        "gemm_load_a(z, OUTER, KIDX)",
    );
    load_tile(
        &mut s,
        &sb,
        "col0",
        e.b,
        edge,
        depth,
        "gemm_load_b(z, KIDX, OUTER)",
    );
    let _ = writeln!(s, "        workgroupBarrier();");
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
                for (q, comp) in ["x", "y", "z", "w"].iter().enumerate() {
                    let _ = writeln!(
                        s,
                        "    gemm_store(z, {row}, col0 + {}u + lid.x * 4u + {q}u, c{}_{h}.{comp});",
                        h * 64,
                        band * 4 + r
                    );
                }
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
        let e = GemmEntry {
            name: "g",
            bands: 2,
            a: Contiguous::K,
            b: Contiguous::Outer,
        };
        let src = entry_source(&e);
        // 8 rows × 2 column bands of vec4 accumulators, no loop inside the K slice, and
        // 8 × 8 outputs stored per thread.
        assert_eq!(src.matches("var c").count(), 16);
        assert_eq!(src.matches("for (").count(), 1, "only the K loop remains");
        assert_eq!(src.matches(" += a").count(), 8 * 16);
        assert_eq!(src.matches("gemm_store(").count(), 64);
        assert_eq!((e.tile(), e.depth()), (128, 8));
    }
}
