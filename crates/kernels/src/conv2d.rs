//! Host side of `shaders/conv2d.wgsl`: forward, input gradient and weight gradient as
//! modes of one implicit-GEMM kernel. The input gradient takes one of three forms: at
//! stride 1, by stride phases, or through a column buffer and `col2im` (few channels).

use fovea_core::backend::{BinaryOp, BinaryParams, Conv2dParams, ReduceOp, ReduceParams, Storage};
use fovea_core::Result;

use crate::context::{buf, Ctx};
use crate::source::{CONV2D, CONV2D_ENTRIES, TILE_COUNT};

/// Aim for at least this many workgroups before splitting K.
const TARGET_WORKGROUPS: usize = 256;

/// Shortest K range one split handles (keeps the partial sums few and the reduce cheap).
const MIN_K_PER_SPLIT: usize = 256;

/// Most values the col2im input gradient's column buffer may take (64 MiB).
const MAX_COLS: usize = 16 << 20;

/// The cost of one column-buffer value, written and read back, in GEMM products. Measured
/// on an H100 (benches/RESULTS.md, 2026-11-23, commit 467ab27): col2im won on the style example's conv1_1
/// (3 ← 64 channels; 0.099 against 0.270 ms) and lost on LeNet's C3 (6 ← 16, 5×5; 0.064
/// against 0.050 ms), which puts this between 40 and 60. (Lavapipe's is nearer 3, but CI
/// runs there to cover every path, not to be fast.)
const COL_VALUE_COST: usize = 48;

/// How many times the col2im input gradient's cost (its products plus its column buffer)
/// the implicit GEMM's products (empty tile rows and padded taps included) must reach for
/// col2im to run instead, in fourths: the margin pays for its second dispatch.
const COLS_GAIN_FOURTHS: usize = 5;

wgsl_struct! {
    /// The convolution's geometry as the shaders read it: the first member of the
    /// parameters of `conv2d.wgsl` and `conv2d_depthwise.wgsl`.
    pub(crate) struct ConvShape {
        n: u32,
        c_in: u32,
        h: u32,
        w: u32,
        c_out: u32,
        oh: u32,
        ow: u32,
        groups: u32,
        kh: u32,
        kw: u32,
        sh: u32,
        sw: u32,
        ph: u32,
        pw: u32,
        dh: u32,
        dw: u32,
    }
}

impl ConvShape {
    pub(crate) fn new(cp: &Conv2dParams) -> ConvShape {
        let u = |v: usize| v as u32;
        ConvShape {
            n: u(cp.n),
            c_in: u(cp.c_in),
            h: u(cp.h),
            w: u(cp.w),
            c_out: u(cp.c_out),
            oh: u(cp.oh),
            ow: u(cp.ow),
            groups: u(cp.groups),
            kh: u(cp.kernel[0]),
            kw: u(cp.kernel[1]),
            sh: u(cp.stride[0]),
            sw: u(cp.stride[1]),
            ph: u(cp.padding[0]),
            pw: u(cp.padding[1]),
            dh: u(cp.dilation[0]),
            dw: u(cp.dilation[1]),
        }
    }
}

wgsl_struct! {
    /// The parameters of `conv2d.wgsl`.
    pub(crate) struct Params {
        s: ConvShape,
        gm: u32,
        gn: u32,
        gk: u32,
        splits: u32,
        k_per_split: u32,
        out_len: u32,
        /// the period of this mode's lhs lines (see conv2d.wgsl's Line)
        line: u32,
        phases: u32,
        /// 1: each phase sums exactly its own taps (the `ginx` entries)
        exact: u32,
        /// 1: the forward adds `bias` (binding 4) to the first split's sums
        bias: u32,
    }
}

/// Taps of one axis (`k` of them, dilation `d`) that reach the input positions
/// ≡ r (mod stride `s`) in the input gradient: those with r + pad − t·d a multiple of s.
fn phase_taps(r: usize, s: usize, pad: usize, d: usize, k: usize) -> usize {
    (0..k)
        .filter(|&t| (r + pad + t * d * (s - 1)).is_multiple_of(s))
        .count()
}

/// Taps summed over the `size` positions of one axis: Σ over phases r of the phase's
/// positions times its taps (`size · k` at stride 1).
fn axis_taps(size: usize, s: usize, pad: usize, d: usize, k: usize) -> usize {
    (0..s.min(size))
        .map(|r| (size - r).div_ceil(s) * phase_taps(r, s, pad, d, k))
        .sum()
}

/// The most taps any phase of one axis takes (at least 1), which sizes the phased GEMM's K.
fn most_taps(s: usize, pad: usize, d: usize, k: usize) -> usize {
    (0..s)
        .map(|r| phase_taps(r, s, pad, d, k))
        .max()
        .unwrap_or(0)
        .max(1)
}

