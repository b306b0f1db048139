// Convolution as implicit GEMM (no im2col buffer): the generated register-tiled loop of
// crates/kernels/src/gemm_gen.rs (appended to this file, as for matmul), with operands
// gathered from the tensors on the fly. One dispatch covers every group. Three modes
// share the tiles, each with its own loads and store (named in CONV2D_ENTRIES):
//   fwd, forward:     y[n,g·og+m,pix]   = Σ_k  w[g·og+m, k]         · x gathered (k = c,ki,kj)
//   gin, grad input:  gx[n,g·cg+m,q]    = Σ_k  w[g·og+o, m, ki, kj] · gy gathered (k = o,ki,kj)
//   gw, grad weight:  gw[g·og+m, col]   = Σ_k  gy[n,g·og+m,pix]     · x gathered (k = n,pix)
// lhs is w (fwd, gin) or gy (gw); rhs is x (fwd, gw) or gy (gin).
// Split-K: workgroup z = group · splits + split; each split sums k in its own range and
// writes its partial result to out[split · out_len + …] (the host then sums the splits).
// The weight gradient needs it: its K (batch × pixels) is long and its M × N small.
// Every `*_at` function runs once per thread: the divisions that locate a thread's
// pixels happen there, not once per loaded value. Positions along K are decomposed once
// (`*_k`) and then stepped by GEMM_DEPTH with carries (`*_next`): the loop divides nothing.

struct Params {
    s: ConvShape,
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

// Marks a column outside the matrix: every window position computed from it is negative.
const OUTSIDE: i32 = -1073741824;

fn gemm_skip(z: u32, tile: vec3<u32>) -> bool {
    return false;
}

fn gemm_k_range(z: u32) -> vec2<u32> {
    let begin = (z % p.splits) * p.k_per_split;
    return vec2<u32>(begin, min(begin + p.k_per_split, p.gk));
}

fn lhs_or0(ok: bool, i: u32) -> f32 {
    if (ok) {
        return lhs[i];
    }
    return 0.0;
}

fn rhs_or0(ok: bool, i: u32) -> f32 {
    if (ok) {
        return rhs[i];
    }
    return 0.0;
}

// The four values a quad names (0 where it is outside the matrix).
fn lhs4(q: Quad) -> vec4<f32> {
    return vec4<f32>(lhs_or0(q.ok.x, q.idx.x), lhs_or0(q.ok.y, q.idx.y), lhs_or0(q.ok.z, q.idx.z), lhs_or0(q.ok.w, q.idx.w));
}

fn rhs4(q: Quad) -> vec4<f32> {
    return vec4<f32>(rhs_or0(q.ok.x, q.idx.x), rhs_or0(q.ok.y, q.idx.y), rhs_or0(q.ok.z, q.idx.z), rhs_or0(q.ok.w, q.idx.w));
}

// A row of lhs whose value k sits at base + (k / period) · step + k % period.
struct Line {
    base: u32,
    step: u32,
    period: u32,
    ok: bool,
}

// (quotient, remainder) of the next k: a period may be 1, so every step carries alone.
fn next_k(q: vec2<u32>, period: u32) -> vec2<u32> {
    let wrap = q.y + 1u == period;
    return vec2<u32>(q.x + u32(wrap), select(q.y + 1u, 0u, wrap));
}

// Which of k..k+4 lie inside the matrix's K.
fn in_k(k: u32) -> vec4<bool> {
    return vec4<u32>(k) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.gk);
}

// A line's position: k and its (quotient, remainder) by the line's period.
fn line_pos(k: u32, period: u32) -> vec3<u32> {
    let o = k / period;
    return vec3<u32>(k, o, k - o * period);
}

fn line_step(q: vec3<u32>, period: u32) -> vec3<u32> {
    let d = line_pos(GEMM_DEPTH, period);
    let r = q.z + d.z;
    let wrap = r >= period;
    return vec3<u32>(q.x + GEMM_DEPTH, q.y + d.y + u32(wrap), select(r, r - period, wrap));
}

