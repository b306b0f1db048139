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

// p's type is declared in crates/kernels/src/conv2d.rs (wgsl_struct!); source.rs puts
// its WGSL before this text.
@group(0) @binding(0) var<uniform> p: ConvShape;

// Outputs per input channel (the channel multiplier).
fn mult() -> u32 {
    return p.c_out / p.groups;
}
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// forward: a = x, b = w.
@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(wid, lid, nwg);
    let ohw = p.oh * p.ow;
    if (o >= p.n * p.c_out * ohw) {
        return;
    }
    let oj = o % p.ow;
    let oi = (o / p.ow) % p.oh;
    let co = (o / ohw) % p.c_out;
    let ni = o / (ohw * p.c_out);
    let plane = (ni * p.c_in + co / mult()) * p.h * p.w;
    let kk = p.kh * p.kw;
    var acc = 0.0;
    for (var ki = 0u; ki < p.kh; ki++) {
        let ih = i32(oi * p.sh + ki * p.dh) - i32(p.ph);
        if (ih < 0 || ih >= i32(p.h)) {
            continue;
        }
        for (var kj = 0u; kj < p.kw; kj++) {
            let iw = i32(oj * p.sw + kj * p.dw) - i32(p.pw);
            if (iw >= 0 && iw < i32(p.w)) {
                acc += b[co * kk + ki * p.kw + kj] * a[plane + u32(ih) * p.w + u32(iw)];
            }
        }
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
    let hw = p.h * p.w;
    if (q >= p.n * p.c_in * hw) {
        return;
    }
    let iw = q % p.w;
    let ih = (q / p.w) % p.h;
    let ci = (q / hw) % p.c_in;
    let ni = q / (hw * p.c_in);
    let kk = p.kh * p.kw;
    var acc = 0.0;
    for (var m = 0u; m < mult(); m++) {
        let co = ci * mult() + m;
        let plane = (ni * p.c_out + co) * p.oh * p.ow;
        for (var ki = 0u; ki < p.kh; ki++) {
            let oi = source_row(i32(ih + p.ph) - i32(ki * p.dh), p.sh, p.oh);
            if (oi < 0) {
                continue;
            }
            for (var kj = 0u; kj < p.kw; kj++) {
                let oj = source_row(i32(iw + p.pw) - i32(kj * p.dw), p.sw, p.ow);
                if (oj >= 0) {
                    acc += b[co * kk + ki * p.kw + kj] * a[plane + u32(oi) * p.ow + u32(oj)];
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
    let kk = p.kh * p.kw;
    let idx = wid.y * nwg.x + wid.x;
    // Uniform across the workgroup, so the barriers below stay in uniform control flow.
    let live = idx < p.c_out * kk;
    let co = idx / kk;
    let ki = (idx % kk) / p.kw;
    let kj = idx % p.kw;
    let ci = co / mult();
    let ohw = p.oh * p.ow;
    var acc = 0.0;
    if (live) {
        // Thread lid.x visits pixels e = lid.x, lid.x + 256, … of the batch, kept as
        // (ni, oi, oj) and advanced by 256 with carries: no division per pixel.
        let sj = 256u % p.ow;
        let si = (256u / p.ow) % p.oh;
        let sn = 256u / ohw;
        var ni = lid.x / ohw;
        var oi = (lid.x % ohw) / p.ow;
        var oj = lid.x % p.ow;
        let dy = i32(ki * p.dh) - i32(p.ph);
        let dx = i32(kj * p.dw) - i32(p.pw);
        while (ni < p.n) {
            let ih = i32(oi * p.sh) + dy;
            let iw = i32(oj * p.sw) + dx;
            if (ih >= 0 && ih < i32(p.h) && iw >= 0 && iw < i32(p.w)) {
                acc += a[((ni * p.c_out + co) * p.oh + oi) * p.ow + oj]
                    * b[((ni * p.c_in + ci) * p.h + u32(ih)) * p.w + u32(iw)];
            }
            oj += sj;
            let wrap_j = oj >= p.ow;
            oj = select(oj, oj - p.ow, wrap_j);
            oi += si + u32(wrap_j);
            let wrap_i = oi >= p.oh;
            oi = select(oi, oi - p.oh, wrap_i);
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
