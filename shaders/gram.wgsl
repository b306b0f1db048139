// Gram matrices G[n] = F[n] · F[n]ᵀ of [N, C, HW] features. Only tiles on or above the
// diagonal compute (the others return at once) and each result is stored at (i, j) and
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

const T: u32 = 64u;
const TK: u32 = 16u;

// Fi[kk * T + i] rows of the tile's i range, Fj[kk * T + j] rows of its j range.
var<workgroup> Fi: array<f32, 1024>;
var<workgroup> Fj: array<f32, 1024>;

fn load(img: u32, row: u32, k: u32, k_end: u32) -> f32 {
    if (row >= p.c || k >= k_end) {
        return 0.0;
    }
    return f[(img * p.c + row) * p.hw + k];
}

@compute @workgroup_size(16, 16)
fn gram(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    if (wid.x < wid.y) {
        return;
    }
    let img = wid.z / p.splits;
    let split = wid.z % p.splits;
    let k_begin = split * p.k_per_split;
    let k_end = min(k_begin + p.k_per_split, p.hw);
    let i0 = wid.y * T;
    let j0 = wid.x * T;
    let t = lid.y * 16u + lid.x;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = k_begin; k0 < k_end; k0 += TK) {
        for (var q = 0u; q < 4u; q++) {
            // Neighbouring threads read neighbouring k of one row.
            let e = t + 256u * q;
            let r = e / TK;
            let kk = e % TK;
            Fi[kk * T + r] = load(img, i0 + r, k0 + kk, k_end);
            Fj[kk * T + r] = load(img, j0 + r, k0 + kk, k_end);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let ar = kk * T + lid.y * 4u;
            let br = kk * T + lid.x * 4u;
            let av = vec4<f32>(Fi[ar], Fi[ar + 1u], Fi[ar + 2u], Fi[ar + 3u]);
            let bv = vec4<f32>(Fj[br], Fj[br + 1u], Fj[br + 2u], Fj[br + 3u]);
            acc0 += av.x * bv;
            acc1 += av.y * bv;
            acc2 += av.z * bv;
            acc3 += av.w * bv;
        }
        workgroupBarrier();
    }
    let base = (split * p.n + img) * p.c * p.c;
    let r0 = i0 + lid.y * 4u;
    let c0 = j0 + lid.x * 4u;
    let rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var r = 0u; r < 4u; r++) {
        let i = r0 + r;
        if (i < p.c) {
            for (var q = 0u; q < 4u; q++) {
                let j = c0 + q;
                // On diagonal tiles (i, j) and (j, i) both get computed, with the same
                // products in the same order, so the two writes agree.
                if (j < p.c && j >= i) {
                    g[base + i * p.c + j] = rows[r][q];
                    g[base + j * p.c + i] = rows[r][q];
                }
            }
        }
    }
}
