//! Convolutions whose kernels are one row of `k` taps (a 1-D convolution is one with
//! height 1), stride 1, by Winograd's minimal filtering F(3, 3) along the rows: the
//! forward, and the input gradient (a convolution of the output gradient by the kernels
//! turned end to end, input and output channels swapped).
//!
//! The taps go in chunks of three (`J = ⌈k/3⌉`, the last chunk padded with zero taps),
//! chunk `j` reading the input three columns further than chunk `j − 1`. A tile is three
//! consecutive outputs of a row; for every chunk it reads a window of five input
//! columns, and the window of tile `q`'s chunk `j` is tile `q + j`'s window of chunk 0.
//! So each window is transformed once (`Bᵀ·d`, five values) and serves `J` tiles, and
//! for each of the five transformed positions one product multiplies the windows (tiles
//! × (chunk, input channel), a row of that matrix being `J` consecutive windows' values)
//! by the transformed kernels ((chunk, input channel) × output channels); each tile's
//! five sums give its three outputs (`Aᵀ·m`). That is `5·J` multiply-adds per three
//! outputs and channel pair where the direct products do `3·k`: 15 against 27 for a
//! kernel of 9 taps.
//!
//! The windows are laid out window by window (input channels side by side), so that the
//! product's row of tile `q` spans windows `q..q + J` in one run: the windows of a
//! block's rows follow one another, and the `J − 1` rows of the product that straddle
//! two image rows are computed and dropped.
//!
//! The points are 0, 1, −1, 2 and ∞; the sums are the direct ones' in another order, with
//! other roundings (held to the definition's 1e-4 by the tests). An infinity or NaN mixes
//! into the other outputs of its tiles, so a result that is not all finite is computed
//! again by the other paths (`None`).
//!
//! conv1d of 64 channels on 4096, 9 taps, batch 8, two threads on an Intel Xeon
//! (2026-12-05, `fovea-bench`, three alternating rounds, fastest): forward 6.55 ms against
//! PyTorch's 9.10, forward and backward 23.9 against 38.3 (9.45 against 8.43 and 28.7
//! against 28.3 by the direct products in the full set before). The product runs near the
//! multiply-add peak (single-threaded 166 GFLOP/s of about 172); the input's transposes
//! and transforms and the output transform (one pass with AVX-512) take the rest.

use rayon::prelude::*;

use super::conv2d_winograd::{backward, finished, Kernels};
use super::threads::{self, SendPtr};
use super::transpose::transpose_into;
use super::{by_cpu, recycle_scratch};
use crate::backend::Conv2dParams;
use crate::host;
use crate::Result;

/// Transformed positions per tile (window values).
pub(super) const POINTS: usize = 5;

/// Values of one block's transformed windows and products together at most (1 MiB), so
/// that both stay in the core's second-level cache between the transforms and the product.
pub(super) const BLOCK_VALUES: usize = 1 << 18;

/// Whether the forward of `p` runs here: a kernel one row high of at least five taps,
/// stride and dilation 1, one group, no padding of the height, 32 or more channels on
/// both sides, rows of at least eight tiles per product row dropped, and at most 72% of
/// the direct products' multiply-adds counting the padded taps, the cropped last tile
/// and the dropped rows of the product (9 taps on long rows: 56%; 7 taps 71%, 4 taps
/// 83%). Measured against the other paths (conv1d at batch 8, two threads, Intel Xeon,
/// 2026-12-05, fastest of two rounds of 15; length 4096 unless given): 64 channels, 9
/// taps 6.7 ms against 9.0, 11 taps 8.3 against 10.9, 7 taps 7.1 against 7.8, 5 taps
/// 5.4 against 5.7, 3 taps 4.1 against 3.9; 128 channels on 1024, 9 taps, 6.1 against
/// 8.5; 32 channels 2.1 against 2.2, 16 channels 0.97 against 0.73; 64 channels on 128
/// 0.30 against 0.49, on 32 0.19 against 0.17. Where the products are few, the
/// transforms and the copies around them cost more than the products they save.
pub(super) fn applies(p: &Conv2dParams) -> bool {
    let (k, tiles) = (p.kernel[1], p.ow.div_ceil(3));
    p.kernel[0] == 1
        && k >= 5
        && p.stride == [1, 1]
        && p.dilation == [1, 1]
        && p.groups == 1
        && p.padding[0] == 0
        // A stride set to 1 where its axis has one output leaves the sizes of another.
        && p.oh == p.h
        && p.padding[1].checked_mul(2).and_then(|d| d.checked_add(p.w)) == p.ow.checked_add(k - 1)
        && p.c_in >= 32
        && p.c_out >= 32
        && tiles >= 8 * (k.div_ceil(3) - 1)
        && share(p) <= 0.72
        && super::cpu_level() != super::Level::Base
}

