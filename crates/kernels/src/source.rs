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

const fn entry(
    name: &'static str,
    bands: u32,
    a: (Contiguous, &'static str),
    b: (Contiguous, &'static str),
    store: &'static str,
) -> GemmEntry {
    GemmEntry {
        name,
        bands,
        a: Operand {
            order: a.0,
            load: a.1,
        },
        b: Operand {
            order: b.0,
            load: b.1,
        },
        store,
    }
}

use Contiguous::{Outer, K};

/// Convolution's entry points: `conv2d_{1,2}_{fwd,gin,gw}` (tile bands, then the mode:
/// forward, input gradient, weight gradient), each with its operands' memory order and
/// the shader's functions for that mode.
pub const CONV2D_ENTRIES: &[GemmEntry] = &[
    entry(
        "conv2d_1_fwd",
        1,
        (K, "fwd_a"),
        (Outer, "fwd_b"),
        "fwd_store",
    ),
    entry(
        "conv2d_1_gin",
        1,
        (K, "gin_a"),
        (Outer, "gin_b"),
        "gin_store",
    ),
    entry("conv2d_1_gw", 1, (K, "gw_a"), (K, "gw_b"), "gw_store"),
    entry(
        "conv2d_2_fwd",
        2,
        (K, "fwd_a"),
        (Outer, "fwd_b"),
        "fwd_store",
    ),
    entry(
        "conv2d_2_gin",
        2,
        (K, "gin_a"),
        (Outer, "gin_b"),
        "gin_store",
    ),
    entry("conv2d_2_gw", 2, (K, "gw_a"), (K, "gw_b"), "gw_store"),
];

/// The Gram kernel's entry points (tile bands 1 and 2); both operands are rows of F.
pub const GRAM_ENTRIES: &[GemmEntry] = &[
    entry("gram_1", 1, (K, "rows"), (K, "rows"), "mirrored_store"),
    entry("gram_2", 2, (K, "rows"), (K, "rows"), "mirrored_store"),
];

/// Matmul's entry points: `matmul_{1,2}_{n,t}{n,t}` (tile bands, then A's and B's transpose
/// flags).
pub const MATMUL_ENTRIES: &[GemmEntry] = &[
    entry("matmul_1_nn", 1, (K, "a_n"), (Outer, "b_n"), "store"),
    entry("matmul_1_nt", 1, (K, "a_n"), (K, "b_t"), "store"),
    entry("matmul_1_tn", 1, (Outer, "a_t"), (Outer, "b_n"), "store"),
    entry("matmul_1_tt", 1, (Outer, "a_t"), (K, "b_t"), "store"),
    entry("matmul_2_nn", 2, (K, "a_n"), (Outer, "b_n"), "store"),
    entry("matmul_2_nt", 2, (K, "a_n"), (K, "b_t"), "store"),
    entry("matmul_2_tn", 2, (Outer, "a_t"), (Outer, "b_n"), "store"),
    entry("matmul_2_tt", 2, (Outer, "a_t"), (K, "b_t"), "store"),
];

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
