//! The weight gradient of stride-1 convolutions with 16+ input channels per group but
//! fewer output channels (a network's last layer: 32 → 3 with a 9×9 kernel), as dot
//! products over the wide grid (`conv_shifted.rs`); more output channels take
//! `conv_weight.rs`'s sums, which do not compute the wide grid's dropped columns and fill
//! their vectors with output channels. Here `gw[o][c][t]` is the output gradient's
//! row `o` dotted with the padded input's channel `c` read from tap `t`'s offset. Both rows
//! are contiguous runs of columns, so blocks of output channels × (channel, tap) pairs
//! hold their sums in vector registers and read each row once per block.
//!
//! This replaced a GEMM per run of 256 wide columns with the taps' rows gathered as its
//! operand: both of that product's operands run along its depth (the columns), so
//! `matrixmultiply` transposed both while packing them, and on ResNet's 3×3 layers the
//! packing took a third as long as the products (perf, 2026-12-02).
//!
//! The sums of a block are added across once per chunk of columns ([`CHUNK_STEPS`]),
//! which may span several images (deep layers' planes are short).

use super::by_cpu;
use super::conv_direct::{outer_products, pair_offsets, MAX_L};
use super::conv_shifted::{channels_made, per_block, spread, wide, Wide};
use super::conv_weight::image_groups;
use super::reduce::{all_finite, fold_halves};
use crate::backend::Conv3dParams;
use crate::host;
use crate::Result;

/// Vector steps per chunk (4,096 columns with 16 lanes). Each block's sums are added
/// across once per chunk; chunks of 1,024 to 16,384 columns measured alike on ResNet's
/// 3×3 layers (2026-12-02), shorter ones slower, even where a chunk's rows outgrow the
/// second-level cache (the reads are sequential).
const CHUNK_STEPS: usize = 256;

/// Lanes of the widest vector any version uses: rows are padded to a multiple of it.
const LANES: usize = 16;

/// One piece of a chunk: a run of `steps` vectors of columns, starting at `gy` in the
/// widened output gradient and at `x` in the padded input (per image and plane).
#[derive(Clone, Copy)]
struct Piece {
    gy: usize,
    x: usize,
    steps: usize,
}

/// `p`'s weight gradient, or `None` where `x` holds a non-finite value (an ∞ would meet
/// the output gradient's zeros in the dropped columns as 0·∞). Each group of images is
/// checked once padded, while it is cached.
pub(super) fn grad_weight(x: &[f32], gy: &[f32], p: &Conv3dParams) -> Result<Option<Vec<f32>>> {
    let wd = &wide(p);
    let [od, oh, ow] = p.output;
    let per_plane = ((oh - 1) * wd.wp + ow).next_multiple_of(LANES);
    let glen = od * per_plane;
    let per_image = p.c_in * wd.channel + p.c_out * glen;
    let offs = pair_offsets(wd);
    let mut gw = host::zeros(p.weight_len())?;
    for (part, x_b, gy_b) in image_groups(x, gy, p, wd, per_image) {
        // Rows are read a whole vector past a plane's last column, and the input's taps
        // further: zeros in the output gradient there, the input's slack below.
        let xp = spread(x_b, &part, wd, true, MAX_L)?;
        if !all_finite(&xp) {
            return Ok(None);
        }
        let gyw = widened(gy_b, &part, wd, 0, per_plane, glen, 0)?;
        let chunks = chunks(&part, wd, per_plane, glen);
        for (gi, gw_g) in gw.chunks_mut(wd.og * wd.kdim).enumerate() {
            let (x_g, gy_g) = (&xp[gi * wd.cg * wd.channel..], gi * wd.og * glen);
            // Each thread takes whole rows of the gradient, so the sums do not depend on
            // the schedule.
            per_block(gw_g, wd.kdim, |o0, rows| {
                for chunk in &chunks {
                    dots(&gyw[gy_g + o0 * glen..], glen, x_g, &offs, chunk, rows);
                }
                Ok(())
            })?;
        }
        super::recycle_scratch(xp);
        super::recycle_scratch(gyw);
    }
    Ok(Some(gw))
}

/// The output gradient on the wide grid: each channel `len` values long, its plane `a`'s
/// row `r` from `lead + a·plane + r·wp`, zeros elsewhere and in `slack` values past the
/// last channel. The weight gradients' sums read it from the start of each plane (`lead`
/// 0, planes rounded up to their vectors); the direct input gradient reads it shifted by
/// the farthest tap (`lead` that tap's offset, planes as the padded input's).
pub(super) fn widened(
    gy: &[f32],
    p: &Conv3dParams,
    wd: &Wide,
    lead: usize,
    plane: usize,
    len: usize,
    slack: usize,
) -> Result<Vec<f32>> {
    let [od, oh, ow] = p.output;
    channels_made(p.n * p.c_out, len, slack, |c, dst| {
        let src = &gy[c * wd.out_len..][..wd.out_len];
        for (a, values) in src.chunks(oh * ow).enumerate().take(od) {
            for (r, row) in values.chunks(ow).enumerate() {
                dst[lead + a * plane + r * wd.wp..][..ow].copy_from_slice(row);
            }
        }
    })
}

