//! Every WGSL kernel, embedded at compile time so nothing is read from disk at run time.
//! Each shader's source is `shaders/common.wgsl` (shared helpers; WGSL has no include)
//! followed by the shader's own file.

/// A shader file: its name (the file stem) and source.
#[derive(Clone, Copy, Debug)]
pub struct Shader {
    /// File stem in `shaders/`.
    pub name: &'static str,
    /// WGSL source.
    pub source: &'static str,
}

macro_rules! shaders {
    ($($konst:ident = $file:literal;)*) => {
        $(
            #[doc = concat!("`shaders/", $file, ".wgsl`")]
            pub const $konst: Shader = Shader {
                name: $file,
                source: concat!(
                    include_str!("../../../shaders/common.wgsl"),
                    include_str!(concat!("../../../shaders/", $file, ".wgsl"))
                ),
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
    MATMUL = "matmul";
    CONV2D = "conv2d";
    POOL2D = "pool2d";
    ADAPTIVE_POOL2D = "adaptive_pool2d";
    UPSAMPLE2D = "upsample2d";
    GRAM = "gram";
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
        // common.wgsl is the prelude of every shader, not a shader of its own.
        assert_eq!(
            on_disk,
            ALL.len() + 1,
            "every shaders/*.wgsl must be listed in source.rs"
        );
        for s in ALL {
            let module = naga::front::wgsl::parse_str(s.source)
                .unwrap_or_else(|e| panic!("{}.wgsl: {}", s.name, e.emit_to_string(s.source)));
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::empty(),
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}.wgsl: {}", s.name, e.emit_to_string(s.source)));
        }
    }
}
