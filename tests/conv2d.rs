//! Convolutions on the wgpu backend against the CPU reference, forward and both
//! gradients: random shapes and options, then one case per kernel path (tile sizes,
//! stride phases, col2im, the depthwise kernel). Tolerances as in gpu_parity.rs.

// Inputs are handed over by clone for readability.
#![allow(clippy::cloned_ref_to_slice_refs)]

mod common;

use common::parity::{parity, randn};
use common::{run_seed, Rng};
use fovea::ops::{Conv2dOptions, ConvTranspose2dOptions};

#[test]
fn convolutions() {
    let Some(gpu) = common::gpu("convolutions") else {
        return;
    };
    let mut r = Rng(run_seed("convolutions"));
    for round in 0..6 {
        let groups = [1, 1, 2, 3, 5, 1][round];
        let cin = groups * r.range(1, 3);
        let cout = groups * r.range(1, 3);
        let k = [r.range(1, 5), r.range(1, 4)];
        let opts = Conv2dOptions {
            stride: [r.range(1, 3), r.range(1, 2)],
            padding: [r.range(0, 2), r.range(0, 2)],
            dilation: [r.range(1, 2), r.range(1, 3)],
            groups,
            // SAME padding (padded at the end first where it is odd) in two rounds.
            same: round % 3 == 2,
        };
        // At least the dilated kernel's extent (5 rows at dilation 2, 4 columns at 3), so
        // every draw is a valid convolution even without padding.
        let x = randn(
            &[r.range(1, 3), cin, r.range(9, 19), r.range(10, 17)],
            r.next(),
        );
        let w = randn(&[cout, cin / groups, k[0], k[1]], r.next());
        let b = randn(&[cout], r.next());
        parity(
            &gpu,
            &format!("conv2d {opts:?} k{k:?}"),
            &[x.clone(), w, b],
            &|t| t[0].conv2d(&t[1], Some(&t[2]), opts),
        );
        let wt = randn(&[cin, cout / groups, k[0], k[1]], r.next());
        let stride = [r.range(1, 3), r.range(1, 2)];
        let topts = ConvTranspose2dOptions {
            stride,
            padding: [r.range(0, 1), 0],
            output_padding: [r.range(0, stride[0] - 1), 0],
            dilation: [1, r.range(1, 2)],
            groups,
        };
        parity(
            &gpu,
            &format!("conv_transpose2d {topts:?}"),
            &[x, wt],
            &|t| t[0].conv_transpose2d(&t[1], None, topts),
        );
    }
    let pad1 = Conv2dOptions {
        padding: [1, 1],
        ..Default::default()
    };
    let s2 = Conv2dOptions {
        stride: [2, 2],
        ..pad1
    };
    let s3 = Conv2dOptions {
        stride: [3, 2],
        padding: [2, 1],
        dilation: [2, 1],
        ..Default::default()
    };
    let dil = Conv2dOptions {
        padding: [2, 3],
        dilation: [2, 3],
        ..Default::default()
    };
    // One case per kernel path: (what it reaches, x shape, w shape, options).
    let cases = [
        (
            "larger than one 64×64 tile in every GEMM dimension",
            [2, 70, 11, 13],
            [67, 70, 3, 3],
            pad1,
        ),
        // 126 and 130 channels over 8,000-odd pixels; edges not multiples of the tile.
        // (With 66 input channels, half of the input gradient's 128-row tiles would be
        // empty, and it would go through col2im instead.)
        (
            "128×128 tiles, forward and input gradient",
            [2, 126, 63, 65],
            [130, 126, 3, 3],
            pad1,
        ),
        // At most 64 channels over 8,000-odd pixels (60 outputs, 5 inputs: the input
        // gradient goes through col2im).
        ("64×128 tiles", [2, 5, 64, 66], [60, 5, 3, 3], pad1),
        // 24 channels over 16,000 pixels: 32×256 tiles (the input gradient through col2im).
        ("32×256 tiles", [1, 3, 128, 130], [24, 3, 3, 3], pad1),
        // 3 and 4 channels over 131,072 pixels: 8×512 tiles (256 of them), forward and
        // input gradient, where the adapter offers their 33 KiB of workgroup memory
        // (NVIDIA, AMD); 16×256 tiles on lavapipe, DX12 and Apple GPUs (32 KiB).
        ("8×512 tiles", [2, 3, 256, 256], [4, 3, 3, 3], pad1),
        // 9 to 16 channels each way: 16×256 tiles, forward and both gradients (the
        // weight gradient's 108 columns in one tile, split along K).
        ("16×256 tiles", [2, 12, 20, 21], [13, 12, 3, 3], pad1),
        (
            "stride-2 phases with more than a tile of channels",
            [2, 70, 33, 35],
            [66, 70, 3, 3],
            s2,
        ),
        // The phased input gradient, with 16 input channels per group (fewer would send
        // these through col2im, below).
        (
            "stride-3 dilated phases with two, one and no taps (6 outputs: a K step carries several taps)",
            [2, 16, 14, 11],
            [6, 16, 4, 3],
            s3,
        ),
        (
            "phases with 18 outputs (positions wrap inside a four-value load)",
            [1, 16, 41, 30],
            [18, 16, 4, 3],
            s3,
        ),
        (
            "phases with 16 outputs (a step of 16 carries straight into the taps)",
            [1, 16, 12, 13],
            [16, 16, 3, 3],
            s2,
        ),
        (
            "phases, two groups of 16",
            [1, 32, 9, 10],
            [32, 16, 3, 3],
            Conv2dOptions { groups: 2, ..s2 },
        ),
        // LeNet's C3 (6 to 16 channels, 5×5, no padding): half the implicit input
        // gradient's products land on padded taps, yet on an H100 it beat col2im.
        (
            "LeNet's C3, the stride-1 input gradient over padded taps",
            [3, 6, 14, 14],
            [16, 6, 5, 5],
            Conv2dOptions::default(),
        ),
        // Few input channels beside many outputs: the input gradient through a column
        // buffer (col2im), whose GEMM has no padded taps.
        (
            "col2im, two groups, dilated and padded",
            [2, 4, 11, 10],
            [64, 2, 3, 3],
            Conv2dOptions {
                padding: [2, 1],
                dilation: [2, 1],
                groups: 2,
                ..Default::default()
            },
        ),
        // Strided: col2im keeps the output pixels a tap lands on exactly.
        (
            "col2im at stride 2 (3 to 32 channels)",
            [2, 3, 17, 16],
            [32, 3, 3, 3],
            s2,
        ),
        (
            "col2im at stride 3, dilated (phases of two, one and no taps)",
            [2, 5, 14, 11],
            [18, 5, 4, 3],
            s3,
        ),
        (
            "dilated stride 1 (the single-phase input gradient)",
            [2, 4, 13, 12],
            [5, 4, 3, 3],
            dil,
        ),
    ];
    // With a bias, which the forward adds in its store (to the first split only, where
    // few tiles split K, as in the first case).
    for (what, xs, ws, o) in cases {
        let (x, w, b) = (
            randn(&xs, r.next()),
            randn(&ws, r.next()),
            randn(&[ws[0]], r.next()),
        );
        parity(&gpu, &format!("conv2d, {what}"), &[x, w, b], &|t| {
            t[0].conv2d(&t[1], Some(&t[2]), o)
        });
    }
    // A decoder's last upsampling (32 to 3 channels, 2×2, stride 2): its forward is a
    // strided input gradient of few channels, through col2im.
    let up = ConvTranspose2dOptions {
        stride: [2, 2],
        ..Default::default()
    };
    let (x, w) = (
        randn(&[2, 32, 8, 9], r.next()),
        randn(&[32, 3, 2, 2], r.next()),
    );
    parity(
        &gpu,
        "conv_transpose2d, col2im at stride 2",
        &[x, w],
        &|t| t[0].conv_transpose2d(&t[1], None, up),
    );
    let x = randn(&[2, 24, 15, 14], r.next());
    let w = randn(&[24, 1, 3, 3], r.next());
    let dw = Conv2dOptions {
        stride: [2, 2],
        padding: [1, 1],
        groups: 24,
        ..Default::default()
    };
    parity(&gpu, "depthwise", &[x, w], &|t| {
        t[0].conv2d(&t[1], None, dw)
    });
    // The direct depthwise kernel: channel multipliers, dilation, uneven kernels and
    // strides, a batch and pixel count past one workgroup's 256 threads, and the
    // transposed form (its grad-input path).
    for (mult, k, stride, dil) in [
        (1, [3, 3], [1, 1], [1, 1]),
        (2, [5, 2], [2, 3], [2, 1]),
        (3, [1, 4], [1, 2], [1, 2]),
    ] {
        let c = r.range(3, 9);
        let x = randn(&[3, c, r.range(9, 17), r.range(9, 15)], r.next());
        let w = randn(&[c * mult, 1, k[0], k[1]], r.next());
        let b = randn(&[c * mult], r.next());
        let opts = Conv2dOptions {
            stride,
            padding: [k[0] / 2, k[1] / 2],
            dilation: dil,
            groups: c,
            same: false,
        };
        parity(
            &gpu,
            &format!("depthwise ×{mult} {opts:?} k{k:?}"),
            &[x.clone(), w, b],
            &|t| t[0].conv2d(&t[1], Some(&t[2]), opts),
        );
        let wt = randn(&[c, mult, k[0], k[1]], r.next());
        let topts = ConvTranspose2dOptions {
            stride,
            dilation: dil,
            groups: c,
            ..Default::default()
        };
        parity(
            &gpu,
            &format!("depthwise transposed ×{mult} {topts:?}"),
            &[x, wt],
            &|t| t[0].conv_transpose2d(&t[1], None, topts),
        );
    }
}
