// Helpers shared by every shader: source.rs prepends this file to each one at compile time
// (WGSL has no include). Keep it to pure functions; bindings belong to each shader.

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
