use super::*;
use crate::cpu::conv_shifted::tests::{assert_close, assert_same, definition_3d, value};

/// `p` for `(n, c_in, input, c_out, kernel, padding)` at stride 1, with its operands.
#[allow(clippy::type_complexity)]
fn case(
    (n, c_in, input, c_out, kernel, padding): (
        usize,
        usize,
        [usize; 3],
        usize,
        [usize; 3],
        [usize; 3],
    ),
) -> (Conv3dParams, Vec<f32>, Vec<f32>, Vec<f32>) {
    let p = Conv3dParams {
        n,
        c_in,
        c_out,
        input,
        output: [0, 1, 2].map(|a| input[a] + 2 * padding[a] + 1 - kernel[a]),
        kernel,
        stride: [1; 3],
        padding,
        dilation: [1; 3],
        groups: 1,
    };
    let (x, wt, gy) = operands(&p);
    (p, x, wt, gy)
}

/// The input, weight and output gradient for `p`.
fn operands(p: &Conv3dParams) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let values = |len: usize, s: usize| (0..len).map(|i| value(i, s)).collect();
    (
        values(p.input_len(), 1),
        values(p.weight_len(), 2),
        values(p.output_len(), 3),
    )
}

/// The forward and the input gradient of `p` here equal the definition's.
fn assert_both_match((p, x, wt, gy): (Conv3dParams, Vec<f32>, Vec<f32>, Vec<f32>)) {
    let [y, gx, _] = definition_3d(&x, &wt, &gy, &p);
    let got = forward(&x, &wt, &p).unwrap().expect("finite");
    assert_close(&format!("{p:?} y"), &got, &y);
    let got = grad_input(&gy, &wt, &p).unwrap().expect("finite");
    assert_close(&format!("{p:?} gx"), &got, &gx);
}

/// Kernels 2 or 3 deep and 1 or 3 high, padding from none to `k − 1` on each axis, widths
/// that are not a multiple of three (padded rows rounded up), one image and several,
/// channels not a multiple of anything and more than 64: at every instruction set level
/// (this build runs the level's transforms and products).
#[test]
fn matches_the_definition() {
    for c in [
        (2, 32, [4, 5, 7], 33, [3, 3, 3], [1, 1, 1]),
        (1, 35, [3, 4, 9], 32, [2, 3, 3], [0, 1, 0]),
        (2, 32, [5, 3, 8], 40, [3, 1, 3], [2, 0, 1]),
        (1, 32, [2, 6, 13], 32, [3, 3, 3], [1, 2, 2]),
        (2, 64, [3, 4, 7], 80, [3, 3, 3], [1, 1, 1]),
    ] {
        assert_both_match(case(c));
    }
}

/// Enough tiles per slice for two blocks, the second starting inside a row, and one
/// image for two threads: the blocks of each slice split between them.
#[test]
fn blocks_split_rows() {
    let c = case((1, 32, [3, 41, 60], 32, [3, 3, 3], [1, 1, 1]));
    let g = Grid::new(&c.0);
    assert!(
        g.tiles > rows::BLOCK_VALUES / (POINTS * 64) && !(g.tiles / 2).is_multiple_of(g.wp / 3)
    );
    assert_both_match(c);
}

/// An infinity spreads NaN over its tiles here, so this path declines, and the
/// convolution's forward and input gradient give the definition's infinities and NaNs.
#[test]
fn a_non_finite_value_goes_to_the_other_paths() {
    let (p, mut x, mut wt, gy) = case((2, 32, [3, 12, 14], 32, [3, 3, 3], [1, 1, 1]));
    let here = super::super::cpu_level() != Level::Base;
    assert_eq!(applies(&p) && grad_input_applies(&p), here);
    x[40] = f32::INFINITY;
    assert!(forward(&x, &wt, &p).unwrap().is_none());
    let [y, _, _] = definition_3d(&x, &wt, &gy, &p);
    assert_same(&format!("{p:?}"), &try_forward(&x, &wt, &p).unwrap(), &y);
    wt[5] = f32::NAN;
    assert!(grad_input(&gy, &wt, &p).unwrap().is_none());
    let [_, gx, _] = definition_3d(&x, &wt, &gy, &p);
    assert_same(
        &format!("{p:?}"),
        &try_grad_input(&gy, &wt, &p).unwrap(),
        &gx,
    );
}

/// What takes this path: kernels three wide and more than one deep, padded less than
/// their size, 32+ channels, 64+ tiles per slice (not 7², 21 tiles); not 2-D kernels,
/// strides, dilations or groups.
#[test]
fn takes_the_kernels_it_serves() {
    let q = case((1, 32, [4, 12, 14], 32, [3, 3, 3], [1, 1, 1])).0;
    assert_eq!(applies(&q), super::super::cpu_level() != Level::Base);
    for other in [
        Conv3dParams {
            kernel: [1, 3, 3],
            ..q
        },
        Conv3dParams {
            kernel: [3, 3, 5],
            ..q
        },
        Conv3dParams {
            padding: [3, 1, 1],
            ..q
        },
        Conv3dParams {
            stride: [1, 1, 2],
            ..q
        },
        Conv3dParams {
            dilation: [2, 1, 1],
            ..q
        },
        Conv3dParams { groups: 2, ..q },
        Conv3dParams { c_in: 16, ..q },
        case((1, 32, [4, 7, 7], 32, [3, 3, 3], [1, 1, 1])).0,
        collapsed(),
    ] {
        assert!(!applies(&other), "{other:?}");
    }
}

/// A stride of 2 over 4 rows unpadded gives one row, so the stride's normalisation sets it
/// to 1, leaving sizes that stride 1 would not give.
fn collapsed() -> Conv3dParams {
    let q = case((1, 32, [4, 4, 8], 32, [3, 3, 3], [1, 0, 1])).0;
    let p = Conv3dParams {
        stride: [1, 2, 1],
        output: [4, 1, 8],
        ..q
    }
    .normalized();
    assert_eq!(p.stride, [1; 3]);
    p
}

/// Such a layer's forward and input gradient, which the other paths compute, equal the
/// definition's (the input gradient here would have read past its slices).
#[test]
fn a_collapsed_stride_takes_the_other_paths() {
    let p = collapsed();
    assert!(!applies(&p) && !grad_input_applies(&p));
    let (x, wt, gy) = operands(&p);
    let [y, gx, _] = definition_3d(&x, &wt, &gy, &p);
    assert_close(&format!("{p:?} y"), &try_forward(&x, &wt, &p).unwrap(), &y);
    assert_close(
        &format!("{p:?} gx"),
        &try_grad_input(&gy, &wt, &p).unwrap(),
        &gx,
    );
}
