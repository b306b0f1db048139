//! Every WGSL kernel, embedded at compile time so nothing is read from disk at run time.
//! Each shader's source is `shaders/include/common.wgsl` (shared helpers; WGSL has no
//! include; it lives apart because it is a prelude, not an op family with a host file)
//! followed by the shader's own file.

use std::borrow::Cow;

use crate::gemm_gen::{self, Contiguous, GemmEntry, Operand};

/// A shader file: its name (the file stem) and source.
#[derive(Clone, Copy, Debug)]
pub struct Shader {
    /// File stem in `shaders/`.
    pub name: &'static str,
    /// WGSL source of the file (with the common prelude).
    pub file: &'static str,
    /// GEMM entry points generated after the file's text (see `gemm_gen`).
    pub gemm: &'static [GemmEntry],
}

impl Shader {
    /// The complete WGSL: the file, then any generated entry points.
    pub fn source(&self) -> Cow<'static, str> {
        if self.gemm.is_empty() {
            Cow::Borrowed(self.file)
        } else {
            Cow::Owned(format!("{}\n{}", self.file, gemm_gen::source(self.gemm)))
        }
    }
}

const fn operand(order: Contiguous, load: &'static str, state: &'static str) -> Operand {
    Operand { order, load, state }
}

/// One entry point per tile shape of `gemm_gen::TILES`, in that order, named
/// `{prefix}_{rows}{cols}{suffix}` (bands of 64: `conv2d_12_fwd` is a 64×128 tile).
macro_rules! per_tile {
    ($prefix:literal, $suffix:literal, $a:expr, $b:expr, $store:literal) => {
        [
            GemmEntry {
                name: concat!($prefix, "_11", $suffix),
                bands: [1, 1],
                a: $a,
                b: $b,
                store: $store,
            },
            GemmEntry {
                name: concat!($prefix, "_12", $suffix),
                bands: [1, 2],
                a: $a,
                b: $b,
                store: $store,
            },
            GemmEntry {
                name: concat!($prefix, "_21", $suffix),
                bands: [2, 1],
                a: $a,
                b: $b,
                store: $store,
            },
            GemmEntry {
                name: concat!($prefix, "_22", $suffix),
                bands: [2, 2],
                a: $a,
                b: $b,
                store: $store,
            },
        ]
    };
}

/// Joins the per-tile rows of a table into one list (mode-major: `[mode · 4 + tile]`).
const fn flatten<const M: usize, const N: usize>(rows: [[GemmEntry; 4]; M]) -> [GemmEntry; N] {
    assert!(M * 4 == N);
    let mut out = [rows[0][0]; N];
    let mut i = 0;
    while i < N {
        out[i] = rows[i / 4][i % 4];
        i += 1;
    }
    out
}

use Contiguous::{Outer, K};

/// Convolution's entry points, `[mode · 4 + tile]` with modes forward, input gradient (by
/// stride phases, padded to the widest), weight gradient, input gradient at stride 1 and
/// input gradient by phases each over exactly its own taps, each with its operands' memory
/// order and the shader's functions for that mode.
pub const CONV2D_ENTRIES: &[GemmEntry] = &flatten::<5, 20>([
    per_tile!(
        "conv2d",
        "_fwd",
        operand(K, "fwd_a", "line"),
        operand(Outer, "fwd_b", "tap"),
        "fwd_store"
    ),
    per_tile!(
        "conv2d",
        "_gin",
        operand(K, "gin_a", "gin_tap"),
        operand(Outer, "gin_b", "gin_tap"),
        "gin_store"
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
]);

/// The Gram kernel's entry points (64×64 and 128×128 tiles: the triangle needs square
/// ones); both operands are rows of F.
pub const GRAM_ENTRIES: &[GemmEntry] = &[
    GemmEntry {
        name: "gram_11",
        bands: [1, 1],
        a: operand(K, "rows", "plain"),
        b: operand(K, "rows", "plain"),
        store: "mirrored_store",
    },
    GemmEntry {
        name: "gram_22",
        bands: [2, 2],
        a: operand(K, "rows", "plain"),
        b: operand(K, "rows", "plain"),
        store: "mirrored_store",
    },
];

/// Matmul's entry points, `[layout · 4 + tile]` with layouts nn, nt, tn, tt (A's and B's
/// transpose flags), then the same four with vec4 loads and stores (`_v`, for m, n and k
/// that are multiples of 4).
pub const MATMUL_ENTRIES: &[GemmEntry] = &flatten::<8, 32>([
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
    ($($konst:ident = $file:literal $(+ $gemm:ident)?;)*) => {
        $(
            #[doc = concat!("`shaders/", $file, ".wgsl`")]
            pub const $konst: Shader = Shader {
                name: $file,
                file: concat!(
                    include_str!("../../../shaders/include/common.wgsl"),
                    include_str!(concat!("../../../shaders/", $file, ".wgsl"))
                ),
                gemm: or_none!($($gemm)?),
            };
        )*
        /// All shaders, for validation.
        pub const ALL: &[Shader] = &[$($konst),*];
    };
}

shaders! {
    ELEMENTWISE = "elementwise";
    BINARY = "binary";
    REDUCE = "reduce";
    LAYOUT = "layout";
    MATMUL = "matmul" + MATMUL_ENTRIES;
    CONV2D = "conv2d" + CONV2D_ENTRIES;
    CONV2D_DEPTHWISE = "conv2d_depthwise";
    POOL2D = "pool2d";
    ADAPTIVE_POOL2D = "adaptive_pool2d";
    UPSAMPLE2D = "upsample2d";
    GRAM = "gram" + GRAM_ENTRIES;
}

#[cfg(test)]
mod tests {
    use super::ALL;

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
            let source = s.source();
            let module = naga::front::wgsl::parse_str(&source)
                .unwrap_or_else(|e| panic!("{}.wgsl: {}", s.name, e.emit_to_string(&source)));
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::empty(),
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}.wgsl: {}", s.name, e.emit_to_string(&source)));
        }
    }
}
