//! Tests of the products vectorized along output channels against the wide columns'.

use super::*;

/// The same bits as the wide columns' products in every kept column, for channel
/// counts around the panels' widths, runs of several images, rows that keep all or
/// part of their columns and a last block of positions that is partial; the dropped
/// columns untouched.
#[test]
fn kept_columns_match_the_wide_products_bit_for_bit() {
    let channel = 150;
    let taps = [0, 1, 7, 20, 41];
    let offs: Vec<usize> = (0..3)
        .flat_map(|c| taps.iter().map(move |t| c * channel + t))
        .collect();
    let kdim = offs.len();
    let x: Vec<f32> = (0..3 * channel + 2 * MAX_L + 128)
        .map(|i| ((i * 29 % 17) as f32 - 8.0) / 4.0)
        .collect();
    for og in [1, 5, 8, 16, 17, 33, 47, 64, 81, 100, 113] {
        let w: Vec<f32> = (0..og * kdim)
            .map(|i| ((i * 13 % 11) as f32 - 5.0) / 8.0)
            .collect();
        let wl = Weights::rows(&w, kdim);
        // (bases, columns, first column, plane): `oh` matters only to the rule.
        let plane = |wp, ow| Plane {
            wp,
            oh: 1,
            ow,
            reads: None,
            border: None,
        };
        let runs: [(&[usize], usize, usize, Plane); 5] = [
            (&[0], 1, 0, plane(1, 1)),
            (&[3], 37, 0, plane(9, 7)),
            (&[5], 64, 3, plane(8, 8)),
            (&[0, 40, 7], 37, 0, plane(16, 14)),
            (&[9, 2], 55, 0, plane(8, 7)),
        ];
        for (bases, cols, j, plane) in runs {
            let ld = bases.len() * cols.next_multiple_of(MAX_L) + 3;
            let mut want = vec![f32::NAN; og * ld];
            conv_direct::block(wl, kdim, og, &x, bases, &offs, cols, &mut want, ld);
            let mut got = vec![-7.0; og * ld];
            block(
                wl,
                kdim,
                og,
                &x,
                bases,
                &offs,
                (cols, j, plane),
                &mut got,
                (ld, cols.next_multiple_of(MAX_L)),
            );
            let run = cols.next_multiple_of(MAX_L);
            for (i, (&g, &v)) in got.iter().zip(&want).enumerate() {
                let c = i % ld;
                let (r, c) = (c / run, c % run);
                let kept_here = r < bases.len() && c < cols && plane.keeps(j + c);
                let want = if kept_here { v } else { -7.0 };
                assert_eq!(
                    g.to_bits(),
                    want.to_bits(),
                    "og {og}, bases {bases:?}, cols {cols} from {j}, {plane:?}: row {} column {c} of run {r}",
                    i / ld
                );
            }
        }
    }
}

/// Border positions that skip the taps reading padding give the bits of the wide
/// products (which add those zero products) in every kept column: a 3×3 kernel
/// with padding 1 on 7² planes, enough channels for two passes of the longest (the second
/// starting inside a channel's taps) over two images, 70 output channels (the widest
/// panels and narrower ones, whose passes are shorter). With an infinite
/// weight no pair is skipped, so its 0·∞ reaches the border outputs as NaN there too.
#[test]
fn border_positions_match_the_wide_products() {
    let (cg, og, side, wp) = (MAX_PASS / 9 + 4, 70, 7, 9);
    assert!(
        !MAX_PASS.is_multiple_of(9) && MAX_PASS < cg * 9,
        "two passes, split inside a channel"
    );
    let channel = wp * wp;
    let offs: Vec<usize> = (0..cg)
        .flat_map(|c| (0..9).map(move |t| c * channel + t / 3 * wp + t % 3))
        .collect();
    let kdim = offs.len();
    let images = [0, cg * channel];
    let mut x = vec![0.0f32; 2 * cg * channel + 2 * MAX_L];
    for (i, v) in x.iter_mut().enumerate().take(2 * cg * channel) {
        let (r, c) = (i % channel / wp, i % wp);
        if (1..=side).contains(&r) && (1..=side).contains(&c) {
            *v = ((i * 29 % 17) as f32 - 8.0) / 4.0;
        }
    }
    let forward = Axis::forward(3, side, (1, 1, 1));
    let plane = Plane {
        wp,
        oh: side,
        ow: side,
        reads: None,
        border: Some(Border {
            axes: [Axis::forward(1, 1, (1, 0, 1)), forward, forward],
            a: 0,
        }),
    };
    let mut w: Vec<f32> = (0..og * kdim)
        .map(|i| ((i * 13 % 11) as f32 - 5.0) / 8.0)
        .collect();
    let cols = (side - 1) * wp + side;
    let ld = images.len() * cols.next_multiple_of(MAX_L);
    for infinite in [false, true] {
        if infinite {
            // Channel 0's top-left tap, which the left column's outputs (a block of
            // their own) read as padding.
            w[3 * kdim] = f32::INFINITY;
        }
        let wl = Weights::rows(&w, kdim);
        let mut want = vec![f32::NAN; og * ld];
        conv_direct::block(wl, kdim, og, &x, &images, &offs, cols, &mut want, ld);
        let mut got = vec![f32::NAN; og * ld];
        let run = (cols, 0, plane);
        let to = (ld, cols.next_multiple_of(MAX_L));
        block(wl, kdim, og, &x, &images, &offs, run, &mut got, to);
        let mut nans = 0;
        for (i, (&g, &v)) in got.iter().zip(&want).enumerate() {
            let c = i % ld % cols.next_multiple_of(MAX_L);
            if c < cols && plane.keeps(c) {
                nans += usize::from(v.is_nan());
                assert!(
                    g.to_bits() == v.to_bits() || (g.is_nan() && v.is_nan()),
                    "infinite weight {infinite}: row {} column {c}: {g} against {v}",
                    i / ld
                );
            }
        }
        assert_eq!(nans > 0, infinite, "NaN outputs");
    }
}

