// Depthwise convolution (groups = c_in, one input channel per group, `mult()` outputs per
// channel) computed directly: the implicit GEMM of conv2d.wgsl would have one row per
// group and leave 63 of its 64 tile rows idle. Three entry points, matching conv2d:
//   forward:     one thread per output,  y[n,co,oi,oj]  = Σ_taps w[co,tap] · x[n,co/mult,…]
//   grad_input:  one thread per input,   gx[n,ci,ih,iw] = Σ_{co of ci} Σ_taps w · gy (gather
//                form: the outputs whose window holds the input, no atomics)
//   grad_weight: one workgroup per (co, tap), its threads striding over batch × pixels,
//                then a fixed-order tree sum in workgroup memory (deterministic). The
//                taps of a channel are neighbouring workgroups, which tend to run together,
//                so its planes mostly come from cache after the first read.

// p's type is declared in crates/kernels/src/conv2d_depthwise.rs (wgsl_struct!); source.rs
// puts its WGSL before this text.
@group(0) @binding(0) var<uniform> p: Params;

// Outputs per input channel (the channel multiplier).
fn mult() -> u32 {
    return p.s.c_out / p.s.groups;
}
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// The forward's bias, read only when p.bias is 1 (otherwise another buffer stands in).
@group(0) @binding(4) var<storage, read> bias: array<f32>;

// forward: a = x, b = w.
@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(wid, lid, nwg);
    let ohw = p.s.oh * p.s.ow;
    if (o >= p.s.n * p.s.c_out * ohw) {
        return;
    }
    let oj = o % p.s.ow;
    let oi = (o / p.s.ow) % p.s.oh;
    let co = (o / ohw) % p.s.c_out;
    let ni = o / (ohw * p.s.c_out);
    let plane = (ni * p.s.c_in + co / mult()) * p.s.h * p.s.w;
    let kk = p.s.kh * p.s.kw;
    var acc = 0.0;
    for (var ki = 0u; ki < p.s.kh; ki++) {
        let ih = i32(oi * p.s.sh + ki * p.s.dh) - i32(p.s.ph);
        if (ih < 0 || ih >= i32(p.s.h)) {
            continue;
        }
        for (var kj = 0u; kj < p.s.kw; kj++) {
            let iw = i32(oj * p.s.sw + kj * p.s.dw) - i32(p.s.pw);
            if (iw >= 0 && iw < i32(p.s.w)) {
                acc += b[co * kk + ki * p.s.kw + kj] * a[plane + u32(ih) * p.s.w + u32(iw)];
            }
        }
    }
    if (p.bias != 0u) {
        acc += bias[co];
    }
    out[o] = acc;
}

// The output row (or column) o with o · stride = t exactly, or -1 when there is none in
// 0..len. Stride 1, the common case, needs no division (uniform across the dispatch).
fn source_row(t: i32, stride: u32, len: u32) -> i32 {
    if (stride == 1u) {
        return select(-1, t, t >= 0 && t < i32(len));
    }
    let o = u32(t) / stride;
    return select(-1, i32(o), t >= 0 && u32(t) % stride == 0u && o < len);
}

// grad_input: a = gy, b = w.
@compute @workgroup_size(256)
fn grad_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_index(wid, lid, nwg);
    let hw = p.s.h * p.s.w;
    if (q >= p.s.n * p.s.c_in * hw) {
        return;
    }
    let iw = q % p.s.w;
    let ih = (q / p.s.w) % p.s.h;
    let ci = (q / hw) % p.s.c_in;
    let ni = q / (hw * p.s.c_in);
    let kk = p.s.kh * p.s.kw;
    var acc = 0.0;
    for (var m = 0u; m < mult(); m++) {
        let co = ci * mult() + m;
        let plane = (ni * p.s.c_out + co) * p.s.oh * p.s.ow;
        for (var ki = 0u; ki < p.s.kh; ki++) {
            let oi = source_row(i32(ih + p.s.ph) - i32(ki * p.s.dh), p.s.sh, p.s.oh);
            if (oi < 0) {
                continue;
            }
            for (var kj = 0u; kj < p.s.kw; kj++) {
                let oj = source_row(i32(iw + p.s.pw) - i32(kj * p.s.dw), p.s.sw, p.s.ow);
                if (oj >= 0) {
                    acc += b[co * kk + ki * p.s.kw + kj] * a[plane + u32(oi) * p.s.ow + u32(oj)];
                }
            }
        }
    }
    out[q] = acc;
}

var<workgroup> partial: array<f32, 256>;

// grad_weight: a = gy, b = x; one workgroup per weight element.
@compute @workgroup_size(256)
fn grad_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let kk = p.s.kh * p.s.kw;
    let idx = wid.y * nwg.x + wid.x;
    // Uniform across the workgroup, so the barriers below stay in uniform control flow.
    let live = idx < p.s.c_out * kk;
    let co = idx / kk;
    let ki = (idx % kk) / p.s.kw;
    let kj = idx % p.s.kw;
    let ci = co / mult();
    let ohw = p.s.oh * p.s.ow;
    var acc = 0.0;
    if (live) {
        // Thread lid.x visits pixels e = lid.x, lid.x + 256, … of the batch, kept as
        // (ni, oi, oj) and advanced by 256 with carries: no division per pixel.
        let sj = 256u % p.s.ow;
        let si = (256u / p.s.ow) % p.s.oh;
        let sn = 256u / ohw;
        var ni = lid.x / ohw;
        var oi = (lid.x % ohw) / p.s.ow;
        var oj = lid.x % p.s.ow;
        let dy = i32(ki * p.s.dh) - i32(p.s.ph);
        let dx = i32(kj * p.s.dw) - i32(p.s.pw);
        while (ni < p.s.n) {
            let ih = i32(oi * p.s.sh) + dy;
            let iw = i32(oj * p.s.sw) + dx;
            if (ih >= 0 && ih < i32(p.s.h) && iw >= 0 && iw < i32(p.s.w)) {
                acc += a[((ni * p.s.c_out + co) * p.s.oh + oi) * p.s.ow + oj]
                    * b[((ni * p.s.c_in + ci) * p.s.h + u32(ih)) * p.s.w + u32(iw)];
            }
            oj += sj;
            let wrap_j = oj >= p.s.ow;
            oj = select(oj, oj - p.s.ow, wrap_j);
            oi += si + u32(wrap_j);
            let wrap_i = oi >= p.s.oh;
            oi = select(oi, oi - p.s.oh, wrap_i);
            ni += sn + u32(wrap_i);
        }
    }
    partial[lid.x] = acc;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half >>= 1u) {
        if (lid.x < half) {
            partial[lid.x] += partial[lid.x + half];
        }
        workgroupBarrier();
    }
    if (live && lid.x == 0u) {
        out[idx] = partial[0];
    }
}
