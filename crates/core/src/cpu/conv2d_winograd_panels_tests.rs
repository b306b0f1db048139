use super::*;
use crate::cpu::conv2d::{self, definition};
use crate::cpu::conv_shifted::tests::{assert_close, assert_same, stride_1};

/// (n, c_in, h, w, c_out, padding): full panels of 32 tiles (7², 4 tiles a row, and 3²),
/// short ones (14²'s rows of 7 tiles, 4 to a panel; an odd count of tile rows), the
/// widest rows this path takes (64 outputs, one tile row a panel), input channels past
/// one 256-deep slice and not a multiple of 16, output channels not a multiple of the
/// register block's 12 rows, padding 0 to 2, planes of one output and of one row.
const CASES: [(usize, usize, usize, usize, usize, usize); 9] = [
    (8, 64, 7, 7, 64, 1),
    (3, 300, 7, 7, 70, 1),
    (1, 64, 14, 14, 76, 1),
    (2, 70, 9, 9, 64, 0),
    (1, 64, 5, 60, 66, 2),
    (5, 65, 3, 3, 64, 1),
    (1, 64, 3, 64, 64, 1),
    (4, 64, 1, 1, 64, 1),
    (2, 64, 1, 9, 64, 1),
];

/// This path's forward and input gradient (run directly, whatever the rule says about
/// these small shapes) equal the definition, where the processor has AVX-512; the test
/// is one of the instruction set's, and says so where it is missing.
#[test]
fn matches_the_definition() {
    if !avx512_here() {
        return;
    }
    for (n, c, h, w, o, pad) in CASES {
        assert_path_matches(&stride_1((n, c, h, w, o, [3, 3], [pad, pad], [1, 1], 1)));
    }
}

/// Whether this processor runs the path (AVX-512); where it does not, the rule declines
/// even ResNet's 512@7², and the test says that it checked no more.
fn avx512_here() -> bool {
    if std::arch::is_x86_feature_detected!("avx512f") {
        return true;
    }
    let deep = stride_1((8, 512, 7, 7, 512, [3, 3], [1, 1], [1, 1], 1)).0;
    assert!(!applies(&deep) && !grad_input_applies(&deep));
    eprintln!("no AVX-512 here: the panels' path is not built to run");
    false
}

/// This path's forward and input gradient of the case equal the definition's (the input
/// gradient where its rows fit the path: 64 outputs); the definition, for more checks.
fn assert_path_matches(
    (p, x, wt, gy): &(Conv2dParams, Vec<f32>, Vec<f32>, Vec<f32>),
) -> [Vec<f64>; 3] {
    let want = definition(x, wt, gy, p);
    let y = forward(x, wt, p).unwrap().expect("finite");
    assert_close(&format!("{p:?} y"), &y, &want[0]);
    if winograd::backward(p).ow <= 64 {
        let gx = grad_input(gy, wt, p).unwrap().expect("finite");
        assert_close(&format!("{p:?} gx"), &gx, &want[1]);
    }
    want
}

/// A batch of more tiles than one pass takes (520 images of one tile each) runs in
/// passes of whole images, the last one short, and equals the definition.
#[test]
fn large_batches_run_in_passes() {
    let case = stride_1((520, 64, 2, 2, 64, [3, 3], [1, 1], [1, 1], 1));
    let p = case.0;
    assert!(p.n * p.oh.div_ceil(2) * p.ow.div_ceil(2) > MAX_TILES);
    if avx512_here() {
        assert_path_matches(&case);
    }
}

/// A convolution of 512@7² (ResNet's last stage; at batch 2, its 32 tiles enough) takes
/// this path through the convolution's forward and input gradient where it runs, and the
/// results are the definition's either way.
#[test]
fn the_deep_layers_take_it() {
    let (p, x, wt, gy) = stride_1((2, 512, 7, 7, 512, [3, 3], [1, 1], [1, 1], 1));
    assert!(
        !winograd::applies(&p),
        "the shared kernels' path keeps off 7² planes"
    );
    assert_eq!(applies(&p), super::super::cpu_level() == Level::Avx512);
    let want = definition(&x, &wt, &gy, &p);
    let y = conv2d::forward(&x, &wt, &p).unwrap();
    assert_close(&format!("{p:?} y"), &y, &want[0]);
    let gx = conv2d::grad_input(&gy, &wt, &p).unwrap();
    assert_close(&format!("{p:?} gx"), &gx, &want[1]);
}

/// An infinity spreads NaN over its tiles here, so this path declines, and the
/// convolution's forward and input gradient give the definition's infinities and NaNs.
#[test]
fn a_non_finite_value_goes_to_the_direct_products() {
    let (p, mut x, mut wt, gy) = stride_1((2, 128, 7, 7, 128, [3, 3], [1, 1], [1, 1], 1));
    x[40] = f32::INFINITY;
    if applies(&p) {
        assert!(forward(&x, &wt, &p).unwrap().is_none());
    }
    let got = conv2d::forward(&x, &wt, &p).unwrap();
    assert_same(&format!("{p:?}"), &got, &definition(&x, &wt, &gy, &p)[0]);
    wt[7] = f32::NEG_INFINITY;
    if applies(&p) {
        assert!(grad_input(&gy, &wt, &p).unwrap().is_none());
    }
    let got = conv2d::grad_input(&gy, &wt, &p).unwrap();
    assert_same(&format!("{p:?} gx"), &got, &definition(&x, &wt, &gy, &p)[1]);
}

