// Batched matmul C[b] = op(A[b]) · op(B[b]): 64×64 output tiles per 16×16 workgroup,
// 4×4 outputs per thread held in vec4 registers, 16-deep K slices staged in workgroup
// memory. Loads are arranged so that neighbouring threads read neighbouring addresses
// for either transpose flag.

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

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;

// As[kk * TM + i], Bs[kk * TN + j]
var<workgroup> As: array<f32, 1024>;
var<workgroup> Bs: array<f32, 1024>;

fn load_a(batch: u32, i: u32, kk: u32) -> f32 {
    if (i >= p.m || kk >= p.k) {
        return 0.0;
    }
    let base = batch * p.a_stride;
    if (p.trans_a != 0u) {
        return a[base + kk * p.m + i];
    }
    return a[base + i * p.k + kk];
}

fn load_b(batch: u32, kk: u32, j: u32) -> f32 {
    if (j >= p.n || kk >= p.k) {
        return 0.0;
    }
    let base = batch * p.b_stride;
    if (p.trans_b != 0u) {
        return b[base + j * p.k + kk];
    }
    return b[base + kk * p.n + j];
}

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let batch = wid.z + p.batch_offset;
    let row0 = wid.y * TM;
    let col0 = wid.x * TN;
    let t = lid.y * 16u + lid.x;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        for (var q = 0u; q < 4u; q++) {
            let e = t + 256u * q;
            // A: the contiguous index runs fastest across threads.
            var i = e % TM;
            var kk = e / TM;
            if (p.trans_a == 0u) {
                i = e / TK;
                kk = e % TK;
            }
            As[kk * TM + i] = load_a(batch, row0 + i, k0 + kk);
            var j = e % TN;
            var kb = e / TN;
            if (p.trans_b != 0u) {
                j = e / TK;
                kb = e % TK;
            }
            Bs[kb * TN + j] = load_b(batch, k0 + kb, col0 + j);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let ar = kk * TM + lid.y * 4u;
            let br = kk * TN + lid.x * 4u;
            let av = vec4<f32>(As[ar], As[ar + 1u], As[ar + 2u], As[ar + 3u]);
            let bv = vec4<f32>(Bs[br], Bs[br + 1u], Bs[br + 2u], Bs[br + 3u]);
            acc0 += av.x * bv;
            acc1 += av.y * bv;
            acc2 += av.z * bv;
            acc3 += av.w * bv;
        }
        workgroupBarrier();
    }
    let out = batch * p.m * p.n;
    let r0 = row0 + lid.y * 4u;
    let c0 = col0 + lid.x * 4u;
    let rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var r = 0u; r < 4u; r++) {
        if (r0 + r < p.m) {
            for (var q = 0u; q < 4u; q++) {
                if (c0 + q < p.n) {
                    c[out + (r0 + r) * p.n + c0 + q] = rows[r][q];
                }
            }
        }
    }
}