/// The multiply-adds of `p` here as a share of the direct products'.
fn share(p: &Conv2dParams) -> f64 {
    let (k, q) = (p.kernel[1], p.ow.div_ceil(3));
    let j = k.div_ceil(3);
    // Per row: `q + j − 1` rows of the product, of `5·j` multiply-adds each, for `ow · k`
    // direct ones.
    ((q + j - 1) * POINTS * j) as f64 / (p.ow * k) as f64
}

/// Whether the input gradient of `p` runs here: [`applies`] to the convolution of the
/// output gradient that it is, with padding at most `k − 1`.
pub(super) fn grad_input_applies(p: &Conv2dParams) -> bool {
    p.padding[1] < p.kernel[1] && p.kernel[0] == 1 && applies(&backward(p))
}

/// The output of `p`'s convolution of `x` by `w`, or None where an output is not finite
/// (the caller then computes it another way).
pub(super) fn forward(x: &[f32], w: &[f32], p: &Conv2dParams) -> Result<Option<Vec<f32>>> {
    run(x, w, p, Kernels::Forward)
}

/// `p`'s input gradient from the output gradient `gy`, or None as for [`forward`].
pub(super) fn grad_input(gy: &[f32], w: &[f32], p: &Conv2dParams) -> Result<Option<Vec<f32>>> {
    assert!(
        p.padding[1] < p.kernel[1],
        "conv2d_winograd_rows: padding past the kernel"
    );
    run(gy, w, &backward(p), Kernels::Backward)
}

/// One image row's run of tiles in a block: output row `row` (counted across the
/// batch), tiles `q0..q1`, its windows from `off` in the block's.
#[derive(Clone, Copy, Debug)]
pub(super) struct Segment {
    pub(super) row: usize,
    pub(super) q0: usize,
    pub(super) q1: usize,
    pub(super) off: usize,
}

thread_local! {
    /// Each thread's buffers, kept from block to block and call to call (a parallel
    /// iterator's per-task ones were made, and cleared, about once per block).
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// `f` with this thread's buffers (nothing inside `f` may run a parallel loop, which
/// could start another user of them on this thread).
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with_borrow_mut(f)
}

/// A thread's buffers.
#[derive(Default)]
pub(super) struct Scratch {
    /// A segment's input columns, each one's channels side by side.
    columns: Vec<f32>,
    /// The block's transformed windows: per position, window by window, channels inside.
    v: Vec<f32>,
    /// The product's sums: per position, row by row, output channels inside.
    pub(super) m: Vec<f32>,
    /// A segment's outputs, position by position, then channel by channel (the portable
    /// route of [`outputs`]).
    pub(super) ys: Vec<f32>,
    pub(super) yt: Vec<f32>,
}