/// Every (image, plane)'s run of columns, cut into chunks of [`CHUNK_STEPS`] vectors; short
/// planes (deep layers' 7² or 14²) share a chunk.
fn chunks(p: &Conv3dParams, wd: &Wide, per_plane: usize, glen: usize) -> Vec<Vec<Piece>> {
    let chunk = CHUNK_STEPS;
    let steps = per_plane / LANES;
    let mut out = vec![Vec::new()];
    let mut filled = 0;
    for ni in 0..p.n {
        for a in 0..p.output[0] {
            let mut s = 0;
            while s < steps {
                let take = (chunk - filled).min(steps - s);
                out.last_mut().expect("a chunk").push(Piece {
                    gy: ni * p.c_out * glen + a * per_plane + s * LANES,
                    x: ni * p.c_in * wd.channel + a * wd.plane + s * LANES,
                    steps: take,
                });
                (s, filled) = (s + take, filled + take);
                if filled == chunk {
                    out.push(Vec::new());
                    filled = 0;
                }
            }
        }
    }
    out.retain(|c| !c.is_empty());
    out
}

/// Adds one chunk's products into `rows` (output channels' rows of the weight gradient,
/// `offs.len()` each): row `o` of `gy` (rows `glen` apart) dotted with the input `x` at
/// each pair's offset, over the chunk's pieces.
fn dots(gy: &[f32], glen: usize, x: &[f32], offs: &[usize], chunk: &[Piece], rows: &mut [f32]) {
    let kdim = offs.len();
    let og = rows.len() / kdim.max(1);
    let far = offs.iter().max().copied().unwrap_or(0);
    for pc in chunk {
        let reach = pc.steps * LANES;
        assert!(
            og == 0 || gy.len() >= (og - 1) * glen + pc.gy + reach,
            "conv_weight: output gradient too short"
        );
        assert!(
            x.len() >= pc.x + far + reach,
            "conv_weight: input without its slack"
        );
    }
    by_cpu!(
        dot_blocks(gy: &[f32], glen: usize, x: &[f32], offs: &[usize], chunk: &[Piece],
            rows: &mut [f32]),
        // 4 × 6 sums (24 registers) and 10 loads per step; 6 × 4, 4 × 4 were slower. AVX2:
        // 4 × 3 sums, so that the 3 input vectors, 12 sums and one output-gradient vector
        // fill its 16 registers; as 3 × 4 (4 inputs held) one sum went to the stack every
        // step, and on a Zen 3 ResNet's 14² layer's weight gradient took 42 ms, not 35;
        // 2 × 4 took twice as long (2026-12-02)
        avx512: [4, 6, 16, true],
        avx2: [4, 3, 8, true],
        base: [2, 4, 8, false]
    )
}

/// Every block of `OB` output channels × `KB` pairs; the channels and pairs left over in
/// blocks of one.
#[inline(always)]
fn dot_blocks<const OB: usize, const KB: usize, const L: usize, const FMA: bool>(
    gy: &[f32],
    glen: usize,
    x: &[f32],
    offs: &[usize],
    chunk: &[Piece],
    rows: &mut [f32],
) {
    let kdim = offs.len();
    let og = rows.len() / kdim.max(1);
    let (whole_o, whole_k) = (og - og % OB, kdim - kdim % KB);
    let mut o0 = 0;
    while o0 < og {
        let ob = if o0 < whole_o { OB } else { 1 };
        let gy_o = &gy[o0 * glen..];
        let mut k0 = 0;
        while k0 < kdim {
            let kb = if k0 < whole_k { KB } else { 1 };
            let out = &mut rows[o0 * kdim + k0..];
            let offs = &offs[k0..k0 + kb];
            match (ob == OB, kb == KB) {
                (true, true) => sums::<OB, KB, L, FMA>(gy_o, glen, x, offs, chunk, out, kdim),
                (true, false) => sums::<OB, 1, L, FMA>(gy_o, glen, x, offs, chunk, out, kdim),
                (false, true) => sums::<1, KB, L, FMA>(gy_o, glen, x, offs, chunk, out, kdim),
                (false, false) => sums::<1, 1, L, FMA>(gy_o, glen, x, offs, chunk, out, kdim),
            }
            k0 += kb;
        }
        o0 += ob;
    }
}

/// `OB` output channels × `KB` pairs over one chunk, `L` lanes of sums each in registers,
/// added across at the end into `out` (rows `kdim` apart).
#[inline(always)]
fn sums<const OB: usize, const KB: usize, const L: usize, const FMA: bool>(
    gy: &[f32],
    glen: usize,
    x: &[f32],
    offs: &[usize],
    chunk: &[Piece],
    out: &mut [f32],
    kdim: usize,
) {
    let mut acc = [[[0.0f32; L]; KB]; OB];
    for pc in chunk {
        let n = pc.steps * (LANES / L) * L;
        // Whole rows checked once, so the loop below loads each vector once.
        let g_rows: [&[f32]; OB] = std::array::from_fn(|o| &gy[o * glen + pc.gy..][..n]);
        let x_rows: [&[f32]; KB] = std::array::from_fn(|k| &x[pc.x + offs[k]..][..n]);
        for b in 0..n / L {
            // SAFETY: every row holds `n` values and `b·L + l < n`. Checked reads here
            // left the loop a panicking exit, and then the compiler stored every sum back
            // to memory on each step.
            let g: [[f32; L]; OB] = std::array::from_fn(|o| {
                std::array::from_fn(|l| unsafe { *g_rows[o].get_unchecked(b * L + l) })
            });
            let xv: [[f32; L]; KB] = std::array::from_fn(|k| {
                std::array::from_fn(|l| unsafe { *x_rows[k].get_unchecked(b * L + l) })
            });
            outer_products::<OB, KB, L, FMA>(&mut acc, &g, &xv);
        }
    }
    for (o, acc) in acc.iter().enumerate() {
        for (k, a) in acc.iter().enumerate() {
            out[o * kdim + k] += fold_halves(*a);
        }
    }
}
