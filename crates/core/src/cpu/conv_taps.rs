//! Kernel taps that read only padding: a 3×3 convolution with padding 1 on a 1×1 map (the
//! last stage of dlib's face ResNet) multiplies 8 of its 9 taps by zeros. Where such taps
//! form an equal border on both sides of an axis, the convolution is the one with those
//! taps cut off and that much less padding, whose weight is a ninth as large there: the
//! face ResNet's 256-channel 1×1 layer read 2.4 MB of weights for 256 KB of use.

use crate::backend::Conv2dParams;
use crate::host;
use crate::Result;

/// The convolution without the taps that read only padding, and how many were cut from
/// the start of each axis; `None` where every tap reads the input somewhere or the dead
/// taps are not an equal border (so the output keeps its size), and for an empty input,
/// weight or output (nothing to gain, and an empty weight may claim a kernel of 2⁶⁰ taps,
/// which the search below would walk).
pub(super) fn cropped(p: &Conv2dParams) -> Option<(Conv2dParams, [usize; 2])> {
    if p.weight_len() == 0 || p.input_len() == 0 || p.output_len() == 0 {
        return None;
    }
    let axes = [0, 1].map(|a| {
        let (len, out) = if a == 0 { (p.h, p.oh) } else { (p.w, p.ow) };
        live(
            len,
            out,
            p.kernel[a],
            p.stride[a],
            p.padding[a],
            p.dilation[a],
        )
    });
    let mut q = *p;
    let mut lo = [0; 2];
    for (a, (first, end)) in axes.into_iter().enumerate() {
        let cut = p.kernel[a] - end;
        let dead = first.checked_mul(p.dilation[a])?;
        if first != cut || dead > p.padding[a] {
            return None;
        }
        q.kernel[a] = end - first;
        q.padding[a] = p.padding[a] - dead;
        lo[a] = first;
    }
    (lo != [0, 0]).then_some((q, lo))
}

/// The first tap and one past the last that some output position reads a real input
/// value with, along one axis (`(0, k)` where none does: nothing to cut then).
fn live(len: usize, out: usize, k: usize, s: usize, pad: usize, d: usize) -> (usize, usize) {
    let reads = |t: usize| {
        // Output i reads position i·s + t·d − pad; some i < out must land in 0..len. In
        // i128: t is below the kernel's size, which a non-empty weight keeps under 2⁶²,
        // so t·d stays under 2¹²⁶.
        let from = pad as i128 - t as i128 * d as i128;
        let s = s.max(1) as i128;
        let i0 = if from <= 0 { 0 } else { (from + s - 1) / s };
        i0 < out as i128 && i0 * s - from < len as i128
    };
    match ((0..k).find(|&t| reads(t)), (0..k).rev().find(|&t| reads(t))) {
        (Some(first), Some(last)) => (first, last + 1),
        _ => (0, k),
    }
}

/// Where each of `q`'s kept taps lies in a plane of `p`'s kernel, `lo` from the start of
/// each axis. Copied tap by tap through this list rather than row by row: a row of one
/// tap (the face ResNet's 1×1 layer) made 65 536 calls of `memcpy`, which with the
/// copying took three quarters of that convolution's time (0.30 ms against PyTorch's
/// 0.04 for the whole layer, single-threaded, 2026-12-04).
fn kept_taps(p: &Conv2dParams, q: &Conv2dParams, lo: [usize; 2]) -> Vec<usize> {
    let ([_, kw], [qh, qw]) = (p.kernel, q.kernel);
    (0..qh)
        .flat_map(|r| (0..qw).map(move |c| (lo[0] + r) * kw + lo[1] + c))
        .collect()
}

/// `w`'s taps that `q` keeps, `lo` from the start of each axis of `p`'s kernel.
pub(super) fn crop_weight(
    w: &[f32],
    p: &Conv2dParams,
    q: &Conv2dParams,
    lo: [usize; 2],
) -> Result<Vec<f32>> {
    let keep = kept_taps(p, q, lo);
    let mut out = host::with_capacity(q.weight_len())?;
    for plane in w.chunks_exact(p.kernel[0] * p.kernel[1]) {
        out.extend(keep.iter().map(|&t| plane[t]));
    }
    Ok(out)
}