/// The convolution `p` (one row of `k` taps, stride 1) of `x` by the kernels `which`
/// makes of `w`.
fn run(x: &[f32], w: &[f32], p: &Conv2dParams, which: Kernels) -> Result<Option<Vec<f32>>> {
    assert!(
        p.kernel[0] == 1 && p.padding[0] == 0 && p.oh == p.h && p.kernel[1] >= 1,
        "conv2d_winograd_rows: not a row kernel: {p:?}"
    );
    assert!(
        x.len() >= p.input_len(),
        "conv2d_winograd_rows: input too short"
    );
    let (ci, co, chunks) = (p.c_in, p.c_out, p.kernel[1].div_ceil(3));
    let tiles = p.ow.div_ceil(3);
    let shape = Shape::new(ci, co, chunks);
    let u = kernels(w, &shape, p.kernel[1], which)?;
    let blocks = blocks(p.n * p.oh * tiles, ci + co, rayon::current_num_threads());
    let len = p.output_len();
    let mut out = host::with_capacity(len)?;
    let y = SendPtr(out.as_mut_ptr());
    let block = |s: &mut Scratch, &(g0, g1): &(usize, usize)| -> Result<bool> {
        threads::task(|| {
            let segments = segments((g0, g1), tiles, chunks);
            let last = segments.last().expect("a block holds a tile");
            // The product's rows, those straddling two segments included, rounded up to
            // whole blocks of rows; the windows they read, the last ones zeros.
            let rows = (last.off + last.q1 - last.q0).next_multiple_of(ROWS);
            let (used, windows) = (last.off + last.q1 - last.q0 + chunks - 1, rows + chunks - 1);
            grow(&mut s.v, POINTS * windows * ci)?;
            for seg in &segments {
                transformed(x, p, seg, chunks, &mut s.columns, &mut s.v, windows)?;
            }
            for v in s.v[..POINTS * windows * ci].chunks_exact_mut(windows * ci) {
                v[used * ci..].fill(0.0);
            }
            grow(&mut s.m, POINTS * rows * shape.cp)?;
            let taps: Vec<(usize, usize)> = (0..chunks).map(|j| (j, j)).collect();
            let v = (&s.v[..POINTS * windows * ci], windows * ci);
            products(v, &taps, &u, &shape, &mut s.m[..POINTS * rows * shape.cp]);
            let mut finite = true;
            for seg in &segments {
                // SAFETY: this block's tiles are its own, so the outputs it writes are
                // written by no other block; every output lies in one block's tiles.
                finite &=
                    unsafe { outputs(&s.m, (rows, shape.cp), p, seg, (&mut s.ys, &mut s.yt), y)? };
            }
            Ok(finite)
        })
    };
    let own = |b: &(usize, usize)| with_scratch(|s| block(s, b));
    let finite = if blocks.len() > 1 && !threads::nested() {
        blocks.par_iter().map(own).collect::<Result<Vec<_>>>()?
    } else {
        blocks.iter().map(own).collect::<Result<Vec<_>>>()?
    };
    // SAFETY: the blocks cover every tile of every row, and each tile writes its outputs
    // in every output channel.
    Ok(unsafe { finished(out, u, len, &finite) })
}

/// `buf` at least `len` long (its values are all written before they are read).
pub(super) fn grow(buf: &mut Vec<f32>, len: usize) -> Result<()> {
    if buf.len() < len {
        recycle_scratch(std::mem::replace(buf, host::zeros(len)?));
    }
    Ok(())
}

/// `total` tiles in blocks: a multiple of `parts` (unless there are fewer tiles), each of
/// at most [`BLOCK_VALUES`]' worth for `channels` input and output channels together.
pub(super) fn blocks(total: usize, channels: usize, parts: usize) -> Vec<(usize, usize)> {
    let most = (BLOCK_VALUES / (POINTS * channels.max(1))).max(32);
    let count = total
        .div_ceil(most)
        .next_multiple_of(parts.max(1))
        .min(total);
    (0..count)
        .map(|b| (b * total / count, (b + 1) * total / count))
        .collect()
}

/// Tiles `g0..g1` (of rows of `tiles`) as runs along rows, each run's `q1 − q0 + chunks
/// − 1` windows after the run before's.
fn segments((g0, g1): (usize, usize), tiles: usize, chunks: usize) -> Vec<Segment> {
    let (mut g, mut off, mut out) = (g0, 0, Vec::new());
    while g < g1 {
        let (row, q0) = (g / tiles, g % tiles);
        let q1 = tiles.min(q0 + g1 - g);
        out.push(Segment { row, q0, q1, off });
        off += q1 - q0 + chunks - 1;
        g += q1 - q0;
    }
    out
}