// lhs at k..k+4 of a line: the remainder steps with carries (written out: drivers do not
// unroll naga's loops).
fn line4(s: Line, q: vec3<u32>) -> vec4<f32> {
    let q0 = q.yz;
    let q1 = next_k(q0, s.period);
    let q2 = next_k(q1, s.period);
    let q3 = next_k(q2, s.period);
    let idx = s.base + vec4<u32>(q0.x, q1.x, q2.x, q3.x) * s.step + vec4<u32>(q0.y, q1.y, q2.y, q3.y);
    let ok = in_k(q.x) & vec4<bool>(s.ok);
    return lhs4(Quad(idx, ok));
}

// Adds the digits d of GEMM_DEPTH to a position q = (k, high, middle, low) whose middle
// and low digits count up to `mid` and `low`: each digit of d is below its radix, so each
// carries at most once.
fn mixed_step(q: vec4<u32>, d: vec4<u32>, mid: u32, low: u32) -> vec4<u32> {
    let l = q.w + d.w;
    let cl = l >= low;
    let m = q.z + d.z + u32(cl);
    let cm = m >= mid;
    return vec4<u32>(q.x + GEMM_DEPTH, q.y + d.y + u32(cm), select(m, m - mid, cm), select(l, l - low, cl));
}

fn og() -> u32 {
    return p.s.c_out / p.s.groups;
}

fn cg() -> u32 {
    return p.s.c_in / p.s.groups;
}

// Stores four consecutive columns of output row m, where column col is pixel col % plane
// of image col / plane and the row is channel `ch` of `channels`.
fn store4(z: u32, m: u32, col: u32, v: vec4<f32>, ch: u32, channels: u32, plane: u32) {
    if (m >= p.gm) {
        return;
    }
    let base = (z % p.splits) * p.out_len;
    let ni = col / plane;
    let pix = col - ni * plane;
    if (pix + 4u <= plane && col + 4u <= p.gn) {
        let o = base + (ni * channels + ch) * plane + pix;
        out[o] = v.x;
        out[o + 1u] = v.y;
        out[o + 2u] = v.z;
        out[o + 3u] = v.w;
        return;
    }
    for (var d = 0u; d < 4u; d++) {
        let c = col + d;
        if (c < p.gn) {
            let n = c / plane;
            out[base + (n * channels + ch) * plane + c - n * plane] = v[d];
        }
    }
}

// Four consecutive GEMM columns that are pixels: where their data starts in rhs, and
// their window's top-left position (forward) or own position (grad input) shifted by the
// padding.
struct Pix4 {
    base: vec4<u32>,
    i: vec4<i32>,
    j: vec4<i32>,
}

// Column col + d is pixel (i, j) of image n in planes of rows × cols; rhs holds
// `channels` planes of `plane` values per image, the group's first at `first`. The
// position kept is (i · scale + shift.x, j · scale + shift.y), or OUTSIDE past the last
// column.
fn pix4(col: u32, rows: u32, cols: u32, channels: u32, first: u32, plane: u32, scale: vec2<i32>, shift: vec2<i32>) -> Pix4 {
    var s: Pix4;
    for (var d = 0u; d < 4u; d++) {
        let c = col + d;
        let n = c / (rows * cols);
        let q = c - n * rows * cols;
        let i = q / cols;
        s.base[d] = (n * channels + first) * plane;
        s.i[d] = select(OUTSIDE, i32(i) * scale.x + shift.x, c < p.gn);
        s.j[d] = i32(q - i * cols) * scale.y + shift.y;
    }
    return s;
}

// k = (channel, ki, kj) of the kernel window, as (k, channel, ki, kj).
fn tap_k(z: u32, k: u32) -> vec4<u32> {
    let kk = p.s.kh * p.s.kw;
    let c = k / kk;
    let r = k - c * kk;
    let ki = r / p.s.kw;
    return vec4<u32>(k, c, ki, r - ki * p.s.kw);
}

fn tap_next(z: u32, q: vec4<u32>) -> vec4<u32> {
    return mixed_step(q, tap_k(z, GEMM_DEPTH), p.s.kh, p.s.kw);
}

