//! Tests of the wide grid's convolutions against the definition, and helpers the other
//! direct paths' tests share.

use super::super::conv2d::{self, definition};
use super::*;

pub(crate) fn value(i: usize, s: usize) -> f32 {
    ((i * 7919 + s * 104729) % 2001) as f32 / 1000.0 - 1.0
}

pub(crate) fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&g, &e)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - e).abs() <= 1e-4 * (1.0 + e.abs()),
            "{what}[{i}]: {g} vs {e}"
        );
    }
}

/// [`assert_close`] for sums of `terms` products of values within ±1 (a weight gradient's,
/// over every output position), whose f32 rounding grows with their count: 1e-7 per term
/// more. The baseline build (no FMA, 8 lanes) summed 7,200 terms to within 2e-4 of a
/// value of 0.68, past the plain tolerance.
pub(crate) fn assert_close_sums(what: &str, got: &[f32], want: &[f64], terms: usize) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&g, &e)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - e).abs() <= 1e-4 * (1.0 + e.abs()) + 1e-7 * terms as f64,
            "{what}[{i}]: {g} vs {e} ({terms} terms)"
        );
    }
}

/// [`assert_close`], where NaN also equals NaN and an infinity the same infinity.
pub(crate) fn assert_same(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&g, &e)) in got.iter().zip(want).enumerate() {
        let same = (g as f64 - e).abs() <= 1e-4 * (1.0 + e.abs())
            || (g.is_nan() && e.is_nan())
            || g as f64 == e;
        assert!(same, "{what}[{i}]: {g} vs {e}");
    }
}

/// The input, weight and output gradient of a 2-D case, from [`value`].
pub(crate) fn operands(p: &Conv2dParams) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let x = (0..p.input_len()).map(|i| value(i, 1)).collect();
    let wt = (0..p.weight_len()).map(|i| value(i, 2)).collect();
    let gy = (0..p.output_len()).map(|i| value(i, 3)).collect();
    (x, wt, gy)
}

/// A stride-1 case `(n, c_in, h, w, c_out, kernel, padding, dilation, groups)` and its
/// input, weight and output gradient.
#[allow(clippy::type_complexity)]
pub(crate) fn stride_1(
    (n, c_in, h, w, c_out, kernel, padding, dilation, groups): (
        usize,
        usize,
        usize,
        usize,
        usize,
        [usize; 2],
        [usize; 2],
        [usize; 2],
        usize,
    ),
) -> (Conv2dParams, Vec<f32>, Vec<f32>, Vec<f32>) {
    let p = Conv2dParams {
        n,
        c_in,
        h,
        w,
        c_out,
        oh: h + 2 * padding[0] - dilation[0] * (kernel[0] - 1),
        ow: w + 2 * padding[1] - dilation[1] * (kernel[1] - 1),
        kernel,
        stride: [1, 1],
        padding,
        dilation,
        groups,
    };
    let (x, wt, gy) = operands(&p);
    (p, x, wt, gy)
}