/// The transformed kernels `G·g`, as 5 matrices of (chunk, input) rows of the outputs
/// (see [`Shape`]): the forward's of weight `w` (`outs × ins × k`), or the input
/// gradient's (`w` is then `ins × outs × k`, see [`Kernels`]).
pub(super) fn kernels(w: &[f32], shape: &Shape, k: usize, which: Kernels) -> Result<Vec<f32>> {
    let (outs, ins, chunks) = (shape.co, shape.ci, shape.chunks);
    assert!(
        w.len() >= outs * ins * k && chunks == k.div_ceil(3),
        "conv2d_winograd_rows: weights too short"
    );
    let mut u = host::zeros(POINTS * shape.depth() * shape.cp)?;
    // Input `i`'s rows (one per chunk and position), each along the outputs.
    let fill = |i: usize, rows: &mut [f32]| {
        for o in 0..outs {
            let (first, turned) = match which {
                Kernels::Forward => ((o * ins + i) * k, false),
                Kernels::Backward => ((i * outs + o) * k, true),
            };
            let taps = &w[first..][..k];
            let tap = |t: usize| match t < k {
                true if turned => taps[k - 1 - t],
                true => taps[t],
                false => 0.0,
            };
            for j in 0..chunks {
                let (a, b, c) = (tap(3 * j), tap(3 * j + 1), tap(3 * j + 2));
                let g = [
                    0.5 * a,
                    0.5 * (a + b + c),
                    (a - b + c) / 6.0,
                    (a + 2.0 * b + 4.0 * c) / 6.0,
                    c,
                ];
                for (e, v) in g.into_iter().enumerate() {
                    rows[(e * chunks + j) * outs + o] = v;
                }
            }
        }
    };
    // Gathered per input, then placed: each input's rows are `outs` values apart in
    // every position's matrix.
    let one = |i: usize| {
        let mut rows = vec![0.0; POINTS * chunks * outs];
        fill(i, &mut rows);
        rows
    };
    let gathered: Vec<Vec<f32>> = if threads::nested() {
        (0..ins).map(one).collect()
    } else {
        (0..ins).into_par_iter().map(one).collect()
    };
    let (depth, cp) = (shape.depth(), shape.cp);
    for (i, rows) in gathered.iter().enumerate() {
        for (r, row) in rows.chunks_exact(outs).enumerate() {
            let (e, j) = (r / chunks, r % chunks);
            for &(c0, width) in &shape.columns {
                let dst = e * depth * cp + depth * c0 + (j * ins + i) * width;
                let row = &row[c0.min(outs)..outs.min(c0 + width)];
                u[dst..][..row.len()].copy_from_slice(row);
            }
        }
    }
    Ok(u)
}

/// Segment `seg`'s windows `Bᵀ·d` into `v` (5 positions of `windows` windows of the
/// input channels), through `columns` (its input columns, channels side by side).
fn transformed(
    x: &[f32],
    p: &Conv2dParams,
    seg: &Segment,
    chunks: usize,
    columns: &mut Vec<f32>,
    v: &mut [f32],
    windows: usize,
) -> Result<()> {
    let ci = p.c_in;
    let count = seg.q1 - seg.q0 + chunks - 1;
    // Padded columns `3·q0 ..` of five per window, three apart.
    let (first, width) = (3 * seg.q0, 3 * count + 2);
    grow(columns, width * ci)?;
    let columns = &mut columns[..width * ci];
    let pw = p.padding[1];
    // The input's columns `lo..hi` of these (zeros around them).
    let lo = first.max(pw).min(first + width);
    let hi = (first + width).min(pw + p.w).max(lo);
    columns[..(lo - first) * ci].fill(0.0);
    columns[(hi - first) * ci..].fill(0.0);
    if lo < hi {
        let (n, r) = (seg.row / p.oh, seg.row % p.oh);
        let src = &x[(n * ci * p.h + r) * p.w + lo - pw..];
        let dst = &mut columns[(lo - first) * ci..];
        transpose_into(src, p.h * p.w, (ci, hi - lo), dst, ci);
    }
    windows_of(columns, ci, (count, seg.off, windows), v);
    Ok(())
}

