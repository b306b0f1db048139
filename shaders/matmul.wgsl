// Batched matmul C[b] = op(A[b]) · op(B[b]). The tiled loop itself is generated
// (crates/kernels/src/gemm_gen.rs, appended to this file): one entry point per transpose
// combination, tile size and alignment, so loads stay coalesced for either memory order.
// This file supplies the operands and the stores for it; workgroup z is the batch.

// p's type is declared in crates/kernels/src/matmul.rs (wgsl_struct!); source.rs puts
// its WGSL before this text.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

fn gemm_skip(z: u32, tile: vec3<u32>) -> bool {
    return false;
}

fn gemm_k_range(z: u32) -> vec2<u32> {
    return vec2<u32>(0u, p.k);
}

// A thread's operand: the offset of its first value and how many of its four outer
// indices lie inside the matrix.
struct Span {
    base: u32,
    live: u32,
}

fn span(base: u32, outer: u32, len: u32) -> Span {
    return Span(base, select(0u, min(len - outer, 4u), outer < len));
}

// Contiguous along K: the thread's one outer index at k..k+4.
fn along_k(s: Span, k: u32) -> Quad {
    return run4(s.base + k, s.live != 0u, k, p.k);
}

// Contiguous along the outer index (`ld` values per k): its four outer indices at k.
fn along_outer(s: Span, k: u32, ld: u32) -> Quad {
    let d = vec4<u32>(0u, 1u, 2u, 3u);
    return Quad(s.base + k * ld + d, vec4<bool>(k < p.k) & (d < vec4<u32>(s.live)));
}

fn a_or0(ok: bool, i: u32) -> f32 {
    if (ok) {
        return a[i];
    }
    return 0.0;
}

fn b_or0(ok: bool, i: u32) -> f32 {
    if (ok) {
        return b[i];
    }
    return 0.0;
}

fn from_a(q: Quad) -> vec4<f32> {
    return vec4<f32>(a_or0(q.ok.x, q.idx.x), a_or0(q.ok.y, q.idx.y), a_or0(q.ok.z, q.idx.z), a_or0(q.ok.w, q.idx.w));
}

fn from_b(q: Quad) -> vec4<f32> {
    return vec4<f32>(b_or0(q.ok.x, q.idx.x), b_or0(q.ok.y, q.idx.y), b_or0(q.ok.z, q.idx.z), b_or0(q.ok.w, q.idx.w));
}

// A stored [m, k]: row i, values k..k+4.
fn a_n_at(z: u32, i: u32) -> Span {
    return span((z + p.batch_offset) * p.a_stride + i * p.k, i, p.m);
}

fn a_n(z: u32, s: Span, k: u32) -> vec4<f32> {
    return from_a(along_k(s, k));
}

// A stored [k, m]: rows i..i+4 at k.
fn a_t_at(z: u32, i: u32) -> Span {
    return span((z + p.batch_offset) * p.a_stride + i, i, p.m);
}

fn a_t(z: u32, s: Span, k: u32) -> vec4<f32> {
    return from_a(along_outer(s, k, p.m));
}

// B stored [k, n]: columns j..j+4 at k.
fn b_n_at(z: u32, j: u32) -> Span {
    return span((z + p.batch_offset) * p.b_stride + j, j, p.n);
}

fn b_n(z: u32, s: Span, k: u32) -> vec4<f32> {
    return from_b(along_outer(s, k, p.n));
}

// B stored [n, k]: column j, values k..k+4.
fn b_t_at(z: u32, j: u32) -> Span {
    return span((z + p.batch_offset) * p.b_stride + j * p.k, j, p.n);
}

fn b_t(z: u32, s: Span, k: u32) -> vec4<f32> {
    return from_b(along_k(s, k));
}

// ---- The `_v` entries: m, n and k are multiples of 4, so every group of four values lies
// wholly inside or wholly outside its matrix, and one guard and one vec4 load or store
// serve all four. The same buffers are bound as vec4 arrays (4, 5, 6) instead of 1, 2, 3.

@group(0) @binding(4) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> c4: array<vec4<f32>>;

// Four values of A from offset `first` (a multiple of 4), or zeros.
fn a4_or0(ok: bool, first: u32) -> vec4<f32> {
    if (ok) {
        return a4[first / 4u];
    }
    return vec4<f32>(0.0);
}

fn b4_or0(ok: bool, first: u32) -> vec4<f32> {
    if (ok) {
        return b4[first / 4u];
    }
    return vec4<f32>(0.0);
}

// The set-ups are the scalar loads' own.
fn a_n4_at(z: u32, i: u32) -> Span {
    return a_n_at(z, i);
}

fn a_t4_at(z: u32, i: u32) -> Span {
    return a_t_at(z, i);
}

fn b_n4_at(z: u32, j: u32) -> Span {
    return b_n_at(z, j);
}

fn b_t4_at(z: u32, j: u32) -> Span {
    return b_t_at(z, j);
}

fn a_n4(z: u32, s: Span, k: u32) -> vec4<f32> {
    return a4_or0(s.live != 0u && k < p.k, s.base + k);
}

fn a_t4(z: u32, s: Span, k: u32) -> vec4<f32> {
    return a4_or0(s.live != 0u && k < p.k, s.base + k * p.m);
}

fn b_n4(z: u32, s: Span, k: u32) -> vec4<f32> {
    return b4_or0(s.live != 0u && k < p.k, s.base + k * p.n);
}

fn b_t4(z: u32, s: Span, k: u32) -> vec4<f32> {
    return b4_or0(s.live != 0u && k < p.k, s.base + k);
}

fn store_v(z: u32, i: u32, j: u32, v: vec4<f32>) {
    if (i < p.m && j < p.n) {
        c4[((z + p.batch_offset) * p.m * p.n + i * p.n + j) / 4u] = v;
    }
}

fn store(z: u32, i: u32, j: u32, v: vec4<f32>) {
    if (i >= p.m) {
        return;
    }
    let o = (z + p.batch_offset) * p.m * p.n + i * p.n + j;
    for (var d = 0u; d < 4u; d++) {
        if (j + d < p.n) {
            c[o + d] = v[d];
        }
    }
}
