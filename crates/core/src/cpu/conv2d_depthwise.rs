//! Depthwise convolution on the CPU (one input channel per group), where a GEMM with one
//! row per group would waste the kernel.
//!
//! The usual path puts each plane on a zero-padded grid split by stride phase ([`Grid`]),
//! where every tap reads at the output's position plus one offset, and runs
//! `conv_direct.rs`'s register-blocked products over the whole plane at once: the
//! forward and the input gradient as [`block`]'s products, the weight gradient as
//! [`weight_block`]'s sums. Row by row, a 14² plane cost 3 calls of 14 values per tap
//! and row, and MobileNetV2's depthwise layers on 28² to 7² ran 3.5–7× PyTorch's time.
//!
//! The grid serves dense strided convolutions too (`conv2d_strided.rs`).
//!
//! The row loops below remain for the cases whose padding zeros would meet non-finite
//! values as 0·∞: a non-finite weight (forward and input gradient) or input (weight
//! gradient). With a column stride s > 1 they first split a plane's columns by phase
//! (column t·s + r goes to column t of phase r), so each tap reads or writes one
//! contiguous span that vectorises, as at stride 1.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::conv2d::{col_spans, in_row};
use super::conv_direct::{block, fold_lanes, weight_block, LANES, MAX_L};
use super::reduce::all_finite;
use super::transpose::Weights;
use crate::backend::Conv2dParams;
use crate::host;
use crate::Result;

/// Where tap column `kj` meets a row: output columns `lo..lo + len` and columns
/// `t..t + len` of phase `r`.
#[derive(Clone, Copy)]
struct Span {
    lo: usize,
    len: usize,
    r: usize,
    t: usize,
}

/// The convolution's column spans ([`col_spans`]) in phase terms: input column
/// `s0 = t·s + r` is column `t` of phase `r`.
fn spans(p: &Conv2dParams) -> Vec<Option<Span>> {
    let s = p.stride[1].max(1);
    col_spans(p)
        .into_iter()
        .map(|span| {
            span.map(|(lo, hi, s0)| Span {
                lo,
                len: hi - lo,
                r: s0 % s,
                t: s0 / s,
            })
        })
        .collect()
}

/// A plane of `h` rows split into `s` phases of `wp` columns each; at stride 1 the plane
/// itself. Only the first `n` phases hold columns (`s` may be past the width: a stride
/// of 2³² must not ask for a buffer of 2³² rows).
struct Phases {
    s: usize,
    n: usize,
    h: usize,
    w: usize,
    wp: usize,
}

impl Phases {
    fn of(p: &Conv2dParams) -> Phases {
        let s = p.stride[1].max(1);
        Phases {
            s,
            n: s.min(p.w),
            h: p.h,
            w: p.w,
            wp: p.w.div_ceil(s),
        }
    }

    fn len(&self) -> usize {
        self.n * self.h * self.wp
    }

    /// Offset of row `ih` of phase `r`.
    fn row(&self, r: usize, ih: usize) -> usize {
        (r * self.h + ih) * self.wp
    }

    /// `plane` in phase order: itself at stride 1, else split into `buf`.
    fn view<'a>(&self, plane: &'a [f32], buf: &'a mut Vec<f32>) -> &'a [f32] {
        if self.s == 1 {
            return plane;
        }
        buf.clear();
        buf.resize(self.len(), 0.0);
        for ih in 0..self.h {
            let row = &plane[ih * self.w..][..self.w];
            for r in 0..self.n {
                let dst = &mut buf[self.row(r, ih)..][..self.wp];
                for (d, &v) in dst.iter_mut().zip(row.iter().skip(r).step_by(self.s)) {
                    *d = v;
                }
            }
        }
        buf
    }