/// The 2-D convolution's entry points take the grid's paths and match the
/// definition: padding on either axis or none, dilation, groups, a 1-D kernel,
/// rectangular images, runs of columns that split rows or span several, one image
/// and several.
#[test]
fn two_d_taps_on_the_padded_grid_match_the_definition() {
    // (n, c_in, h, w, c_out, kernel, padding, dilation, groups)
    let cases = [
        (2, 16, 9, 11, 5, [3, 3], [1, 1], [1, 1], 1),
        (1, 32, 7, 6, 8, [3, 2], [0, 1], [2, 1], 2),
        (3, 16, 1, 40, 3, [1, 9], [0, 4], [1, 1], 1),
        (2, 24, 20, 20, 6, [5, 5], [2, 2], [1, 1], 1),
        (1, 16, 200, 10, 64, [3, 3], [1, 1], [1, 1], 1),
        (2, 16, 1, 1500, 64, [1, 9], [0, 4], [1, 1], 1),
        (1, 16, 12, 12, 4, [3, 3], [0, 0], [1, 1], 1),
        // 9 wide columns for 7: the forward on the grid, the input gradient by im2col,
        // the weight gradient (9 output channels) by im2col too
        (2, 16, 7, 7, 9, [3, 3], [1, 1], [1, 1], 1),
        // 5,098 wide columns per image: two runs of the input gradient's products; the
        // weight gradient pads one image at a time (in tests)
        (2, 16, 50, 100, 16, [3, 3], [1, 1], [1, 1], 1),
        // (channel, tap) pairs left over from the weight gradient's blocks (64 pairs
        // per group: five blocks of 12, then 3 and 1), two groups over several images
        (2, 32, 9, 10, 32, [2, 2], [1, 1], [1, 1], 2),
        (3, 32, 6, 12, 16, [3, 3], [1, 1], [1, 1], 2),
        // three images padded two and then one at a time (in tests)
        (3, 16, 40, 60, 32, [3, 3], [1, 1], [1, 1], 1),
        // short planes: a product takes the runs of three images, then of two (in tests,
        // two threads), forward and input gradient
        (5, 16, 5, 12, 24, [3, 3], [1, 1], [1, 1], 1),
        // a 7² plane and 40 output channels: the forward vectorized along channels
        // (`conv_channels.rs`), two panels and a partial one; the weight gradient's
        // sums (`conv_weight.rs`), two blocks of 16 channels and one of 8
        (3, 16, 7, 7, 40, [3, 3], [1, 1], [1, 1], 1),
        // a 14² plane of 40 input channels: the input gradient vectorized along channels
        (2, 40, 14, 14, 8, [3, 3], [1, 1], [1, 1], 1),
        // border positions skipping the taps that read padding: dilated, and a 5×5
        // kernel whose middle rows read every tap
        (2, 16, 14, 14, 20, [3, 3], [2, 2], [2, 2], 1),
        (3, 16, 14, 14, 24, [5, 5], [2, 2], [1, 1], 1),
        // (two images: each thread's one keeps all its channels in one block of 16+,
        // whatever the number of threads)
        (2, 40, 20, 20, 8, [5, 5], [2, 2], [1, 1], 2),
        (2, 32, 20, 20, 8, [3, 3], [2, 2], [2, 2], 1),
    ];
    for case in cases {
        let (p, x, wt, gy) = stride_1(case);
        let p3 = from_2d(&p);
        assert!(forward_applies(&p3), "{p:?} takes the grid's forward");
        assert_eq!(
            applies(&p3),
            (p.w + 2 * p.padding[1]) * 5 <= p.ow * 6,
            "{p:?}: the gradients' path"
        );
        if p.c_out == 64 {
            let wd = wide(&p3);
            let runs = wd.spans(&p3, wd.forward_cols).count();
            assert!(runs > 1, "{p:?} splits into runs");
        }
        let [y, gx, gw] = definition(&x, &wt, &gy, &p);
        let name = format!("{p:?}");
        assert_close(
            &format!("{name} y"),
            &conv2d::forward(&x, &wt, &p).unwrap(),
            &y,
        );
        let gx_got = conv2d::grad_input(&gy, &wt, &p).unwrap();
        assert_close(&format!("{name} gx"), &gx_got, &gx);
        let gw_got = conv2d::grad_weight(&x, &gy, &p).unwrap();
        let terms = p.n * p.oh * p.ow;
        assert_close_sums(&format!("{name} gw"), &gw_got, &gw, terms);
    }
}

