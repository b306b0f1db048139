//! WGSL text for the register-tiled GEMM loop that matmul, convolution and Gram share.
//!
//! Why generated: GPU drivers do not unroll naga's loops, and a dynamically indexed
//! accumulator array spills to memory. On an H100 the same 128×128-tile algorithm ran at
//! 0.7 TFLOP/s written with loops and at 32 TFLOP/s fully unrolled with named vec4
//! accumulators (issue 3). Unrolled by hand the kernel would be hundreds of near-identical
//! lines; here it is one loop in Rust.
//!
//! The shape: 16×16 threads; each thread owns `4·bm` rows and `4·bn` columns of the
//! output tile (in bands of 64, so that neighbouring threads read neighbouring vec4s of
//! workgroup memory), held in `bm·bn·4` named `vec4` accumulators. The tile is
//! `64·bm × 64·bn` (bm, bn ∈ {1, 2}: 64-channel layers get 64×128 rather than 64×64) and
//! its K-slice `DEPTH` (16) deep, so each operand's slice is one or two vec4s per thread.
//! The next slice's values are fetched into registers while the current one is multiplied,
//! so global latency overlaps the arithmetic.
//!
//! The shader that includes the generated text supplies, for a workgroup `z`:
//! - `gemm_skip(z, wid) -> bool`: true when the workgroup has nothing to do (uniform
//!   across the workgroup);
//! - `gemm_k_range(z) -> vec2<u32>`: the K range this workgroup sums; its start, and its
//!   end unless it is the matrix's K, must be multiples of `DEPTH`;
//! - for each operand, a load `X` and a K-position state `T` (the [`Operand`] names both):
//!   - `X_at(z, outer) -> S`, called once per thread and outer index before the K loop,
//!     computes whatever the loads need about the outer index (a row of A, a column of B);
//!   - `T_k(z, k) -> P` is the position at k (its divisions run once, before the loop) and
//!     `T_next(z, pos) -> P` the position `DEPTH` further, stepped with carries, so the
//!     loop divides nothing;
//!   - `X(z, s, pos) -> vec4<f32>` returns four values: for an operand contiguous along
//!     K, those at `k..k+4` of the one outer index; for an operand contiguous along the
//!     outer index, those of `outer..outer+4` at `k`. Values outside the matrix must be 0
//!     (the last slice runs past K, and the prefetch one slice further);
//! - the store the entry names: `S(z, row, col, v: vec4<f32>)` writes `v` to
//!   `(row, col..col+4)`, skipping cells outside the matrix.

use std::fmt::Write;

/// K values per slice of the tiled loop (a multiple of 4: loads come in fours).
pub const DEPTH: usize = 16;

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
    /// the shader's K-position functions (`{state}_k`, `{state}_next`)
    pub state: &'static str,
}

/// Output tile shape in bands of 64: `[rows, columns]`, each 1 or 2.
pub type Bands = [u32; 2];

/// One generated entry point.
#[derive(Clone, Copy, Debug)]
pub struct GemmEntry {
    /// entry point name
    pub name: &'static str,
    /// tile bands along the rows (A) and the columns (B)
    pub bands: Bands,
    /// the left operand (rows of the output)
    pub a: Operand,
    /// the right operand (columns of the output)
    pub b: Operand,
    /// the shader's store function
    pub store: &'static str,
}

impl GemmEntry {
    /// Output tile edges: rows, columns.
    pub const fn tile(&self) -> [usize; 2] {
        [64 * self.bands[0] as usize, 64 * self.bands[1] as usize]
    }
}

/// The tile shapes in the order the entry tables list them (see `source.rs`).
pub const TILES: [Bands; 4] = [[1, 1], [1, 2], [2, 1], [2, 2]];

/// Fewest workgroups (over every matrix of a dispatch) for which a bigger tile beats a
/// smaller one: below it, the smaller tile keeps more of the GPU busy.
const MIN_TILES: usize = 64;