/// The modes, in the order of `CONV2D_ENTRIES`.
#[derive(Clone, Copy)]
enum Mode {
    Forward = 0,
    GradWeight = 1,
    /// The input gradient at stride 1: one phase, every tap, plainer loads.
    GradInput1 = 2,
    /// The input gradient at larger strides, by phases, each over exactly its own taps.
    GradInputPhased = 3,
    /// The column buffer of the col2im input gradient (see conv2d.wgsl).
    GradCols = 4,
}

impl Mode {
    /// Its entries, one per tile.
    fn entries(self) -> &'static [crate::gemm_gen::GemmEntry] {
        &CONV2D_ENTRIES[self as usize * TILE_COUNT..][..TILE_COUNT]
    }
}

fn run(
    ctx: &Ctx,
    mode: Mode,
    lhs: &Storage,
    rhs: &Storage,
    bias: Option<&Storage>,
    cp: &Conv2dParams,
    out_len: usize,
) -> Result<Storage> {
    if out_len == 0 {
        // An empty result (no images, channels or pixels): no tiles to share out.
        return ctx.alloc(0);
    }
    let (cg, og) = (cp.c_in / cp.groups, cp.c_out / cp.groups);
    let kk = cp.kernel[0] * cp.kernel[1];
    let [sh, sw] = cp.stride;
    // The input gradient runs one GEMM per stride phase (see conv2d.wgsl), each over its
    // own taps and pixels; sized here by the largest.
    let (phases, tap_rows, tap_cols) = match mode {
        Mode::GradInput1 | Mode::GradInputPhased => (
            sh * sw,
            most_taps(sh, cp.padding[0], cp.dilation[0], cp.kernel[0]),
            most_taps(sw, cp.padding[1], cp.dilation[1], cp.kernel[1]),
        ),
        _ => (1, cp.kernel[0], cp.kernel[1]),
    };
    // The GEMM's sizes, and the period of the lhs lines (k = (quotient, remainder) by
    // it; see conv2d.wgsl's Line): the forward's weight rows are whole lines, the stride-1
    // input gradient's repeat per output channel, the weight gradient's per image. The
    // phased input gradient and the column GEMM read no lines.
    let phase_pixels = cp.n * cp.h.div_ceil(sh) * cp.w.div_ceil(sw);
    let (gm, gn, gk, line) = match mode {
        Mode::Forward => (og, cp.n * cp.oh * cp.ow, cg * kk, cg * kk),
        Mode::GradInput1 => (cg, phase_pixels, og * kk, kk),
        Mode::GradInputPhased => (cg, phase_pixels, og * tap_rows * tap_cols, 1),
        Mode::GradWeight => (og, cg * kk, cp.n * cp.oh * cp.ow, cp.oh * cp.ow),
        Mode::GradCols => (cg * kk, cp.n * cp.oh * cp.ow, og, 1),
    };
    if gk == 0 {
        // An empty reduction (no input channels or no pixels): the result is all zeros,
        // plus the bias.
        let zeros = crate::elementwise::fill(ctx, out_len, 0.0)?;
        return match bias {
            Some(b) => add_bias(ctx, &zeros, b, cp),
            None => Ok(zeros),
        };
    }
    let count = cp.groups * phases;
    // The weight gradient splits its long K to fill the GPU, so it need not give up the
    // big tile for want of tiles.
    let units = match mode {
        Mode::GradWeight => count * gk.div_ceil(MIN_K_PER_SPLIT).max(1),
        _ => count,
    };
    let entries = mode.entries();
    let entry = &entries[ctx.tile_for(gm, gn, units, entries)];
    let [tile_m, tile_n] = entry.edges();
    let tiles = gn.div_ceil(tile_n) * gm.div_ceil(tile_m) * count;
    let max_z = ctx.limits.max_compute_workgroups_per_dimension as usize;
    let splits = if tiles >= TARGET_WORKGROUPS {
        1
    } else {
        TARGET_WORKGROUPS
            .div_ceil(tiles)
            .min(gk.div_ceil(MIN_K_PER_SPLIT))
            .min(max_z / count)
            .max(1)
    };
    let k_per_split = gk.div_ceil(splits).next_multiple_of(crate::gemm_gen::DEPTH);
    let splits = gk.div_ceil(k_per_split).max(1);
    let u = |v: usize| v as u32;
    let p = Params {
        s: ConvShape::new(cp),
        gm: u(gm),
        gn: u(gn),
        gk: u(gk),
        splits: u(splits),
        k_per_split: u(k_per_split),
        out_len: u(out_len),
        line: u(line),
        phases: u(phases),
        exact: matches!(mode, Mode::GradInputPhased) as u32,
        bias: bias.is_some() as u32,
    };
    let partial = ctx.alloc(out_len * splits)?;
    let groups = [
        u(gn.div_ceil(tile_n)),
        u(gm.div_ceil(tile_m)),
        u(count * splits),
    ];
    let mut bindings = vec![(1, buf(lhs)), (2, buf(rhs)), (3, buf(&partial))];
    if let Mode::Forward = mode {
        // Read only with p.bias set; another buffer stands in otherwise.
        bindings.push((4, buf(bias.unwrap_or(lhs))));
    }
    ctx.dispatch(
        CONV2D,
        entry.name,
        bytemuck::bytes_of(&p),
        &bindings,
        groups,
    )?;
    if splits == 1 {
        return Ok(partial);
    }
    let sum = ReduceParams {
        outer: 1,
        len: splits,
        inner: out_len,
    };
    crate::reduce::reduce(ctx, &partial, &sum, ReduceOp::Sum)
}

