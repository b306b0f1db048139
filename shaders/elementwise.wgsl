// Elementwise unary ops and fill: one thread per element. Op codes mirror
// `UnaryOp` in crates/kernels/src/elementwise.rs.

// p's type is declared in crates/kernels/src/elementwise.rs (wgsl_struct!); source.rs puts
// its WGSL before this text.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn apply(v: f32) -> f32 {
    switch p.op {
        case 0u: { return -v; }
        case 1u: { return exp(v); }
        case 2u: { return log(v); }
        case 3u: { return sqrt(v); }
        case 4u: { return abs(v); }
        case 5u: { return max(v, 0.0); }
        case 6u: { return select(p.a * v, v, v > 0.0); }
        case 7u: { return 1.0 / (1.0 + exp(-v)); }
        case 8u: {
            // exp(2|v|) would overflow for |v| > 44; this form stays finite.
            let e = exp(-2.0 * abs(v));
            let t = (1.0 - e) / (1.0 + e);
            return select(t, -t, v < 0.0);
        }
        case 9u: { return p.a * v + p.b; }
        case 10u: { return powf(v, p.a); }
        case 11u: { return select(0.0, 1.0, v > 0.0); }
        case 12u: { return sign(v); }
        case 13u: { return 1.0 / v; }
        case 14u: { return p.a / v; }
        // max then min, as the CPU: a NaN stays NaN (WGSL's clamp leaves it undefined).
        case 15u: { return select(min(max(v, p.a), p.b), v, v != v); }
        case 16u: { return select(0.0, 1.0, v > p.a && v < p.b); }
        case 17u: { return v / (1.0 + exp(-v)); }
        case 18u: {
            let s = 1.0 / (1.0 + exp(-v));
            return s * (1.0 + v * (1.0 - s));
        }
        case 19u: { return v * min(max(v + 3.0, 0.0), 6.0) / 6.0; }
        case 20u: { return select(select(1.0, v / 3.0 + 0.5, v <= 3.0), 0.0, v < -3.0); }
        case 21u: { return min(max(v + 3.0, 0.0), 6.0) / 6.0; }
        // An all-ones exponent is inf or NaN; tested on the bits because WGSL lets a
        // compiler assume floats are finite.
        case 22u: { return select(0.0, 1.0, (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u); }
        default: { return nan(); }
    }
}

@compute @workgroup_size(256)
fn unary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(wid, lid, nwg);
    if (i >= p.n) {
        return;
    }
    y[i] = apply(x[i]);
}

@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(wid, lid, nwg);
    if (i >= p.n) {
        return;
    }
    y[i] = p.a;
}