    /// Runs `f` on a zeroed phase-order plane, then writes it into `plane` in column
    /// order (at stride 1 `f` gets `plane` itself, which must be zero).
    fn gather(&self, plane: &mut [f32], buf: &mut Vec<f32>, f: impl FnOnce(&mut [f32])) {
        if self.s == 1 {
            return f(plane);
        }
        buf.clear();
        buf.resize(self.len(), 0.0);
        f(buf);
        for ih in 0..self.h {
            let row = &mut plane[ih * self.w..][..self.w];
            for r in 0..self.n {
                let src = &buf[self.row(r, ih)..][..self.wp];
                for (d, &v) in row.iter_mut().skip(r).step_by(self.s).zip(src) {
                    *d = v;
                }
            }
        }
    }
}

/// `dst += wv · src`, elementwise.
#[inline]
fn axpy(dst: &mut [f32], wv: f32, src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, &v)| *d += wv * v);
}

/// `Σ a·b` in eight lanes (one running f32 sum cannot vectorise).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let rest: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + rest
}

/// Output channels per input channel.
fn multiplier(p: &Conv2dParams) -> usize {
    p.c_out / p.groups
}

/// A plane zero-padded and split by stride phase: padded row `i`, column `j` go to phase
/// `(i mod sh, j mod sw)`, at its row `i / sh` and column `j / sw`. Output `(oi, oj)`
/// and tap `(ki, kj)` read padded `(oi·sh + ki·dh, oj·sw + kj·dw)`, which is phase
/// `(ki·dh mod sh, kj·dw mod sw)` at row `oi + ki·dh / sh`, column `oj + kj·dw / sw`.
/// Numbering the outputs at the phases' width (the "wide" columns `oi·wq + oj`, of which
/// those with `oj ≥ ow` are computed and dropped), each tap thus reads at the output's
/// number plus its own offset, at any stride and dilation.
pub(super) struct Grid {
    sh: usize,
    sw: usize,
    pub(super) wq: usize,
    /// values per phase (`hq·wq`)
    phase: usize,
    /// wide columns up to the last output: `(oh − 1)·wq + ow`
    pub(super) span: usize,
    /// each tap's offset, in the weight's order
    pub(super) offs: Vec<usize>,
    /// per column phase: its first input column, that column's place in a grid row,
    /// and how many columns it holds
    col_runs: Vec<(usize, usize, usize)>,
}

impl Grid {
    pub(super) fn of(p: &Conv2dParams) -> Grid {
        let [sh, sw] = p.stride.map(|s| s.max(1));
        let hq = (p.h + 2 * p.padding[0]).div_ceil(sh);
        let wq = (p.w + 2 * p.padding[1]).div_ceil(sw);
        let phase = hq * wq;
        let [kh, kw] = p.kernel;
        let offs = (0..kh * kw)
            .map(|t| {
                let (di, dj) = (t / kw * p.dilation[0], t % kw * p.dilation[1]);
                ((di % sh) * sw + dj % sw) * phase + di / sh * wq + dj / sw
            })
            .collect();
        let pw = p.padding[1];
        // Column phase `r` starts at input column `(r − pw) mod sw`: by those columns,
        // which are fewer than the phases where the stride is past the width.
        let col_runs = (0..sw.min(p.w))
            .map(|iw0| {
                let r = (iw0 + pw % sw) % sw;
                (iw0, r * phase + (iw0 + pw) / sw, (p.w - iw0).div_ceil(sw))
            })
            .collect();
        Grid {
            sh,
            sw,
            wq,
            phase,
            span: (p.oh.max(1) - 1) * wq + p.ow,
            offs,
            col_runs,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.sh * self.sw * self.phase
    }

    /// The farthest tap's offset.
    fn far(&self) -> usize {
        self.offs.iter().max().copied().unwrap_or(0)
    }

    /// For input row `ih`: each column phase's first input column, its place in the
    /// grid, and how many columns it holds.
    fn row_runs(
        &self,
        p: &Conv2dParams,
        ih: usize,
    ) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let i = ih + p.padding[0];
        let at_row = if self.sh == 1 {
            i * self.wq
        } else {
            (i % self.sh * self.sw) * self.phase + i / self.sh * self.wq
        };
        self.col_runs
            .iter()
            .map(move |&(iw0, at, len)| (iw0, at_row + at, len))
    }

