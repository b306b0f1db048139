// Convolution as implicit GEMM (no im2col buffer): the generated register-tiled loop of
// crates/kernels/src/gemm_gen.rs (appended to this file, as for matmul), with operands
// gathered from the tensors on the fly. One dispatch covers every group. Three modes
// share the tiles, each with its own loads and store (named in CONV2D_ENTRIES; the input
// gradient has three forms, below: gin1 at stride 1, ginx by stride phases, gcol into a
// column buffer):
//   fwd, forward:     y[n,g·og+m,pix]   = Σ_k  w[g·og+m, k]         · x gathered (k = c,ki,kj)
//   gin, grad input:  gx[n,g·cg+m,q]    = Σ_k  w[g·og+o, m, ki, kj] · gy gathered (k = o,ki,kj)
//   gw, grad weight:  gw[g·og+m, col]   = Σ_k  gy[n,g·og+m,pix]     · x gathered (k = n,pix)
// lhs is w (fwd, gin) or gy (gw); rhs is x (fwd, gw) or gy (gin).
// Split-K: workgroup z = (group · phases + phase) · splits + split; each split sums k in
// its own range and writes its partial result to out[split · out_len + …] (the host then
// sums the splits). The weight gradient needs it: its K (batch × pixels) is long and its
// M × N small. Phases split a strided input gradient (below); other modes have one.
// Every `*_at` function runs once per thread: the divisions that locate a thread's
// pixels happen there, not once per loaded value. Positions along K are decomposed once
// (`*_k`) and then stepped by GEMM_DEPTH with carries (`*_next`): the loop divides nothing.
// The gathered operand's loads all end in gather4.

// p's type is declared in crates/kernels/src/conv2d.rs (wgsl_struct!); source.rs puts
// its WGSL before this text.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> lhs: array<f32>;
@group(0) @binding(2) var<storage, read> rhs: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// The forward's bias, read only when p.bias is 1 (otherwise another buffer stands in).
@group(0) @binding(4) var<storage, read> bias: array<f32>;

// Marks a column outside the matrix: every window position computed from it is negative.
const OUTSIDE: i32 = -1073741824;

fn group(z: u32) -> u32 {
    return z / p.splits / p.phases;
}

fn gemm_skip(z: u32, tile: vec3<u32>) -> bool {
    return false;
}

