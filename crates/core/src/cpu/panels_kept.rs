//! A forward weight's panels for the channel-vectorized products (`conv_channels.rs`),
//! kept with the weight's values while they stay unchanged. The products lay out each
//! panel they read by transposing the weight (`transpose.rs`), in every call and on every
//! thread: each of two threads transposing all of a 256 → 512 3×3 weight took 5% of its
//! stride-2 forward onto 7² at batch 8 (`perf`, Zen 4, 2026-12-05). A weight read again
//! and again unchanged (inference, frozen layers, a benchmark's repeated calls) now has
//! its panels laid out once. Only the layers these products serve gain: the stride-2
//! forwards read in place and the small planes' stride-1 forwards, not the 3×3 layers
//! Winograd's kernels take (style transfer's VGG). A training step's weight
//! is new after every update and read by one forward, so it is never laid out: the
//! panels are made by the forward after [`READS_BEFORE`] others have read the weight,
//! which a step reusing a weight (a Siamese or triplet network's branches) does not
//! reach. The panels take as much memory again as the weight.
//!
//! Laying the panels out once per call for both threads (no keeping) was slower, not
//! faster: panels written by one core and read by the other in the same call took that
//! forward from 4.10–4.24 ms to 4.22–5.30; kept, 4.14–4.28 → 4.05–4.08 (two threads,
//! fastest of 60–100 calls, three alternating rounds).

use super::conv_channels::widest_lanes;
use super::reduce::all_finite;
use super::transpose::{self, Weights};
use crate::Result;
use std::sync::{Arc, Mutex, PoisonError};

/// Forwards that read a weight before the one that lays out its panels.
const READS_BEFORE: u32 = 3;

/// A weight's widest panels, group by group ([`Weights::Panels`]), and whether all its
/// values are finite: the products' border blocks skip the taps that read padding only
/// for finite weights, and checking each panel's weights in every call took 1.5% of the
/// stride-2 forward onto 512@7² (3.96 → 3.91 ms, Zen 4, 2026-12-05).
pub(super) struct Laid {
    groups: Vec<Vec<Vec<f32>>>,
    og: usize,
    kdim: usize,
    lanes: usize,
    finite: bool,
}

impl Laid {
    /// `w` holds `groups` groups of `og` rows of `kdim` pairs.
    fn new(w: &[f32], (groups, og, kdim): (usize, usize, usize)) -> Result<Laid> {
        let lanes = widest_lanes();
        let group = |g: usize| {
            let w_g = &w[g * og * kdim..][..og * kdim];
            transpose::panels(w_g, (og, kdim), lanes)
        };
        let groups = (0..groups).map(group).collect::<Result<_>>()?;
        Ok(Laid {
            groups,
            og,
            kdim,
            lanes,
            finite: all_finite(w),
        })
    }
}

impl Drop for Laid {
    fn drop(&mut self) {
        for panel in std::mem::take(&mut self.groups).into_iter().flatten() {
            super::recycle_scratch(panel);
        }
    }
}

/// Whether the products of a forward over `n` images would read `og` output channels'
/// panels whole: where there are fewer images than threads, each thread takes a share
/// of the channels (`conv_shifted::per_block`), and a share that starts inside a panel
/// transposes its own (512 channels on 16 threads: shares of 32 against panels of 64).
pub(super) fn read_whole(n: usize, og: usize) -> bool {
    let split = n < rayon::current_num_threads() && !super::threads::nested();
    !split || super::conv_shifted::thread_share(og).is_multiple_of(widest_lanes())
}