// k = (image, oi, oj) of the output pixels, as (k, image, oi, oj).
fn pixel_k(z: u32, k: u32) -> vec4<u32> {
    let ohw = p.s.oh * p.s.ow;
    let n = k / ohw;
    let q = k - n * ohw;
    let oi = q / p.s.ow;
    return vec4<u32>(k, n, oi, q - oi * p.s.ow);
}

fn pixel_next(z: u32, q: vec4<u32>) -> vec4<u32> {
    return mixed_step(q, pixel_k(z, GEMM_DEPTH), p.s.oh, p.s.ow);
}

// ---- forward: A = w [og, cg·kh·kw] rows, B = x gathered at output pixels.

fn fwd_a_at(z: u32, m: u32) -> Line {
    return Line((z / p.splits * og() + m) * p.gk, 0u, p.gk, m < p.gm);
}

fn fwd_line_k(z: u32, k: u32) -> vec3<u32> {
    return line_pos(k, p.gk);
}

fn fwd_line_next(z: u32, q: vec3<u32>) -> vec3<u32> {
    return line_step(q, p.gk);
}

fn fwd_a(z: u32, s: Line, q: vec3<u32>) -> vec4<f32> {
    return line4(s, q);
}

fn fwd_b_at(z: u32, col: u32) -> Pix4 {
    let stride = vec2<i32>(i32(p.s.sh), i32(p.s.sw));
    return pix4(col, p.s.oh, p.s.ow, p.s.c_in, z / p.splits * cg(), p.s.h * p.s.w, stride, -vec2<i32>(i32(p.s.ph), i32(p.s.pw)));
}

fn fwd_b(z: u32, s: Pix4, q: vec4<u32>) -> vec4<f32> {
    let ih = s.i + i32(q.z * p.s.dh);
    let iw = s.j + i32(q.w * p.s.dw);
    let ok = (ih >= vec4<i32>(0)) & (iw >= vec4<i32>(0)) & (ih < vec4<i32>(i32(p.s.h))) & (iw < vec4<i32>(i32(p.s.w))) & vec4<bool>(q.x < p.gk);
    let idx = s.base + q.y * p.s.h * p.s.w + vec4<u32>(ih) * p.s.w + vec4<u32>(iw);
    return rhs4(Quad(idx, ok));
}

fn fwd_store(z: u32, m: u32, col: u32, v: vec4<f32>) {
    store4(z, m, col, v, z / p.splits * og() + m, p.s.c_out, p.s.oh * p.s.ow);
}

// ---- grad input: A = w[g·og+o, m, ki, kj] over k = (o, ki, kj), B = gy gathered at
// input pixels: gy[n, g·og+o, oi, oj] where oi·sh = ih + ph − ki·dh exactly.

fn gin_a_at(z: u32, m: u32) -> Line {
    let kk = p.s.kh * p.s.kw;
    return Line((z / p.splits * og() * cg() + m) * kk, cg() * kk, kk, m < p.gm);
}

fn gin_line_k(z: u32, k: u32) -> vec3<u32> {
    return line_pos(k, p.s.kh * p.s.kw);
}

fn gin_line_next(z: u32, q: vec3<u32>) -> vec3<u32> {
    return line_step(q, p.s.kh * p.s.kw);
}

fn gin_a(z: u32, s: Line, q: vec3<u32>) -> vec4<f32> {
    return line4(s, q);
}

fn gin_b_at(z: u32, col: u32) -> Pix4 {
    return pix4(col, p.s.h, p.s.w, p.s.c_out, z / p.splits * og(), p.s.oh * p.s.ow, vec2<i32>(1), vec2<i32>(i32(p.s.ph), i32(p.s.pw)));
}