/// The tile for `count` output matrices of `m × n`, as an index into [`TILES`]: a 128 edge
/// where that side exceeds 64, as long as the dispatch keeps `MIN_TILES` workgroups
/// (giving up the row edge first, then the column edge).
pub fn tile_for(m: usize, n: usize, count: usize) -> usize {
    let tiles = |b: Bands| m.div_ceil(64 * b[0] as usize) * n.div_ceil(64 * b[1] as usize) * count;
    let mut bands = [1 + (m > 64) as u32, 1 + (n > 64) as u32];
    if bands[0] == 2 && tiles(bands) < MIN_TILES {
        bands[0] = 1;
    }
    if bands[1] == 2 && tiles(bands) < MIN_TILES {
        bands[1] = 1;
    }
    TILES.iter().position(|&t| t == bands).unwrap()
}

/// How one operand's slice is spread over the 256 threads: `fetches` vec4s per thread,
/// fetch `i` at outer index `outer(i)` and K offset `k(i)` within the slice.
struct Spread {
    order: Contiguous,
    /// vec4s per row of the slice in workgroup memory (edge / 4)
    quads: u32,
    fetches: u32,
}

impl Spread {
    fn new(order: Contiguous, edge: u32) -> Spread {
        Spread {
            order,
            quads: edge / 4,
            fetches: edge * DEPTH as u32 / 1024,
        }
    }
    /// Threads that share one outer index (K order) or one K offset (outer order) step
    /// the other index; fetch i adds a whole block of 256 threads.
    fn outer(&self, i: u32) -> String {
        match self.order {
            Contiguous::Outer => format!("(t % {}u) * 4u", self.quads),
            Contiguous::K => format!("t / {}u + {}u", DEPTH / 4, i * 256 / (DEPTH as u32 / 4)),
        }
    }
    fn k(&self, i: u32) -> String {
        match self.order {
            Contiguous::Outer => format!("t / {q}u + {}u", i * 256 / self.quads, q = self.quads),
            Contiguous::K => format!("(t % {}u) * 4u", DEPTH / 4),
        }
    }
    /// Statements that store fetch i's vec4 `reg` into `tile`.
    fn put(&self, tile: &str, reg: &str, i: u32) -> String {
        let q = self.quads;
        match self.order {
            Contiguous::Outer => {
                format!(
                    "        {tile}[({}) * {q}u + t % {q}u] = {reg};\n",
                    self.k(i)
                )
            }
            Contiguous::K => {
                let mut put = String::new();
                let outer = self.outer(i);
                for (d, comp) in ["x", "y", "z", "w"].iter().enumerate() {
                    let _ = writeln!(
                        put,
                        "        {tile}[(({}) + {d}u) * {q}u + ({outer}) / 4u][({outer}) % 4u] = {reg}.{comp};",
                        self.k(i)
                    );
                }
                put
            }
        }
    }
}

/// The distinct values in first-seen order, and the index among them of each value.
fn distinct(values: impl Iterator<Item = String>) -> (Vec<String>, Vec<usize>) {
    let mut kept: Vec<String> = Vec::new();
    let index = values
        .map(|v| {
            kept.iter().position(|k| *k == v).unwrap_or_else(|| {
                kept.push(v);
                kept.len() - 1
            })
        })
        .collect();
    (kept, index)
}