/// A 3×3 kernel with padding 1 on a 7² plane: the interior reads every tap, each side
/// loses a kernel row or column and each corner both, and the blocks of 12 (two images,
/// so 98 positions) mostly keep to one class: of the nine blocks, the four of interior
/// positions and the one they share with the top row run over every pair, the other four
/// (left, right and bottom side with their corners, and the last corner) over six of the
/// nine taps or fewer. Without a border every position reads every tap.
#[test]
fn border_classes_follow_the_taps_read() {
    let forward = Axis::forward(3, 7, (1, 1, 1));
    let border = Border {
        axes: [Axis::forward(1, 1, (1, 0, 1)), forward, forward],
        a: 0,
    };
    let masks = border.masks(7, 7);
    assert_eq!(masks.taps(3, 3), Taps::MAX, "interior");
    assert_eq!(masks.taps(0, 3), 0b111_111_000, "top row");
    assert_eq!(masks.taps(3, 0), 0b110_110_110, "left column");
    assert_eq!(masks.taps(0, 0), 0b110_110_000, "top-left corner");
    assert_eq!(masks.taps(6, 6), 0b000_011_011, "bottom-right corner");
    let plane = Plane {
        wp: 9,
        oh: 7,
        ow: 7,
        reads: None,
        border: Some(border),
    };
    let cols = 6 * 9 + 7;
    let b = blocks::<12>(&[0, 1000], (cols, 0, plane), 64);
    assert_eq!(b.slots.len(), 108);
    assert_eq!(b.class.iter().filter(|c| c.is_none()).count(), 5);
    assert_eq!(b.class.iter().flatten().count(), 4);
    for taps in &b.classes {
        assert!(taps.count_ones() <= 6, "{taps:b}");
    }
    let plain = blocks::<12>(
        &[0, 1000],
        (
            cols,
            0,
            Plane {
                reads: None,
                border: None,
                ..plane
            },
        ),
        64,
    );
    assert!(plain.class.iter().all(|c| c.is_none()) && plain.classes.is_empty());
}

/// A plane whose wide columns drop between a twentieth and a tenth of what they compute
/// (28², 8%): with AVX-512 these products serve it, elsewhere the wide columns'. Either
/// way the forward and the input gradient are the definition's, and the first asks which.
#[test]
fn planes_dropping_a_twentieth_to_a_tenth_match_the_definition() {
    use super::super::conv2d::{self, definition};
    use super::super::conv_shifted::from_2d;
    use super::super::conv_shifted::tests::{assert_close, stride_1};

    let (p, x, wt, gy) = stride_1((2, 16, 28, 28, 20, [3, 3], [1, 1], [1, 1], 1));
    let p3 = from_2d(&p);
    let plane = Plane {
        wp: 30,
        oh: 28,
        ow: 28,
        reads: None,
        border: None,
    };
    let avx512 = super::super::cpu_level() == super::super::Level::Avx512;
    assert_eq!(applies(p3.c_out, plane), avx512, "{p:?}");
    let [y, gx, _] = definition(&x, &wt, &gy, &p);
    let name = format!("{p:?}");
    assert_close(&name, &conv2d::forward(&x, &wt, &p).unwrap(), &y);
    assert_close(&name, &conv2d::grad_input(&gy, &wt, &p).unwrap(), &gx);
}

