//! Every WGSL kernel, embedded at compile time so nothing is read from disk at run time.
//! Each shader's source is `shaders/include/common.wgsl` (shared helpers; WGSL has no
//! include; it lives apart because it is a prelude, not an op family with a host file),
//! then the declaration of its parameters generated from the host's struct (`params.rs`),
//! then the shader's own file and any generated GEMM entry points.

use crate::gemm_coop;
use crate::gemm_gen::{self, Contiguous, GemmEntry, Operand};
use crate::params::Wgsl;

/// The prelude every shader starts with.
const COMMON: &str = include_str!("../../../shaders/include/common.wgsl");

/// A shader file: its name (the file stem) and source.
#[derive(Clone, Copy, Debug)]
pub struct Shader {
    /// File stem in `shaders/`.
    pub name: &'static str,
    /// WGSL source of the file alone.
    pub file: &'static str,
    /// Appends the WGSL declaration of the parameters `p` (and of the types they hold).
    params: fn(&mut String),
    /// Bytes of the parameters on the host.
    pub params_bytes: usize,
    /// GEMM entry points generated after the file's text (see `gemm_gen`).
    pub gemm: &'static [GemmEntry],
}

/// How a module's generated GEMM entries multiply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 tiles and multiply-adds: outside autocast
    F32,
    /// autocast: operands rounded to f16 as they are staged, multiply-adds in f32 (see
    /// `gemm_gen::entry_source`)
    Half,
    /// autocast on cooperative matrices, for subgroups of this many invocations: the 64×64
    /// entries as in `gemm_coop`, the others as `Half`
    Coop(u32),
}

/// How every shader declares its parameters, as written in the files: a uniform buffer at
/// binding 0 (the form any adapter runs).
const UNIFORM_PARAMS: &str = "@group(0) @binding(0) var<uniform> p:";
/// The same parameters as immediates (push constants), for adapters that have them.
const IMMEDIATE_PARAMS: &str = "var<immediate> p:";

impl Shader {
    /// The complete WGSL: the prelude, the parameters' declaration, the file, then any
    /// generated entry points.
    pub fn source(&self) -> String {
        self.source_in(Precision::F32)
    }

    /// [`Shader::source`], with the generated GEMM entries in `precision`.
    pub fn source_in(&self, precision: Precision) -> String {
        let mut s = String::new();
        match precision {
            Precision::F32 | Precision::Half => {}
            Precision::Coop(_) => s.push_str(gemm_coop::ENABLES),
        }
        s.push_str(COMMON);
        s.push('\n');
        (self.params)(&mut s);
        s.push_str(self.file);
        if !self.gemm.is_empty() {
            s.push('\n');
            s.push_str(&gemm_gen::source(self.gemm, |e| match precision {
                Precision::F32 => gemm_gen::entry_source(e, false),
                Precision::Coop(sg) if gemm_coop::fits(e, sg) => gemm_coop::entry_source(e, sg),
                _ => gemm_gen::entry_source(e, true),
            }));
        }
        s
    }

    /// The complete WGSL with its parameters as immediates, or as the file has them, and
    /// its GEMM entries in `precision`.
    pub fn source_for(&self, immediates: bool, precision: Precision) -> String {
        let source = self.source_in(precision);
        if immediates {
            source.replacen(UNIFORM_PARAMS, IMMEDIATE_PARAMS, 1)
        } else {
            source
        }
    }
}

const fn operand(order: Contiguous, load: &'static str, state: &'static str) -> Operand {
    Operand { order, load, state }
}

/// One entry point per tile shape of `gemm_gen::TILES`, in that order, named
/// `{prefix}_{rows}x{cols}{suffix}` (`conv2d_64x128_fwd` is a 64×128 tile; a test checks
/// the names against the tiles).
macro_rules! per_tile {
    ($prefix:literal, $suffix:literal, $a:expr, $b:expr, $store:literal) => {
        per_tile!(@ $prefix, $suffix, $a, $b, $store;
            0 "64x64", 1 "64x128", 2 "128x64", 3 "128x128", 4 "32x256", 5 "16x256",
            6 "8x512")
    };
    (@ $prefix:literal, $suffix:literal, $a:expr, $b:expr, $store:literal;
        $($i:literal $edges:literal),*) => {
        [$(
            GemmEntry {
                name: concat!($prefix, "_", $edges, $suffix),
                tile: gemm_gen::TILES[$i],
                a: $a,
                b: $b,
                store: $store,
            }
        ),*]
    };
}

