//! WGSL text for the register-tiled GEMM loop that matmul, convolution and Gram share.
//!
//! Why generated: GPU drivers do not unroll naga's loops, and a dynamically indexed
//! accumulator array spills to memory. On an H100 the same 128×128-tile algorithm ran at
//! 0.7 TFLOP/s written with loops and at 32 TFLOP/s fully unrolled with named vec4
//! accumulators (issue 3). Unrolled by hand the kernel would be hundreds of near-identical
//! lines; here it is one loop in Rust.
//!
//! The shape: 256 threads stand as a grid of `ty × tx`; each owns `4·bm` rows and `4·bn`
//! columns of the output tile (in bands of `4·ty` rows and `4·tx` columns, so that
//! neighbouring threads read neighbouring vec4s of workgroup memory), held in `bm·bn·4`
//! named `vec4` accumulators. The tile is `4·ty·bm × 4·tx·bn` (see [`TILES`]: square
//! 16×16 grids for most layers, short wide ones for layers of few channels) and its
//! K-slice `DEPTH` (16) deep, so each operand's slice is at most a few vec4s per thread.
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

/// An output tile: the 256 threads as a grid of `threads = [rows, columns]`, each thread
/// holding `bands` bands of 4 outputs along each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// thread grid `[ty, tx]`, `ty · tx` = 256
    pub threads: [u32; 2],
    /// bands of outputs per thread `[bm, bn]`
    pub bands: [u32; 2],
}

impl Tile {
    /// Output tile edges: rows, columns.
    pub const fn edges(&self) -> [usize; 2] {
        [
            4 * (self.threads[0] * self.bands[0]) as usize,
            4 * (self.threads[1] * self.bands[1]) as usize,
        ]
    }
}

const fn tile(threads: [u32; 2], bands: [u32; 2]) -> Tile {
    Tile { threads, bands }
}

/// One generated entry point.
#[derive(Clone, Copy, Debug)]
pub struct GemmEntry {
    /// entry point name
    pub name: &'static str,
    /// output tile
    pub tile: Tile,
    /// the left operand (rows of the output)
    pub a: Operand,
    /// the right operand (columns of the output)
    pub b: Operand,
    /// the shader's store function
    pub store: &'static str,
}

impl GemmEntry {
    /// Output tile edges: rows, columns.
    pub const fn edges(&self) -> [usize; 2] {
        self.tile.edges()
    }

    /// Bytes of workgroup memory its two K-slices take. An adapter offers a fixed amount
    /// (`max_compute_workgroup_storage_size`: 32 KiB on DX12, Apple GPUs and lavapipe,
    /// 48 KiB as NVIDIA's Vulkan drivers report it), and drivers reject or miscompile a
    /// kernel that declares more; wgpu does not check.
    pub fn workgroup_bytes(&self) -> usize {
        row_vec4s(self)
            .iter()
            .map(|&v| v as usize * DEPTH * 16)
            .sum()
    }
}

/// The tile shapes in the order the entry tables list them (see `source.rs`, which names
/// each entry after its edges): 64×64, 64×128, 128×64 and 128×128 on a 16×16 grid; then
/// 32×256, 16×256 and 8×512 for GEMMs of few rows (layers of few channels, the input
/// gradient of an RGB image), which in a 64-row tile would leave most of the arithmetic on
/// rows that do not exist. (A 64×256 tile, 4×16 outputs per thread, ran 3–29% slower than
/// 64×128 on an H100: benches/RESULTS.md, 2026-11-22, commit adfb16d.)
pub const TILES: [Tile; 7] = [
    tile([16, 16], [1, 1]),
    tile([16, 16], [1, 2]),
    tile([16, 16], [2, 1]),
    tile([16, 16], [2, 2]),
    tile([8, 32], [1, 2]),
    tile([4, 64], [1, 1]),
    tile([2, 128], [1, 1]),
];

