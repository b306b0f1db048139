//! WGSL for autocast's GEMM on cooperative matrices (tensor cores on NVIDIA, matrix cores
//! on AMD): the same entries as `gemm_gen` (the same loads, K positions and stores), with
//! the multiply-adds done by `coopMultiplyAdd` on 16×16 f16 blocks with f32 accumulators.
//!
//! Only 64×64 tiles have this form. Each K-slice (16 deep) is staged in workgroup memory as
//! f16 by the usual fetches; the tile's 16 output blocks are shared among the workgroup's
//! subgroups (`256 / subgroup` of them, `per` blocks each), each block summing
//! `A[16×16] · B[16×16]` per slice into its accumulator. At the end the accumulators go to
//! an f32 staging tile, from which every thread stores its 4×4 outputs through the entry's
//! store function (bounds, bias and epilogue as in the plain form).
//!
//! Needs `enable f16; enable wgpu_cooperative_matrix;` (naga takes subgroup built-ins without
//! an `enable`) and a device with
//! `SHADER_F16`, `SUBGROUP`, `EXPERIMENTAL_COOPERATIVE_MATRIX` offering 16×16×16 f16·f16 +
//! f32 in subgroup scope, with one fixed subgroup size.

use std::fmt::Write;

use crate::gemm_gen::{Contiguous, GemmEntry, Loads, Spread, DEPTH, TILES};

/// Edge of a cooperative block.
const BLOCK: u32 = 16;
/// Edge of the output tile this form runs (TILES[0]).
const EDGE: u32 = 64;

/// The directives a module with cooperative entries starts with.
pub const ENABLES: &str = "enable f16;\nenable wgpu_cooperative_matrix;\n\n";

/// Whether the cooperative form exists for `e` on subgroups of `subgroup` invocations:
/// a 64×64 tile, and 256 invocations in at most 16 whole subgroups.
pub fn fits(e: &GemmEntry, subgroup: u32) -> bool {
    e.tile == TILES[0] && subgroup.is_power_of_two() && (16..=256).contains(&subgroup)
}

/// The statements storing fetch `i`'s vec4 `reg` into the f16 scalar tile `tile`, whose
/// rows (one K value each) are `EDGE` long.
fn put(sp: &Spread, tile: &str, reg: &str, i: u32) -> String {
    let t = &sp.t;
    let mut s = String::new();
    for (c, comp) in ["x", "y", "z", "w"].iter().enumerate() {
        let index = match sp.order {
            // four neighbours along the outer index at one k
            Contiguous::Outer => format!(
                "({}) * {EDGE}u + ({t} % {}u) * 4u + {c}u",
                sp.k(i),
                sp.quads
            ),
            // four neighbours along k at one outer index
            Contiguous::K => format!("(({}) + {c}u) * {EDGE}u + {}", sp.k(i), sp.outer(i)),
        };
        let _ = writeln!(s, "        {tile}[{index}] = f16({reg}.{comp});");
    }
    if sp.lanes < 256 {
        s = format!("        if (t < {}u) {{\n{s}        }}\n", sp.lanes);
    }
    s
}

/// The WGSL of `e`'s cooperative form for subgroups of `subgroup` invocations (see
/// [`fits`]).
pub fn entry_source(e: &GemmEntry, subgroup: u32) -> String {
    assert!(fits(e, subgroup), "{} has no cooperative form", e.name);
    let name = e.name;
    let (sa, sb, sc) = (
        format!("{name}_a"),
        format!("{name}_b"),
        format!("{name}_c"),
    );
    let blocks = (EDGE / BLOCK) * (EDGE / BLOCK);
    let per = blocks / (256 / subgroup).min(blocks);
    let slice = EDGE * DEPTH as u32;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "var<workgroup> {sa}: array<f16, {slice}>;\nvar<workgroup> {sb}: array<f16, {slice}>;\nvar<workgroup> {sc}: array<f32, {}>;\n",
        EDGE * EDGE
    );
    let _ = writeln!(
        s,
        "@compute @workgroup_size(256)\nfn {name}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(subgroup_id) sg: u32) {{"
    );
    // Subgroup built-ins need a one-dimensional workgroup; the loads and stores index
    // threads as the plain form's 16 × 16 grid.
    let _ = writeln!(s, "    let lid = vec2<u32>(li % 16u, li / 16u);");
    let spread = [
        Spread::new(e.a.order, EDGE, EDGE / 4),
        Spread::new(e.b.order, EDGE, EDGE / 4),
    ];
    let loads = Loads::new(e, spread);
    s.push_str(&loads.prologue(true));
    // Block j of this subgroup: its row and column offsets within the tile.
    for j in 0..per {
        let _ = writeln!(
            s,
            "    let r{j} = ((sg * {per}u + {j}u) / 4u) * {BLOCK}u;\n    let q{j} = ((sg * {per}u + {j}u) % 4u) * {BLOCK}u;\n    var c{j}: coop_mat16x16<f32, C>;"
        );
    }
    s.push_str(&loads.fetch("    ", "var "));
    let _ = writeln!(s, "    for (var k0 = kr.x; k0 < kr.y; k0 += {DEPTH}u) {{");
    for (x, sp) in ["a", "b"].iter().zip(&loads.spread) {
        let tile = if *x == "a" { &sa } else { &sb };
        for i in 0..sp.fetches {
            s.push_str(&put(sp, tile, &format!("n{x}{i}"), i));
        }
    }
    s.push_str("        workgroupBarrier();\n");
    s.push_str(&loads.fetch("        ", ""));
    // A's slice holds (m, k) at k·EDGE + m: column-major; B's (k, n) at k·EDGE + n:
    // row-major.
    // A subgroup's blocks lie along one row of blocks in fours (its first block is a
    // multiple of `per`, and `per` divides 4 or is a multiple of it): one load of A each.
    for j in 0..per {
        if j % 4 == 0 {
            let _ = writeln!(
                s,
                "        let a{} = coopLoad<coop_mat16x16<f16, A>>(&{sa}[r{j}], {EDGE}u);",
                j / 4
            );
        }
        let _ = writeln!(
            s,
            "        c{j} = coopMultiplyAdd(a{}, coopLoadT<coop_mat16x16<f16, B>>(&{sb}[q{j}], {EDGE}u), c{j});",
            j / 4
        );
    }
    s.push_str("        workgroupBarrier();\n    }\n");
    for j in 0..per {
        let _ = writeln!(
            s,
            "    coopStoreT(c{j}, &{sc}[r{j} * {EDGE}u + q{j}], {EDGE}u);"
        );
    }
    s.push_str("    workgroupBarrier();\n");
    s.push_str("    if (skip) {\n        return;\n    }\n");
    for r in 0..4 {
        let _ = writeln!(
            s,
            "    {{\n        let at = (lid.y * 4u + {r}u) * {EDGE}u + lid.x * 4u;\n        {}(z, row0 + lid.y * 4u + {r}u, col0 + lid.x * 4u, vec4<f32>({sc}[at], {sc}[at + 1u], {sc}[at + 2u], {sc}[at + 3u]));\n    }}",
            e.store
        );
    }
    s.push_str("}\n");
    s
}

