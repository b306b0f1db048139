// Bilinear resize (PyTorch's mode='bilinear'): each output cell mixes the four input cells
// its row and column taps name. Backward in gather form (no atomics): each input cell sums
// the output gradients whose taps read it, found by inverting the monotone map from
// output index to source coordinate and then checked tap by tap, so that the weights are
// exactly those of the forward pass.

// p's type is declared in crates/kernels/src/upsample_bilinear2d.rs (wgsl_struct!);
// source.rs puts its WGSL before this text.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// The cells output index o reads along an axis of len cells, and the second one's weight
// (Bilinear2dParams::taps on the host).
struct Taps {
    i0: u32,
    i1: u32,
    l: f32,
}

fn source(o: u32, scale: f32) -> f32 {
    if (p.align_corners != 0u) {
        return scale * f32(o);
    }
    return max(scale * (f32(o) + 0.5) - 0.5, 0.0);
}

fn taps(o: u32, len: u32, scale: f32) -> Taps {
    let src = source(o, scale);
    let i0 = min(u32(floor(src)), len - 1u);
    let l = clamp(src - f32(i0), 0.0, 1.0);
    return Taps(i0, select(i0, i0 + 1u, i0 + 1u < len), l);
}

// What cell i of an axis takes from output index o: the weight of each tap that is i.
fn share(t: Taps, i: u32) -> f32 {
    var s = 0.0;
    if (t.i0 == i) {
        s += 1.0 - t.l;
    }
    if (t.i1 == i) {
        s += t.l;
    }
    return s;
}

// Output indices whose taps may name input cell i: those with source coordinates in
// [i − 1, i + 1), and every one past that at the last cell (clamped taps), widened by one
// each side against rounding; `share` then decides exactly. Scale 0 (align_corners with
// one output or one input cell) maps every output to cell 0.
fn span(i: u32, len: u32, out: u32, scale: f32) -> vec2<u32> {
    if (scale <= 0.0) {
        return vec2<u32>(0u, out);
    }
    var off = 0.0;
    if (p.align_corners == 0u) {
        off = 0.5;
    }
    let lo = (f32(i) - 1.0 + off) / scale - off - 1.0;
    var hi = f32(out);
    if (i + 1u < len) {
        hi = min((f32(i) + 1.0 + off) / scale - off + 2.0, f32(out));
    }
    return vec2<u32>(u32(clamp(floor(lo), 0.0, f32(out))), u32(clamp(ceil(hi), 0.0, f32(out))));
}

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(wid, lid, nwg);
    let ohw = p.oh * p.ow;
    if (o >= p.planes * ohw) {
        return;
    }
    let base = (o / ohw) * p.h * p.w;
    let r = taps((o % ohw) / p.ow, p.h, p.scale_h);
    let c = taps((o % ohw) % p.ow, p.w, p.scale_w);
    let r0 = base + r.i0 * p.w;
    let r1 = base + r.i1 * p.w;
    let top = (1.0 - c.l) * x[r0 + c.i0] + c.l * x[r0 + c.i1];
    let bottom = (1.0 - c.l) * x[r1 + c.i0] + c.l * x[r1 + c.i1];
    y[o] = (1.0 - r.l) * top + r.l * bottom;
}

@compute @workgroup_size(256)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_index(wid, lid, nwg);
    if (q >= p.planes * p.h * p.w) {
        return;
    }
    let cell = plane_cell(q, p.h, p.w);
    let gbase = cell.x * p.oh * p.ow;
    let rows = span(cell.y, p.h, p.oh, p.scale_h);
    let cols = span(cell.z, p.w, p.ow, p.scale_w);
    var acc = 0.0;
    for (var oi = rows.x; oi < rows.y; oi++) {
        let wy = share(taps(oi, p.h, p.scale_h), cell.y);
        if (wy == 0.0) {
            continue;
        }
        var row = 0.0;
        for (var oj = cols.x; oj < cols.y; oj++) {
            row += share(taps(oj, p.w, p.scale_w), cell.z) * x[gbase + oi * p.ow + oj];
        }
        acc += wy * row;
    }
    y[q] = acc;
}