/// A non-finite input or weight value reaches only what the definition gives it: the
/// dropped wide columns are zeroed in the input gradient, not multiplied as 0·∞ (an ∞
/// weight would otherwise reach the input gradient of a pixel it never touches), and the
/// weight gradient (2 output channels: im2col's; 16: `conv_weight.rs`'s) multiplies an ∞
/// in an image's last column only by the output gradients the definition does. The
/// forward is not compared: there, as in PyTorch and im2col, an ∞ weight times a padding
/// zero gives NaN, which the definition skips.
#[test]
fn non_finite_values_stay_where_the_definition_puts_them() {
    // 10×10: one run of columns; 8×41: the second run starts inside row 5's dropped
    // columns (wide column 256 of rows 43 wide).
    for (h, w, c_out) in [(10, 10, 2), (8, 41, 2), (10, 10, 16), (8, 41, 16)] {
        let p = Conv2dParams {
            n: 1,
            c_in: 16,
            h,
            w,
            c_out,
            oh: h,
            ow: w,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            dilation: [1, 1],
            groups: 1,
        };
        assert!(applies(&from_2d(&p)));
        assert_eq!(
            super::super::conv_weight::applies(&from_2d(&p)),
            c_out == 16
        );
        let (mut x, mut wt, gy) = operands(&p);
        let same = |what: &str, got: &[f32], want: &[f64]| {
            assert_eq!(got.len(), want.len(), "{what}");
            for (i, (&g, &e)) in got.iter().zip(want).enumerate() {
                if e.is_finite() {
                    assert!(
                        (g as f64 - e).abs() <= 1e-4 * (1.0 + e.abs()),
                        "{h}x{w} {what}[{i}]: {g} vs {e}"
                    );
                } else {
                    assert!(!g.is_finite(), "{h}x{w} {what}[{i}]: {g} vs {e}");
                }
            }
        };
        // Channel 0, row 0, last column.
        x[w - 1] = f32::INFINITY;
        let [_, _, gw] = definition(&x, &wt, &gy, &p);
        same("gw", &conv2d::grad_weight(&x, &gy, &p).unwrap(), &gw);
        assert!(gw.iter().any(|v| v.is_finite()) && gw.iter().any(|v| !v.is_finite()));
        x[w - 1] = 0.5;
        // Output channel 0, input channel 0, tap (1, 2).
        wt[5] = f32::INFINITY;
        let [_, gx, _] = definition(&x, &wt, &gy, &p);
        same("gx", &conv2d::grad_input(&gy, &wt, &p).unwrap(), &gx);
        assert!(gx.iter().any(|v| v.is_finite()) && gx.iter().any(|v| !v.is_finite()));
    }
}

/// Padding and dilation so large that the padded grid overflows (or dwarfs the data)
/// leave the convolution to im2col, which only visits the kept windows.
#[test]
fn a_padded_grid_far_larger_than_the_data_is_left_to_im2col() {
    let p = Conv2dParams {
        n: 1,
        c_in: 16,
        h: 1,
        w: 10,
        c_out: 16,
        oh: 1,
        ow: 10,
        kernel: [2, 1],
        stride: [1, 1],
        padding: [1 << 61, 0],
        dilation: [1 << 62, 1],
        groups: 1,
    };
    assert!(!applies(&from_2d(&p)));
    let wide_axis = Conv2dParams {
        kernel: [1, 2],
        padding: [0, 1 << 61],
        dilation: [1, 1 << 62],
        ..p
    };
    assert!(!applies(&from_2d(&wide_axis)));
    let huge = Conv2dParams {
        padding: [100_000_000, 0],
        dilation: [200_000_000, 1],
        ..p
    };
    assert!(!applies(&from_2d(&huge)));
    assert!(applies(&from_2d(&Conv2dParams {
        padding: [1, 0],
        dilation: [2, 1],
        ..p
    })));
}

/// The 3-D convolution's definition in f64: the output and both gradients.
pub(crate) fn definition_3d(x: &[f32], w: &[f32], gy: &[f32], p: &Conv3dParams) -> [Vec<f64>; 3] {
    let (cg, og) = (p.c_in / p.groups, p.c_out / p.groups);
    let (mut y, mut gx, mut gw) = (
        vec![0.0f64; p.output_len()],
        vec![0.0f64; p.input_len()],
        vec![0.0f64; p.weight_len()],
    );
    let taps: usize = p.kernel.iter().product();
    let out: usize = p.output.iter().product();
    for (yi, yv) in y.iter_mut().enumerate() {
        let (pos, o, ni) = (yi % out, yi / out % p.c_out, yi / out / p.c_out);
        let at = [
            pos / (p.output[1] * p.output[2]),
            pos / p.output[2] % p.output[1],
            pos % p.output[2],
        ];
        for cc in 0..cg {
            let ci = o / og * cg + cc;
            for t in 0..taps {
                let tap = [
                    t / (p.kernel[1] * p.kernel[2]),
                    t / p.kernel[2] % p.kernel[1],
                    t % p.kernel[2],
                ];
                let mut xi = ni * p.c_in + ci;
                let mut inside = true;
                for a in 0..3 {
                    let v = (at[a] + tap[a] * p.dilation[a]) as isize - p.padding[a] as isize;
                    inside &= v >= 0 && v < p.input[a] as isize;
                    xi = xi * p.input[a] + v.max(0) as usize;
                }
                if !inside {
                    continue;
                }
                let wi = (o * cg + cc) * taps + t;
                *yv += (x[xi] * w[wi]) as f64;
                gx[xi] += (gy[yi] * w[wi]) as f64;
                gw[wi] += (gy[yi] * x[xi]) as f64;
            }
        }
    }
    [y, gx, gw]
}