/// Group `g`'s weights (`w_g`: its `kdim` pairs a row) from row `o0` on, read from
/// `laid` where there is one.
pub(super) fn rows<'a>(
    laid: Option<&'a Laid>,
    w_g: &'a [f32],
    (g, o0, kdim): (usize, usize, usize),
) -> Weights<'a> {
    match laid.and_then(|l| Some((l, l.groups.get(g)?))) {
        Some((l, panels)) if l.kdim == kdim => Weights::Panels {
            w: w_g,
            ld: kdim,
            rows: l.og,
            panels,
            lanes: l.lanes,
            finite: l.finite,
        }
        .rows_from(o0),
        _ => Weights::rows(&w_g[o0 * kdim..], kdim),
    }
}

/// What a CPU weight keeps for the products: how many forwards have read it with which
/// shape, and its panels once they are laid out. Writing the values must [`clear`] it.
///
/// [`clear`]: PanelsKept::clear
#[derive(Default)]
pub(super) struct PanelsKept(Mutex<Kept>);

#[derive(Default)]
struct Kept {
    /// groups, output channels a group, pairs a channel
    shape: (usize, usize, usize),
    reads: u32,
    laid: Option<Arc<Laid>>,
}

impl PanelsKept {
    /// The panels of weight `w` (`shape`: groups, output channels a group, pairs a
    /// channel) for a forward that reads it: kept ones, or laid out now if
    /// [`READS_BEFORE`] forwards have read it since it was made or written; else none (the
    /// products transpose what they read, as they do where there is no memory left for
    /// the panels). A weight narrower than a panel gains nothing.
    pub(super) fn read(&self, w: &[f32], shape: (usize, usize, usize)) -> Option<Arc<Laid>> {
        if shape.1 < widest_lanes() {
            return None;
        }
        let lock = || self.0.lock().unwrap_or_else(PoisonError::into_inner);
        {
            let mut kept = lock();
            if kept.shape != shape {
                *kept = Kept {
                    shape,
                    ..Kept::default()
                };
            }
            if let Some(laid) = &kept.laid {
                return Some(laid.clone());
            }
            kept.reads = kept.reads.saturating_add(1);
            if kept.reads <= READS_BEFORE {
                return None;
            }
        }
        // Laid out unlocked: the transposes run on the thread pool, where a thread
        // waiting for them may take up another forward of this weight.
        let laid = Laid::new(w, shape).map(Arc::new);
        let mut kept = lock();
        match laid {
            Ok(laid) => (kept.shape == shape).then(|| kept.laid.get_or_insert(laid).clone()),
            Err(_) => {
                // No memory for them now: counted again from zero, not retried each read.
                kept.reads = 0;
                None
            }
        }
    }

    /// Forgets the panels and the reads: the values are about to change.
    pub(super) fn clear(&mut self) {
        *self.0.get_mut().unwrap_or_else(PoisonError::into_inner) = Kept::default();
    }
}

#[cfg(test)]
impl PanelsKept {
    fn is_laid(&self) -> bool {
        self.0.lock().unwrap().laid.is_some()
    }

