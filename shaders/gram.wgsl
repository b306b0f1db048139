// Gram matrices G[n] = F[n] · F[n]ᵀ of [N, C, HW] features, through the generated tiled
// GEMM. Only tiles on or above the diagonal compute (the others return at once) and each result is stored at (i, j) and
// (j, i). Split-K: workgroup z = image · splits + split; split s sums k in its range into
// its own partial [N, C, C] (the host sums the splits), because C × C is small next to
// HW in style transfer.

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    splits: u32,
    k_per_split: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> f: array<f32>;
@group(0) @binding(2) var<storage, read_write> g: array<f32>;

// The interface of the generated GEMM (crates/kernels/src/gemm_gen.rs, appended to this
// file): A = F and B = Fᵀ of image z / splits.
fn gemm_skip(z: u32, tile: vec3<u32>) -> bool {
    return tile.x < tile.y;
}

fn gemm_k_range(z: u32) -> vec2<u32> {
    let begin = (z % p.splits) * p.k_per_split;
    return vec2<u32>(begin, min(begin + p.k_per_split, p.hw));
}

fn load(img: u32, row: u32, k: u32) -> f32 {
    if (row >= p.c || k >= p.hw) {
        return 0.0;
    }
    return f[(img * p.c + row) * p.hw + k];
}

fn gemm_load_a(z: u32, i: u32, k: u32) -> f32 {
    return load(z / p.splits, i, k);
}

fn gemm_load_b(z: u32, k: u32, j: u32) -> f32 {
    return load(z / p.splits, j, k);
}

// On diagonal tiles (i, j) and (j, i) both get computed, with the same products in the
// same order, so the two writes agree.
fn gemm_store(z: u32, i: u32, j: u32, v: f32) {
    if (i < p.c && j < p.c && j >= i) {
        let base = ((z % p.splits) * p.n + z / p.splits) * p.c * p.c;
        g[base + i * p.c + j] = v;
        g[base + j * p.c + i] = v;
    }
}
