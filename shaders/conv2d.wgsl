// Convolution as implicit GEMM (no im2col buffer): the generated register-tiled loop of
// crates/kernels/src/gemm_gen.rs (appended to this file, as for matmul), with operands
// gathered from the tensors on the fly. One dispatch covers every group (workgroup z =
// group). Three modes share the tiles:
//   0 forward:     y[n,g·og+m,pix]   = Σ_k  w[g·og+m, k]         · x gathered (k = c,ki,kj)
//   1 grad input:  gx[n,g·cg+m,q]    = Σ_k  w[g·og+o, m, ki, kj] · gy gathered (k = o,ki,kj)
//   2 grad weight: gw[g·og+m, col]   = Σ_k  gy[n,g·og+m,pix]     · x gathered (k = n,pix)
// lhs is w (modes 0, 1) or gy (mode 2); rhs is x (modes 0, 2) or gy (mode 1).
// Split-K: workgroup z = group · splits + split; each split sums k in its own range and
// writes its partial result to out[split · out_len + …] (the host then sums the splits).
// The weight gradient needs it: its K (batch × pixels) is long and its M × N small.

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
    mode: u32,
    gm: u32,
    gn: u32,
    gk: u32,
    splits: u32,
    k_per_split: u32,
    out_len: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> lhs: array<f32>;
@group(0) @binding(2) var<storage, read> rhs: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn load_a(g: u32, m: u32, k: u32) -> f32 {
    if (m >= p.gm || k >= p.gk) {
        return 0.0;
    }
    let cg = p.c_in / p.groups;
    let og = p.c_out / p.groups;
    let kk = p.kh * p.kw;
    switch p.mode {
        case 0u: {
            return lhs[(g * og + m) * cg * kk + k];
        }
        case 1u: {
            return lhs[((g * og + k / kk) * cg + m) * kk + k % kk];
        }
        default: {
            let ohw = p.oh * p.ow;
            return lhs[((k / ohw) * p.c_out + g * og + m) * ohw + k % ohw];
        }
    }
}

// x[ni, g·cg + c, oi·sh − ph + ki·dh, oj·sw − pw + kj·dw], or 0 in the padding.
fn gather_x(g: u32, ni: u32, c: u32, r: u32, pix: u32) -> f32 {
    let ki = r / p.kw;
    let kj = r % p.kw;
    let oi = pix / p.ow;
    let oj = pix % p.ow;
    let ih = i32(oi * p.sh + ki * p.dh) - i32(p.ph);
    let iw = i32(oj * p.sw + kj * p.dw) - i32(p.pw);
    if (ih < 0 || iw < 0 || ih >= i32(p.h) || iw >= i32(p.w)) {
        return 0.0;
    }
    let cg = p.c_in / p.groups;
    return rhs[((ni * p.c_in + g * cg + c) * p.h + u32(ih)) * p.w + u32(iw)];
}

fn load_b(g: u32, k: u32, col: u32) -> f32 {
    if (k >= p.gk || col >= p.gn) {
        return 0.0;
    }
    let kk = p.kh * p.kw;
    let ohw = p.oh * p.ow;
    switch p.mode {
        case 0u: {
            return gather_x(g, col / ohw, k / kk, k % kk, col % ohw);
        }
        case 1u: {
            // gy[ni, g·og + o, oi, oj] where oi·sh = ih + ph − ki·dh exactly.
            let o = k / kk;
            let ki = (k % kk) / p.kw;
            let kj = (k % kk) % p.kw;
            let hw = p.h * p.w;
            let ni = col / hw;
            let ih = (col % hw) / p.w;
            let iw = (col % hw) % p.w;
            let th = i32(ih + p.ph) - i32(ki * p.dh);
            let tw = i32(iw + p.pw) - i32(kj * p.dw);
            if (th < 0 || tw < 0 || u32(th) % p.sh != 0u || u32(tw) % p.sw != 0u) {
                return 0.0;
            }
            let oi = u32(th) / p.sh;
            let oj = u32(tw) / p.sw;
            if (oi >= p.oh || oj >= p.ow) {
                return 0.0;
            }
            let og = p.c_out / p.groups;
            return rhs[((ni * p.c_out + g * og + o) * p.oh + oi) * p.ow + oj];
        }
        default: {
            return gather_x(g, k / ohw, col / kk, col % kk, k % ohw);
        }
    }
}

fn store(g: u32, split: u32, m: u32, col: u32, v: f32) {
    let cg = p.c_in / p.groups;
    let og = p.c_out / p.groups;
    let base = split * p.out_len;
    switch p.mode {
        case 0u: {
            let ohw = p.oh * p.ow;
            out[base + ((col / ohw) * p.c_out + g * og + m) * ohw + col % ohw] = v;
        }
        case 1u: {
            let hw = p.h * p.w;
            out[base + ((col / hw) * p.c_in + g * cg + m) * hw + col % hw] = v;
        }
        default: {
            out[base + (g * og + m) * p.gn + col] = v;
        }
    }
}

// The interface of the generated GEMM: z = group · splits + split.
fn gemm_skip(z: u32, tile: vec3<u32>) -> bool {
    return false;
}

fn gemm_k_range(z: u32) -> vec2<u32> {
    let begin = (z % p.splits) * p.k_per_split;
    return vec2<u32>(begin, min(begin + p.k_per_split, p.gk));
}

fn gemm_load_a(z: u32, m: u32, k: u32) -> f32 {
    return load_a(z / p.splits, m, k);
}

fn gemm_load_b(z: u32, k: u32, col: u32) -> f32 {
    return load_b(z / p.splits, k, col);
}

fn gemm_store(z: u32, m: u32, col: u32, v: f32) {
    if (m < p.gm && col < p.gn) {
        store(z / p.splits, z % p.splits, m, col, v);
    }
}