    /// Kept panels replaced by `other`'s, of the same shape: what the products read from
    /// then on shows whether they read the kept panels.
    fn lay_out_from(&self, other: &[f32]) {
        let mut kept = self.0.lock().unwrap();
        let laid = Laid::new(other, kept.shape).unwrap();
        kept.laid = Some(Arc::new(laid));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{conv2d, data, store, CpuBackend, HostBuffer};
    use super::*;
    use crate::backend::{Backend, Conv2dParams, Storage};

    /// Panels come with the read after [`READS_BEFORE`] of one shape; a new shape starts
    /// the count again, as does a write; a weight narrower than a panel never has them.
    #[test]
    fn panels_are_laid_out_after_repeated_reads() {
        let lanes = widest_lanes();
        let (og, kdim) = (lanes + 3, 20);
        let w: Vec<f32> = (0..2 * og * kdim).map(|i| i as f32).collect();
        let mut kept = PanelsKept::default();
        for shape in [(1, og, kdim), (2, og, kdim)] {
            for read in 0..READS_BEFORE {
                assert!(kept.read(&w, shape).is_none(), "{shape:?} read {read}");
            }
            let laid = kept.read(&w, shape).expect("laid out");
            assert_eq!(laid.groups.len(), shape.0);
            assert!(Arc::ptr_eq(&laid, &kept.read(&w, shape).unwrap()), "kept");
        }
        kept.clear();
        assert!(kept.read(&w, (2, og, kdim)).is_none(), "cleared");
        let narrow = PanelsKept::default();
        for _ in 0..=READS_BEFORE {
            assert!(narrow.read(&w, (1, lanes - 1, kdim)).is_none());
        }
    }

    /// Through the backend (a stride-2 forward read in place, with two groups; a stride-1
    /// one on a 7² plane with too few channels for Winograd's; output channels ending in
    /// a partly full widest panel): a weight read again and again gives the same bits
    /// once its panels are kept; the products then read the kept panels (replaced by
    /// another weight's, the output is that weight's); a weight written in place is read
    /// anew; a weight with an infinity gives the NaNs it should.
    #[test]
    fn kept_panels_give_the_same_bits_and_follow_writes() {
        let lanes = widest_lanes();
        // Channels in a last panel of more than three quarters of its lanes, which the
        // widest panels take (`conv_channels::split`), and 16 or more, which the channel
        // products need.
        let og = (2 * lanes - lanes / 4 + 1).max(21);
        let value = |i: usize, s: usize| ((i * 7919 + s * 104729) % 2001) as f32 / 1000.0 - 1.0;
        for (side, k, stride, pad, out, groups) in [(14, 3, 2, 1, 7, 2), (7, 3, 1, 1, 7, 1)] {
            let p = Conv2dParams {
                // As many images as threads, so that no thread takes a share of the
                // channels starting inside a panel.
                n: rayon::current_num_threads().max(3),
                c_in: 24 * groups,
                h: side,
                w: side,
                c_out: og * groups,
                oh: out,
                ow: out,
                kernel: [k, k],
                stride: [stride, stride],
                padding: [pad, pad],
                dilation: [1, 1],
                groups,
            };
            let b = CpuBackend::new();
            let x = store((0..p.input_len()).map(|i| value(i, 1)).collect::<Vec<_>>()).unwrap();
            let values = |s: usize| (0..p.weight_len()).map(|i| value(i, s)).collect::<Vec<_>>();
            let mut w = store(values(2)).unwrap();
            fn kept(w: &Storage) -> &PanelsKept {
                &w.downcast::<HostBuffer>().unwrap().panels
            }
            let same = |y: &Storage, want: &[f32]| {
                let y = data(y);
                y.len() == want.len() && y.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits())
            };
            let check = |w: &Storage| {
                let want = conv2d::forward(data(&x), data(w), &p).unwrap();
                for read in 0..=READS_BEFORE + 1 {
                    let y = b.conv2d(&x, w, None, &p).unwrap();
                    assert!(same(&y, &want), "{p:?}: read {read}");
                }
                assert!(kept(w).is_laid(), "{p:?}: the panels kept");
            };
            check(&w);
            let other = values(3);
            kept(&w).lay_out_from(&other);
            let y = b.conv2d(&x, &w, None, &p).unwrap();
            let want = conv2d::forward(data(&x), &other, &p).unwrap();
            assert!(same(&y, &want), "{p:?}: the kept panels read");
            let step = store(vec![0.25f32; p.weight_len()]).unwrap();
            assert!(b.add_in_place(&mut w, &step).unwrap());
            assert!(!kept(&w).is_laid(), "{p:?}: the panels forgotten");
            check(&w);
            // An infinite weight on a tap that the border's outputs read padding with:
            // kept panels must not let those outputs skip it (∞·0 is NaN).
            let mut inf = values(4);
            inf[0] = f32::INFINITY;
            let inf = store(inf).unwrap();
            check(&inf);
            assert!(data(&b.conv2d(&x, &inf, None, &p).unwrap())[0].is_nan());
        }
    }
}
