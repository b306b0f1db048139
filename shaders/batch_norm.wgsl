// Batch norm's per-channel primitives over an [outer, channels, inner] view.
//   channel_sums: one workgroup per channel and chunk of its outer·inner values, a
//   shared-memory tree; with several chunks the host sums the [.., channels, chunks]
//   partial results with the reduce kernel. A workgroup per channel alone would leave most
//   of a large GPU idle on the early layers (64 channels of 800 K values at batch 64).
//   channel_affine: one thread per value.
// With p.relu, a ReLU is fused in: channel_affine clamps a one-input map at zero; with the
// second input (the forward's x), both kernels read `a` as zero where the forward's value
// x·g + h (g, h: the forward's coefficients after the others) was not positive.

// p's type is declared in crates/kernels/src/batch_norm.rs (wgsl_struct!); source.rs puts
// its WGSL before this text.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
// channel_sums: the centres (ca then cb); channel_affine: the coefficients (see the
// Backend trait's channel_affine).
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> part1: array<f32, 256>;
var<workgroup> part2: array<f32, 256>;

@compute @workgroup_size(256)
fn channel_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = wid.y * nwg.x + wid.x;
    let ch = w / p.chunks;
    let chunk = w % p.chunks;
    // Every thread of the workgroup takes part in the barriers, even past the end.
    let live = ch < p.channels;
    var s1 = 0.0;
    var s2 = 0.0;
    if (live) {
        let per_channel = p.outer * p.inner;
        let end = min(per_channel, (chunk + 1u) * p.chunk);
        let ca = select(0.0, k[ch], p.two == 1u);
        let cb = select(0.0, k[p.channels + ch], p.two == 1u);
        let gated = p.two == 1u && p.relu == 1u;
        var g = 0.0;
        var h = 0.0;
        if (gated) {
            g = k[2u * p.channels + ch];
            h = k[3u * p.channels + ch];
        }
        for (var j = chunk * p.chunk + lid.x; j < end; j += 256u) {
            let i = (j / p.inner) * p.channels * p.inner + ch * p.inner + j % p.inner;
            var va = a[i];
            if (p.two == 1u) {
                let vb = b[i];
                if (gated && !(vb * g + h > 0.0)) {
                    va = 0.0;
                }
                s2 += (va - ca) * (vb - cb);
            }
            s1 += va;
        }
    }
    part1[lid.x] = s1;
    part2[lid.x] = s2;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid.x < s) {
            part1[lid.x] += part1[lid.x + s];
            part2[lid.x] += part2[lid.x + s];
        }
        workgroupBarrier();
    }
    if (live && lid.x == 0u) {
        out[ch * p.chunks + chunk] = part1[0];
        if (p.two == 1u) {
            out[(p.channels + ch) * p.chunks + chunk] = part2[0];
        }
    }
}

@compute @workgroup_size(256)
fn channel_affine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(wid, lid, nwg);
    if (i >= p.outer * p.channels * p.inner) {
        return;
    }
    let ch = (i / p.inner) % p.channels;
    let c = p.channels;
    if (p.two == 1u) {
        let vb = b[i];
        var va = a[i];
        if (p.relu == 1u && !(vb * k[4u * c + ch] + k[5u * c + ch] > 0.0)) {
            va = 0.0;
        }
        out[i] = va * k[ch] + (vb - k[2u * c + ch]) * k[c + ch] + k[3u * c + ch];
    } else {
        let y = a[i] * k[ch] + k[c + ch];
        out[i] = select(y, 0.0, p.relu == 1u && !(y > 0.0));
    }
}
