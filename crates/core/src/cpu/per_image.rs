//! How a batch's images are shared between the CPU backend's threads: image by image
//! ([`per_image`]), in runs of images per call ([`per_images`]), or as a sum over images
//! into weight-sized accumulators ([`per_image_sum`]).

use rayon::prelude::*;

use super::threads;
use crate::host;
use crate::Result;

/// Runs `f(image, chunk)` over per-image chunks of `out`: in parallel across images when
/// there are enough of them, otherwise one after another so each GEMM can use the pool.
/// Stops at the first error (a scratch buffer the host refused).
pub(super) fn per_image<T: Send>(
    out: &mut [T],
    chunk: usize,
    n: usize,
    f: impl Fn(usize, &mut [T]) -> Result<()> + Sync,
) -> Result<()> {
    if chunk == 0 {
        return Ok(());
    }
    if n >= rayon::current_num_threads() {
        out.par_chunks_mut(chunk)
            .enumerate()
            .try_for_each(|(i, c)| threads::task(|| f(i, c)))
    } else {
        out.chunks_mut(chunk)
            .enumerate()
            .try_for_each(|(i, c)| f(i, c))
    }
}

/// [`per_image`] for drivers that take several images per call: `f(first, count, out)`
/// over runs of at most `most` consecutive images, shared evenly between the threads where
/// there are at least as many images as threads; otherwise one image per call, in turn
/// (the drivers then split its channels between the threads).
pub(super) fn per_images(
    out: &mut [f32],
    chunk: usize,
    n: usize,
    most: usize,
    f: impl Fn(usize, usize, &mut [f32]) -> Result<()> + Sync,
) -> Result<()> {
    if chunk == 0 {
        return Ok(());
    }
    let threads = rayon::current_num_threads();
    if n >= threads {
        let per = n.div_ceil(threads).clamp(1, most.max(1));
        out.par_chunks_mut(per * chunk)
            .enumerate()
            .try_for_each(|(i, c)| threads::task(|| f(i * per, c.len() / chunk, c)))
    } else {
        out.chunks_mut(chunk)
            .enumerate()
            .try_for_each(|(i, c)| f(i, 1, c))
    }
}

/// The sum over images of `add(image, acc, scratch)`, each adding its share into a
/// weight-sized accumulator. One accumulator and one `scratch` (from `init`) per fixed span
/// of images, the accumulators summed in order afterwards, so the result is the same on
/// every run (rayon's fold/reduce groups by work stealing). With fewer images than
/// threads, one accumulator, and each GEMM uses the pool.
pub(super) fn per_image_sum<S>(
    n: usize,
    len: usize,
    init: impl Fn() -> Result<S> + Sync,
    add: impl Fn(usize, &mut [f32], &mut S) -> Result<()> + Sync,
) -> Result<Vec<f32>> {
    let threads = rayon::current_num_threads();
    if n < threads {
        let (mut acc, mut scratch) = (host::zeros(len)?, init()?);
        for ni in 0..n {
            add(ni, &mut acc, &mut scratch)?;
        }
        return Ok(acc);
    }
    let span = n.div_ceil(threads);
    let partial: Vec<Vec<f32>> = (0..n.div_ceil(span))
        .into_par_iter()
        .map(|s| {
            threads::task(|| {
                let (mut acc, mut scratch) = (host::zeros(len)?, init()?);
                for ni in s * span..((s + 1) * span).min(n) {
                    add(ni, &mut acc, &mut scratch)?;
                }
                Ok(acc)
            })
        })
        .collect::<Result<_>>()?;
    let mut parts = partial.into_iter();
    let mut total = match parts.next() {
        Some(first) => first,
        None => host::zeros(len)?,
    };
    for part in parts {
        total.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
    }
    Ok(total)
}
