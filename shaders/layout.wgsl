// Data movement: strided copies (permute, narrow, expand), constant padding, and one part
// of a concatenation. One thread per output element.

// p's type is declared in crates/kernels/src/layout.rs (wgsl_struct!); source.rs puts
// its WGSL before this text.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn at(v: array<vec4<u32>, 2>, d: u32) -> u32 {
    return v[d / 4u][d % 4u];
}

@compute @workgroup_size(256)
fn strided_copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(wid, lid, nwg);
    if (i >= p.n) {
        return;
    }
    var rem = i;
    var src = p.offset;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let u = u32(d);
        let size = at(p.shape, u);
        src += (rem % size) * at(p.aux, u);
        rem = rem / size;
    }
    y[i] = x[src];
}

@compute @workgroup_size(256)
fn pad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(wid, lid, nwg);
    if (i >= p.n) {
        return;
    }
    var rem = i;
    var src = 0u;
    var stride = 1u;
    var inside = true;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let u = u32(d);
        let c = rem % at(p.shape, u);
        rem = rem / at(p.shape, u);
        let b = at(p.before, u);
        let len = at(p.aux, u);
        if (c < b || c >= b + len) {
            inside = false;
        } else {
            src += (c - b) * stride;
        }
        stride *= len;
    }
    y[i] = select(p.value, x[src], inside);
}

// One part of a concatenation: out[(i / len) * total + offset + i % len] = x[i], with
// len in `rank` and total in `shape[0]` (one binding layout for the whole file).
@compute @workgroup_size(256)
fn cat_part(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(wid, lid, nwg);
    if (i >= p.n) {
        return;
    }
    let len = p.rank;
    y[(i / len) * at(p.shape, 0u) + p.offset + i % len] = x[i];
}