/// The rule: 3×3 at stride 1 and dilation 1, one group, 128 channels or more each side,
/// the fewer channels times the tiles 12 288 or more, rows of at most 64 outputs,
/// padding at most 2 for the input gradient; AVX-512 only.
#[test]
fn the_rule() {
    let here = super::super::cpu_level() == Level::Avx512;
    let case = |n, c, h, w, o, pad| stride_1((n, c, h, w, o, [3, 3], [pad, pad], [1, 1], 1)).0;
    assert_eq!(applies(&case(8, 512, 7, 7, 512, 1)), here);
    assert_eq!(grad_input_applies(&case(8, 512, 7, 7, 512, 1)), here);
    assert_eq!(
        applies(&case(1, 256, 14, 14, 256, 1)),
        here,
        "49 tiles of 256"
    );
    assert!(!applies(&case(1, 128, 14, 14, 128, 1)), "49 tiles of 128");
    assert!(!applies(&case(1, 512, 7, 7, 512, 1)), "16 tiles");
    assert_eq!(
        applies(&case(1, 128, 9, 64, 128, 1)),
        here,
        "64 outputs wide"
    );
    assert!(!applies(&case(1, 128, 9, 65, 128, 1)), "65 outputs wide");
    assert!(!applies(&case(8, 127, 7, 7, 512, 1)), "127 input channels");
    assert!(!applies(&case(8, 512, 7, 7, 64, 1)), "64 output channels");
    assert!(
        !grad_input_applies(&case(8, 128, 7, 7, 128, 3)),
        "padding 3"
    );
    let mut strided = case(8, 128, 14, 14, 128, 1);
    strided.stride = [2, 2];
    assert!(!applies(&strided));
    let mut grouped = case(8, 128, 7, 7, 128, 1);
    grouped.groups = 2;
    assert!(!applies(&grouped));
}

/// `G·g·Gᵀ` of every kernel, as `kernels_to` writes it, equals the definition's sums
/// (computed in f64) for the forward's kernels and the input gradient's (turned by half
/// a circle, input and output channels swapped), over a run of inputs that is not a
/// multiple of 16 and starts past the first.
#[test]
fn kernels_to_transforms_every_kernel() {
    if !avx512_here() {
        return;
    }
    const G: [[f64; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    let (outs, ins, (i0, i1)) = (5, 41, (3, 40));
    let w: Vec<f32> = (0..outs * ins * 9)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
        .collect();
    for which in [Kernels::Forward, Kernels::Backward] {
        for o in 0..outs {
            let ld = 50;
            let mut dst = vec![f32::NAN; 16 * ld];
            // SAFETY: `dst` holds 16 rows of `ld ≥ i1 − i0` values.
            unsafe { kernels_to(&w, (outs, ins), which, o, (i0, i1), dst.as_mut_ptr(), ld) };
            for i in i0..i1 {
                let tap = |t: usize| match which {
                    Kernels::Forward => w[(o * ins + i) * 9 + t] as f64,
                    Kernels::Backward => w[(i * outs + o) * 9 + 8 - t] as f64,
                };
                for k in 0..16 {
                    let want: f64 = (0..9)
                        .map(|t| G[k / 4][t / 3] * G[k % 4][t % 3] * tap(t))
                        .sum();
                    let got = dst[k * ld + i - i0] as f64;
                    assert!(
                        (got - want).abs() <= 1e-6 * (1.0 + want.abs()),
                        "{o} {i} {k}"
                    );
                }
            }
            assert!(
                dst[i1 - i0..ld].iter().all(|v| v.is_nan()),
                "wrote past the run"
            );
        }
    }
}

/// Eight shapes drawn at random (a fixed seed: batches of 1–3, 1–160 channels each side,
/// planes 1–20 high and 1–66 wide, padding 0–2), this path's forward and input gradient
/// and the convolution's own against the definition: the panels' edges, short panels,
/// partial register blocks and slices wherever they fall.
#[test]
fn random_shapes_match_the_definition() {
    if !avx512_here() {
        return;
    }
    let mut state: u64 = 0x5eed_f0ea;
    let mut below = |m: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % m
    };
    let mut ran = 0;
    while ran < 8 {
        let (n, c, o) = (1 + below(3), 1 + below(160), 1 + below(160));
        let (h, w, pad) = (1 + below(20), 1 + below(66), below(3));
        if h + 2 * pad < 3 || w + 2 * pad < 3 || w + 2 * pad - 2 > 64 {
            continue;
        }
        ran += 1;
        let case = stride_1((n, c, h, w, o, [3, 3], [pad, pad], [1, 1], 1));
        let want = assert_path_matches(&case);
        let (p, x, wt, gy) = case;
        let y = conv2d::forward(&x, &wt, &p).unwrap();
        assert_close(&format!("{p:?} through conv2d"), &y, &want[0]);
        let gx = conv2d::grad_input(&gy, &wt, &p).unwrap();
        assert_close(&format!("{p:?} gx through conv2d"), &gx, &want[1]);
    }
}
