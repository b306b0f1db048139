// Batched matmul C[b] = op(A[b]) · op(B[b]). The tiled loop itself is generated
// (crates/kernels/src/gemm_gen.rs, appended to this file): one entry point per transpose
// combination and tile size, so loads stay coalesced for either memory order. This file
// supplies the operands and the store for it; workgroup z is the batch.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    trans_a: u32,
    trans_b: u32,
    a_stride: u32,
    b_stride: u32,
    batch_offset: u32,
}

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

fn gemm_load_a(z: u32, i: u32, kk: u32) -> f32 {
    if (i >= p.m || kk >= p.k) {
        return 0.0;
    }
    let base = (z + p.batch_offset) * p.a_stride;
    if (p.trans_a != 0u) {
        return a[base + kk * p.m + i];
    }
    return a[base + i * p.k + kk];
}

fn gemm_load_b(z: u32, kk: u32, j: u32) -> f32 {
    if (j >= p.n || kk >= p.k) {
        return 0.0;
    }
    let base = (z + p.batch_offset) * p.b_stride;
    if (p.trans_b != 0u) {
        return b[base + j * p.k + kk];
    }
    return b[base + kk * p.n + j];
}

fn gemm_store(z: u32, i: u32, j: u32, v: f32) {
    if (i < p.m && j < p.n) {
        c[(z + p.batch_offset) * p.m * p.n + i * p.n + j] = v;
    }
}
