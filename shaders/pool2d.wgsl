// Max and average pooling, forward (one thread per output) and backward in gather form
// (one thread per input cell, summing the windows that contain it: no atomics); max
// pooling with arg-max indices, and max unpooling with its gather-form gradient.
// Window and divisor rules match PyTorch and crates/core/src/cpu/pool2d.rs. Padding may
// differ before and after (TensorFlow's SAME); max pooling's taps may be dilated.

// p's type is declared in crates/kernels/src/pool2d.rs (wgsl_struct!); source.rs puts
// its WGSL before this text.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gy: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
// Arg-max indices (flat within a plane) that max_with_indices writes and unpool reads.
@group(0) @binding(4) var<storage, read_write> idx: array<f32>;

// [start, end) clipped to the input, and the length clipped to input + end padding.
fn window(o: u32, s: u32, pad: u32, pad_end: u32, k: u32, len: u32) -> vec3<i32> {
    let start = i32(o * s) - i32(pad);
    let end_padded = min(start + i32(k), i32(len + pad_end));
    let lo = max(start, 0);
    let hi = max(min(end_padded, i32(len)), lo);
    return vec3<i32>(lo, hi, end_padded - start);
}

// Flat in-plane index of the window's maximum (first in scan order; a NaN wins), or −1.
fn argmax(base: u32, oi: u32, oj: u32) -> i32 {
    let h0 = i32(oi * p.sh) - i32(p.ph);
    let w0 = i32(oj * p.sw) - i32(p.pw);
    var best = -1;
    var best_v = 0.0;
    for (var ti = 0u; ti < p.kh; ti++) {
        let i = h0 + i32(ti * p.dh);
        if (i < 0 || i >= i32(p.h)) {
            continue;
        }
        for (var tj = 0u; tj < p.kw; tj++) {
            let j = w0 + i32(tj * p.dw);
            if (j < 0 || j >= i32(p.w)) {
                continue;
            }
            let cell = i * i32(p.w) + j;
            let v = x[base + u32(cell)];
            if (best < 0 || v > best_v || (v != v && best_v == best_v)) {
                best = cell;
                best_v = v;
            }
        }
    }
    return best;
}

fn divisor(oi: u32, oj: u32) -> f32 {
    let wh = window(oi, p.sh, p.ph, p.peh, p.kh, p.h);
    let ww = window(oj, p.sw, p.pw, p.pew, p.kw, p.w);
    if (p.count_include_pad != 0u) {
        return f32(max(wh.z * ww.z, 1));
    }
    return f32(max((wh.y - wh.x) * (ww.y - ww.x), 1));
}

// Outputs whose window along one axis (spanning `span` cells) reaches input index i:
// [lo, hi]. With dilated taps some of them skip i; the caller's test sorts those out.
fn covering(i: u32, s: u32, pad: u32, span: u32, out_len: u32) -> vec2<i32> {
    let t = i32(i + pad);
    let lo = max((t - i32(span) + i32(s)) / i32(s), 0);
    let hi = min(t / i32(s), i32(out_len) - 1);
    return vec2<i32>(select(lo, 0, t - i32(span) + 1 <= 0), hi);
}

@compute @workgroup_size(256)
fn max_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(wid, lid, nwg);
    let ohw = p.oh * p.ow;
    if (o >= p.planes * ohw) {
        return;
    }
    let base = (o / ohw) * p.h * p.w;
    let a = argmax(base, (o % ohw) / p.ow, (o % ohw) % p.ow);
    y[o] = select(-bitcast<f32>(0x7f800000u), x[base + u32(max(a, 0))], a >= 0);
}