    /// Copies an input plane into its place on a zeroed grid. Each plane of a
    /// convolution takes the same places, so a grid filled before needs no zeroing.
    pub(super) fn fill(&self, p: &Conv2dParams, plane: &[f32], grid: &mut [f32]) {
        // A plane of width 0 has no rows to copy (and `chunks` takes no 0).
        for (ih, row) in plane.chunks(p.w.max(1)).enumerate().take(p.h) {
            for (iw0, at, len) in self.row_runs(p, ih) {
                let dst = &mut grid[at..at + len];
                if self.sw == 1 {
                    dst.copy_from_slice(row);
                } else {
                    gather(dst, &row[iw0..], self.sw);
                }
            }
        }
    }

    /// The inverse of [`Grid::fill`]: an input plane read from its place on the grid.
    fn unfill(&self, p: &Conv2dParams, grid: &[f32], plane: &mut [f32]) {
        for (ih, row) in plane.chunks_mut(p.w.max(1)).enumerate().take(p.h) {
            for (iw0, at, len) in self.row_runs(p, ih) {
                let src = &grid[at..at + len];
                if self.sw == 1 {
                    row.copy_from_slice(src);
                } else {
                    scatter(&mut row[iw0..], src, self.sw);
                }
            }
        }
    }

    /// Output planes copied to rows `ld` apart at the wide numbering; as with
    /// [`Grid::fill`], the dropped columns keep the zeros they were given.
    pub(super) fn widen(&self, p: &Conv2dParams, planes: &[f32], wide: &mut [f32], ld: usize) {
        let ohw = p.oh * p.ow;
        for (plane, wide) in planes.chunks(ohw).zip(wide.chunks_mut(ld)) {
            for (oi, row) in plane.chunks(p.ow).enumerate() {
                wide[oi * self.wq..][..p.ow].copy_from_slice(row);
            }
        }
    }

    /// The inverse of [`Grid::widen`]: the kept columns of rows `ld` apart, written into
    /// every value of `planes`.
    fn narrow(&self, p: &Conv2dParams, wide: &[f32], ld: usize, planes: &mut [MaybeUninit<f32>]) {
        let ohw = p.oh * p.ow;
        for (plane, wide) in planes.chunks_mut(ohw).zip(wide.chunks(ld)) {
            for (oi, row) in plane.chunks_mut(p.ow).enumerate() {
                let src = &wide[oi * self.wq..][..p.ow];
                row.iter_mut()
                    .zip(src)
                    .for_each(|(d, &v)| *d = MaybeUninit::new(v));
            }
        }
    }
}

/// `dst[k] = src[k·s]` for each `k` of `dst`. Stride 2 (MobileNet's and ResNet's) is
/// compiled on its own, as pairs, which the compiler turns into shuffles of whole vectors
/// (indexed by `2k` the loop stayed scalar: `Grid::fill` took 8.8% of a stride-2 forward
/// from 28², 7.9% as pairs); an iterator over every `s`-th value cost four times the
/// products it fed.
fn gather(dst: &mut [f32], src: &[f32], s: usize) {
    let Some(last) = dst.len().checked_sub(1) else {
        return;
    };
    if s == 2 {
        let (body, tail) = dst.split_at_mut(last);
        body.iter_mut()
            .zip(src.chunks_exact(2))
            .for_each(|(d, pair)| *d = pair[0]);
        tail[0] = src[2 * last];
    } else {
        let src = &src[..last * s + 1];
        dst.iter_mut()
            .enumerate()
            .for_each(|(k, d)| *d = src[k * s]);
    }
}