fn gemm_k_range(z: u32) -> vec2<u32> {
    let begin = (z % p.splits) * p.k_per_split;
    var len = p.gk;
    if (p.exact != 0u) {
        len = og() * phase_rows(z).taps * phase_cols(z).taps;
    }
    return vec2<u32>(begin, min(begin + p.k_per_split, len));
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

// A row of lhs whose value k sits at base + (k / p.line) · step + k % p.line.
struct Line {
    base: u32,
    step: u32,
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

// A line's position: k and its (quotient, remainder) by the period.
fn line_k(z: u32, k: u32) -> vec3<u32> {
    let o = k / p.line;
    return vec3<u32>(k, o, k - o * p.line);
}

fn line_next(z: u32, q: vec3<u32>) -> vec3<u32> {
    let d = line_k(z, GEMM_DEPTH);
    let r = q.z + d.z;
    let wrap = r >= p.line;
    return vec3<u32>(q.x + GEMM_DEPTH, q.y + d.y + u32(wrap), select(r, r - p.line, wrap));
}

// lhs at k..k+4 of a line: the remainder steps with carries (written out: drivers do not
// unroll naga's loops).
fn line4(s: Line, q: vec3<u32>) -> vec4<f32> {
    let q0 = q.yz;
    let q1 = next_k(q0, p.line);
    let q2 = next_k(q1, p.line);
    let q3 = next_k(q2, p.line);
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
// position kept is (i · scale + shift.x, j · scale + shift.y), or OUTSIDE from column
// `count` on.
fn pix4(col: u32, count: u32, rows: u32, cols: u32, channels: u32, first: u32, plane: u32, scale: vec2<i32>, shift: vec2<i32>) -> Pix4 {
    var s: Pix4;
    // An empty phase has no columns (all OUTSIDE); the max only keeps the divisions defined.
    let width = max(cols, 1u);
    let area = max(rows * cols, 1u);
    for (var d = 0u; d < 4u; d++) {
        let c = col + d;
        let n = c / area;
        let q = c - n * area;
        let i = q / width;
        s.base[d] = (n * channels + first) * plane;
        s.i[d] = select(OUTSIDE, i32(i) * scale.x + shift.x, c < count);
        s.j[d] = i32(q - i * width) * scale.y + shift.y;
    }
    return s;
}

// rhs at rows i and columns j of plane `plane` in the four columns' images (planes of
// rows × cols from `base`); zero outside the plane or where `ok` is false.
fn gather4(base: vec4<u32>, plane: u32, i: vec4<i32>, j: vec4<i32>, rows: u32, cols: u32, ok: bool) -> vec4<f32> {
    let inside = (i >= vec4<i32>(0)) & (j >= vec4<i32>(0)) & (i < vec4<i32>(i32(rows))) & (j < vec4<i32>(i32(cols)));
    let idx = base + plane * rows * cols + vec4<u32>(i) * cols + vec4<u32>(j);
    return rhs4(Quad(idx, inside & vec4<bool>(ok)));
}

// k in digits (high, middle, low) of radices (·, mid, low), as (k, high, middle, low).
fn split3(k: u32, mid: u32, low: u32) -> vec4<u32> {
    let area = mid * low;
    let h = k / area;
    let r = k - h * area;
    let m = r / low;
    return vec4<u32>(k, h, m, r - m * low);
}

// k = (channel, ki, kj) of the kernel window, as (k, channel, ki, kj).
fn tap_k(z: u32, k: u32) -> vec4<u32> {
    return split3(k, p.s.kh, p.s.kw);
}

fn tap_next(z: u32, q: vec4<u32>) -> vec4<u32> {
    return mixed_step(q, tap_k(z, GEMM_DEPTH), p.s.kh, p.s.kw);
}

// k = (image, oi, oj) of the output pixels, as (k, image, oi, oj).
fn pixel_k(z: u32, k: u32) -> vec4<u32> {
    return split3(k, p.s.oh, p.s.ow);
}

fn pixel_next(z: u32, q: vec4<u32>) -> vec4<u32> {
    return mixed_step(q, pixel_k(z, GEMM_DEPTH), p.s.oh, p.s.ow);
}

// ---- forward: A = w [og, cg·kh·kw] rows, B = x gathered at output pixels.

fn fwd_a_at(z: u32, m: u32) -> Line {
    return Line((group(z) * og() + m) * p.gk, 0u, m < p.gm);
}

fn fwd_a(z: u32, s: Line, q: vec3<u32>) -> vec4<f32> {
    return line4(s, q);
}

fn fwd_b_at(z: u32, col: u32) -> Pix4 {
    let stride = vec2<i32>(i32(p.s.sh), i32(p.s.sw));
    return pix4(col, p.gn, p.s.oh, p.s.ow, p.s.c_in, group(z) * cg(), p.s.h * p.s.w, stride, -vec2<i32>(i32(p.s.ph), i32(p.s.pw)));
}

fn fwd_b(z: u32, s: Pix4, q: vec4<u32>) -> vec4<f32> {
    return gather4(s.base, q.y, s.i + i32(q.z * p.s.dh), s.j + i32(q.w * p.s.dw), p.s.h, p.s.w, q.x < p.gk);
}

// The bias goes into the first split's partial sums, so the sum of the splits has it once.
fn fwd_store(z: u32, m: u32, col: u32, v: vec4<f32>) {
    let ch = group(z) * og() + m;
    var b = 0.0;
    if (p.bias != 0u && z % p.splits == 0u && m < p.gm) {
        b = bias[ch];
    }
    store4(z, m, col, v + b, ch, p.s.c_out, p.s.oh * p.s.ow);
}

// ---- grad input at stride 1: A = w[g·og+o, m, ki, kj] over k = (o, ki, kj), B = gy
// gathered at input pixels: gy[n, g·og+o, ih + ph − ki·dh, iw + pw − kj·dw].

fn gin1_a_at(z: u32, m: u32) -> Line {
    let kk = p.s.kh * p.s.kw;
    return Line((group(z) * og() * cg() + m) * kk, cg() * kk, m < p.gm);
}

fn gin1_a(z: u32, s: Line, q: vec3<u32>) -> vec4<f32> {
    return line4(s, q);
}

fn gin1_b_at(z: u32, col: u32) -> Pix4 {
    return pix4(col, p.gn, p.s.h, p.s.w, p.s.c_out, group(z) * og(), p.s.oh * p.s.ow, vec2<i32>(1), vec2<i32>(i32(p.s.ph), i32(p.s.pw)));
}

fn gin1_b(z: u32, s: Pix4, q: vec4<u32>) -> vec4<f32> {
    return gather4(s.base, q.y, s.i - i32(q.z * p.s.dh), s.j - i32(q.w * p.s.dw), p.s.oh, p.s.ow, q.x < p.gk);
}

// Its own store, so that the phased store's code does not weigh on this kernel's registers.
fn gin1_store(z: u32, m: u32, col: u32, v: vec4<f32>) {
    store4(z, m, col, v, group(z) * cg() + m, p.s.c_in, p.s.h * p.s.w);
}

// ---- grad input at larger strides, by phases: input pixels (ih, iw) ≡ (ri, rj) mod
// (sh, sw) are reached only by the taps ki whose ih + ph − ki·dh is a multiple of sh
// (likewise kj), a fixed progression per phase. Each phase sums over exactly its own taps,
// so no product is spent on a tap that lands between output pixels (at stride 2, three in
// four of them; stride 1 has one phase with every tap and takes the plainer loads above).
// A = w[g·og+o, m, ki, kj] over k = (ti, tj, o) (tap numbers within the phase, o
// innermost), so a phase's K is og · its taps; B = gy gathered at the phase's pixels.

// One axis of phase r: positions r, r + s, … (`len` of them in `size`) take the taps
// first, first + step, … (`taps` of them, below k) at output positions
// (position − r) / s + e0 − t · de for tap number t.
struct Axis {
    first: u32,
    step: u32,
    taps: u32,
    e0: i32,
    de: i32,
    len: u32,
}

fn phase_axis(r: u32, s: u32, pad: u32, d: u32, k: u32, size: u32) -> Axis {
    // The least step > 0 with step · d a multiple of s.
    var step = s;
    for (var t = 1u; t < s; t++) {
        if ((t * d) % s == 0u) {
            step = t;
            break;
        }
    }
    // The first tap with r + pad − t·d ≡ 0 (mod s), kept unsigned: −t·d ≡ t·d·(s − 1).
    var first = k;
    for (var t = 0u; t < min(k, step); t++) {
        if ((r + pad + t * d * (s - 1u)) % s == 0u) {
            first = t;
            break;
        }
    }
    let taps = select(0u, (k - first + step - 1u) / step, first < k);
    let e0 = (i32(r + pad) - i32(first * d)) / i32(s);
    let len = select(0u, (size - r + s - 1u) / s, r < size);
    return Axis(first, step, taps, e0, i32(step * d / s), len);
}

fn phase_rows(z: u32) -> Axis {
    let ph = (z / p.splits) % p.phases;
    return phase_axis(ph / p.s.sw, p.s.sh, p.s.ph, p.s.dh, p.s.kh, p.s.h);
}

fn phase_cols(z: u32) -> Axis {
    let ph = (z / p.splits) % p.phases;
    return phase_axis(ph % p.s.sw, p.s.sw, p.s.pw, p.s.dw, p.s.kw, p.s.w);
}

// Row m of A in phase z: the offset of its first tap, the offset steps per output
// channel and per tap number, and the phase's tap counts.
struct GinRow {
    base: u32,
    step: vec3<u32>,
    taps: vec2<u32>,
    ok: bool,
}

fn gin_a_at(z: u32, m: u32) -> GinRow {
    let kk = p.s.kh * p.s.kw;
    let r = phase_rows(z);
    let c = phase_cols(z);
    let base = (group(z) * og() * cg() + m) * kk + r.first * p.s.kw + c.first;
    return GinRow(base, vec3<u32>(cg() * kk, r.step * p.s.kw, c.step), vec2<u32>(r.taps, c.taps), m < p.gm);
}

// Weights at output channels o and tap numbers (ti, tj) of a row; zero past the phase's
// taps along i (the callers check the rest).
fn gin_row4(s: GinRow, o: vec4<u32>, ti: vec4<u32>, tj: vec4<u32>, ok: vec4<bool>) -> vec4<f32> {
    let idx = s.base + o * s.step.x + ti * s.step.y + tj * s.step.z;
    return lhs4(Quad(idx, ok & vec4<bool>(s.ok) & (ti < vec4<u32>(s.taps.x))));
}

// Four columns of B in phase z (their output positions for tap 0), the phase's tap
// counts and the output step per tap number.
struct GinCols {
    px: Pix4,
    taps: vec2<u32>,
    de: vec2<i32>,
}

fn gin_b_at(z: u32, col: u32) -> GinCols {
    let r = phase_rows(z);
    let c = phase_cols(z);
    let px = pix4(col, p.s.n * r.len * c.len, r.len, c.len, p.s.c_out, group(z) * og(), p.s.oh * p.s.ow, vec2<i32>(1), vec2<i32>(r.e0, c.e0));
    return GinCols(px, vec2<u32>(r.taps, c.taps), vec2<i32>(r.de, c.de));
}

// gy at output channel o for tap numbers (ti, tj) of four columns; zero past the phase's
// taps along i and outside the output (the callers check the rest).
fn gin_cols4(s: GinCols, o: u32, ti: u32, tj: u32, ok: bool) -> vec4<f32> {
    return gather4(s.px.base, o, s.px.i - i32(ti) * s.de.x, s.px.j - i32(tj) * s.de.y, p.s.oh, p.s.ow, ok && ti < s.taps.x);
}

// Column (n, a, b) of the phase is input pixel (ri + sh·a, rj + sw·b).
fn gin_store(z: u32, m: u32, col: u32, v: vec4<f32>) {
    let ch = group(z) * cg() + m;
    let r = phase_rows(z);
    let c = phase_cols(z);
    let ph = (z / p.splits) % p.phases;
    let area = r.len * c.len;
    if (m >= p.gm || area == 0u) {
        return;
    }
    let base = (z % p.splits) * p.out_len;
    for (var d = 0u; d < 4u; d++) {
        let col_d = col + d;
        let n = col_d / area;
        let q = col_d - n * area;
        let a = q / c.len;
        if (n < p.s.n) {
            let ih = ph / p.s.sw + p.s.sh * a;
            let iw = ph % p.s.sw + p.s.sw * (q - a * c.len);
            out[base + (n * p.s.c_in + ch) * p.s.h * p.s.w + ih * p.s.w + iw] = v[d];
        }
    }
}

// The phased GEMM's K positions: (o, ti, tj, the phase's taps along j). Past the phase's
// K, ti reaches its tap count and loads zeros.

fn ginx_pos_k(z: u32, k: u32) -> vec4<u32> {
    let cols = max(phase_cols(z).taps, 1u);
    let t = k / og();
    return vec4<u32>(k - t * og(), t / cols, t % cols, cols);
}

// With og ≥ GEMM_DEPTH a step carries o at most once into tj, and tj at most once into
// ti: no division. Fewer output channels (uniform across the dispatch) carry several taps
// at once and divide.
fn ginx_pos_next(z: u32, q: vec4<u32>) -> vec4<u32> {
    let o = q.x + GEMM_DEPTH % og();
    let co = o >= og();
    let tj = q.z + GEMM_DEPTH / og() + u32(co);
    let o_next = select(o, o - og(), co);
    if (og() < GEMM_DEPTH) {
        return vec4<u32>(o_next, q.y + tj / q.w, tj % q.w, q.w);
    }
    let cj = tj >= q.w;
    return vec4<u32>(o_next, q.y + u32(cj), select(tj, tj - q.w, cj), q.w);
}

// The position after q = (o, ti, tj) in a phase with `cols` taps along j.
fn next_o(q: vec3<u32>, cols: u32) -> vec3<u32> {
    let wo = q.x + 1u == og();
    let wj = wo && q.z + 1u == cols;
    return vec3<u32>(select(q.x + 1u, 0u, wo), q.y + u32(wj), select(q.z + u32(wo), 0u, wj));
}

fn ginx_a_at(z: u32, m: u32) -> GinRow {
    return gin_a_at(z, m);
}

fn ginx_a(z: u32, s: GinRow, q: vec4<u32>) -> vec4<f32> {
    let q0 = q.xyz;
    let q1 = next_o(q0, q.w);
    let q2 = next_o(q1, q.w);
    let q3 = next_o(q2, q.w);
    return gin_row4(s, vec4<u32>(q0.x, q1.x, q2.x, q3.x), vec4<u32>(q0.y, q1.y, q2.y, q3.y), vec4<u32>(q0.z, q1.z, q2.z, q3.z), vec4<bool>(true));
}

fn ginx_b_at(z: u32, col: u32) -> GinCols {
    return gin_b_at(z, col);
}

fn ginx_b(z: u32, s: GinCols, q: vec4<u32>) -> vec4<f32> {
    return gin_cols4(s, q.x, q.y, q.z, true);
}

// ---- grad input through a column buffer (col2im), for layers of few channels whose
// input gradient would spend most products on padding taps or empty tile rows: cols[n, g·cg·kk + m, pix] = Σ_o w[g·og+o, m] · gy[n, g·og+o, pix] for m =
// (c, ki, kj), a GEMM of K = og with no padded taps; then `col2im` sums each input pixel's
// taps out of it. A is w with its rows along K (stored [k, m]), B is gy ([k, pixels]).

// The first of four rows m.. of A at k = 0, and how many of the four are rows of A.
fn gcol_a_at(z: u32, m: u32) -> vec2<u32> {
    return vec2<u32>(group(z) * og() * p.gm + m, select(0u, p.gm - m, m < p.gm));
}

fn gcol_a(z: u32, s: vec2<u32>, k: u32) -> vec4<f32> {
    let d = vec4<u32>(0u, 1u, 2u, 3u);
    return lhs4(Quad(s.x + k * p.gm + d, (d < vec4<u32>(s.y)) & vec4<bool>(k < p.gk)));
}

// Four columns (n, pix) of B: where gy's plane of the group's first output channel
// starts for each, and which are columns of B.
struct Cols4 {
    base: vec4<u32>,
    ok: vec4<bool>,
}

fn gcol_b_at(z: u32, col: u32) -> Cols4 {
    let ohw = max(p.s.oh * p.s.ow, 1u);
    let c = vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u);
    let n = c / ohw;
    return Cols4((n * p.s.c_out + group(z) * og()) * ohw + c - n * ohw, c < vec4<u32>(p.gn));
}

fn gcol_b(z: u32, s: Cols4, k: u32) -> vec4<f32> {
    return rhs4(Quad(s.base + k * p.s.oh * p.s.ow, s.ok & vec4<bool>(k < p.gk)));
}

fn gcol_store(z: u32, m: u32, col: u32, v: vec4<f32>) {
    let kk = p.s.kh * p.s.kw;
    store4(z, m, col, v, group(z) * p.gm + m, p.s.c_in * kk, p.s.oh * p.s.ow);
}

// One thread per input value (n, c, ih, iw): the sum over its taps of cols[n, c·kk + tap,
// ((ih + ph − ki·dh) / sh, (iw + pw − kj·dw) / sw)] where that output pixel exists (the
// divisions exact).
@compute @workgroup_size(256)
fn col2im(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_index(wid, lid, nwg);
    let hw = p.s.h * p.s.w;
    if (q >= p.s.n * p.s.c_in * hw) {
        return;
    }
    let cell = plane_cell(q, p.s.h, p.s.w);
    let kk = p.s.kh * p.s.kw;
    let ohw = p.s.oh * p.s.ow;
    var acc = 0.0;
    for (var ki = 0u; ki < p.s.kh; ki++) {
        let ti = i32(cell.y + p.s.ph) - i32(ki * p.s.dh);
        let oi = u32(ti) / p.s.sh;
        if (ti < 0 || oi * p.s.sh != u32(ti) || oi >= p.s.oh) {
            continue;
        }
        let row = (cell.x * kk + ki * p.s.kw) * ohw + oi * p.s.ow;
        for (var kj = 0u; kj < p.s.kw; kj++) {
            let tj = i32(cell.z + p.s.pw) - i32(kj * p.s.dw);
            let oj = u32(tj) / p.s.sw;
            if (tj >= 0 && oj * p.s.sw == u32(tj) && oj < p.s.ow) {
                acc += rhs[row + kj * ohw + oj];
            }
        }
    }
    out[q] = acc;
}

// ---- grad weight: A = gy rows over k = (n, pix), B = x gathered at k for column
// (c, ki, kj).

fn gw_a_at(z: u32, m: u32) -> Line {
    let ohw = p.s.oh * p.s.ow;
    return Line((group(z) * og() + m) * ohw, p.s.c_out * ohw, m < p.gm);
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
    return Tap((group(z) * cg() + tap.y) * p.s.h * p.s.w, i32(tap.z * p.s.dh) - i32(p.s.ph), i32(tap.w * p.s.dw) - i32(p.s.pw), col < p.gn);
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
    let o = (z % p.splits) * p.out_len + (group(z) * og() + m) * p.gn + col;
    for (var d = 0u; d < 4u; d++) {
        if (col + d < p.gn) {
            out[o + d] = v[d];
        }
    }
}
