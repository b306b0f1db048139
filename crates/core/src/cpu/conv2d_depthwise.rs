//! Depthwise convolution on the CPU (one input channel per group): direct loops for the
//! forward and both gradients, where a GEMM with one row per group would waste the
//! kernel. With a column stride s > 1 a plane's columns are first split by phase (column
//! t·s + r goes to column t of phase r), so each tap reads or writes one contiguous span
//! that vectorises, as at stride 1; column by column it cost a call and a bounds check per
//! value, and MobileNetV2's four strided depthwise layers took as long as its other
//! thirteen.

use rayon::prelude::*;

use super::conv2d::{col_spans, in_row};
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
/// itself.
struct Phases {
    s: usize,
    h: usize,
    w: usize,
    wp: usize,
}

impl Phases {
    fn of(p: &Conv2dParams) -> Phases {
        let s = p.stride[1].max(1);
        Phases {
            s,
            h: p.h,
            w: p.w,
            wp: p.w.div_ceil(s),
        }
    }

    fn len(&self) -> usize {
        self.s * self.h * self.wp
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
            for r in 0..self.s {
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
            for r in 0..self.s {
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

pub fn forward(x: &[f32], w: &[f32], p: &Conv2dParams) -> Result<Vec<f32>> {
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

/// Each input plane gathers from the output planes it feeds (the adjoint of [`forward`]).
pub fn grad_input(gy: &[f32], w: &[f32], p: &Conv2dParams) -> Result<Vec<f32>> {
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
pub fn grad_weight(x: &[f32], gy: &[f32], p: &Conv2dParams) -> Result<Vec<f32>> {
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
    use super::*;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let v = (i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 20;
                v as f32 / 2048.0 - 1.0
            })
            .collect()
    }

    /// Forward, input gradient and weight gradient against the definition, one product at a
    /// time, for strides that split columns into phases (with padding reaching into
    /// negative offsets), dilation, a channel multiplier and odd sizes.
    #[test]
    fn matches_the_definition() {
        for (stride, padding, dilation, mult, k) in [
            ([1, 1], [1, 1], [1, 1], 1, [3, 3]),
            ([2, 2], [1, 1], [1, 1], 1, [3, 3]),
            ([1, 3], [0, 2], [1, 2], 2, [2, 3]),
            ([2, 2], [2, 2], [1, 1], 1, [5, 5]),
            ([3, 2], [1, 0], [2, 1], 3, [3, 2]),
        ] {
            let (n, c, h, w) = (2, 3, 9, 11);
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
            let (x, wt) = (values(p.input_len(), 1), values(p.weight_len(), 2));
            let gy = values(p.output_len(), 3);
            let y = forward(&x, &wt, &p).unwrap();
            let gx = grad_input(&gy, &wt, &p).unwrap();
            let gw = grad_weight(&x, &gy, &p).unwrap();
            let [y0, gx0, gw0] = super::super::conv2d::definition(&x, &wt, &gy, &p);
            for (name, got, want) in [("y", &y, &y0), ("gx", &gx, &gx0), ("gw", &gw, &gw0)] {
                for (i, (&g, &e)) in got.iter().zip(want.iter()).enumerate() {
                    assert!(
                        (g as f64 - e).abs() <= 1e-4 * (1.0 + e.abs()),
                        "{p:?} {name}[{i}]: {g} vs {e}"
                    );
                }
            }
        }
    }
}