/// `dst[k·s] = src[k]` for each `k` of `src`, as [`gather`].
fn scatter(dst: &mut [f32], src: &[f32], s: usize) {
    fn by<const S: usize>(dst: &mut [f32], src: &[f32], s: usize) {
        let s = if S > 0 { S } else { s };
        if let Some(last) = src.len().checked_sub(1) {
            let dst = &mut dst[..last * s + 1];
            src.iter().enumerate().for_each(|(k, &v)| dst[k * s] = v);
        }
    }
    if s == 2 {
        by::<2>(dst, src, s)
    } else {
        by::<0>(dst, src, s)
    }
}

/// Whether the grid stays within a few times the plane and its output: large padding
/// with large dilation can make it vastly larger, which the row loops skip.
pub(super) fn grid_fits(p: &Conv2dParams) -> bool {
    let side = |a: usize, len: usize| {
        let s = p.stride[a].max(1);
        len.checked_add(p.padding[a].checked_mul(2)?)?
            .div_ceil(s)
            .checked_mul(s)
    };
    let grid = side(0, p.h)
        .zip(side(1, p.w))
        .and_then(|(h, w)| h.checked_mul(w));
    grid.is_some_and(|g| g <= (p.h * p.w + p.oh * p.ow).saturating_mul(4))
}

/// `buf` as `len` zeros when it is not that long yet: each task's buffers serve planes
/// of one convolution, whose fills all write the same places.
pub(super) fn zeroed_once(buf: &mut Vec<f32>, len: usize) {
    if buf.len() != len {
        buf.clear();
        buf.resize(len, 0.0);
    }
}

pub fn forward(x: &[f32], w: &[f32], p: &Conv2dParams) -> Result<Vec<f32>> {
    if !grid_fits(p) || !all_finite(w) {
        return forward_rows(x, w, p);
    }
    let (hw, og, kk) = (p.h * p.w, multiplier(p), p.kernel[0] * p.kernel[1]);
    if p.oh * p.ow == 0 || og == 0 {
        return host::zeros(p.output_len());
    }
    let g = Grid::of(p);
    // The products read whole blocks of MAX_L columns past the span.
    let ld = g.span.next_multiple_of(MAX_L);
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(og * p.oh * p.ow)
            .enumerate()
            .for_each_init(
                || (Vec::new(), Vec::new()),
                |(grid, acc), (plane, y)| {
                    let ci = plane % p.c_in;
                    zeroed_once(grid, g.len() + MAX_L);
                    g.fill(p, &x[plane * hw..][..hw], grid);
                    zeroed_once(acc, og * ld);
                    let w_c = Weights::rows(&w[ci * og * kk..][..og * kk], kk);
                    block(w_c, kk, og, grid, &[0], &g.offs, g.span, acc, ld);
                    g.narrow(p, acc, ld, y);
                },
            )
    };
    // SAFETY: each task's output planes are written whole by `narrow`, and the tasks'
    // chunks cover the output. (Zeroed first, the output cost one more pass over memory.)
    unsafe { host::written(p.output_len(), fill) }
}