/// Tiles per row of an entry table.
pub const TILE_COUNT: usize = gemm_gen::TILES.len();

/// Joins the per-tile rows of a table into one list (`[row · TILE_COUNT + tile]`).
const fn flatten<const M: usize, const N: usize>(
    rows: [[GemmEntry; TILE_COUNT]; M],
) -> [GemmEntry; N] {
    assert!(M * TILE_COUNT == N);
    let mut out = [rows[0][0]; N];
    let mut i = 0;
    while i < N {
        out[i] = rows[i / TILE_COUNT][i % TILE_COUNT];
        i += 1;
    }
    out
}

use Contiguous::{Outer, K};

/// Convolution's entry points, `[mode · TILE_COUNT + tile]` with modes forward, weight
/// gradient, input gradient at stride 1, input gradient by stride phases (each over
/// exactly its own taps), and the column buffer of the col2im input gradient, each with
/// its operands' memory order and the shader's functions for that mode.
pub const CONV2D_ENTRIES: &[GemmEntry] = &flatten::<5, { 5 * TILE_COUNT }>([
    per_tile!(
        "conv2d",
        "_fwd",
        operand(K, "fwd_a", "line"),
        operand(Outer, "fwd_b", "tap"),
        "fwd_store"
    ),
    per_tile!(
        "conv2d",
        "_gw",
        operand(K, "gw_a", "line"),
        operand(K, "gw_b", "pixel"),
        "gw_store"
    ),
    per_tile!(
        "conv2d",
        "_gin1",
        operand(K, "gin1_a", "line"),
        operand(Outer, "gin1_b", "tap"),
        "gin1_store"
    ),
    per_tile!(
        "conv2d",
        "_ginx",
        operand(K, "ginx_a", "ginx_pos"),
        operand(Outer, "ginx_b", "ginx_pos"),
        "gin_store"
    ),
    per_tile!(
        "conv2d",
        "_gcol",
        operand(Outer, "gcol_a", "plain"),
        operand(Outer, "gcol_b", "plain"),
        "gcol_store"
    ),
]);

/// The Gram kernel's entry points (64×64 and 128×128 tiles: the triangle needs square
/// ones); both operands are rows of F.
pub const GRAM_ENTRIES: &[GemmEntry] = &[
    GemmEntry {
        name: "gram_64x64",
        tile: gemm_gen::TILES[0],
        a: operand(K, "rows", "plain"),
        b: operand(K, "rows", "plain"),
        store: "mirrored_store",
    },
    GemmEntry {
        name: "gram_128x128",
        tile: gemm_gen::TILES[3],
        a: operand(K, "rows", "plain"),
        b: operand(K, "rows", "plain"),
        store: "mirrored_store",
    },
];

/// Matmul's entry points, `[layout · TILE_COUNT + tile]` with layouts nn, nt, tn, tt (A's and B's
/// transpose flags), then the same four with vec4 loads and stores (`_v`, for m, n and k
/// that are multiples of 4).
pub const MATMUL_ENTRIES: &[GemmEntry] = &flatten::<8, { 8 * TILE_COUNT }>([
    per_tile!(
        "matmul",
        "_nn",
        operand(K, "a_n", "plain"),
        operand(Outer, "b_n", "plain"),
        "store"
    ),
    per_tile!(
        "matmul",
        "_nt",
        operand(K, "a_n", "plain"),
        operand(K, "b_t", "plain"),
        "store"
    ),
    per_tile!(
        "matmul",
        "_tn",
        operand(Outer, "a_t", "plain"),
        operand(Outer, "b_n", "plain"),
        "store"
    ),
    per_tile!(
        "matmul",
        "_tt",
        operand(Outer, "a_t", "plain"),
        operand(K, "b_t", "plain"),
        "store"
    ),
    per_tile!(
        "matmul",
        "_nn_v",
        operand(K, "a_n4", "plain"),
        operand(Outer, "b_n4", "plain"),
        "store_v"
    ),
    per_tile!(
        "matmul",
        "_nt_v",
        operand(K, "a_n4", "plain"),
        operand(K, "b_t4", "plain"),
        "store_v"
    ),
    per_tile!(
        "matmul",
        "_tn_v",
        operand(Outer, "a_t4", "plain"),
        operand(Outer, "b_n4", "plain"),
        "store_v"
    ),
    per_tile!(
        "matmul",
        "_tt_v",
        operand(Outer, "a_t4", "plain"),
        operand(K, "b_t4", "plain"),
        "store_v"
    ),
]);

