"""Writes the hand-written matmul variants that gemm_lab times (2026-11-22, first H100 run):
python3 variants.py DIR.
128x128 tile, 8x8 outputs per thread, A [m,k] and B [k,n] in full tiles only."""
import sys
out = sys.argv[1]
HEAD = """// entry: mm tile: 128
struct Params { m: u32, n: u32, k: u32, a_stride: u32, b_stride: u32, batch_offset: u32, }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;
"""
def variant(bk, double, scalar=False, guard=False):
    # A slice: 128 rows x bk k = 32*bk vec4 ; per thread bk/8 vec4 loads of A (k-contiguous) and of B.
    per = bk // 8   # vec4 loads per thread per operand per slice
    nbuf = 2 if double else 1
    s = HEAD
    if scalar:
        s = s.replace("read> a: array<vec4<f32>>", "read> a: array<f32>").replace("read> b: array<vec4<f32>>", "read> b: array<f32>")
        s += "fn ld_a(i: u32) -> vec4<f32> { return vec4<f32>(" + ", ".join(f"a[4u * i + {d}u]" for d in range(4)) + "); }\n"
        s += "fn ld_b(i: u32) -> vec4<f32> { return vec4<f32>(" + ", ".join(f"b[4u * i + {d}u]" for d in range(4)) + "); }\n"
        if guard:
            s = s.replace("fn ld_a(i: u32) -> vec4<f32> { return vec4<f32>(" + ", ".join(f"a[4u * i + {d}u]" for d in range(4)) + "); }\n",
              "fn g_a(j: u32) -> f32 { if (j < p.m * p.k) { return a[j]; } return 0.0; }\nfn ld_a(i: u32) -> vec4<f32> { return vec4<f32>(" + ", ".join(f"g_a(4u * i + {d}u)" for d in range(4)) + "); }\n")
            s = s.replace("fn ld_b(i: u32) -> vec4<f32> { return vec4<f32>(" + ", ".join(f"b[4u * i + {d}u]" for d in range(4)) + "); }\n",
              "fn g_b(j: u32) -> f32 { if (j < p.k * p.n) { return b[j]; } return 0.0; }\nfn ld_b(i: u32) -> vec4<f32> { return vec4<f32>(" + ", ".join(f"g_b(4u * i + {d}u)" for d in range(4)) + "); }\n")
    s += f"var<workgroup> As: array<vec4<f32>, {32*bk*nbuf}>;\nvar<workgroup> Bs: array<vec4<f32>, {32*bk*nbuf}>;\n"
    s += "@compute @workgroup_size(16, 16)\nfn mm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {\n"
    s += "    let t = lid.y * 16u + lid.x;\n    let row0 = wid.y * 128u;\n    let col0 = wid.x * 128u;\n    let K = p.k;\n    let N4 = p.n / 4u;\n    let K4 = K / 4u;\n"
    # A loads: element e = t + 256*i over (row, kq): kq = e % (bk/4), row = e / (bk/4)
    q = bk // 4
    for i in range(per):
        s += f"    let ar{i} = (t + {256*i}u) / {q}u;\n    let akq{i} = (t + {256*i}u) % {q}u;\n"
        s += f"    let abase{i} = (row0 + ar{i}) * K4 + akq{i};\n"
        s += f"    let bk{i} = (t + {256*i}u) / 32u;\n    let bc{i} = t % 32u;\n"
        s += f"    let bbase{i} = bk{i} * N4 + col0 / 4u + bc{i};\n"
    for r in range(8):
        for h in range(2):
            s += f"    var c{r}_{h} = vec4<f32>(0.0);\n"
    def loads(k0expr):
        out = ""
        for i in range(per):
            out += f"        na{i} = a[abase{i} + ({k0expr}) / 4u];\n        nb{i} = b[bbase{i} + ({k0expr}) * N4];\n"
        return out
    for i in range(per):
        s += f"    var na{i} = a[abase{i}];\n    var nb{i} = b[bbase{i}];\n"
    def put(buf):
        out = ""
        off = buf * 32 * bk
        for i in range(per):
            for d, comp in enumerate("xyzw"):
                # As[k][row/4][row%4]: vec4 index k*32 + row/4
                out += f"        As[{off}u + (akq{i} * 4u + {d}u) * 32u + ar{i} / 4u][ar{i} % 4u] = na{i}.{comp};\n"
            out += f"        Bs[{off}u + bk{i} * 32u + bc{i}] = nb{i};\n"
        return out
    def compute(buf):
        out = ""
        off = buf * 32 * bk
        for kk in range(bk):
            out += "        {\n"
            for band in range(2):
                out += f"            let a{band} = As[{off + kk*32 + band*16}u + lid.y];\n            let b{band} = Bs[{off + kk*32 + band*16}u + lid.x];\n"
            for band in range(2):
                for r, comp in enumerate("xyzw"):
                    for h in range(2):
                        out += f"            c{band*4+r}_{h} += a{band}.{comp} * b{h};\n"
            out += "        }\n"
        return out
    if not double:
        s += f"    for (var k0 = 0u; k0 < K; k0 += {bk}u) {{\n"
        s += put(0)
        s += "        workgroupBarrier();\n"
        s += f"        if (k0 + {bk}u < K) {{\n" + loads(f"k0 + {bk}u").replace("        ", "            ", ) + "        }\n"
        s += compute(0)
        s += "        workgroupBarrier();\n    }\n"
    else:
        # Two LDS buffers: slice s lives in buffer s % 2; one barrier per slice.
        s += put(0)
        s += "    workgroupBarrier();\n"
        s += f"    for (var k0 = 0u; k0 < K; k0 += {2*bk}u) {{\n"
        s += f"        if (k0 + {bk}u < K) {{\n" + loads(f"k0 + {bk}u") + "        }\n"
        s += compute(0)
        s += f"        if (k0 + {bk}u < K) {{\n" + put(1) + "        }\n"
        s += "        workgroupBarrier();\n"
        s += f"        if (k0 + {2*bk}u < K) {{\n" + loads(f"k0 + {2*bk}u") + "        }\n"
        s += f"        if (k0 + {bk}u < K) {{\n" + compute(1) + "        }\n"
        s += f"        if (k0 + {2*bk}u < K) {{\n" + put(0) + "        }\n"
        s += "        workgroupBarrier();\n    }\n"
    for band in range(2):
        for r in range(4):
            for h in range(2):
                s += f"    c[(row0 + {band*64}u + lid.y * 4u + {r}u) * N4 + col0 / 4u + {h*16}u + lid.x] = c{band*4+r}_{h};\n"
    s += "}\n"
    if scalar:
        import re
        s = re.sub(r"= a\[([^;]*)\];", lambda m: "= ld_a(" + m.group(1) + ");", s)
        s = re.sub(r"= b\[([^\]]*)\];", lambda m: "= ld_b(" + m.group(1) + ");", s)
    return s
open(out + "/v1_vec4_bk8.wgsl","w").write(variant(8, False))
open(out + "/v2_vec4_bk16.wgsl","w").write(variant(16, False))
open(out + "/v3_vec4_bk8_double.wgsl","w").write(variant(8, True))
open(out + "/v4_vec4_bk16_double.wgsl","w").write(variant(16, True))
open(out + "/v5_scalar_bk8.wgsl","w").write(variant(8, False, scalar=True))
open(out + "/v6_scalar_guard_bk8.wgsl","w").write(variant(8, False, scalar=True, guard=True))