/// The forward's products run backwards: grid position `q` gathers `w[m][t] · gy_m` at
/// wide column `q − off_t`; with each output gradient plane widened and placed `far`
/// (the farthest tap's offset) into a zeroed row, that is a read at `q + far − off_t`.
pub fn grad_input(gy: &[f32], w: &[f32], p: &Conv2dParams) -> Result<Vec<f32>> {
    if !grid_fits(p) || !all_finite(w) {
        return grad_input_rows(gy, w, p);
    }
    let mut gx = host::zeros(p.input_len())?;
    let (hw, ohw, og, kk) = (
        p.h * p.w,
        p.oh * p.ow,
        multiplier(p),
        p.kernel[0] * p.kernel[1],
    );
    // No output channels (a transposed convolution of an input with none): nothing flows.
    if hw == 0 || og == 0 {
        return Ok(gx);
    }
    let g = Grid::of(p);
    let (far, ld) = (g.far(), g.len().next_multiple_of(MAX_L));
    let ldg = far + ld;
    let offs: Vec<usize> = (0..og)
        .flat_map(|m| g.offs.iter().map(move |off| m * ldg + far - off))
        .collect();
    gx.par_chunks_mut(hw).enumerate().for_each_init(
        || (Vec::new(), Vec::new()),
        |(ext, acc), (plane, gx_c)| {
            let (ni, ci) = (plane / p.c_in, plane % p.c_in);
            let gy_c = &gy[(ni * p.c_out + ci * og) * ohw..][..og * ohw];
            zeroed_once(ext, og * ldg);
            g.widen(p, gy_c, &mut ext[far..], ldg);
            zeroed_once(acc, ld);
            let w_c = Weights::rows(&w[ci * og * kk..][..og * kk], og * kk);
            block(w_c, og * kk, 1, ext, &[0], &offs, g.len(), acc, ld);
            g.unfill(p, acc, gx_c);
        },
    );
    Ok(gx)
}

/// One task per input channel: per image, [`weight_block`]'s sums of the widened output
/// gradient (zeros in the dropped columns) against the input's grid, in a fixed order.
pub fn grad_weight(x: &[f32], gy: &[f32], p: &Conv2dParams) -> Result<Vec<f32>> {
    if !grid_fits(p) || !all_finite(x) {
        return grad_weight_rows(x, gy, p);
    }
    let (hw, ohw, og, kk) = (
        p.h * p.w,
        p.oh * p.ow,
        multiplier(p),
        p.kernel[0] * p.kernel[1],
    );
    let mut gw = host::zeros(p.weight_len())?;
    if ohw == 0 || og * kk == 0 {
        return Ok(gw);
    }
    let g = Grid::of(p);
    let ld = g.span.next_multiple_of(MAX_L);
    gw.par_chunks_mut(og * kk)
        .enumerate()
        .for_each(|(ci, gw_c)| {
            let (mut grid, mut wide) = (Vec::new(), vec![0.0; og * ld]);
            let mut lanes = vec![0.0; og * kk * LANES];
            for ni in 0..p.n {
                zeroed_once(&mut grid, g.len() + MAX_L);
                g.fill(p, &x[(ni * p.c_in + ci) * hw..][..hw], &mut grid);
                let gy_c = &gy[(ni * p.c_out + ci * og) * ohw..][..og * ohw];
                g.widen(p, gy_c, &mut wide, ld);
                weight_block(&wide, ld, 0, og, &grid, 0, &g.offs, g.span, &mut lanes);
            }
            fold_lanes(&lanes, gw_c);
        });
    Ok(gw)
}

fn forward_rows(x: &[f32], w: &[f32], p: &Conv2dParams) -> Result<Vec<f32>> {
    let mut out = host::zeros(p.output_len())?;
    let (hw, ohw, og) = (p.h * p.w, p.oh * p.ow, multiplier(p));
    if ohw == 0 {
        return Ok(out);
    }
    let [kh, kw] = p.kernel;
    let (ph, spans) = (Phases::of(p), spans(p));
    out.par_chunks_mut(ohw)
        .enumerate()
        .for_each_init(Vec::new, |buf, (plane, y)| {
            let (ni, o) = (plane / p.c_out, plane % p.c_out);
            let src = ph.view(&x[(ni * p.c_in + o / og) * hw..][..hw], buf);
            let taps = &w[o * kh * kw..][..kh * kw];
            for ki in 0..kh {
                for oi in 0..p.oh {
                    let Some(ih) = in_row(p, oi, ki) else {
                        continue;
                    };
                    let dst = &mut y[oi * p.ow..][..p.ow];
                    for (kj, s) in spans.iter().enumerate() {
                        if let Some(s) = s {
                            let row = &src[ph.row(s.r, ih) + s.t..][..s.len];
                            axpy(&mut dst[s.lo..][..s.len], taps[ki * kw + kj], row);
                        }
                    }
                }
            }
        });
    Ok(out)
}