/// The WGSL of one entry point (workgroup arrays included, named after the entry).
pub fn entry_source(e: &GemmEntry) -> String {
    let [bm, bn] = e.bands;
    let [edge_m, edge_n] = e.tile().map(|v| v as u32);
    let (sa, sb) = (format!("{}_a", e.name), format!("{}_b", e.name));
    let spread = [
        Spread::new(e.a.order, edge_m),
        Spread::new(e.b.order, edge_n),
    ];
    let mut s = String::new();
    let _ = writeln!(
        s,
        "var<workgroup> {sa}: array<vec4<f32>, {}>;\nvar<workgroup> {sb}: array<vec4<f32>, {}>;\n",
        edge_m * DEPTH as u32 / 4,
        edge_n * DEPTH as u32 / 4
    );
    let _ = writeln!(
        s,
        "@compute @workgroup_size(16, 16)\nfn {}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {{",
        e.name
    );
    let _ = writeln!(
        s,
        "    let z = wid.z;\n    if (gemm_skip(z, wid)) {{\n        return;\n    }}\n    let kr = gemm_k_range(z);\n    let row0 = wid.y * {edge_m}u;\n    let col0 = wid.x * {edge_n}u;\n    let t = lid.y * 16u + lid.x;"
    );
    // Per operand (a, b): a set-up s{x}{j} per distinct outer index and a K position
    // p{x}{j} per distinct K offset among its fetches (fetches share one or the other),
    // and prefetch registers n{x}{i}.
    let ops = [("a", &e.a, "row0"), ("b", &e.b, "col0")];
    let outers = spread
        .each_ref()
        .map(|sp| distinct((0..sp.fetches).map(|i| sp.outer(i))));
    let offsets = spread
        .each_ref()
        .map(|sp| distinct((0..sp.fetches).map(|i| sp.k(i))));
    for (o, (x, op, origin)) in ops.iter().enumerate() {
        for (j, outer) in outers[o].0.iter().enumerate() {
            let _ = writeln!(
                s,
                "    let s{x}{j} = {}_at(z, {origin} + {outer});",
                op.load
            );
        }
        for (j, k) in offsets[o].0.iter().enumerate() {
            let _ = writeln!(s, "    var p{x}{j} = {}_k(z, kr.x + {k});", op.state);
        }
    }
    for r in 0..4 * bm {
        for h in 0..bn {
            let _ = writeln!(s, "    var c{r}_{h} = vec4<f32>(0.0);");
        }
    }
    // Load every fetch at the current positions, then step the positions one slice on.
    let fetch_all = |indent: &str, decl: &str| {
        let mut f = String::new();
        for (o, (x, op, _)) in ops.iter().enumerate() {
            for i in 0..spread[o].fetches as usize {
                let (j, q) = (outers[o].1[i], offsets[o].1[i]);
                let _ = writeln!(
                    f,
                    "{indent}{decl}n{x}{i} = {}(z, s{x}{j}, p{x}{q});",
                    op.load
                );
            }
            for q in 0..offsets[o].0.len() {
                let _ = writeln!(f, "{indent}p{x}{q} = {}_next(z, p{x}{q});", op.state);
            }
        }
        f
    };
    s.push_str(&fetch_all("    ", "var "));
    let _ = writeln!(s, "    for (var k0 = kr.x; k0 < kr.y; k0 += {DEPTH}u) {{");
    for ((x, _, _), sp) in ops.iter().zip(&spread) {
        let tile = if *x == "a" { &sa } else { &sb };
        for i in 0..sp.fetches {
            s.push_str(&sp.put(tile, &format!("n{x}{i}"), i));
        }
    }
    s.push_str("        workgroupBarrier();\n");
    s.push_str(&fetch_all("        ", ""));
    let (qa, qb) = (spread[0].quads, spread[1].quads);
    for kk in 0..DEPTH as u32 {
        let _ = writeln!(s, "        {{");
        for band in 0..bm {
            let _ = writeln!(
                s,
                "            let a{band} = {sa}[{}u + lid.y];",
                kk * qa + band * 16
            );
        }
        for h in 0..bn {
            let _ = writeln!(
                s,
                "            let b{h} = {sb}[{}u + lid.x];",
                kk * qb + h * 16
            );
        }
        for band in 0..bm {
            for (r, comp) in ["x", "y", "z", "w"].iter().enumerate() {
                for h in 0..bn {
                    let _ = writeln!(
                        s,
                        "            c{}_{h} += a{band}.{comp} * b{h};",
                        band * 4 + r as u32
                    );
                }
            }
        }
        let _ = writeln!(s, "        }}");
    }
    let _ = writeln!(s, "        workgroupBarrier();\n    }}");
    for band in 0..bm {
        for r in 0..4 {
            let row = format!("row0 + {}u + lid.y * 4u + {r}u", band * 64);
            for h in 0..bn {
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

/// The WGSL of several entry points, after the slice depth and the K position of operands
/// whose loads need nothing but k (state `plain`).
pub fn source(entries: &[GemmEntry]) -> String {
    let head = format!(
        "const GEMM_DEPTH: u32 = {DEPTH}u;\n\nfn plain_k(z: u32, k: u32) -> u32 {{\n    return k;\n}}\n\nfn plain_next(z: u32, k: u32) -> u32 {{\n    return k + GEMM_DEPTH;\n}}\n"
    );
    std::iter::once(head)
        .chain(entries.iter().map(entry_source))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The source of an entry `g` with loads `la`/`lb`, positions `ka`/`kb`, store `st`.
    fn source_of(bands: Bands, a: Contiguous, b: Contiguous) -> String {
        entry_source(&GemmEntry {
            name: "g",
            bands,
            a: Operand {
                order: a,
                load: "la",
                state: "ka",
            },
            b: Operand {
                order: b,
                load: "lb",
                state: "kb",
            },
            store: "st",
        })
    }

    #[test]
    fn the_big_tile_is_unrolled_into_named_accumulators() {
        let src = source_of([2, 2], Contiguous::K, Contiguous::Outer);
        // 8 rows × 2 column bands of vec4 accumulators, no loop inside the K slice, and
        // 8 × 8 outputs stored per thread as 16 vec4s.
        assert_eq!(src.matches("var c").count(), 16);
        assert_eq!(src.matches("for (").count(), 1, "only the K loop remains");
        assert_eq!(src.matches(" += a").count(), 16 * DEPTH);
        assert_eq!(src.matches("st(z, ").count(), 16);
        // Set-ups and K positions are made once, outside the loop; inside it the positions
        // only step. Each operand's slice is two vec4s per thread, each fetched twice in
        // the text (the first slice, then the prefetch inside the loop).
        let (before, inside) = src.split_once("for (").unwrap();
        assert_eq!(before.matches("la_at(z, ").count(), 2, "two rows of A");
        assert_eq!(before.matches("lb_at(z, ").count(), 1, "four columns of B");
        assert_eq!(before.matches("ka_k(z, ").count(), 1);
        assert_eq!(before.matches("kb_k(z, ").count(), 2);
        assert!(!inside.contains("_at(z, ") && !inside.contains("_k(z, "));
        assert_eq!(inside.matches("ka_next(z, ").count(), 1);
        assert_eq!(inside.matches("kb_next(z, ").count(), 2);
        assert_eq!(src.matches("= la(z, ").count(), 4);
        assert_eq!(src.matches("= lb(z, ").count(), 4);
        // A 128×128 tile: 128 rows and columns per workgroup, 128 × 16 values per slice.
        assert!(src.contains("wid.y * 128u") && src.contains("wid.x * 128u"));
        assert!(
            src.contains("g_a: array<vec4<f32>, 512>")
                && src.contains("g_b: array<vec4<f32>, 512>")
        );
    }

    #[test]
    fn a_64_by_128_tile_fetches_one_vec4_of_a_and_two_of_b() {
        let src = source_of([1, 2], Contiguous::K, Contiguous::K);
        assert_eq!(src.matches("var c").count(), 8);
        assert_eq!(src.matches(" += a").count(), 8 * DEPTH);
        assert_eq!(src.matches("= la(z, ").count(), 2);
        assert_eq!(src.matches("= lb(z, ").count(), 4);
        assert!(
            src.contains("g_a: array<vec4<f32>, 256>")
                && src.contains("g_b: array<vec4<f32>, 512>")
        );
    }

    #[test]
    fn small_dimensions_and_few_tiles_take_smaller_tiles() {
        assert_eq!(TILES[tile_for(64, 100_000, 1)], [1, 2]);
        assert_eq!(TILES[tile_for(128, 100_000, 1)], [2, 2]);
        assert_eq!(TILES[tile_for(100_000, 64, 1)], [2, 1]);
        assert_eq!(TILES[tile_for(64, 64, 1000)], [1, 1]);
        // 256 × 256 is 4 big tiles: too few, so the rows drop to 64, then the columns.
        assert_eq!(TILES[tile_for(256, 256, 1)], [1, 1]);
        assert_eq!(TILES[tile_for(256, 256, 32)], [2, 2]);
        assert_eq!(TILES[tile_for(256, 2048, 1)], [1, 2]);
    }
}