/// 3-D convolutions: padding on some axes, dilation along the depth, groups, and a
/// kernel of depth 1.
#[test]
fn three_d_taps_on_the_padded_grid_match_the_definition() {
    // (n, c_in, input, c_out, kernel, padding, dilation, groups)
    let cases = [
        (2, 16, [4, 5, 10], 3, [3, 3, 3], [1, 1, 1], [1, 1, 1], 1),
        (1, 32, [7, 4, 9], 4, [2, 3, 2], [0, 1, 1], [2, 1, 1], 2),
        (3, 16, [3, 6, 10], 5, [1, 3, 3], [1, 0, 1], [1, 1, 1], 1),
        // small planes of 16+ channels (forward and input gradient vectorized along
        // channels): the first and last slices skip the kernel's outer depth taps
        (2, 20, [3, 10, 10], 24, [3, 3, 3], [1, 1, 1], [1, 1, 1], 1),
        // the weight gradient's sums over groups of 16 input and 20 output channels,
        // dilated along the depth
        (2, 32, [5, 6, 10], 40, [3, 3, 3], [1, 1, 1], [2, 1, 1], 2),
    ];
    for (n, c_in, input, c_out, kernel, padding, dilation, groups) in cases {
        let output = [0, 1, 2].map(|a| input[a] + 2 * padding[a] - dilation[a] * (kernel[a] - 1));
        let p = Conv3dParams {
            n,
            c_in,
            c_out,
            input,
            output,
            kernel,
            stride: [1; 3],
            padding,
            dilation,
            groups,
        };
        assert!(applies(&p), "{p:?} takes the grid's gradients");
        let x: Vec<f32> = (0..p.input_len()).map(|i| value(i, 1)).collect();
        let wt: Vec<f32> = (0..p.weight_len()).map(|i| value(i, 2)).collect();
        let gy: Vec<f32> = (0..p.output_len()).map(|i| value(i, 3)).collect();
        let [y, gx, gw] = definition_3d(&x, &wt, &gy, &p);
        let name = format!("{p:?}");
        assert_close(&name, &forward(&x, &wt, &p, None).unwrap(), &y);
        assert_close(&name, &grad_input(&gy, &wt, &p).unwrap(), &gx);
        assert_close(&name, &grad_weight(&x, &gy, &p).unwrap(), &gw);
    }
}

/// `conv_weight.rs` splits a group's pairs between more tasks the more threads there
/// are; each sum still adds the same products in the same order, so the weight gradient
/// is the same bit for bit.
#[test]
fn weight_gradient_sums_do_not_depend_on_the_threads() {
    let (p, x, _, gy) = stride_1((3, 32, 14, 14, 64, [3, 3], [1, 1], [1, 1], 1));
    let p3 = from_2d(&p);
    assert!(super::super::conv_weight::applies(&p3));
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool");
        pool.install(|| super::super::conv_weight::grad_weight(&x, &gy, &p3).unwrap())
    };
    let one = run(1);
    for threads in [2, 3, 5] {
        assert!(run(threads) == one, "{threads} threads");
    }
}