/// Bytes of workgroup memory a cooperative entry takes: two f16 slices and the f32
/// staging tile.
pub const WORKGROUP_BYTES: usize = (2 * EDGE as usize * DEPTH * 2) + (EDGE * EDGE) as usize * 4;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{entry_body, Precision, ALL};

    /// Every GEMM shader's cooperative module, for each subgroup size it supports and in
    /// both parameter forms, validates with naga and translates to SPIR-V as wgpu does for
    /// Vulkan; its 64×64 entries, and only those, multiply on cooperative matrices,
    /// with one accumulator per block the subgroup owns.
    #[test]
    fn cooperative_modules_validate_and_translate_to_spirv() {
        use naga::valid::{Capabilities, ShaderStages, SubgroupOperationSet, ValidationFlags};
        let caps = Capabilities::IMMEDIATES
            | Capabilities::SHADER_FLOAT16
            | Capabilities::SHADER_FLOAT16_IN_FLOAT32
            | Capabilities::SUBGROUP
            | Capabilities::COOPERATIVE_MATRIX;
        let mut cooperative = 0;
        for sg in [16, 32, 64, 128, 256] {
            for s in ALL.iter().filter(|s| !s.gemm.is_empty()) {
                for immediates in [false, true] {
                    let source = s.source_for(immediates, Precision::Coop(sg));
                    let what = format!("{}.wgsl, subgroups of {sg}", s.name);
                    let module = naga::front::wgsl::parse_str(&source)
                        .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(&source)));
                    let info = naga::valid::Validator::new(ValidationFlags::all(), caps)
                        .subgroup_stages(ShaderStages::COMPUTE)
                        .subgroup_operations(SubgroupOperationSet::BASIC)
                        .validate(&module)
                        .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(&source)));
                    // As wgpu writes SPIR-V for Vulkan: version 1.5, indices clamped.
                    let restrict = naga::proc::BoundsCheckPolicy::Restrict;
                    let options = naga::back::spv::Options {
                        lang_version: (1, 5),
                        bounds_check_policies: naga::proc::BoundsCheckPolicies {
                            index: restrict,
                            buffer: restrict,
                            image_load: restrict,
                            binding_array: restrict,
                        },
                        ..Default::default()
                    };
                    naga::back::spv::write_vec(&module, &info, &options, None)
                        .unwrap_or_else(|e| panic!("{what} to SPIR-V: {e}"));
                }
                let source = s.source_in(Precision::Coop(sg));
                for e in s.gemm {
                    let body = entry_body(&source, e.name);
                    let adds = body.matches("coopMultiplyAdd").count();
                    let want = if fits(e, sg) {
                        16 / (256 / sg).min(16)
                    } else {
                        0
                    };
                    assert_eq!(adds as u32, want, "{} on subgroups of {sg}", e.name);
                    cooperative += (adds > 0) as usize;
                }
            }
        }
        assert!(
            cooperative >= 4 * 3,
            "only {cooperative} cooperative entries"
        );
    }

    #[test]
    fn only_square_64_tiles_on_whole_subgroups_fit() {
        let e = crate::source::MATMUL_ENTRIES[0];
        assert!(fits(&e, 32) && fits(&e, 64) && fits(&e, 16));
        assert!(!fits(&e, 8) && !fits(&e, 48));
        assert!(!fits(&crate::source::MATMUL_ENTRIES[1], 32));
    }
}