/// A plane whose wide columns drop under a twentieth (61 wide, 3%): with AVX-512, 130
/// output channels take these products (two panels of 64, then a panel of 16 mostly
/// empty) and 64 the wide columns'; with one row, the wide columns' whatever the
/// channels. Either way the forward and the input gradient are the definition's. On one
/// thread, so that the forward's block is all 130 channels (more threads than images
/// split them).
#[test]
fn many_channels_on_large_planes_match_the_definition() {
    use super::super::conv2d::{self, definition};
    use super::super::conv_shifted::from_2d;
    use super::super::conv_shifted::tests::{assert_close, stride_1};

    let avx512 = super::super::cpu_level() == super::super::Level::Avx512;
    for (rows, c_out, channel_products) in [(3, 130, avx512), (3, 64, false), (1, 130, false)] {
        let (p, x, wt, gy) = stride_1((2, 16, rows, 61, c_out, [3, 3], [1, 1], [1, 1], 1));
        let p3 = from_2d(&p);
        let plane = Plane {
            wp: 63,
            oh: rows,
            ow: 61,
            reads: None,
            border: None,
        };
        assert_eq!(applies(p3.c_out, plane), channel_products, "{p:?}");
        let [y, gx, _] = definition(&x, &wt, &gy, &p);
        let name = format!("{p:?}");
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a thread pool");
        let (got_y, got_gx) = pool.install(|| {
            (
                conv2d::forward(&x, &wt, &p).unwrap(),
                conv2d::grad_input(&gy, &wt, &p).unwrap(),
            )
        });
        assert_close(&name, &got_y, &y);
        assert_close(&name, &got_gx, &gx);
    }
}

/// Written straight into output planes (`into_planes`: a strided layer's plane read in
/// place, every column kept, runs starting inside it), each image's channels hold the
/// bits the runs' block holds for them, and the gaps between channels and between images
/// stay as they were: 3 images, 70 channels (the widest panels and narrower ones).
#[test]
fn output_planes_hold_the_runs_bits() {
    let (cg, og, side, stride) = (5, 70, 6, 2);
    let (ow, wp) = (side / stride, side + 2);
    let channel = wp * wp;
    let offs: Vec<usize> = (0..cg)
        .flat_map(|c| (0..9).map(move |t| c * channel + t / 3 * wp + t % 3))
        .collect();
    let kdim = offs.len();
    let bases: Vec<usize> = (0..3).map(|i| i * cg * channel).collect();
    let x: Vec<f32> = (0..3 * cg * channel + 2 * MAX_L)
        .map(|i| ((i * 29 % 17) as f32 - 8.0) / 4.0)
        .collect();
    let w: Vec<f32> = (0..og * kdim)
        .map(|i| ((i * 13 % 11) as f32 - 5.0) / 8.0)
        .collect();
    let wl = Weights::rows(&w, kdim);
    let axis = Axis::forward(3, side, (stride, 1, 1));
    let plane = Plane {
        wp: ow,
        oh: ow,
        ow,
        reads: Some([stride * wp, stride]),
        border: Some(Border {
            axes: [Axis::forward(1, 1, (1, 0, 1)), axis, axis],
            a: 0,
        }),
    };
    let ohw = ow * ow;
    let (ld, image) = (ohw + 2, og * (ohw + 2) + 5);
    for (j, cols) in [(0, ohw), (4, ohw - 4), (2, 3)] {
        let run = cols.next_multiple_of(MAX_L);
        let runs_ld = bases.len() * run;
        let mut want = vec![f32::NAN; og * runs_ld];
        let mut got = vec![-7.0f32; bases.len() * image];
        let (x, b, offs, span) = (&x[..], &bases[..], &offs[..], (cols, j, plane));
        block(wl, kdim, og, x, b, offs, span, &mut want, (runs_ld, run));
        into_planes(wl, kdim, og, x, b, offs, span, &mut got[j..], (ld, image));
        for (i, &g) in got.iter().enumerate() {
            let (r, o, c) = (i / image, i % image / ld, i % image % ld);
            let want = if o < og && (j..j + cols).contains(&c) {
                want[o * runs_ld + r * run + c - j]
            } else {
                -7.0
            };
            assert_eq!(
                g.to_bits(),
                want.to_bits(),
                "run {j}+{cols}: image {r}, channel {o}, column {c}"
            );
        }
    }
}
