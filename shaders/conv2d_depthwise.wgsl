// Depthwise convolution (groups = c_in, one input channel per group, `mult()` outputs per
// channel) computed directly: the implicit GEMM of conv2d.wgsl would have one row per
// group and leave 63 of its 64 tile rows idle. Three entry points, matching conv2d:
//   forward:     one thread per output,  y[n,co,oi,oj]  = Σ_taps w[co,tap] · x[n,co/mult,…]
//   grad_input:  one thread per input,   gx[n,ci,ih,iw] = Σ_{co of ci} Σ_taps w · gy (gather
//                form: the outputs whose window holds the input, no atomics)
//   grad_weight: one workgroup per (co, tap), its threads striding over batch × pixels,
//                then a fixed-order tree sum in workgroup memory (deterministic).

struct Params {
    n: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    oh: u32,
    ow: u32,
    groups: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

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
            // oi · sh = ih + ph − ki · dh exactly, or this tap misses every output.
            let th = i32(ih + p.ph) - i32(ki * p.dh);
            if (th < 0 || u32(th) % p.sh != 0u || u32(th) / p.sh >= p.oh) {
                continue;
            }
            let oi = u32(th) / p.sh;
            for (var kj = 0u; kj < p.kw; kj++) {
                let tw = i32(iw + p.pw) - i32(kj * p.dw);
                if (tw < 0 || u32(tw) % p.sw != 0u || u32(tw) / p.sw >= p.ow) {
                    continue;
                }
                acc += b[co * kk + ki * p.kw + kj] * a[plane + oi * p.ow + u32(tw) / p.sw];
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
        for (var e = lid.x; e < p.n * ohw; e += 256u) {
            let ni = e / ohw;
            let oi = (e % ohw) / p.ow;
            let oj = e % p.ow;
            let ih = i32(oi * p.sh + ki * p.dh) - i32(p.ph);
            let iw = i32(oj * p.sw + kj * p.dw) - i32(p.pw);
            if (ih >= 0 && ih < i32(p.h) && iw >= 0 && iw < i32(p.w)) {
                acc += a[(ni * p.c_out + co) * ohw + e % ohw]
                    * b[((ni * p.c_in + ci) * p.h + u32(ih)) * p.w + u32(iw)];
            }
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
