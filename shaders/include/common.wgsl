// Helpers shared by every shader: source.rs prepends this file to each one at compile time
// (WGSL has no include). Keep it to pure functions and plain types; bindings belong to each
// shader.

// Where four values of a GEMM operand sit and which of them lie inside the matrix (the
// loads of crates/kernels/src/gemm_gen.rs return four values at a time).
struct Quad {
    idx: vec4<u32>,
    ok: vec4<bool>,
}

// Four consecutive values from `first`, at k..k+4 of a K range of `len`; none when `live`
// is false (the row or column is outside the matrix).
fn run4(first: u32, live: bool, k: u32, len: u32) -> Quad {
    let d = vec4<u32>(0u, 1u, 2u, 3u);
    return Quad(first + d, vec4<bool>(live) & (k + d < vec4<u32>(len)));
}

// Index of this thread in a one-thread-per-element dispatch of 256-wide workgroups,
// folded into 2-D when there are more workgroups than one dimension allows.
fn flat_index(wid: vec3<u32>, lid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid.x;
}

// (plane, row, column) of flat index q over planes of h × w: the cell a gather-form
// backward thread owns.
fn plane_cell(q: u32, h: u32, w: u32) -> vec3<u32> {
    let hw = h * w;
    return vec3<u32>(q / hw, (q % hw) / w, (q % hw) % w);
}

fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

// x^e with Rust's `powf` semantics for negative bases and integer exponents (WGSL's
// pow is undefined for x < 0).
fn powf(v: f32, e: f32) -> f32 {
    if (e == 0.0) {
        return 1.0;
    }
    let r = pow(abs(v), e);
    if (v >= 0.0) {
        return r;
    }
    if (fract(e) != 0.0) {
        return nan();
    }
    if (fract(e * 0.5) != 0.0) {
        return -r;
    }
    return r;
}