/// Each input plane gathers from the output planes it feeds (the adjoint of
/// [`forward_rows`]).
fn grad_input_rows(gy: &[f32], w: &[f32], p: &Conv2dParams) -> Result<Vec<f32>> {
    let mut gx = host::zeros(p.input_len())?;
    let (hw, ohw, og) = (p.h * p.w, p.oh * p.ow, multiplier(p));
    if hw == 0 {
        return Ok(gx);
    }
    let [kh, kw] = p.kernel;
    let (ph, spans) = (Phases::of(p), spans(p));
    gx.par_chunks_mut(hw)
        .enumerate()
        .for_each_init(Vec::new, |buf, (plane, gxp)| {
            let (ni, ci) = (plane / p.c_in, plane % p.c_in);
            ph.gather(gxp, buf, |dst| {
                for o in ci * og..(ci + 1) * og {
                    let gyp = &gy[(ni * p.c_out + o) * ohw..][..ohw];
                    for ki in 0..kh {
                        for oi in 0..p.oh {
                            let Some(ih) = in_row(p, oi, ki) else {
                                continue;
                            };
                            let src = &gyp[oi * p.ow..][..p.ow];
                            for (kj, s) in spans.iter().enumerate() {
                                if let Some(s) = s {
                                    let row = &mut dst[ph.row(s.r, ih) + s.t..][..s.len];
                                    axpy(row, w[(o * kh + ki) * kw + kj], &src[s.lo..][..s.len]);
                                }
                            }
                        }
                    }
                }
            });
        });
    Ok(gx)
}

/// One task per output channel, its taps summed over images and rows in a fixed order.
fn grad_weight_rows(x: &[f32], gy: &[f32], p: &Conv2dParams) -> Result<Vec<f32>> {
    let [kh, kw] = p.kernel;
    let mut gw = host::zeros(p.weight_len())?;
    let (hw, ohw, og) = (p.h * p.w, p.oh * p.ow, multiplier(p));
    let (ph, spans) = (Phases::of(p), spans(p));
    gw.par_chunks_mut(kh * kw)
        .enumerate()
        .for_each_init(Vec::new, |buf, (o, taps)| {
            for ni in 0..p.n {
                let src = ph.view(&x[(ni * p.c_in + o / og) * hw..][..hw], buf);
                let gyp = &gy[(ni * p.c_out + o) * ohw..][..ohw];
                for ki in 0..kh {
                    for oi in 0..p.oh {
                        let Some(ih) = in_row(p, oi, ki) else {
                            continue;
                        };
                        let grow = &gyp[oi * p.ow..][..p.ow];
                        for (kj, s) in spans.iter().enumerate() {
                            if let Some(s) = s {
                                let row = &src[ph.row(s.r, ih) + s.t..][..s.len];
                                taps[ki * kw + kj] += dot(&grow[s.lo..][..s.len], row);
                            }
                        }
                    }
                }
            }
        });
    Ok(gw)
}

#[cfg(test)]
mod tests {
    use super::super::conv2d::definition;
    use super::super::conv_shifted::tests::{assert_close, assert_same, operands};
    use super::*;