/// The transforms `Bᵀ·d` of `count` windows, five columns of `ci` channels each, three
/// columns apart in `columns` (channels side by side), into windows `off..` of `v` (5
/// positions of `windows` windows).
pub(super) fn windows_of(
    columns: &[f32],
    ci: usize,
    (count, off, windows): (usize, usize, usize),
    v: &mut [f32],
) {
    #[inline(always)]
    fn run<const L: usize>(
        columns: &[f32],
        ci: usize,
        (count, off, windows): (usize, usize, usize),
        v: &mut [f32],
    ) {
        let (v0, rest) = v.split_at_mut(windows * ci);
        let (v1, rest) = rest.split_at_mut(windows * ci);
        let (v2, rest) = rest.split_at_mut(windows * ci);
        let (v3, v4) = rest.split_at_mut(windows * ci);
        for i in 0..count {
            let d: [&[f32]; 5] = std::array::from_fn(|s| &columns[(3 * i + s) * ci..][..ci]);
            let at = (off + i) * ci;
            let (o0, o1) = (&mut v0[at..][..ci], &mut v1[at..][..ci]);
            let (o2, o3, o4) = (
                &mut v2[at..][..ci],
                &mut v3[at..][..ci],
                &mut v4[at..][..ci],
            );
            for c in 0..ci {
                let (d0, d1, d2, d3, d4) = (d[0][c], d[1][c], d[2][c], d[3][c], d[4][c]);
                o0[c] = 2.0 * (d0 - d2) - d1 + d3;
                o1[c] = 2.0 * d1 + d2 - d3;
                o2[c] = 3.0 * d2 - 2.0 * d1 - d3;
                o3[c] = d3 - d1;
                o4[c] = 2.0 * (d1 - d3) - d2 + d4;
            }
        }
    }
    fn at_level(columns: &[f32], ci: usize, shape: (usize, usize, usize), v: &mut [f32]) {
        by_cpu!(
            run(columns: &[f32], ci: usize, shape: (usize, usize, usize), v: &mut [f32]),
            avx512: [16],
            avx2: [8],
            base: [4]
        )
    }
    at_level(columns, ci, (count, off, windows), v)
}

