// Fused optimizer updates, one thread per parameter value: one dispatch per parameter
// where the update written as tensor ops took up to fifteen. The arithmetic follows
// crates/core/src/cpu/optim.rs (PyTorch's single-tensor Adam and SGD). m_in/m_out hold
// Adam's first moment or SGD's momentum buffer.

// p's type is declared in crates/kernels/src/optim.rs (wgsl_struct!); source.rs puts
// its WGSL before this text.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read> m_in: array<f32>;
@group(0) @binding(4) var<storage, read> v_in: array<f32>;
@group(0) @binding(5) var<storage, read_write> param_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> m_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> v_out: array<f32>;

@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(wid, lid, nwg);
    if (i >= p.n) {
        return;
    }
    var g = grad[i];
    var w = param[i];
    if (p.weight_decay != 0.0) {
        if (p.decoupled != 0u) {
            w *= 1.0 - p.lr * p.weight_decay;
        } else {
            g += w * p.weight_decay;
        }
    }
    let m = m_in[i] + (g - m_in[i]) * (1.0 - p.beta1);
    let v = v_in[i] * p.beta2 + g * g * (1.0 - p.beta2);
    let denom = sqrt(v) / sqrt(p.bias_correction2) + p.eps;
    param_out[i] = w - p.lr / p.bias_correction1 * m / denom;
    m_out[i] = m;
    v_out[i] = v;
}

// SGD without momentum: p − lr·(g + weight_decay·p).
@compute @workgroup_size(256)
fn sgd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(wid, lid, nwg);
    if (i >= p.n) {
        return;
    }
    param_out[i] = param[i] - p.lr * (grad[i] + param[i] * p.weight_decay);
}

// SGD with momentum: the buffer (just d at the first step, when m_in stands in unread),
// then Nesterov's or the plain step.
@compute @workgroup_size(256)
fn sgd_momentum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(wid, lid, nwg);
    if (i >= p.n) {
        return;
    }
    let d = grad[i] + param[i] * p.weight_decay;
    var b = d;
    if (p.first == 0u) {
        b = m_in[i] * p.momentum + d;
    }
    var step = b;
    if (p.nesterov != 0u) {
        step = d + p.momentum * b;
    }
    param_out[i] = param[i] - p.lr * step;
    m_out[i] = b;
}