    /// Forward, input gradient and weight gradient against the definition, on the grid
    /// and by rows, for strides that split rows and columns into phases (with padding
    /// reaching into negative offsets), dilation, a channel multiplier, odd sizes and
    /// small planes. Then an infinite input value in a row's last column (which the
    /// grid's dropped columns read) and an infinite weight (which the grid's padding
    /// zeros would meet) send the affected passes to the rows, still matching the
    /// definition.
    #[test]
    fn matches_the_definition() {
        for (hw, stride, padding, dilation, mult, k) in [
            ([9, 11], [1, 1], [1, 1], [1, 1], 1, [3, 3]),
            ([9, 11], [2, 2], [1, 1], [1, 1], 1, [3, 3]),
            ([9, 11], [1, 3], [0, 2], [1, 2], 2, [2, 3]),
            ([9, 11], [2, 2], [2, 2], [1, 1], 1, [5, 5]),
            ([9, 11], [3, 2], [1, 0], [2, 1], 3, [3, 2]),
            ([7, 7], [1, 1], [1, 1], [1, 1], 1, [3, 3]),
            ([14, 14], [2, 2], [1, 1], [1, 1], 1, [3, 3]),
            ([1, 40], [1, 1], [0, 4], [1, 1], 2, [1, 9]),
        ] {
            let (n, c, [h, w]) = (2, 3, hw);
            let oh = (h + 2 * padding[0] - dilation[0] * (k[0] - 1) - 1) / stride[0] + 1;
            let ow = (w + 2 * padding[1] - dilation[1] * (k[1] - 1) - 1) / stride[1] + 1;
            let p = Conv2dParams {
                n,
                c_in: c,
                h,
                w,
                c_out: c * mult,
                oh,
                ow,
                kernel: k,
                stride,
                padding,
                dilation,
                groups: c,
            };
            let (mut x, mut wt, gy) = operands(&p);
            let [y0, gx0, gw0] = definition(&x, &wt, &gy, &p);
            let name = format!("{p:?}");
            let grid = [
                forward(&x, &wt, &p),
                grad_input(&gy, &wt, &p),
                grad_weight(&x, &gy, &p),
            ];
            let rows = [
                forward_rows(&x, &wt, &p),
                grad_input_rows(&gy, &wt, &p),
                grad_weight_rows(&x, &gy, &p),
            ];
            for (how, [y, gx, gw]) in [("grid", grid), ("rows", rows)] {
                let what = format!("{name} by {how}");
                assert_close(&format!("{what}: y"), &y.unwrap(), &y0);
                assert_close(&format!("{what}: gx"), &gx.unwrap(), &gx0);
                assert_close(&format!("{what}: gw"), &gw.unwrap(), &gw0);
            }
            assert!(grid_fits(&p), "{name} takes the grid");
            x[w - 1] = f32::INFINITY;
            let [_, _, gw0] = definition(&x, &wt, &gy, &p);
            let what = format!("{name} with an ∞ input: gw");
            assert_same(&what, &grad_weight(&x, &gy, &p).unwrap(), &gw0);
            wt[0] = f32::INFINITY;
            let [y0, gx0, _] = definition(&x, &wt, &gy, &p);
            let what = format!("{name} with an ∞ weight");
            assert_same(&format!("{what}: y"), &forward(&x, &wt, &p).unwrap(), &y0);
            assert_same(
                &format!("{what}: gx"),
                &grad_input(&gy, &wt, &p).unwrap(),
                &gx0,
            );
        }
    }

    /// Padding and dilation that make the grid many times the data leave it to the rows.
    #[test]
    fn a_grid_far_larger_than_the_data_is_left_to_the_rows() {
        let p = Conv2dParams {
            n: 1,
            c_in: 2,
            h: 3,
            w: 3,
            c_out: 2,
            oh: 3,
            ow: 3,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [30, 30],
            dilation: [30, 30],
            groups: 2,
        };
        assert!(!grid_fits(&p));
        let (x, wt, gy) = operands(&p);
        let [y0, gx0, gw0] = definition(&x, &wt, &gy, &p);
        assert_close("y", &forward(&x, &wt, &p).unwrap(), &y0);
        assert_close("gx", &grad_input(&gy, &wt, &p).unwrap(), &gx0);
        assert_close("gw", &grad_weight(&x, &gy, &p).unwrap(), &gw0);
    }
}
