// Conversions between f32 and f16 storage. f16 values are packed two to a u32 word (the
// even element in the low half), so every adapter stores them, with or without
// SHADER_F16. The conversions work on the bits: round to nearest, ties to even,
// overflow to infinity, subnormals kept and NaN kept quiet, exactly as the CPU's `half`
// crate, where pack2x16float leaves rounding and out-of-range values to the driver.

// p's type is declared in crates/kernels/src/cast.rs (wgsl_struct!); source.rs puts its
// WGSL before this text.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;

fn f32_to_f16(bits: u32) -> u32 {
    let sign = (bits >> 16u) & 0x8000u;
    let exp = (bits >> 23u) & 0xffu;
    let man = bits & 0x7fffffu;
    if (exp == 0xffu) {
        return sign | 0x7c00u | select(0u, 0x200u | (man >> 13u), man != 0u);
    }
    let e = i32(exp) - 112;
    if (e >= 31) {
        return sign | 0x7c00u;
    }
    if (e <= 0) {
        // A subnormal f16 (or zero): the significand with its leading one, shifted.
        if (e < -10) {
            return sign;
        }
        let m = man | 0x800000u;
        let shift = u32(14 - e);
        let half_bit = 1u << (shift - 1u);
        let rest = m & ((half_bit << 1u) - 1u);
        var h = m >> shift;
        if (rest > half_bit || (rest == half_bit && (h & 1u) != 0u)) {
            h += 1u;
        }
        return sign | h;
    }
    // A carry out of the significand moves into the exponent: 65520 rounds to infinity.
    var h = sign | (u32(e) << 10u) | (man >> 13u);
    let rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u) != 0u)) {
        h += 1u;
    }
    return h;
}

fn f16_to_f32(h: u32) -> u32 {
    let sign = (h & 0x8000u) << 16u;
    let exp = (h >> 10u) & 0x1fu;
    let man = h & 0x3ffu;
    if (exp == 0x1fu) {
        return sign | 0x7f800000u | (man << 13u);
    }
    if (exp == 0u) {
        if (man == 0u) {
            return sign;
        }
        // Subnormal: normalise the significand (its top set bit becomes the implicit one).
        let top = firstLeadingBit(man);
        let m = (man << (10u - top)) & 0x3ffu;
        return sign | ((top + 103u) << 23u) | (m << 13u);
    }
    return sign | ((exp + 112u) << 23u) | (man << 13u);
}

// One thread per output word: two f32 values in, one packed pair out.
@compute @workgroup_size(256)
fn to_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = flat_index(wid, lid, nwg);
    let i = 2u * w;
    if (i >= p.n) {
        return;
    }
    var pair = f32_to_f16(x[i]);
    if (i + 1u < p.n) {
        pair |= f32_to_f16(x[i + 1u]) << 16u;
    }
    y[w] = pair;
}

// One thread per element.
@compute @workgroup_size(256)
fn to_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(wid, lid, nwg);
    if (i >= p.n) {
        return;
    }
    y[i] = f16_to_f32((x[i / 2u] >> (16u * (i & 1u))) & 0xffffu);
}
