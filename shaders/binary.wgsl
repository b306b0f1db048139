// Broadcasting binary ops: one thread per output element; each input is read through
// per-dimension strides (0 on broadcast dimensions). Op codes mirror `BinaryOp` in
// crates/kernels/src/binary.rs.

// p's type is declared in crates/kernels/src/binary.rs (wgsl_struct!); source.rs puts
// its WGSL before this text.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

fn is_nan(v: f32) -> bool {
    return v != v;
}

fn apply(x: f32, z: f32) -> f32 {
    switch p.op {
        case 0u: { return x + z; }
        case 1u: { return x - z; }
        case 2u: { return x * z; }
        case 3u: { return x / z; }
        case 4u: { return select(z, x, x >= z || is_nan(x)); }
        case 5u: { return select(z, x, x <= z || is_nan(x)); }
        case 6u: { return powf(x, z); }
        case 7u: { return select(0.0, 1.0, x >= z); }
        case 8u: { return select(0.0, 1.0, x == z); }
        case 9u: { return select(0.0, x, z > 0.0); }
        case 10u: {
            let s = x + z;
            return select(0.0, s, s > 0.0);
        }
        default: { return nan(); }
    }
}

@compute @workgroup_size(256)
fn binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(wid, lid, nwg);
    if (i >= p.n) {
        return;
    }
    var rem = i;
    var ia = 0u;
    var ib = 0u;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let u = u32(d);
        let size = p.shape[u / 4u][u % 4u];
        let c = rem % size;
        rem = rem / size;
        ia += c * p.a_strides[u / 4u][u % 4u];
        ib += c * p.b_strides[u / 4u][u % 4u];
    }
    y[i] = apply(a[ia], b[ib]);
}