/// Strided layers of 16+ channels take `conv_weight.rs`'s sums too, each row reading
/// every `stride`-th column of the padded input: strides 2 and 3 (different per axis),
/// padding, dilation, groups, and a last output column whose last tap reads the padded
/// grid's last column.
#[test]
fn strided_weight_gradients_match_the_definition() {
    // (n, c_in, h, w, c_out, kernel, stride, padding, dilation, groups)
    let cases = [
        (2, 16, 14, 14, 32, [3, 3], [2, 2], [1, 1], [1, 1], 1),
        (3, 32, 9, 11, 40, [3, 3], [2, 3], [1, 0], [1, 1], 2),
        (1, 16, 16, 15, 16, [5, 5], [3, 3], [2, 2], [1, 1], 1),
        // two blocks of output channels per tile with AVX-512, 400 pairs: the last tile's
        // pairs end in blocks of 3 and 1
        (1, 16, 16, 15, 32, [5, 5], [3, 3], [2, 2], [1, 1], 1),
        (2, 24, 13, 13, 16, [3, 3], [2, 2], [2, 2], [2, 2], 1),
    ];
    for (n, c_in, h, w, c_out, kernel, stride, padding, dilation, groups) in cases {
        let out = |a: usize, side: usize| {
            (side + 2 * padding[a] - dilation[a] * (kernel[a] - 1) - 1) / stride[a] + 1
        };
        let p = Conv2dParams {
            n,
            c_in,
            h,
            w,
            c_out,
            oh: out(0, h),
            ow: out(1, w),
            kernel,
            stride,
            padding,
            dilation,
            groups,
        };
        assert!(super::super::conv_weight::applies(&from_2d(&p)), "{p:?}");
        let (x, wt, gy) = operands(&p);
        let [_, _, gw] = definition(&x, &wt, &gy, &p);
        let got = conv2d::grad_weight(&x, &gy, &p).unwrap();
        assert_close_sums(&format!("{p:?}"), &got, &gw, n * p.oh * p.ow);
    }
}

/// `conv2d::grad_weight` sends 16+ input channels per group to the padded input's sums:
/// with 16+ output channels `conv_weight.rs`'s (at 7² and at stride 2 too, where the wide
/// grid does not serve), with fewer `conv_weight_wide.rs`'s (a last layer, 32 → 3 with a
/// 9×9 kernel). Each path rounds its own way, so equal bits show which one ran.
#[test]
fn weight_gradients_take_the_padded_input_sums() {
    use super::super::{conv_weight, conv_weight_wide};
    // (n, c_in, side, c_out, kernel, stride, padding), through the wide grid's sums
    let cases = [
        ((1, 32, 48, 3, 9, 1, 4), true),
        ((2, 16, 14, 32, 3, 1, 1), false),
        ((2, 16, 7, 32, 3, 1, 1), false),
        ((2, 16, 14, 32, 3, 2, 1), false),
    ];
    for ((n, c_in, side, c_out, k, s, pad), wide_sums) in cases {
        let out = (side + 2 * pad - k) / s + 1;
        let p = Conv2dParams {
            n,
            c_in,
            h: side,
            w: side,
            c_out,
            oh: out,
            ow: out,
            kernel: [k, k],
            stride: [s, s],
            padding: [pad, pad],
            dilation: [1, 1],
            groups: 1,
        };
        let (x, _, gy) = operands(&p);
        let p3 = from_2d(&p);
        let want = if wide_sums {
            conv_weight_wide::grad_weight(&x, &gy, &p3)
                .unwrap()
                .unwrap()
        } else {
            conv_weight::grad_weight(&x, &gy, &p3).unwrap()
        };
        let got = conv2d::grad_weight(&x, &gy, &p).unwrap();
        assert!(got == want, "{p:?}");
    }
}

/// A thread's kept padded input, reused by smaller inputs with other padding (each with
/// values far from the last), holds exactly what `spread` makes: nothing of an earlier
/// input left in the padding, the slack or past the planes.
#[test]
fn kept_padded_inputs_are_made_afresh() {
    let cases = [
        (8, [1, 16, 16], [0, 2, 2], 0),
        (3, [2, 9, 11], [1, 2, 1], 40),
        (2, [1, 4, 5], [0, 1, 1], 32),
    ];
    for (round, (c_in, input, padding, slack)) in cases.into_iter().enumerate() {
        let kernel = [1, 3, 3];
        let output = [0, 1, 2].map(|a| input[a] + 2 * padding[a] + 1 - kernel[a]);
        let p = Conv3dParams {
            n: 2,
            c_in,
            c_out: 4,
            input,
            output,
            kernel,
            stride: [1; 3],
            padding,
            dilation: [1; 3],
            groups: 1,
        };
        let wd = wide(&p);
        let src: Vec<f32> = (0..p.input_len())
            .map(|i| value(i, round) + 10.0 * round as f32)
            .collect();
        let want = spread(&src, &p, &wd, true, slack).unwrap();
        with_padded(&src, &p, &wd, slack, |xp| {
            assert_eq!(xp, &want[..], "{p:?}, slack {slack}");
            Ok(())
        })
        .unwrap();
    }
}