/// Segment `seg`'s outputs `Aᵀ·m` from the sums `m` (5 positions of `rows` rows of the
/// output channels), written into `y` (the whole output) through `ys` and `yt`;
/// whether they were all finite.
///
/// # Safety
/// `y` points to the output of `p`, and no other thread writes this segment's outputs.
pub(super) unsafe fn outputs(
    m: &[f32],
    (rows, cp): (usize, usize),
    p: &Conv2dParams,
    seg: &Segment,
    (ys, yt): (&mut Vec<f32>, &mut Vec<f32>),
    y: SendPtr,
) -> Result<bool> {
    #[cfg(target_arch = "x86_64")]
    if super::cpu_level() == super::Level::Avx512 {
        // SAFETY: the processor has AVX-512F; the caller's contract covers `y`.
        return Ok(unsafe { zmm::outputs(m, (rows, cp), p, seg, y.get()) });
    }
    let co = p.c_out;
    let tiles = seg.q1 - seg.q0;
    let first = 3 * seg.q0;
    let kept = (3 * seg.q1).min(p.ow) - first;
    grow(ys, 3 * tiles * co)?;
    grow(yt, kept * co)?;
    #[inline(always)]
    fn run<const L: usize>(
        m: &[f32],
        (co, rows, cp): (usize, usize, usize),
        (off, tiles): (usize, usize),
        ys: &mut [f32],
        bad: &mut u32,
    ) {
        let mut worst = 0u32;
        for i in 0..tiles {
            let s: [&[f32]; 5] = std::array::from_fn(|e| &m[(e * rows + off + i) * cp..][..co]);
            let (y0, rest) = ys[3 * i * co..][..3 * co].split_at_mut(co);
            let (y1, y2) = rest.split_at_mut(co);
            for o in 0..co {
                let (m0, m1, m2, m3, m4) = (s[0][o], s[1][o], s[2][o], s[3][o], s[4][o]);
                let (a, b) = (m1 + m2, m1 - m2);
                y0[o] = m0 + a + m3;
                y1[o] = b + 2.0 * m3;
                y2[o] = a + 4.0 * m3 + m4;
                for v in [y0[o], y1[o], y2[o]] {
                    worst |= u32::from(v.to_bits() & 0x7f80_0000 == 0x7f80_0000);
                }
            }
        }
        *bad = worst;
    }
    type Sizes = (usize, usize, usize);
    fn at_level(m: &[f32], shape: Sizes, at: (usize, usize), ys: &mut [f32], bad: &mut u32) {
        by_cpu!(
            run(m: &[f32], shape: Sizes, at: (usize, usize), ys: &mut [f32], bad: &mut u32),
            avx512: [16],
            avx2: [8],
            base: [4]
        )
    }
    let mut bad = 0;
    let ys_all: &mut [f32] = &mut ys[..3 * tiles * co];
    at_level(m, (co, rows, cp), (seg.off, tiles), ys_all, &mut bad);
    transpose_into(ys_all, co, (kept, co), &mut yt[..kept * co], kept);
    let (n, r) = (seg.row / p.oh, seg.row % p.oh);
    for (o, row) in yt[..kept * co].chunks_exact(kept).enumerate() {
        let at = ((n * co + o) * p.oh + r) * p.ow + first;
        // SAFETY: inside the output (the caller's contract), and this segment's own.
        unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), y.get().add(at), kept) };
    }
    Ok(bad == 0)
}

/// The product's sizes: `ci` input and `co` output channels, `chunks` chunks of taps
/// (`depth` = chunks × inputs rows of the transformed kernels), the outputs padded to
/// `cp` (a multiple of 16) and split into `columns` (start, width) as the product
/// takes them, the transformed kernels laid out block by block of columns.
pub(super) struct Shape {
    ci: usize,
    co: usize,
    chunks: usize,
    pub(super) cp: usize,
    columns: Vec<(usize, usize)>,
}

impl Shape {
    pub(super) fn new(ci: usize, co: usize, chunks: usize) -> Shape {
        let cp = co.next_multiple_of(16);
        // With AVX-512 blocks of 64 outputs (4 vectors) and one of 16 to 48 after them;
        // the other levels 16.
        let widest = if super::cpu_level() == super::Level::Avx512 {
            64
        } else {
            16
        };
        let columns = (0..cp)
            .step_by(widest)
            .map(|c0| (c0, widest.min(cp - c0)))
            .collect();
        Shape {
            ci,
            co,
            chunks,
            cp,
            columns,
        }
    }

    fn depth(&self) -> usize {
        self.chunks * self.ci
    }
}

/// Rows of the product per register block.
pub(super) const ROWS: usize = 6;

