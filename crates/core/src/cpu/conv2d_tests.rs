//! The CPU convolution's unit tests, and the definition they and the other convolution
//! files' tests compare with.

use super::*;

/// The convolution's definition, one product at a time in f64: the output and, for an
/// output gradient `gy`, both gradients. What the CPU kernels' unit tests compare with.
pub(in crate::cpu) fn definition(
    x: &[f32],
    w: &[f32],
    gy: &[f32],
    p: &Conv2dParams,
) -> [Vec<f64>; 3] {
    let (cg, og) = (p.c_in / p.groups, p.c_out / p.groups);
    let [kh, kw] = p.kernel;
    let (mut y, mut gx, mut gw) = (
        vec![0.0f64; p.output_len()],
        vec![0.0f64; p.input_len()],
        vec![0.0f64; p.weight_len()],
    );
    for (yi, yv) in y.iter_mut().enumerate() {
        let (oj, oi) = (yi % p.ow, yi / p.ow % p.oh);
        let (o, ni) = (yi / (p.ow * p.oh) % p.c_out, yi / (p.ow * p.oh * p.c_out));
        for cc in 0..cg {
            let ci = o / og * cg + cc;
            for ki in 0..kh {
                for kj in 0..kw {
                    let ih =
                        (oi * p.stride[0] + ki * p.dilation[0]) as isize - p.padding[0] as isize;
                    let iw =
                        (oj * p.stride[1] + kj * p.dilation[1]) as isize - p.padding[1] as isize;
                    if ih < 0 || iw < 0 || ih >= p.h as isize || iw >= p.w as isize {
                        continue;
                    }
                    let xi = ((ni * p.c_in + ci) * p.h + ih as usize) * p.w + iw as usize;
                    let wi = ((o * cg + cc) * kh + ki) * kw + kj;
                    *yv += (x[xi] * w[wi]) as f64;
                    gx[xi] += (gy[yi] * w[wi]) as f64;
                    gw[wi] += (gy[yi] * x[xi]) as f64;
                }
            }
        }
    }
    [y, gx, gw]
}

/// Deep layers (a weight larger than an image's columns) put several images into one
/// GEMM, the last group of images shorter than the rest; the output and both
/// gradients must still equal the definition, for strides, padding and dilation.
#[test]
fn images_sharing_a_gemm_match_the_definition() {
    for (n, c, h, stride, padding, dilation) in [
        (75, 64, 5, 1, 1, 1),
        (3, 64, 6, 2, 1, 1),
        (5, 64, 7, 1, 0, 2),
    ] {
        // 120 · 64 · 9 weights: past the size worth sharing.
        let (o, k) = (120, 3);
        let oh = (h + 2 * padding - dilation * (k - 1) - 1) / stride + 1;
        let p = Conv2dParams {
            n,
            c_in: c,
            h,
            w: h,
            c_out: o,
            oh,
            ow: oh,
            kernel: [k, k],
            stride: [stride, stride],
            padding: [padding, padding],
            dilation: [dilation, dilation],
            groups: 1,
        };
        let g = geo(&p);
        assert!(images_per_gemm(&p, &g) > 1, "{p:?} takes the shared path");
        let value = |i: usize, s: usize| ((i * 7919 + s * 104729) % 2001) as f32 / 1000.0 - 1.0;
        let x: Vec<f32> = (0..p.input_len()).map(|i| value(i, 1)).collect();
        let w: Vec<f32> = (0..p.weight_len()).map(|i| value(i, 2)).collect();
        let gy: Vec<f32> = (0..p.output_len()).map(|i| value(i, 3)).collect();
        let got = [
            forward(&x, &w, &p).unwrap(),
            grad_input(&gy, &w, &p).unwrap(),
            grad_weight(&x, &gy, &p).unwrap(),
        ];
        let want = definition(&x, &w, &gy, &p);
        for ((name, got), want) in ["y", "gx", "gw"].iter().zip(&got).zip(&want) {
            assert_eq!(got.len(), want.len());
            for (i, (&g, &e)) in got.iter().zip(want.iter()).enumerate() {
                assert!(
                    (g as f64 - e).abs() <= 1e-4 * (1.0 + e.abs()),
                    "{p:?} {name}[{i}]: {g} vs {e}"
                );
            }
        }
    }
}

/// The input gradient on planes whose wide rows are a fifth to a third longer than the
/// output's: from 256 output positions on, the direct products
/// (`conv_shifted::grad_input_applies`), below that and with an infinite weight,
/// im2col's GEMM; each equal to the definition (with the infinite weight, NaN or the
/// same infinity wherever the definition's is).
#[test]
fn direct_input_gradient_on_short_rows_matches_the_definition() {
    use super::conv_shifted::tests::{assert_close, assert_same, stride_1};
    // (n, c_in, side, direct)
    for (n, c, side, direct) in [(6, 16, 7, true), (4, 16, 7, false), (5, 20, 8, true)] {
        let (p, x, mut w, gy) = stride_1((n, c, side, side, 18, [3, 3], [1, 1], [1, 1], 1));
        let p3 = super::conv_shifted::from_2d(&p);
        assert!(!super::conv_shifted::applies(&p3), "{p:?}");
        assert_eq!(
            super::conv_shifted::grad_input_applies(&p3),
            direct,
            "{p:?}"
        );
        let name = format!("{p:?}");
        assert_close(
            &name,
            &grad_input(&gy, &w, &p).unwrap(),
            &definition(&x, &w, &gy, &p)[1],
        );
        w[5] = f32::INFINITY;
        let name = format!("{name}, an infinite weight");
        assert_same(
            &name,
            &grad_input(&gy, &w, &p).unwrap(),
            &definition(&x, &w, &gy, &p)[1],
        );
    }
}

/// 1×1 layers' forward (one GEMM per image and group, into an output not cleared first)
/// against the definition: one image and several (the threads' path), two groups, and
/// planes and channels past the GEMM's register blocks.
#[test]
fn pointwise_forward_matches_the_definition() {
    use super::conv_shifted::tests::{assert_close, value};
    for (n, c, side, o, groups) in [(1, 20, 7, 36, 1), (3, 8, 9, 6, 2), (2, 64, 17, 40, 1)] {
        let p = Conv2dParams {
            n,
            c_in: c,
            h: side,
            w: side,
            c_out: o,
            oh: side,
            ow: side,
            kernel: [1, 1],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups,
        };
        assert!(is_pointwise(&p));
        let x: Vec<f32> = (0..p.input_len()).map(|i| value(i, 1)).collect();
        let w: Vec<f32> = (0..p.weight_len()).map(|i| value(i, 2)).collect();
        let want = definition(&x, &w, &vec![0.0; p.output_len()], &p);
        assert_close(&format!("{p:?}"), &forward(&x, &w, &p).unwrap(), &want[0]);
    }
}