/// The generated entry points named in `shaders!`, or none.
macro_rules! or_none {
    () => {
        &[]
    };
    ($gemm:ident) => {
        $gemm
    };
}

macro_rules! shaders {
    ($($konst:ident = $file:literal ($params:ty) $(+ $gemm:ident)?;)*) => {
        $(
            #[doc = concat!("`shaders/", $file, ".wgsl`")]
            pub const $konst: Shader = Shader {
                name: $file,
                file: include_str!(concat!("../../../shaders/", $file, ".wgsl")),
                params: <$params as Wgsl>::declare,
                params_bytes: std::mem::size_of::<$params>(),
                gemm: or_none!($($gemm)?),
            };
        )*
        /// All shaders, for validation.
        pub const ALL: &[Shader] = &[$($konst),*];
    };
}

shaders! {
    ELEMENTWISE = "elementwise" (crate::elementwise::Params);
    BINARY = "binary" (crate::binary::Params);
    REDUCE = "reduce" (crate::reduce::Params);
    BATCH_NORM = "batch_norm" (crate::batch_norm::Params);
    LAYOUT = "layout" (crate::layout::Params);
    MATMUL = "matmul" (crate::matmul::Params) + MATMUL_ENTRIES;
    CONV2D = "conv2d" (crate::conv2d::Params) + CONV2D_ENTRIES;
    CONV2D_DEPTHWISE = "conv2d_depthwise" (crate::conv2d_depthwise::Params);
    POOL2D = "pool2d" (crate::pool2d::Params);
    ADAPTIVE_POOL2D = "adaptive_pool2d" (crate::adaptive_pool2d::Params);
    UPSAMPLE2D = "upsample2d" (crate::adaptive_pool2d::Params);
    UPSAMPLE_BILINEAR2D = "upsample_bilinear2d" (crate::upsample_bilinear2d::Params);
    GRAM = "gram" (crate::gram::Params) + GRAM_ENTRIES;
    OPTIM = "optim" (crate::optim::Params);
    CAST = "cast" (crate::cast::Params);
}