/// The short tiles, by the rows they hold, with their indices into [`TILES`].
const SHORT: [(usize, usize); 3] = [(8, 6), (16, 5), (32, 4)];

/// Fewest workgroups (over every matrix of a dispatch) for which a bigger tile beats a
/// smaller one: below it, the smaller tile keeps more of the GPU busy.
const MIN_TILES: usize = 64;

/// Fewest 8×512 tiles for which they beat 16×256 ones: the LeNet C3 input gradient (6 rows,
/// 98 tiles of 8×512) ran 10% faster in twice as many 16×256 tiles on an H100, a GPU that
/// few workgroups leave idle (benches/RESULTS.md, 2026-11-22, commit adfb16d).
const MIN_WIDEST_TILES: usize = 256;

/// The tile for `count` output matrices of `m × n`, as an index into [`TILES`]:
/// - few rows (at most 32) and more than 64 columns: the shortest tile that holds them all
///   (a 32-row tile only while the dispatch keeps `MIN_TILES` workgroups: two 16-row
///   tiles do the same work in twice as many, smaller workgroups; an 8-row one only while
///   it keeps `MIN_WIDEST_TILES`);
/// - otherwise a 128 edge where that side exceeds 64, as long as the dispatch keeps
///   `MIN_TILES` workgroups (giving up the row edge first, then the column edge).
///
/// Only tiles whose entry (among `entries`, one per tile in [`TILES`] order) fits in
/// `workgroup_bytes` of workgroup memory are chosen, 64×64 (8.5 KiB at most) always.
/// `FOVEA_TILES` (tile edges, comma-separated: `64x64,64x128,128x64,128x128`) restricts the
/// choice further, to compare tiles in benchmarks.
pub fn tile_for(
    m: usize,
    n: usize,
    count: usize,
    entries: &[GemmEntry],
    workgroup_bytes: usize,
) -> usize {
    static ALLOWED: std::sync::LazyLock<[bool; TILES.len()]> =
        std::sync::LazyLock::new(|| allowed_tiles(std::env::var("FOVEA_TILES").ok().as_deref()));
    let mut allowed = *ALLOWED;
    for (a, e) in allowed.iter_mut().zip(entries) {
        *a &= e.workgroup_bytes() <= workgroup_bytes;
    }
    tile_among(m, n, count, &allowed)
}

/// The tiles a `FOVEA_TILES` value allows (all when unset).
fn allowed_tiles(list: Option<&str>) -> [bool; TILES.len()] {
    TILES.map(|t| {
        let [r, c] = t.edges();
        let name = format!("{r}x{c}");
        [r, c] == [64, 64] || list.is_none_or(|l| l.split(',').any(|w| w.trim() == name))
    })
}

fn tile_among(m: usize, n: usize, count: usize, allowed: &[bool; TILES.len()]) -> usize {
    let tiles = |i: usize| {
        let [em, en] = TILES[i].edges();
        m.div_ceil(em) * n.div_ceil(en) * count
    };
    if n > 64 {
        // 16×256, which the 32-row and 8-row tiles give way to when they are too few.
        let sixteen = SHORT[1].1;
        let fallback = allowed[sixteen];
        match SHORT.iter().find(|&&(rows, i)| m <= rows && allowed[i]) {
            Some(&(32, i)) if tiles(i) < MIN_TILES && fallback => return sixteen,
            Some(&(8, i)) if tiles(i) < MIN_WIDEST_TILES && fallback => return sixteen,
            Some(&(_, i)) => return i,
            None => {}
        }
    }
    let by_bands = |b: [u32; 2]| {
        TILES
            .iter()
            .position(|t| t.threads == [16, 16] && t.bands == b)
            .unwrap()
    };
    let mut bands = [1 + (m > 64) as u32, 1 + (n > 64) as u32];
    if bands[0] == 2 && tiles(by_bands(bands)) < MIN_TILES {
        bands[0] = 1;
    }
    if bands[1] == 2 && tiles(by_bands(bands)) < MIN_TILES {
        bands[1] = 1;
    }
    let i = by_bands(bands);
    if allowed[i] {
        i
    } else {
        0
    }
}

