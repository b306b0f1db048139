// Nearest-neighbour resize: output cell i copies input ⌊i·H/OH⌋. Backward in gather form:
// each input cell sums the output cells that copied it.

// p's type is declared in crates/kernels/src/adaptive_pool2d.rs (wgsl_struct!); source.rs puts
// its WGSL before this text.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn src(i: u32, len: u32, out: u32) -> u32 {
    return min(i * len / out, len - 1u);
}

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(wid, lid, nwg);
    let ohw = p.oh * p.ow;
    if (o >= p.planes * ohw) {
        return;
    }
    let base = (o / ohw) * p.h * p.w;
    let i = src((o % ohw) / p.ow, p.h, p.oh);
    let j = src((o % ohw) % p.ow, p.w, p.ow);
    y[o] = x[base + i * p.w + j];
}

@compute @workgroup_size(256)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_index(wid, lid, nwg);
    if (q >= p.planes * p.h * p.w) {
        return;
    }
    let cell = plane_cell(q, p.h, p.w);
    let plane = cell.x;
    let ih = cell.y;
    let iw = cell.z;
    // src(o) = i exactly for o in [⌈i·OH/H⌉, ⌈(i+1)·OH/H⌉).
    let oi0 = (ih * p.oh + p.h - 1u) / p.h;
    let oi1 = min(((ih + 1u) * p.oh + p.h - 1u) / p.h, p.oh);
    let oj0 = (iw * p.ow + p.w - 1u) / p.w;
    let oj1 = min(((iw + 1u) * p.ow + p.w - 1u) / p.w, p.ow);
    var acc = 0.0;
    for (var oi = oi0; oi < oi1; oi++) {
        for (var oj = oj0; oj < oj1; oj++) {
            if (src(oi, p.h, p.oh) == ih && src(oj, p.w, p.ow) == iw) {
                acc += x[(plane * p.oh + oi) * p.ow + oj];
            }
        }
    }
    // The last input row also receives the rows clamped to it.
    y[q] = acc;
}
