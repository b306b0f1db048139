use super::*;
use crate::cpu::conv2d::definition;
use crate::cpu::conv_shifted::tests::{assert_close, assert_same, stride_1};

/// (n, c_in, h, w, c_out, padding): odd and even planes (a last tile row or column
/// cropped), padding 0 to 2, channels not a multiple of anything.
const CASES: [(usize, usize, usize, usize, usize, usize); 4] = [
    (2, 64, 9, 9, 70, 1),
    (1, 65, 6, 11, 64, 0),
    (3, 64, 5, 4, 66, 2),
    (5, 64, 3, 3, 64, 1),
];

/// The forward and the input gradient, at every instruction set level (this build runs
/// the level's transforms), equal to the definition.
#[test]
fn matches_the_definition() {
    for (n, c, h, w, o, pad) in CASES {
        assert_both_match(stride_1((n, c, h, w, o, [3, 3], [pad, pad], [1, 1], 1)));
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

/// Many tile rows: the blocks stop at `MAX_TILES` tiles and start mid-image; rows of 17
/// tiles take a second, partly empty vector of 16 in the AVX-512 transforms.
#[test]
fn blocks_split_images() {
    let case = stride_1((2, 64, 34, 33, 64, [3, 3], [1, 1], [1, 1], 1));
    let p = case.0;
    assert!(p.n * p.oh.div_ceil(2) * p.ow.div_ceil(2) > MAX_TILES);
    let th = p.oh.div_ceil(2);
    assert!(
        blocks(&p).iter().any(|&(r0, _)| r0 % th != 0),
        "{:?}",
        blocks(&p)
    );
    assert_both_match(case);
}

/// An infinity spreads NaN over its tiles here, so this path declines, and the
/// convolution's forward and input gradient give the definition's infinities and NaNs.
#[test]
fn a_non_finite_value_goes_to_the_direct_products() {
    let (p, mut x, mut wt, gy) = stride_1((4, 64, 16, 16, 64, [3, 3], [1, 1], [1, 1], 1));
    assert_eq!(
        applies(&p),
        super::super::cpu_level() != super::super::Level::Base
    );
    x[40] = f32::INFINITY;
    assert!(forward(&x, &wt, &p).unwrap().is_none());
    let got = crate::cpu::conv2d::forward(&x, &wt, &p).unwrap();
    assert_same(&format!("{p:?}"), &got, &definition(&x, &wt, &gy, &p)[0]);
    wt[7] = f32::NEG_INFINITY;
    assert!(grad_input(&gy, &wt, &p).unwrap().is_none());
    let got = crate::cpu::conv2d::grad_input(&gy, &wt, &p).unwrap();
    assert_same(&format!("{p:?} gx"), &got, &definition(&x, &wt, &gy, &p)[1]);
}

/// Blocks tile every tile row once, a multiple of the threads' count of them where there
/// are rows enough, at most one row apart in size.
#[test]
fn blocks_are_balanced() {
    let threads = rayon::current_num_threads();
    for (n, side) in [(8, 56), (1, 12), (3, 9), (8, 14), (1, 512)] {
        let p = stride_1((n, 64, side, side, 64, [3, 3], [1, 1], [1, 1], 1)).0;
        let b = blocks(&p);
        let rows = p.n * p.oh.div_ceil(2);
        assert_eq!((b[0].0, b[b.len() - 1].1), (0, rows), "{b:?}");
        assert!(b.windows(2).all(|w| w[0].1 == w[1].0), "{b:?}");
        assert!(b.len().is_multiple_of(threads) || b.len() == rows, "{b:?}");
        let sizes: Vec<usize> = b.iter().map(|(r0, r1)| r1 - r0).collect();
        let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(*lo >= 1 && hi - lo <= 1, "{b:?}");
        assert!(
            hi * p.ow.div_ceil(2) <= MAX_TILES.max(p.ow.div_ceil(2)),
            "{b:?}"
        );
    }
}

/// The rule: 256 tiles or more, planes of 8² or more, 64 channels or more, 3×3 at
/// stride 1, padding at most 2 for the input gradient; not at the baseline level.
#[test]
fn the_rule() {
    let vectors = super::super::cpu_level() != super::super::Level::Base;
    let case =
        |n, c, side, o, pad| stride_1((n, c, side, side, o, [3, 3], [pad, pad], [1, 1], 1)).0;
    assert_eq!(applies(&case(8, 256, 14, 256, 1)), vectors);
    assert_eq!(grad_input_applies(&case(8, 256, 14, 256, 1)), vectors);
    assert!(!applies(&case(1, 256, 14, 256, 1)), "49 tiles");
    assert!(!applies(&case(8, 512, 7, 512, 1)), "7² planes");
    assert!(!applies(&case(8, 32, 56, 64, 1)), "32 input channels");
    assert!(!grad_input_applies(&case(8, 64, 56, 64, 3)), "padding 3");
    let mut strided = case(8, 64, 56, 64, 1);
    strided.stride = [2, 2];
    assert!(!applies(&strided));
}

/// The AVX-512 windows (two tile rows per vector for rows of up to 8 tiles, 16 tiles of a
/// row otherwise) equal the portable loops' bit for bit (the same additions in the same
/// order): rows of 1 to 9 tiles and of 17, blocks of odd and even tile-row counts that
/// start mid-image, and pairs of tile rows from two images (3 tile rows per image).
#[test]
fn windows_match_the_portable_loops() {
    for w in (1..=18).chain([33]) {
        let (p, x, ..) = stride_1((3, 3, 5, w, 4, [3, 3], [1, 1], [1, 1], 1));
        let (th, tw) = (p.oh.div_ceil(2), p.ow.div_ceil(2));
        let rows = p.n * th;
        for (r0, r1) in [(0, rows), (1, rows), (2, rows - 1), (th - 1, th + 1)] {
            let fast = windows(&x, &p, (r0, r1), tw).unwrap();
            let tiles = (r1 - r0) * tw;
            let mut slow = vec![0.0; 16 * p.c_in * tiles];
            let (mut db, mut eo) = (vec![0.0; 16 * tiles], vec![0.0; 4 * tw + 4]);
            windows_into(&x, &p, (r0, r1, tw), &mut slow, &mut db, &mut eo);
            assert_eq!(fast, slow, "{w} wide, tile rows {r0}..{r1}");
        }
    }
}