/// How one operand's slice is spread over the 256 threads: `fetches` vec4s per thread,
/// fetch `i` at outer index `outer(i)` and K offset `k(i)` within the slice. A slice of
/// fewer than 256 vec4s (a short tile's rows) is fetched by its first `lanes` threads; the
/// others load the same addresses (`t % lanes`, so in bounds and cached) and store nothing.
pub(crate) struct Spread {
    pub(crate) order: Contiguous,
    /// vec4s of the tile's edge (edge / 4)
    pub(crate) quads: u32,
    /// vec4s per row (one K value) of the slice in workgroup memory (see `row_vec4s`)
    pub(crate) stride: u32,
    pub(crate) fetches: u32,
    pub(crate) lanes: u32,
    /// the thread's index among the lanes
    pub(crate) t: String,
}

impl Spread {
    pub(crate) fn new(order: Contiguous, edge: u32, stride: u32) -> Spread {
        let vec4s = edge * DEPTH as u32 / 4;
        let lanes = vec4s.min(256);
        Spread {
            order,
            quads: edge / 4,
            stride,
            fetches: vec4s / lanes,
            lanes,
            t: if lanes == 256 {
                "t".into()
            } else {
                format!("(t % {lanes}u)")
            },
        }
    }
    /// Threads that share one outer index (K order) or one K offset (outer order) step
    /// the other index; fetch i adds a whole block of 256 threads.
    pub(crate) fn outer(&self, i: u32) -> String {
        let t = &self.t;
        match self.order {
            Contiguous::Outer => format!("({t} % {}u) * 4u", self.quads),
            Contiguous::K => format!("{t} / {}u + {}u", DEPTH / 4, i * 256 / (DEPTH as u32 / 4)),
        }
    }
    pub(crate) fn k(&self, i: u32) -> String {
        let t = &self.t;
        match self.order {
            Contiguous::Outer => format!("{t} / {q}u + {}u", i * 256 / self.quads, q = self.quads),
            Contiguous::K => format!("({t} % {}u) * 4u", DEPTH / 4),
        }
    }
    /// Statements that store fetch i's vec4 `reg` into `tile`.
    fn put(&self, tile: &str, reg: &str, i: u32) -> String {
        let (q, t, stride) = (self.quads, &self.t, self.stride);
        let mut put = match self.order {
            Contiguous::Outer => {
                format!(
                    "        {tile}[({}) * {stride}u + {t} % {q}u] = {reg};\n",
                    self.k(i)
                )
            }
            Contiguous::K => {
                let mut put = String::new();
                let outer = self.outer(i);
                for (d, comp) in ["x", "y", "z", "w"].iter().enumerate() {
                    let _ = writeln!(
                        put,
                        "        {tile}[(({}) + {d}u) * {stride}u + ({outer}) / 4u][({outer}) % 4u] = {reg}.{comp};",
                        self.k(i)
                    );
                }
                put
            }
        };
        if self.lanes < 256 {
            put = format!("        if (t < {}u) {{\n{put}        }}\n", self.lanes);
        }
        put
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

/// How the 256 threads share each operand's slice (A, B).
fn spreads(e: &GemmEntry) -> [Spread; 2] {
    let [edge_m, edge_n] = e.edges().map(|v| v as u32);
    let [stride_a, stride_b] = row_vec4s(e);
    [
        Spread::new(e.a.order, edge_m, stride_a),
        Spread::new(e.b.order, edge_n, stride_b),
    ]
}

/// Vec4s per row (one K value) of each operand's slice in workgroup memory: the tile's
/// edge, plus one for an operand stored along K in a tile of at most 64 rows. (Tile
/// selection counts workgroup memory with it on every dispatch, so it allocates nothing.)
fn row_vec4s(e: &GemmEntry) -> [u32; 2] {
    let [edge_m, edge_n] = e.edges().map(|v| v as u32);
    // An operand stored along K has each thread write four rows 4 apart at once; with rows
    // a multiple of 128 bytes apart, those writes share banks four ways, and a row one vec4
    // longer makes that two. On an H100 that sped up every 64-row tile (224² forward
    // −2.7%, its weight gradient −7.6%) but slowed the 128×128 forward by 17%, so 128-row
    // tiles keep plain rows (benches/RESULTS.md, 2026-11-22, commit adfb16d).
    let padded = edge_m <= 64;
    let longer = |order: Contiguous| (padded && order == Contiguous::K) as u32;
    [
        edge_m / 4 + longer(e.a.order),
        edge_n / 4 + longer(e.b.order),
    ]
}

/// How an entry's threads fetch its operands, shared by the register-tiled loop and the
/// cooperative-matrix one (`gemm_coop`).
pub(crate) struct Loads<'a> {
    e: &'a GemmEntry,
    /// how the 256 threads share each operand's slice (A, B)
    pub(crate) spread: [Spread; 2],
    /// per operand, the distinct outer indices and K offsets among its fetches, and which
    /// of them each fetch uses
    outers: [(Vec<String>, Vec<usize>); 2],
    offsets: [(Vec<String>, Vec<usize>); 2],
}

impl<'a> Loads<'a> {
    pub(crate) fn new(e: &'a GemmEntry, spread: [Spread; 2]) -> Loads<'a> {
        let outers = spread
            .each_ref()
            .map(|sp| distinct((0..sp.fetches).map(|i| sp.outer(i))));
        let offsets = spread
            .each_ref()
            .map(|sp| distinct((0..sp.fetches).map(|i| sp.k(i))));
        Loads {
            e,
            spread,
            outers,
            offsets,
        }
    }

    fn operands(&self) -> [(&'static str, &Operand, &'static str); 2] {
        [("a", &self.e.a, "row0"), ("b", &self.e.b, "col0")]
    }

    /// The entry's first statements, up to its accumulators: skip, K range `kr`, tile
    /// origin, the thread's index `t`, and per operand a set-up `s{x}{j}` per distinct
    /// outer index and a K position `p{x}{j}` per distinct K offset among its fetches
    /// (fetches share one or the other). A skipped workgroup returns at once, or, with
    /// `uniform` (cooperative operations must not follow a return that naga cannot prove
    /// uniform), goes on with `skip` set and an empty range.
    pub(crate) fn prologue(&self, uniform: bool) -> String {
        let [edge_m, edge_n] = self.e.edges().map(|v| v as u32);
        let tx = self.e.tile.threads[1];
        let mut s = String::new();
        let skip = if uniform {
            "    let skip = gemm_skip(z, wid);\n    let kr = select(gemm_k_range(z), vec2<u32>(0u), skip);"
        } else {
            "    if (gemm_skip(z, wid)) {\n        return;\n    }\n    let kr = gemm_k_range(z);"
        };
        let _ = writeln!(
            s,
            "    let z = wid.z;\n{skip}\n    let row0 = wid.y * {edge_m}u;\n    let col0 = wid.x * {edge_n}u;\n    let t = lid.y * {tx}u + lid.x;"
        );
        for (o, (x, op, origin)) in self.operands().iter().enumerate() {
            for (j, outer) in self.outers[o].0.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "    let s{x}{j} = {}_at(z, {origin} + {outer});",
                    op.load
                );
            }
            for (j, k) in self.offsets[o].0.iter().enumerate() {
                let _ = writeln!(s, "    var p{x}{j} = {}_k(z, kr.x + {k});", op.state);
            }
        }
        s
    }