/// `y` plus `bias[c]` on each channel c (a broadcasting add).
fn add_bias(ctx: &Ctx, y: &Storage, bias: &Storage, p: &Conv2dParams) -> Result<Storage> {
    let shape = vec![p.n, p.c_out, p.oh, p.ow];
    let bp = BinaryParams {
        a_strides: fovea_core::shape::contiguous_strides(&shape),
        b_strides: vec![0, 1, 0, 0],
        shape,
    };
    crate::binary::binary(ctx, y, bias, &bp, BinaryOp::Add)
}

pub fn forward(
    ctx: &Ctx,
    x: &Storage,
    w: &Storage,
    bias: Option<&Storage>,
    p: &Conv2dParams,
) -> Result<Storage> {
    run(ctx, Mode::Forward, w, x, bias, p, p.output_len())
}

/// Whether the input gradient goes through a column buffer (col2im): where the implicit
/// GEMM (`implicit`: at stride 1 or by phases) would spend more on empty tile rows and
/// padded taps (few input channels; kernels large beside the output, as in LeNet's C3)
/// than col2im spends on its buffer (few output channels make that dear), and the buffer
/// is small. Estimated (benches/RESULTS.md, 2026-11-22/23, commit 4b649b4); `FOVEA_COL2IM=0` turns it off, to
/// compare.
fn use_cols(ctx: &Ctx, p: &Conv2dParams, implicit: Mode) -> bool {
    static OFF: std::sync::LazyLock<bool> =
        std::sync::LazyLock::new(|| std::env::var("FOVEA_COL2IM").is_ok_and(|v| v == "0"));
    let (cg, og) = (p.c_in / p.groups, p.c_out / p.groups);
    let kk = p.kernel[0] * p.kernel[1];
    let [sh, sw] = p.stride;
    let outputs = p.n * p.oh * p.ow;
    let cols = p.c_in.saturating_mul(kk).saturating_mul(outputs);
    // K = og in one split (see run), and a buffer the device binds.
    if *OFF || og > MIN_K_PER_SPLIT || cols > MAX_COLS.min(ctx.max_len()) {
        return false;
    }
    let rows = |mode: Mode, m: usize, n: usize, count: usize| {
        let e = mode.entries();
        let [edge, _] = e[ctx.tile_for(m, n, count, e)].edges();
        m.next_multiple_of(edge)
    };
    let phase_pixels = p.n * p.h.div_ceil(sh) * p.w.div_ceil(sw);
    let taps = axis_taps(p.h, sh, p.padding[0], p.dilation[0], p.kernel[0])
        * axis_taps(p.w, sw, p.padding[1], p.dilation[1], p.kernel[1]);
    let implicit = rows(implicit, cg, phase_pixels, p.groups * sh * sw) * p.n * taps * og;
    let column =
        rows(Mode::GradCols, cg * kk, outputs, p.groups) * outputs * og + COL_VALUE_COST * cols;
    4 * implicit >= COLS_GAIN_FOURTHS * column
}

/// The input gradient through a column buffer: the column GEMM, then `col2im`.
fn grad_input_cols(ctx: &Ctx, gy: &Storage, w: &Storage, p: &Conv2dParams) -> Result<Storage> {
    let kk = p.kernel[0] * p.kernel[1];
    let cols = run(
        ctx,
        Mode::GradCols,
        w,
        gy,
        None,
        p,
        p.c_in * kk * p.n * p.oh * p.ow,
    )?;
    let gx = ctx.alloc(p.input_len())?;
    let params = Params {
        s: ConvShape::new(p),
        ..bytemuck::Zeroable::zeroed()
    };
    ctx.dispatch(
        CONV2D,
        "col2im",
        bytemuck::bytes_of(&params),
        &[(2, buf(&cols)), (3, buf(&gx))],
        ctx.groups_1d(p.input_len()),
    )?;
    Ok(gx)
}

pub fn grad_input(ctx: &Ctx, gy: &Storage, w: &Storage, p: &Conv2dParams) -> Result<Storage> {
    let mode = if p.stride == [1, 1] {
        Mode::GradInput1
    } else {
        Mode::GradInputPhased
    };
    if use_cols(ctx, p, mode) {
        return grad_input_cols(ctx, gy, w, p);
    }
    run(ctx, mode, w, gy, None, p, p.input_len())
}

pub fn grad_weight(ctx: &Ctx, x: &Storage, gy: &Storage, p: &Conv2dParams) -> Result<Storage> {
    run(ctx, Mode::GradWeight, gy, x, None, p, p.weight_len())
}
