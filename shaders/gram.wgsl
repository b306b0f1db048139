// Gram matrices G[n] = F[n] · F[n]ᵀ of [N, C, HW] features, through the generated tiled
// GEMM. Only tiles on or above the diagonal compute (the others return at once) and each
// result is stored at (i, j) and (j, i). Split-K: workgroup z = image · splits + split; split s sums k in its range into
// its own partial [N, C, C] (the host sums the splits), because C × C is small next to
// HW in style transfer.

// p's type is declared in crates/kernels/src/gram.rs (wgsl_struct!); source.rs puts
// its WGSL before this text.
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

// Row `row` of image z / splits: its offset, or none past the channels.
struct Row {
    base: u32,
    ok: bool,
}

fn rows_at(z: u32, row: u32) -> Row {
    return Row(((z / p.splits) * p.c + row) * p.hw, row < p.c);
}

fn f_or0(ok: bool, i: u32) -> f32 {
    if (ok) {
        return f[i];
    }
    return 0.0;
}

fn rows(z: u32, r: Row, k: u32) -> vec4<f32> {
    let q = run4(r.base + k, r.ok, k, p.hw);
    return vec4<f32>(f_or0(q.ok.x, q.idx.x), f_or0(q.ok.y, q.idx.y), f_or0(q.ok.z, q.idx.z), f_or0(q.ok.w, q.idx.w));
}

// On diagonal tiles (i, j) and (j, i) both get computed, with the same products in the
// same order, so the two writes agree.
fn mirrored_store(z: u32, i: u32, j: u32, v: vec4<f32>) {
    let base = ((z % p.splits) * p.n + z / p.splits) * p.c * p.c;
    for (var d = 0u; d < 4u; d++) {
        let jd = j + d;
        if (i < p.c && jd < p.c && jd >= i) {
            g[base + i * p.c + jd] = v[d];
            g[base + jd * p.c + i] = v[d];
        }
    }
}