/// A gradient for `q`'s kept taps placed into `p`'s kernel, zeros at the cut ones.
pub(super) fn uncrop_weight(
    g: &[f32],
    p: &Conv2dParams,
    q: &Conv2dParams,
    lo: [usize; 2],
) -> Result<Vec<f32>> {
    let keep = kept_taps(p, q, lo);
    let mut out = host::zeros(p.weight_len())?;
    let planes = out.chunks_exact_mut(p.kernel[0] * p.kernel[1]);
    for (dst, src) in planes.zip(g.chunks_exact(keep.len())) {
        for (&t, &v) in keep.iter().zip(src) {
            dst[t] = v;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::conv2d::{self, definition};
    use super::super::conv_shifted::tests::{assert_close, stride_1, value};
    use super::*;

    /// Maps smaller than the kernel's reach: the cut convolution gives the definition's
    /// output and gradients, and only equal borders of dead taps are cut.
    #[test]
    fn taps_on_padding_alone_are_cut_and_change_nothing() {
        // (n, c_in, h, w, c_out, kernel, padding, dilation, groups), the kernel kept
        let cases = [
            ((2, 16, 1, 1, 8, [3, 3], [1, 1], [1, 1], 1), Some([1, 1])),
            ((1, 4, 2, 2, 3, [5, 5], [2, 2], [1, 1], 1), Some([3, 3])),
            ((1, 4, 1, 6, 3, [3, 3], [1, 1], [1, 1], 1), Some([1, 3])),
            ((1, 4, 1, 1, 3, [3, 3], [2, 2], [2, 2], 1), Some([1, 1])),
            // every tap reads the input somewhere
            ((1, 4, 2, 2, 3, [3, 3], [2, 2], [1, 1], 1), None),
            ((1, 4, 5, 5, 3, [3, 3], [1, 1], [1, 1], 1), None),
        ];
        for (case, kept) in cases {
            let (p, x, wt, gy) = stride_1(case);
            let cut = cropped(&p);
            assert_eq!(cut.map(|(q, _)| q.kernel), kept, "{p:?}");
            if let Some((q, _)) = cut {
                assert_eq!([q.oh, q.ow], [p.oh, p.ow], "{p:?}");
            }
            let [y, gx, gw] = definition(&x, &wt, &gy, &p);
            let name = format!("{p:?}");
            assert_close(&name, &conv2d::forward(&x, &wt, &p).unwrap(), &y);
            assert_close(&name, &conv2d::grad_input(&gy, &wt, &p).unwrap(), &gx);
            assert_close(&name, &conv2d::grad_weight(&x, &gy, &p).unwrap(), &gw);
        }
        // At stride 2 a 1×1 map's one output reads the middle tap only, and a 2×2 map's
        // taps 1 and 2 of 3: a border on one side, which a symmetric padding cannot
        // express. Groups cut as plain convolutions.
        for (case, kept) in [
            ((2, 8, 1, 1, 4, [3, 3], [1, 1], [1, 1], 2), Some([1, 1])),
            ((1, 4, 2, 2, 3, [3, 3], [1, 1], [1, 1], 1), None),
        ] {
            let (mut p, x, wt, _) = stride_1(case);
            (p.stride, p.oh, p.ow) = ([2, 2], 1, 1);
            let gy: Vec<f32> = (0..p.output_len()).map(|i| value(i, 3)).collect();
            assert_eq!(cropped(&p).map(|(q, _)| q.kernel), kept, "{p:?}");
            let [y, gx, gw] = definition(&x, &wt, &gy, &p);
            let name = format!("{p:?}");
            assert_close(&name, &conv2d::forward(&x, &wt, &p).unwrap(), &y);
            assert_close(&name, &conv2d::grad_input(&gy, &wt, &p).unwrap(), &gx);
            assert_close(&name, &conv2d::grad_weight(&x, &gy, &p).unwrap(), &gw);
        }
        // An empty weight claiming a kernel of 2⁶¹ taps is left alone at once.
        let (mut p, ..) = stride_1((1, 1, 1, 1, 0, [1, 1], [0, 0], [1, 1], 1));
        (p.kernel, p.padding) = ([1 << 61, 1], [1 << 60, 0]);
        assert!(cropped(&p).is_none());
    }
}