/// The body of entry `name` in a shader's `source`, for tests.
#[cfg(test)]
pub(crate) fn entry_body<'a>(source: &'a str, name: &str) -> &'a str {
    let start = source
        .find(&format!("fn {name}("))
        .unwrap_or_else(|| panic!("{name} is missing"));
    let len = source[start..].find("\n}\n").unwrap();
    &source[start..start + len]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `s`'s source in one parameter form, parsed and validated by naga (errors shown
    /// against the source).
    fn validated(s: &Shader, immediates: bool) -> (naga::Module, naga::valid::ModuleInfo) {
        let source = s.source_for(immediates, Precision::F32);
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{}.wgsl: {}", s.name, e.emit_to_string(&source)));
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::IMMEDIATES,
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}.wgsl: {}", s.name, e.emit_to_string(&source)));
        (module, info)
    }

    /// Autocast's variants of the GEMM shaders validate without f16 arithmetic (they round
    /// with `quantizeToF16`, which needs only f16-in-f32 support), in both parameter
    /// forms, and translate to MSL, HLSL and GLSL ES as the plain ones do; every GEMM entry
    /// rounds each fetch before staging it, and the plain entries round nothing.
    #[test]
    fn autocast_variants_validate_and_round_every_fetch() {
        for s in ALL.iter().filter(|s| !s.gemm.is_empty()) {
            for immediates in [false, true] {
                let source = s.source_for(immediates, Precision::Half);
                let module = naga::front::wgsl::parse_str(&source)
                    .unwrap_or_else(|e| panic!("{}.wgsl: {}", s.name, e.emit_to_string(&source)));
                let info = naga::valid::Validator::new(
                    naga::valid::ValidationFlags::all(),
                    naga::valid::Capabilities::IMMEDIATES
                        | naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32,
                )
                .validate(&module)
                .unwrap_or_else(|e| panic!("{}.wgsl: {}", s.name, e.emit_to_string(&source)));
                translate(&format!("{}.wgsl (autocast)", s.name), &module, &info);
            }
            let (half, plain) = (s.source_in(Precision::Half), s.source());
            for e in s.gemm {
                let (half, plain) = (entry_body(&half, e.name), entry_body(&plain, e.name));
                let fetches = half.matches("    var n").count();
                assert!(fetches > 0, "{}", e.name);
                assert_eq!(
                    half.matches("= quantizeToF16(n").count(),
                    fetches,
                    "{}",
                    e.name
                );
                assert!(!plain.contains("quantizeToF16"), "{}", e.name);
            }
        }
    }

    /// The shaders' parameters, declared from the host's structs, lay out as the host's do
    /// (WGSL and `repr(C)` agree on every field type `params.rs` maps): as immediates, a
    /// shorter host struct would leave the shader reading undefined values, and a longer
    /// one fails the dispatch.
    #[test]
    fn host_parameters_match_the_shaders() {
        for s in ALL {
            let source = s.source_for(true, Precision::F32);
            let module = naga::front::wgsl::parse_str(&source).unwrap();
            let size = naga::valid::ImmediateSlots::size_for_module(&module);
            assert_eq!(
                size as usize, s.params_bytes,
                "{}.wgsl's parameters",
                s.name
            );
        }
    }

    /// Entry names carry their tile's edges, which profiles and benchmarks report.
    #[test]
    fn entry_names_match_their_tiles() {
        for e in CONV2D_ENTRIES
            .iter()
            .chain(MATMUL_ENTRIES)
            .chain(GRAM_ENTRIES)
        {
            let [r, c] = e.edges();
            assert!(
                e.name.contains(&format!("_{r}x{c}")),
                "{} is {r}x{c}",
                e.name
            );
        }
        for (i, e) in CONV2D_ENTRIES.iter().enumerate() {
            assert_eq!(e.tile, gemm_gen::TILES[i % TILE_COUNT], "{}", e.name);
        }
    }

    /// Each entry point's workgroup memory, as naga lays out the arrays it uses, is what
    /// tile selection counts for GEMM entries (`GemmEntry::workgroup_bytes`), and at most
    /// 16 KiB (what every adapter fovea opens offers) for every other entry and every tile
    /// that is always used (64×64, Gram's).
    #[test]
    fn workgroup_memory_is_counted_and_fits_where_it_must() {
        const EVERY_ADAPTER: usize = 16 << 10;
        let gemm = CONV2D_ENTRIES
            .iter()
            .chain(MATMUL_ENTRIES)
            .chain(GRAM_ENTRIES)
            .collect::<Vec<_>>();
        let mut counted = 0;
        for s in ALL {
            let (module, info) = validated(s, true);
            let mut layouter = naga::proc::Layouter::default();
            layouter.update(module.to_ctx()).unwrap();
            for (i, ep) in module.entry_points.iter().enumerate() {
                let uses = info.get_entry_point(i);
                let bytes: usize = module
                    .global_variables
                    .iter()
                    .filter(|(h, v)| {
                        v.space == naga::AddressSpace::WorkGroup && !uses[*h].is_empty()
                    })
                    .map(|(_, v)| layouter[v.ty].size as usize)
                    .sum();
                match gemm.iter().find(|e| e.name == ep.name) {
                    Some(e) => {
                        counted += 1;
                        assert_eq!(bytes, e.workgroup_bytes(), "{}", e.name);
                        let always = e.tile == gemm_gen::TILES[0] || e.name.starts_with("gram");
                        assert!(
                            !always || bytes <= EVERY_ADAPTER,
                            "{} takes {bytes}",
                            e.name
                        );
                    }
                    None => assert!(bytes <= EVERY_ADAPTER, "{} takes {bytes}", ep.name),
                }
            }
        }
        assert_eq!(counted, gemm.len(), "every GEMM entry was found");
    }

    /// Every shader, in both parameter forms, translates to Metal Shading Language, to
    /// HLSL (shader models 5.1 and 6.0) and to GLSL ES 3.1, as wgpu translates it on Apple
    /// GPUs, DX12 and OpenGL: CI runs on Vulkan only, where naga writes SPIR-V instead.
    #[test]
    fn every_shader_translates_for_metal_dx12_and_gl() {
        for s in ALL {
            for immediates in [false, true] {
                let (module, info) = validated(s, immediates);
                translate(
                    &format!("{}.wgsl (immediates: {immediates})", s.name),
                    &module,
                    &info,
                );
            }
        }
    }

    /// Translates a validated module to MSL, HLSL 5.1 and 6.0, and GLSL ES 3.1 (`what`
    /// names it in a failure).
    fn translate(what: &str, module: &naga::Module, info: &naga::valid::ModuleInfo) {
        use naga::back::{glsl, hlsl, msl};
        let (_, translated) = msl::write_string(
            module,
            info,
            &msl::Options::default(),
            &msl::PipelineOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{what} to MSL: {e}"));
        for (ep, name) in module
            .entry_points
            .iter()
            .zip(&translated.entry_point_names)
        {
            assert!(name.is_ok(), "{what}: MSL entry {}: {name:?}", ep.name);
        }
        for shader_model in [hlsl::ShaderModel::V5_1, hlsl::ShaderModel::V6_0] {
            let options = hlsl::Options {
                shader_model,
                immediates_target: Some(hlsl::BindTarget {
                    register: 8,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let mut out = String::new();
            hlsl::Writer::new(&mut out, &options, &hlsl::PipelineOptions::default())
                .write(module, info, None)
                .unwrap_or_else(|e| panic!("{what} to HLSL {shader_model:?}: {e}"));
            for ep in &module.entry_points {
                assert!(out.contains(&ep.name), "{what}: HLSL lacks {}", ep.name);
            }
        }
        // OpenGL ES 3.1, the compute-capable GL that wgpu's GL back end needs.
        for ep in &module.entry_points {
            let options = glsl::Options {
                version: glsl::Version::Embedded {
                    version: 310,
                    is_webgl: false,
                },
                ..Default::default()
            };
            let pipeline = glsl::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: ep.name.clone(),
                multiview: None,
            };
            let mut out = String::new();
            glsl::Writer::new(
                &mut out,
                module,
                info,
                &options,
                &pipeline,
                Default::default(),
            )
            .and_then(|mut w| w.write())
            .unwrap_or_else(|e| panic!("{what} to GLSL ES, entry {}: {e}", ep.name));
        }
    }

    /// Every shader parses and validates with naga: no GPU needed.
    #[test]
    fn every_shader_validates() {
        let shaders_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shaders");
        let on_disk = std::fs::read_dir(shaders_dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "wgsl")
            })
            .count();
        // include/common.wgsl, the prelude, sits below and is not counted.
        assert_eq!(
            on_disk,
            ALL.len(),
            "every shaders/*.wgsl must be listed in source.rs"
        );
        for s in ALL {
            let host = concat!(env!("CARGO_MANIFEST_DIR"), "/src/").to_string() + s.name + ".rs";
            assert!(
                std::path::Path::new(&host).exists(),
                "shaders/{}.wgsl has no host file {host}",
                s.name
            );
        }
        for s in ALL {
            // Both forms of the parameters: a uniform buffer, and immediates of at most
            // IMMEDIATE_BYTES.
            assert_eq!(
                s.file.matches(UNIFORM_PARAMS).count(),
                1,
                "{}.wgsl declares its parameters as `{UNIFORM_PARAMS} Params;`",
                s.name
            );
            for immediates in [false, true] {
                let (module, _) = validated(s, immediates);
                let size = naga::valid::ImmediateSlots::size_for_module(&module);
                assert_eq!(size == 0, !immediates, "{}.wgsl", s.name);
                assert!(
                    size <= crate::context::IMMEDIATE_BYTES,
                    "{}.wgsl takes {size} immediate bytes",
                    s.name
                );
            }
        }
    }
}
