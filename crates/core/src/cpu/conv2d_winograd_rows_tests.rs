use super::*;
use crate::cpu::conv2d::definition;
use crate::cpu::conv_shifted::tests::{assert_close, assert_same, stride_1};

/// (n, c_in, h, w, c_out, k, padding): kernels of 2 to 11 taps (chunks of three padded
/// with zero taps), outputs not a multiple of three (a last tile cropped), one row and
/// several, padding from none to `k − 1`, channels not a multiple of anything, and more
/// than 64 (AVX-512's blocks of 64 outputs and one of 16 after them).
const CASES: [(usize, usize, usize, usize, usize, usize, usize); 8] = [
    (2, 16, 1, 40, 17, 9, 4),
    (2, 64, 1, 45, 80, 9, 4),
    (1, 19, 1, 31, 16, 3, 0),
    (3, 16, 1, 23, 20, 7, 3),
    (2, 17, 3, 13, 16, 5, 2),
    (1, 16, 2, 50, 33, 11, 0),
    (2, 16, 1, 10, 16, 2, 1),
    (1, 16, 4, 8, 16, 4, 3),
];

/// The forward and the input gradient, at every instruction set level (this build runs
/// the level's transforms), equal to the definition.
#[test]
fn matches_the_definition() {
    for (n, c, h, w, o, k, pad) in CASES {
        assert_both_match(stride_1((n, c, h, w, o, [1, k], [0, pad], [1, 1], 1)));
    }
}

/// The forward and the input gradient of `p` here equal the definition's.
fn assert_both_match((p, x, wt, gy): (Conv2dParams, Vec<f32>, Vec<f32>, Vec<f32>)) {
    let want = definition(&x, &wt, &gy, &p);
    let y = forward(&x, &wt, &p).unwrap().expect("finite");
    assert_close(&format!("{p:?} y"), &y, &want[0]);
    let gx = grad_input(&gy, &wt, &p).unwrap().expect("finite");
    assert_close(&format!("{p:?} gx"), &gx, &want[1]);
}

/// Many tiles: the blocks start inside rows, so a block's windows run over the end of
/// one row into the next and the product's rows straddling them are dropped.
#[test]
fn blocks_split_rows() {
    let case = stride_1((1, 16, 5, 1400, 16, [1, 9], [0, 4], [1, 1], 1));
    let p = case.0;
    let tiles = p.ow.div_ceil(3);
    let blocks = blocks(p.n * p.oh * tiles, p.c_in + p.c_out, 2);
    assert!(blocks.iter().any(|&(g0, _)| g0 % tiles != 0), "{blocks:?}");
    assert!(blocks
        .iter()
        .any(|&(g0, g1)| g0 / tiles != (g1 - 1) / tiles));
    assert_both_match(case);
}

/// An infinity spreads NaN over its tiles here, so this path declines, and the
/// convolution's forward and input gradient give the definition's infinities and NaNs.
#[test]
fn a_non_finite_value_goes_to_the_other_paths() {
    let (p, mut x, mut wt, gy) = stride_1((2, 64, 1, 300, 64, [1, 9], [0, 4], [1, 1], 1));
    assert_eq!(
        applies(&p) && grad_input_applies(&p),
        super::super::cpu_level() != super::super::Level::Base
    );
    x[40] = f32::INFINITY;
    assert!(forward(&x, &wt, &p).unwrap().is_none());
    let want = definition(&x, &wt, &gy, &p);
    let got = crate::cpu::conv2d::forward(&x, &wt, &p).unwrap();
    assert_same(&format!("{p:?}"), &got, &want[0]);
    wt[5] = f32::NAN;
    assert!(grad_input(&gy, &wt, &p).unwrap().is_none());
    let want = definition(&x, &wt, &gy, &p);
    let got = crate::cpu::conv2d::grad_input(&gy, &wt, &p).unwrap();
    assert_same(&format!("{p:?}"), &got, &want[1]);
}

/// What takes this path: long rows under kernels of 5 to 11 taps; not 3 or 4 taps, short
/// rows, few channels, strides, dilations, groups or padded heights.
#[test]
fn takes_the_rows_it_pays_for() {
    let p = |c: usize, k: usize, w: usize| stride_1((1, c, 1, w, c, [1, k], [0, 0], [1, 1], 1)).0;
    let here = super::super::cpu_level() != super::super::Level::Base;
    for k in [5, 6, 7, 9, 11] {
        assert_eq!(applies(&p(64, k, 4096)), here, "{k} taps");
    }
    for (c, k, w) in [(64, 3, 4096), (64, 4, 4096), (64, 9, 40), (16, 9, 4096)] {
        assert!(!applies(&p(c, k, w)), "{c} channels, {k} taps, {w} long");
    }
    let q = p(64, 9, 4096);
    // A stride of 2 over two rows gives one, which the stride's normalisation sets to 1.
    let collapsed = Conv2dParams {
        h: 2,
        stride: [2, 1],
        ..q
    }
    .normalized();
    assert_eq!((collapsed.stride, collapsed.oh), ([1, 1], 1));
    for other in [
        collapsed,
        Conv2dParams {
            dilation: [1, 2],
            ..q
        },
        Conv2dParams { groups: 2, ..q },
        Conv2dParams {
            padding: [1, 0],
            ..q
        },
        Conv2dParams {
            kernel: [3, 9],
            ..q
        },
        Conv2dParams {
            stride: [1, 2],
            ..q
        },
    ] {
        assert!(!applies(&other), "{other:?}");
    }
}
