// Sum or max over the middle axis of an [outer, len, inner] view.
//   reduce_cols: one thread per output and chunk of the axis, for many outputs or short
//   axes, with four sums in flight: a thread per output alone summed 100 split-K
//   partials of a LeNet weight gradient in 26 µs of an H100, waiting on each load;
//   reduce_rows: one workgroup per output and chunk of the axis with a shared-memory tree,
//   for long axes. With several chunks it writes [outer, chunks, inner] partial results
//   that a second pass reduces: one workgroup alone on a 2M-value axis took 0.35 ms of an
//   H100 (an eighth of a style step went on such sums).

// p's type is declared in crates/kernels/src/reduce.rs (wgsl_struct!); source.rs puts
// its WGSL before this text.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

var<workgroup> partial: array<f32, 256>;

fn combine(acc: f32, v: f32) -> f32 {
    if (p.op == 0u) {
        return acc + v;
    }
    return select(acc, v, v > acc || v != v);
}

fn identity() -> f32 {
    return select(-bitcast<f32>(0x7f800000u), 0.0, p.op == 0u);
}

@compute @workgroup_size(256)
fn reduce_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // w runs over the [outer, chunks, inner] results, which are the outputs themselves
    // when there is one chunk.
    let w = (wid.y * nwg.x + wid.x) * 256u + lid.x;
    if (w >= p.outer * p.chunks * p.inner) {
        return;
    }
    let i = w % p.inner;
    let c = (w / p.inner) % p.chunks;
    let o = w / (p.inner * p.chunks);
    let base = o * p.len * p.inner + i;
    let end = min(p.len, (c + 1u) * p.chunk);
    var l = c * p.chunk;
    var a0 = identity();
    var a1 = a0;
    var a2 = a0;
    var a3 = a0;
    for (; l + 4u <= end; l += 4u) {
        a0 = combine(a0, x[base + l * p.inner]);
        a1 = combine(a1, x[base + (l + 1u) * p.inner]);
        a2 = combine(a2, x[base + (l + 2u) * p.inner]);
        a3 = combine(a3, x[base + (l + 3u) * p.inner]);
    }
    for (; l < end; l++) {
        a0 = combine(a0, x[base + l * p.inner]);
    }
    y[w] = combine(combine(a0, a1), combine(a2, a3));
}

@compute @workgroup_size(256)
fn reduce_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = wid.y * nwg.x + wid.x;
    let o = w / p.chunks;
    let c = w % p.chunks;
    // Every thread of the workgroup takes part in the barriers, even past the end.
    let live = o < p.outer * p.inner;
    let base = (o / p.inner) * p.len * p.inner + o % p.inner;
    var acc = identity();
    if (live) {
        let end = min(p.len, (c + 1u) * p.chunk);
        for (var l = c * p.chunk + lid.x; l < end; l += 256u) {
            acc = combine(acc, x[base + l * p.inner]);
        }
    }
    partial[lid.x] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid.x < s) {
            partial[lid.x] = combine(partial[lid.x], partial[lid.x + s]);
        }
        workgroupBarrier();
    }
    if (lid.x == 0u && live) {
        y[((o / p.inner) * p.chunks + c) * p.inner + o % p.inner] = partial[0];
    }
}