@compute @workgroup_size(256)
fn max_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_index(wid, lid, nwg);
    if (q >= p.planes * p.h * p.w) {
        return;
    }
    let cell = plane_cell(q, p.h, p.w);
    let plane = cell.x;
    let ih = cell.y;
    let iw = cell.z;
    let rh = covering(ih, p.sh, p.ph, (p.kh - 1u) * p.dh + 1u, p.oh);
    let rw = covering(iw, p.sw, p.pw, (p.kw - 1u) * p.dw + 1u, p.ow);
    var acc = 0.0;
    for (var oi = rh.x; oi <= rh.y; oi++) {
        for (var oj = rw.x; oj <= rw.y; oj++) {
            if (argmax(plane * p.h * p.w, u32(oi), u32(oj)) == i32(ih * p.w + iw)) {
                acc += gy[(plane * p.oh + u32(oi)) * p.ow + u32(oj)];
            }
        }
    }
    y[q] = acc;
}

@compute @workgroup_size(256)
fn avg_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(wid, lid, nwg);
    let ohw = p.oh * p.ow;
    if (o >= p.planes * ohw) {
        return;
    }
    let base = (o / ohw) * p.h * p.w;
    let oi = (o % ohw) / p.ow;
    let oj = (o % ohw) % p.ow;
    let wh = window(oi, p.sh, p.ph, p.peh, p.kh, p.h);
    let ww = window(oj, p.sw, p.pw, p.pew, p.kw, p.w);
    var s = 0.0;
    for (var i = wh.x; i < wh.y; i++) {
        for (var j = ww.x; j < ww.y; j++) {
            s += x[base + u32(i) * p.w + u32(j)];
        }
    }
    y[o] = s / divisor(oi, oj);
}

@compute @workgroup_size(256)
fn avg_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_index(wid, lid, nwg);
    if (q >= p.planes * p.h * p.w) {
        return;
    }
    let cell = plane_cell(q, p.h, p.w);
    let plane = cell.x;
    let ih = i32(cell.y);
    let iw = i32(cell.z);
    let rh = covering(u32(ih), p.sh, p.ph, p.kh, p.oh);
    let rw = covering(u32(iw), p.sw, p.pw, p.kw, p.ow);
    var acc = 0.0;
    for (var oi = rh.x; oi <= rh.y; oi++) {
        let wh = window(u32(oi), p.sh, p.ph, p.peh, p.kh, p.h);
        if (ih < wh.x || ih >= wh.y) {
            continue;
        }
        for (var oj = rw.x; oj <= rw.y; oj++) {
            let ww = window(u32(oj), p.sw, p.pw, p.pew, p.kw, p.w);
            if (iw < ww.x || iw >= ww.y) {
                continue;
            }
            acc += gy[(plane * p.oh + u32(oi)) * p.ow + u32(oj)] / divisor(u32(oi), u32(oj));
        }
    }
    y[q] = acc;
}

@compute @workgroup_size(256)
fn max_with_indices(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(wid, lid, nwg);
    let ohw = p.oh * p.ow;
    if (o >= p.planes * ohw) {
        return;
    }
    let base = (o / ohw) * p.h * p.w;
    let a = max(argmax(base, (o % ohw) / p.ow, (o % ohw) % p.ow), 0);
    y[o] = x[base + u32(a)];
    idx[o] = f32(a);
}

// Unpooling reads the plane sizes as pooling names them: the input planes are oh × ow
// (the pooled size) and the output planes h × w. The output starts zeroed (a fill).
@compute @workgroup_size(256)
fn unpool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_index(wid, lid, nwg);
    let ohw = p.oh * p.ow;
    if (q >= p.planes * ohw) {
        return;
    }
    let cell = idx[q];
    let hw = p.h * p.w;
    if (cell >= 0.0 && cell < f32(hw)) {
        y[(q / ohw) * hw + u32(cell)] = x[q];
    }
}

@compute @workgroup_size(256)
fn unpool_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_index(wid, lid, nwg);
    let ohw = p.oh * p.ow;
    if (q >= p.planes * ohw) {
        return;
    }
    let cell = idx[q];
    let hw = p.h * p.w;
    y[q] = select(0.0, gy[(q / ohw) * hw + u32(cell)], cell >= 0.0 && cell < f32(hw));
}