    /// Loads every fetch into its register `n{x}{i}` at the current positions, then steps
    /// the positions one slice on.
    pub(crate) fn fetch(&self, indent: &str, decl: &str) -> String {
        let mut f = String::new();
        for (o, (x, op, _)) in self.operands().iter().enumerate() {
            for i in 0..self.spread[o].fetches as usize {
                let (j, q) = (self.outers[o].1[i], self.offsets[o].1[i]);
                let _ = writeln!(
                    f,
                    "{indent}{decl}n{x}{i} = {}(z, s{x}{j}, p{x}{q});",
                    op.load
                );
            }
            for q in 0..self.offsets[o].0.len() {
                let _ = writeln!(f, "{indent}p{x}{q} = {}_next(z, p{x}{q});", op.state);
            }
        }
        f
    }
}

/// The WGSL of one entry point (workgroup arrays included, named after the entry). With
/// `half` (autocast), each fetched operand is rounded to an f16 value before it is staged
/// (`quantizeToF16`, which needs no f16 arithmetic, only wgpu's `SHADER_F16_IN_F32`
/// downlevel flag): products of f16 values are exact in f32 and sums accumulate in f32, as
/// on tensor cores, and the inner loop is the f32 one.
pub fn entry_source(e: &GemmEntry, half: bool) -> String {
    let [bm, bn] = e.tile.bands;
    let [ty, tx] = e.tile.threads;
    let (sa, sb) = (format!("{}_a", e.name), format!("{}_b", e.name));
    let spread = spreads(e);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "var<workgroup> {sa}: array<vec4<f32>, {}>;\nvar<workgroup> {sb}: array<vec4<f32>, {}>;\n",
        spread[0].stride * DEPTH as u32,
        spread[1].stride * DEPTH as u32
    );
    let _ = writeln!(
        s,
        "@compute @workgroup_size({tx}, {ty})\nfn {}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {{",
        e.name
    );
    let loads = Loads::new(e, spread);
    s.push_str(&loads.prologue(false));
    for r in 0..4 * bm {
        for h in 0..bn {
            let _ = writeln!(s, "    var c{r}_{h} = vec4<f32>(0.0);");
        }
    }
    s.push_str(&loads.fetch("    ", "var "));
    let _ = writeln!(s, "    for (var k0 = kr.x; k0 < kr.y; k0 += {DEPTH}u) {{");
    for (x, sp) in ["a", "b"].iter().zip(&loads.spread) {
        let tile = if *x == "a" { &sa } else { &sb };
        for i in 0..sp.fetches {
            if half {
                let _ = writeln!(s, "        n{x}{i} = quantizeToF16(n{x}{i});");
            }
            s.push_str(&sp.put(tile, &format!("n{x}{i}"), i));
        }
    }
    s.push_str("        workgroupBarrier();\n");
    s.push_str(&loads.fetch("        ", ""));
    let (qa, qb) = (loads.spread[0].stride, loads.spread[1].stride);
    for kk in 0..DEPTH as u32 {
        let _ = writeln!(s, "        {{");
        for band in 0..bm {
            let _ = writeln!(
                s,
                "            let a{band} = {sa}[{}u + lid.y];",
                kk * qa + band * ty
            );
        }
        for h in 0..bn {
            let _ = writeln!(
                s,
                "            let b{h} = {sb}[{}u + lid.x];",
                kk * qb + h * tx
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
            let row = format!("row0 + {}u + lid.y * 4u + {r}u", band * 4 * ty);
            for h in 0..bn {
                let _ = writeln!(
                    s,
                    "    {}(z, {row}, col0 + {}u + lid.x * 4u, c{}_{h});",
                    e.store,
                    h * 4 * tx,
                    band * 4 + r
                );
            }
        }
    }
    let _ = writeln!(s, "}}");
    s
}