fn gin_b(z: u32, s: Pix4, q: vec4<u32>) -> vec4<f32> {
    let th = s.i - i32(q.z * p.s.dh);
    let tw = s.j - i32(q.w * p.s.dw);
    var ok = (th >= vec4<i32>(0)) & (tw >= vec4<i32>(0)) & vec4<bool>(q.x < p.gk);
    var oi = vec4<u32>(max(th, vec4<i32>(0)));
    var oj = vec4<u32>(max(tw, vec4<i32>(0)));
    if (p.s.sh != 1u || p.s.sw != 1u) {
        ok = ok & (oi % p.s.sh == vec4<u32>(0u)) & (oj % p.s.sw == vec4<u32>(0u));
        oi = oi / p.s.sh;
        oj = oj / p.s.sw;
    }
    ok = ok & (oi < vec4<u32>(p.s.oh)) & (oj < vec4<u32>(p.s.ow));
    let idx = s.base + q.y * p.s.oh * p.s.ow + oi * p.s.ow + oj;
    return rhs4(Quad(idx, ok));
}

fn gin_store(z: u32, m: u32, col: u32, v: vec4<f32>) {
    store4(z, m, col, v, z / p.splits * cg() + m, p.s.c_in, p.s.h * p.s.w);
}

// ---- grad weight: A = gy rows over k = (n, pix), B = x gathered at k for column
// (c, ki, kj).

fn gw_a_at(z: u32, m: u32) -> Line {
    let ohw = p.s.oh * p.s.ow;
    return Line((z / p.splits * og() + m) * ohw, p.s.c_out * ohw, ohw, m < p.gm);
}

fn gw_line_k(z: u32, k: u32) -> vec3<u32> {
    return line_pos(k, p.s.oh * p.s.ow);
}

fn gw_line_next(z: u32, q: vec3<u32>) -> vec3<u32> {
    return line_step(q, p.s.oh * p.s.ow);
}

fn gw_a(z: u32, s: Line, q: vec3<u32>) -> vec4<f32> {
    return line4(s, q);
}

// A column of the weight gradient: x's plane for channel c of the group (image 0) and
// the tap's offset from an output pixel's scaled position.
struct Tap {
    base: u32,
    di: i32,
    dj: i32,
    ok: bool,
}

fn gw_b_at(z: u32, col: u32) -> Tap {
    let tap = tap_k(z, col);
    return Tap((z / p.splits * cg() + tap.y) * p.s.h * p.s.w, i32(tap.z * p.s.dh) - i32(p.s.ph), i32(tap.w * p.s.dw) - i32(p.s.pw), col < p.gn);
}

// The output pixel after (n, oi, oj), in order.
fn next_pixel(q: vec3<u32>) -> vec3<u32> {
    let wrap_j = q.z + 1u == p.s.ow;
    let wrap_i = wrap_j && q.y + 1u == p.s.oh;
    return vec3<u32>(q.x + u32(wrap_i), select(q.y + u32(wrap_j), 0u, wrap_i), select(q.z + 1u, 0u, wrap_j));
}

// x at k..k+4 = (n, oi, oj): oj steps with carries into oi, n.
fn gw_b(z: u32, s: Tap, q: vec4<u32>) -> vec4<f32> {
    let q0 = q.yzw;
    let q1 = next_pixel(q0);
    let q2 = next_pixel(q1);
    let q3 = next_pixel(q2);
    let ih = vec4<i32>(vec4<u32>(q0.y, q1.y, q2.y, q3.y) * p.s.sh) + s.di;
    let iw = vec4<i32>(vec4<u32>(q0.z, q1.z, q2.z, q3.z) * p.s.sw) + s.dj;
    let ok = in_k(q.x) & vec4<bool>(s.ok) & (ih >= vec4<i32>(0)) & (iw >= vec4<i32>(0)) & (ih < vec4<i32>(i32(p.s.h))) & (iw < vec4<i32>(i32(p.s.w)));
    let idx = s.base + vec4<u32>(q0.x, q1.x, q2.x, q3.x) * (p.s.c_in * p.s.h * p.s.w) + vec4<u32>(ih) * p.s.w + vec4<u32>(iw);
    return rhs4(Quad(idx, ok));
}

fn gw_store(z: u32, m: u32, col: u32, v: vec4<f32>) {
    if (m >= p.gm) {
        return;
    }
    let o = (z % p.splits) * p.out_len + (z / p.splits * og() + m) * p.gn + col;
    for (var d = 0u; d < 4u; d++) {
        if (col + d < p.gn) {
            out[o + d] = v[d];
        }
    }
}