/// `m[e] = v[e]·u[e]` for the five positions `e`: `v[e]` (`per_e` values from `e·per_e`)
/// holds windows of `ci` values, and row `r` of the product reads, for each chunk `(j,
/// off)` of `taps`, window `off + r` against chunk `j`'s rows of `u[e]` (laid out as
/// [`kernels`] does); `m[e]` is rows of `cp` outputs. A register block is [`ROWS`] rows by
/// one block of columns: per (chunk, input) pair, each row's value broadcast against the
/// kernels' vectors. A general GEMM packed `v` first, a copy as large as the product's
/// input for every position: 12% of a conv1d forward's time, with the GEMM itself 48%
/// (`perf`, 8 × 64 × 4096, 9 taps).
pub(super) fn products(
    (v, per_e): (&[f32], usize),
    taps: &[(usize, usize)],
    u: &[f32],
    shape: &Shape,
    m: &mut [f32],
) {
    let (depth, cp, ci) = (shape.depth(), shape.cp, shape.ci);
    let rows = m.len() / (POINTS * cp);
    assert!(
        rows.is_multiple_of(ROWS)
            && v.len() >= POINTS * per_e
            && taps
                .iter()
                .all(|&(j, off)| j < shape.chunks && (off + rows) * ci <= per_e)
            && u.len() >= POINTS * depth * cp,
        "conv2d_winograd_rows: product operands too short"
    );
    #[cfg(target_arch = "x86_64")]
    if super::cpu_level() == super::Level::Avx512 {
        // SAFETY: the processor has AVX-512F; the operands passed the checks above.
        return unsafe { zmm::products((v, per_e), taps, u, shape, m) };
    }
    type Operands<'a> = (&'a [f32], usize, &'a [(usize, usize)], &'a [f32]);
    #[inline(always)]
    fn run<const R: usize, const C: usize, const FMA: bool>(
        (v, per_e, taps, u): Operands,
        shape: &Shape,
        m: &mut [f32],
    ) {
        let (depth, cp) = (shape.depth(), shape.cp);
        let rows = m.len() / (POINTS * cp);
        for e in 0..POINTS {
            let (v, m) = (
                &v[e * per_e..][..per_e],
                &mut m[e * rows * cp..][..rows * cp],
            );
            for &(c0, width) in &shape.columns {
                let u = &u[e * depth * cp + depth * c0..][..depth * width];
                for r0 in (0..rows).step_by(R) {
                    let out = &mut m[r0 * cp + c0..];
                    let at = (v, taps, r0, shape.ci);
                    match width {
                        w if w == C => block::<R, C, FMA>(at, u, out, cp),
                        48 => block::<R, 48, FMA>(at, u, out, cp),
                        32 => block::<R, 32, FMA>(at, u, out, cp),
                        _ => block::<R, 16, FMA>(at, u, out, cp),
                    }
                }
            }
        }
    }
    #[inline(always)]
    fn block<const R: usize, const W: usize, const FMA: bool>(
        (v, taps, r0, ci): (&[f32], &[(usize, usize)], usize, usize),
        u: &[f32],
        out: &mut [f32],
        cp: usize,
    ) {
        let mut acc = [[0.0f32; W]; R];
        for &(j, off) in taps {
            let a: [&[f32]; R] = std::array::from_fn(|r| &v[(off + r0 + r) * ci..][..ci]);
            for (k, uk) in u[j * ci * W..][..ci * W].chunks_exact(W).enumerate() {
                let uk = <&[f32; W]>::try_from(uk).expect("W values");
                for (acc, a) in acc.iter_mut().zip(&a) {
                    // SAFETY: `k` is below `ci`, the length of each row of `a`.
                    let av = unsafe { *a.get_unchecked(k) };
                    for (s, &b) in acc.iter_mut().zip(uk) {
                        *s = if FMA { av.mul_add(b, *s) } else { *s + av * b };
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            out[r * cp..][..W].copy_from_slice(acc);
        }
    }
    fn at_level(operands: Operands, shape: &Shape, m: &mut [f32]) {
        by_cpu!(
            run(operands: Operands, shape: &Shape, m: &mut [f32]),
            // AVX-512 runs `zmm::products` (above).
            avx512: [ROWS, 16, true],
            avx2: [ROWS, 16, true],
            base: [ROWS, 16, false]
        )
    }
    at_level((v, per_e, taps, u), shape, m)
}

#[cfg(target_arch = "x86_64")]
#[path = "conv2d_winograd_rows_zmm.rs"]
mod zmm;

#[cfg(test)]
#[path = "conv2d_winograd_rows_tests.rs"]
mod tests;