/// The WGSL of several entry points, each written by `entry` (for instance
/// `|e| entry_source(e, false)`), after the slice depth and the K position of operands
/// whose loads need nothing but k (state `plain`).
pub fn source(entries: &[GemmEntry], entry: impl Fn(&GemmEntry) -> String) -> String {
    let head = format!(
        "const GEMM_DEPTH: u32 = {DEPTH}u;\n\nfn plain_k(z: u32, k: u32) -> u32 {{\n    return k;\n}}\n\nfn plain_next(z: u32, k: u32) -> u32 {{\n    return k + GEMM_DEPTH;\n}}\n"
    );
    std::iter::once(head)
        .chain(entries.iter().map(entry))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The source of an entry `g` with loads `la`/`lb`, positions `ka`/`kb`, store `st`.
    fn source_of(tile: Tile, a: Contiguous, b: Contiguous) -> String {
        entry_source(
            &GemmEntry {
                name: "g",
                tile,
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
            },
            false,
        )
    }

    fn with_edges(edges: [usize; 2]) -> Tile {
        *TILES.iter().find(|t| t.edges() == edges).unwrap()
    }

    #[test]
    fn the_big_tile_is_unrolled_into_named_accumulators() {
        let src = source_of(with_edges([128, 128]), Contiguous::K, Contiguous::Outer);
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
        // A 128×128 tile: 128 rows and columns per workgroup, 128 × 16 values per slice,
        // bands 64 apart; every thread stores its share of the slices.
        assert!(src.contains("@workgroup_size(16, 16)") && src.contains("lid.y * 16u + lid.x"));
        assert!(src.contains("wid.y * 128u") && src.contains("wid.x * 128u"));
        assert!(src.contains("row0 + 64u + lid.y * 4u") && src.contains("col0 + 64u + lid.x"));
        assert!(!src.contains("if (t <"));
        assert!(
            src.contains("g_a: array<vec4<f32>, 512>")
                && src.contains("g_b: array<vec4<f32>, 512>")
        );
    }

    #[test]
    fn a_64_by_128_tile_fetches_one_vec4_of_a_and_two_of_b() {
        // Both operands stored along K: their rows in workgroup memory one vec4 longer.
        let src = source_of(with_edges([64, 128]), Contiguous::K, Contiguous::K);
        assert_eq!(src.matches("var c").count(), 8);
        assert_eq!(src.matches(" += a").count(), 8 * DEPTH);
        assert_eq!(src.matches("= la(z, ").count(), 2);
        assert_eq!(src.matches("= lb(z, ").count(), 4);
        assert!(
            src.contains("g_a: array<vec4<f32>, 272>")
                && src.contains("g_b: array<vec4<f32>, 528>")
        );
    }

    #[test]
    fn a_short_tile_lays_its_threads_along_the_columns() {
        let src = source_of(with_edges([16, 256]), Contiguous::K, Contiguous::Outer);
        // 4 × 64 threads, each 4 × 4 outputs; A's slice (16 × 16 values) is 64 vec4s, which
        // the first 64 threads store (one guarded put), B's four vec4s per thread.
        assert!(src.contains("@workgroup_size(64, 4)") && src.contains("lid.y * 64u + lid.x"));
        assert!(src.contains("wid.y * 16u") && src.contains("wid.x * 256u"));
        assert_eq!(src.matches("var c").count(), 4);
        assert_eq!(src.matches(" += a").count(), 4 * DEPTH);
        assert_eq!(src.matches("if (t < 64u)").count(), 1);
        assert!(src.contains("la_at(z, row0 + (t % 64u) / 4u + 0u)"));
        assert_eq!(src.matches("= la(z, ").count(), 2);
        assert_eq!(src.matches("= lb(z, ").count(), 8);
        assert!(src.contains("g_a[75u + lid.y]") && src.contains("g_b[960u + lid.x]"));
        assert!(
            src.contains("g_a: array<vec4<f32>, 80>")
                && src.contains("g_b: array<vec4<f32>, 1024>")
        );
    }

    const ALL: [bool; TILES.len()] = [true; TILES.len()];

    fn chosen(m: usize, n: usize, count: usize) -> [usize; 2] {
        TILES[tile_among(m, n, count, &ALL)].edges()
    }

    #[test]
    fn small_dimensions_and_few_tiles_take_smaller_tiles() {
        assert_eq!(chosen(64, 100_000, 1), [64, 128]);
        assert_eq!(chosen(128, 100_000, 1), [128, 128]);
        assert_eq!(chosen(100_000, 64, 1), [128, 64]);
        assert_eq!(chosen(64, 64, 1000), [64, 64]);
        // 256 × 256 is 4 big tiles: too few, so the rows drop to 64, then the columns.
        assert_eq!(chosen(256, 256, 1), [64, 64]);
        assert_eq!(chosen(256, 256, 32), [128, 128]);
        assert_eq!(chosen(256, 2048, 1), [64, 128]);
    }

    #[test]
    fn few_rows_take_the_shortest_tile_that_holds_them() {
        assert_eq!(chosen(3, 262_144, 1), [8, 512]);
        // 98 tiles of 8×512 are too few: twice as many of 16×256.
        assert_eq!(chosen(6, 50_176, 1), [16, 256]);
        assert_eq!(chosen(16, 150, 100), [16, 256]);
        assert_eq!(chosen(32, 100_000, 1), [32, 256]);
        // Eight 32×256 tiles are too few: twice as many 16-row ones run smaller.
        assert_eq!(chosen(32, 2000, 1), [16, 256]);
        // Narrow matrices keep the square tile.
        assert_eq!(chosen(3, 50, 1), [64, 64]);
    }

    /// A tile whose workgroup memory the adapter lacks is never chosen: 8×512 (33 KiB)
    /// gives way to 16×256 on DX12, Apple GPUs and lavapipe (32 KiB), and the short tiles
    /// (17–19 KiB) to the 16×16 grid where an adapter offers only 16 KiB.
    #[test]
    fn tiles_fit_the_adapters_workgroup_memory() {
        let fwd = &crate::source::CONV2D_ENTRIES[..TILES.len()];
        let pick = |m, n, kib: usize| {
            let i = tile_for(m, n, 1, fwd, kib << 10);
            assert!(fwd[i].workgroup_bytes() <= (kib << 10).max(fwd[0].workgroup_bytes()));
            TILES[i].edges()
        };
        assert_eq!(pick(3, 262_144, 48), [8, 512]);
        assert_eq!(pick(3, 262_144, 32), [16, 256]);
        assert_eq!(pick(3, 262_144, 16), [64, 128]);
        assert_eq!(pick(24, 100_000, 32), [32, 256]);
        assert_eq!(pick(24, 100_000, 16), [64, 128]);
        assert_eq!(pick(128, 100_000, 16), [128, 128]);
        assert_eq!(
            pick(128, 100_000, 8),
            [64, 64],
            "64×64 whatever the adapter says"
        );
    }

    #[test]
    fn fovea_tiles_restricts_the_choice() {
        let classic = allowed_tiles(Some("64x128, 128x64,128x128"));
        assert_eq!(classic.iter().filter(|&&a| a).count(), 4, "64x64 always");
        assert_eq!(
            TILES[tile_among(6, 262_144, 1, &classic)].edges(),
            [64, 128]
        );
        assert_eq!(
            TILES[tile_among(64, 100_000, 1, &classic)].edges(),
            [64, 128]
        );
        let square = allowed_tiles(Some("128x128"));
        assert_eq!(
            TILES[tile_among(128, 100_000, 1, &square)].edges(),
            [128, 128]
        );
        assert_eq!(TILES[tile_among(64, 100_000, 1, &square)].edges(), [64, 64]);
        assert_eq!(allowed_tiles(None), ALL);
    }
}
