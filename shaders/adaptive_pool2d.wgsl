// Adaptive average pooling: output cell i averages input [⌊i·H/OH⌋, ⌈(i+1)·H/OH⌉).
// Backward in gather form: each input cell sums the cells whose window holds it.

// p's type is declared in crates/kernels/src/adaptive_pool2d.rs (wgsl_struct!); source.rs puts
// its WGSL before this text.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn bounds(i: u32, len: u32, out: u32) -> vec2<u32> {
    return vec2<u32>(i * len / out, ((i + 1u) * len + out - 1u) / out);
}

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(wid, lid, nwg);
    let ohw = p.oh * p.ow;
    if (o >= p.planes * ohw) {
        return;
    }
    let base = (o / ohw) * p.h * p.w;
    let bh = bounds((o % ohw) / p.ow, p.h, p.oh);
    let bw = bounds((o % ohw) % p.ow, p.w, p.ow);
    var s = 0.0;
    for (var i = bh.x; i < bh.y; i++) {
        for (var j = bw.x; j < bw.y; j++) {
            s += x[base + i * p.w + j];
        }
    }
    y[o] = s / f32((bh.y - bh.x) * (bw.y - bw.x));
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
    // Windows overlap by at most one cell, so the candidates lie within one of i·OH/H.
    let oi0 = max(i32(ih * p.oh / p.h) - 1, 0);
    let oi1 = min(i32((ih + 1u) * p.oh / p.h) + 1, i32(p.oh) - 1);
    let oj0 = max(i32(iw * p.ow / p.w) - 1, 0);
    let oj1 = min(i32((iw + 1u) * p.ow / p.w) + 1, i32(p.ow) - 1);
    var acc = 0.0;
    for (var oi = oi0; oi <= oi1; oi++) {
        let bh = bounds(u32(oi), p.h, p.oh);
        if (ih < bh.x || ih >= bh.y) {
            continue;
        }
        for (var oj = oj0; oj <= oj1; oj++) {
            let bw = bounds(u32(oj), p.w, p.ow);
            if (iw < bw.x || iw >= bw.y) {
                continue;
            }
            let n = f32((bh.y - bh.x) * (bw.y - bw.x));
            acc += x[(plane * p.oh + u32(oi)) * p.ow + u32(oj)] / n;
        }
    }
    y[q] = acc;
}
