//! Property test: random (often invalid) shapes, parameters and dtypes thrown at every op
//! must give `Ok` or a clear `Err`, never a panic; sizes near and past `usize` and the device's
//! memory among them, on the CPU and the GPU. The hostile sizes one by one are in
//! `hostile_sizes.rs`.

mod common;

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{run_seed, Rng};
use fovea::nn::Conv2d;
use fovea::ops::{
    BatchNormOptions, Conv1dOptions, Conv2dOptions, Conv3dOptions, ConvTranspose2dOptions,
    CrossEntropy2dOptions, PixelTargets, Pool1dOptions, Pool2dOptions, Pool3dOptions, Reduction,
};
use fovea::{Device, Error, Result, Tensor};

/// Sizes near and past what a `usize` counts and any device holds.
const HUGE: [usize; 12] = [
    1_000_000,
    1_000_000_000,
    1 << 31,
    1 << 32,
    (1 << 32) + 1,
    1 << 62,
    (1 << 62) + 1,
    1 << 63,
    (1 << 63) + 1,
    usize::MAX / 2,
    usize::MAX - 1,
    usize::MAX,
];

/// A size for a shape argument: mostly small, now and then huge.
fn size(r: &mut Rng) -> usize {
    if r.chance(0.06) {
        r.pick(&HUGE)
    } else {
        r.pick(&[0, 1, 1, 2, 3, 3, 4, 5])
    }
}

fn rand_shape(r: &mut Rng, max_rank: usize) -> Vec<usize> {
    let rank = r.range(0, max_rank);
    (0..rank).map(|_| size(r)).collect()
}

/// A random tensor on `dev`. A shape that cannot exist (huge without a zero) is made
/// empty by a zero in its last dimension, so that empty tensors with huge dimensions
/// take part too (where their other dimensions' product fits a `usize`).
fn tensor(r: &mut Rng, max_rank: usize, dev: &Device) -> Tensor {
    let mut s = rand_shape(r, max_rank);
    if s.iter().any(|&d| d > 5) {
        *s.last_mut().expect("a huge dimension") = 0;
    }
    let seed = r.next();
    let t = Tensor::try_randn(&s, seed, dev).unwrap_or_else(|_| Tensor::randn(&[0], seed, dev));
    maybe_half(r, t)
}

/// Now and then the tensor in f16, so that ops meet f16 and mixed dtypes too.
fn maybe_half(r: &mut Rng, t: Tensor) -> Tensor {
    if r.chance(0.15) {
        t.half().expect("an f32 tensor converts to f16")
    } else {
        t
    }
}

fn image(r: &mut Rng, dev: &Device) -> Tensor {
    // Mostly rank 4 so that deeper validation is reached, sometimes not.
    if r.chance(0.85) {
        let s: Vec<usize> = (0..4).map(|_| r.pick(&[0, 1, 2, 3, 4, 6, 7])).collect();
        let t = Tensor::randn(&s, r.next(), dev);
        maybe_half(r, t)
    } else {
        tensor(r, 5, dev)
    }
}

/// A signal (`rank` 3) or volume (`rank` 5) for the 1-D and 3-D ops: mostly of that rank,
/// sometimes not.
fn volume(r: &mut Rng, rank: usize, dev: &Device) -> Tensor {
    if r.chance(0.85) {
        let s: Vec<usize> = (0..rank).map(|_| r.pick(&[0, 1, 2, 3, 4, 6, 7])).collect();
        let t = Tensor::randn(&s, r.next(), dev);
        maybe_half(r, t)
    } else {
        tensor(r, 6, dev)
    }
}

/// A parameter (stride, padding, dilation, kernel, groups, scale): mostly small, now and
/// then huge.
fn small(r: &mut Rng) -> usize {
    if r.chance(0.05) {
        r.pick(&HUGE)
    } else {
        r.pick(&[0, 1, 1, 2, 2, 3, 4, 9])
    }
}

fn pair(r: &mut Rng) -> [usize; 2] {
    [small(r), small(r)]
}

fn triple(r: &mut Rng) -> [usize; 3] {
    [small(r), small(r), small(r)]
}

fn dim(r: &mut Rng) -> isize {
    r.range(0, 9) as isize - 5
}

/// An `Ok` tensor must hold what its shape says, within what the device holds.
fn consistent(t: Tensor) -> Result<()> {
    match fovea::shape::checked_numel("consistent", t.shape()).ok() {
        Some(n) if n == t.storage().len() && n <= t.device().max_len() => Ok(()),
        _ => Err(Error::Backend(format!(
            "INCONSISTENT: shape {:?} with {} values",
            t.shape(),
            t.storage().len()
        ))),
    }
}

/// [`consistent`] after a backward pass through `t` (the 1-D and 3-D convolutions are
/// compositions whose backward does size arithmetic of its own).
fn with_backward(t: Result<Tensor>) -> Result<()> {
    let t = t?;
    t.sum().backward()?;
    consistent(t)
}

/// One random call of one op on `dev`, described for the failure report.
fn call(r: &mut Rng, which: usize, dev: &Device) -> (String, Result<()>) {
    let ok = |t: Result<Tensor>| t.and_then(consistent);
    let a = tensor(r, 4, dev);
    let b = tensor(r, 4, dev);
    match which {
        0 => {
            let s = rand_shape(r, 4);
            let n = r.range(0, 12);
            (
                format!("from_vec {n} values as {s:?}"),
                ok(Tensor::from_vec(vec![0.5; n], &s, dev)),
            )
        }
        1 => {
            let s = rand_shape(r, 4);
            (
                format!("reshape {:?} -> {s:?}", a.shape()),
                ok(a.reshape(&s)),
            )
        }
        2 => {
            let p: Vec<usize> = (0..r.range(0, 4)).map(|_| r.range(0, 4)).collect();
            (
                format!("permute {:?} by {p:?}", a.shape()),
                ok(a.permute(&p)),
            )
        }
        3 => {
            let (d, s, l) = (dim(r), small(r), small(r));
            (
                format!("narrow {:?} dim {d} {s}+{l}", a.shape()),
                ok(a.narrow(d, s, l)),
            )
        }
        4 => {
            let d = dim(r);
            (
                format!("cat {:?} {:?} dim {d}", a.shape(), b.shape()),
                ok(Tensor::cat(&[&a, &b], d)),
            )
        }
        5 => {
            let d = dim(r);
            (
                format!("stack {:?} {:?} dim {d}", a.shape(), b.shape()),
                ok(Tensor::stack(&[&a, &b], d)),
            )
        }
        6 => {
            let p: Vec<usize> = (0..r.range(0, 5)).map(|_| small(r)).collect();
            (format!("pad {:?} by {p:?}", a.shape()), ok(a.pad(&p, 1.0)))
        }
        7 => {
            let s = rand_shape(r, 5);
            (format!("expand {:?} to {s:?}", a.shape()), ok(a.expand(&s)))
        }
        8 => {
            let op = r.range(0, 7);
            let res = match op {
                0 => a.add(&b),
                6 => a.add_relu(&b),
                1 => a.sub(&b),
                2 => a.mul(&b),
                3 => a.div(&b),
                4 => a.maximum(&b),
                5 => a.minimum(&b),
                _ => a.pow(&b),
            };
            (
                format!("binary #{op} {:?} {:?}", a.shape(), b.shape()),
                ok(res),
            )
        }
        9 => {
            let dims: Vec<isize> = (0..r.range(0, 3)).map(|_| dim(r)).collect();
            let keep = r.chance(0.5);
            let res = match r.range(0, 3) {
                0 => a.sum_dims(&dims, keep),
                1 => a.mean_dims(&dims, keep),
                2 => a.max_dims(&dims, keep),
                _ => a.max(),
            };
            (format!("reduce {:?} over {dims:?}", a.shape()), ok(res))
        }
        10 => (
            format!("matmul {:?} {:?}", a.shape(), b.shape()),
            ok(a.matmul(&b)),
        ),
        11 => {
            let x = image(r, dev);
            let w = image(r, dev);
            let o = Conv2dOptions {
                stride: pair(r),
                padding: pair(r),
                dilation: pair(r),
                groups: small(r),
                same: r.chance(0.3),
            };
            let bias = r.chance(0.3).then(|| tensor(r, 2, dev));
            (
                format!(
                    "conv2d x{:?} w{:?} {o:?} b{:?}",
                    x.shape(),
                    w.shape(),
                    bias.as_ref().map(|b| b.shape().to_vec())
                ),
                ok(x.conv2d(&w, bias.as_ref(), o)),
            )
        }
        12 => {
            let x = image(r, dev);
            let w = image(r, dev);
            let o = ConvTranspose2dOptions {
                stride: pair(r),
                padding: pair(r),
                output_padding: pair(r),
                dilation: pair(r),
                groups: small(r),
            };
            (
                format!("conv_transpose2d x{:?} w{:?} {o:?}", x.shape(), w.shape()),
                ok(x.conv_transpose2d(&w, None, o)),
            )
        }
        13 => {
            let x = image(r, dev);
            let o = Pool2dOptions {
                kernel: pair(r),
                stride: pair(r),
                padding: pair(r),
                padding_end: r.chance(0.3).then(|| pair(r)),
                dilation: pair(r),
                ceil_mode: r.chance(0.5),
                same: r.chance(0.3),
            };
            let res = match r.range(0, 2) {
                0 => x.max_pool2d(o),
                1 => x.max_pool2d_with_indices(o).map(|(y, _)| y),
                _ => x.avg_pool2d_with(o, r.chance(0.5)),
            };
            (format!("pool x{:?} {o:?}", x.shape()), ok(res))
        }
        14 => {
            let x = image(r, dev);
            let s = pair(r);
            let res = if r.chance(0.5) {
                x.adaptive_avg_pool2d(s)
            } else {
                x.upsample_nearest2d(s)
            };
            (format!("resize x{:?} to {s:?}", x.shape()), ok(res))
        }
        15 => {
            let x = image(r, dev);
            let c = tensor(r, 1, dev);
            let opts = BatchNormOptions {
                training: r.chance(0.5),
                ..Default::default()
            };
            let (stats, relu) = (r.chance(0.5), r.chance(0.5));
            let bn = if relu {
                Tensor::batch_norm_relu
            } else {
                Tensor::batch_norm
            };
            let res = if stats {
                bn(&x, Some(&c), Some(&c), Some(&c), Some(&c), opts)
            } else {
                bn(&x, None, None, Some(&c), None, opts)
            };
            (
                format!(
                    "batch_norm x{:?} c{:?} {opts:?} stats {stats} relu {relu}",
                    x.shape(),
                    c.shape()
                ),
                ok(res),
            )
        }
        16 => {
            let p = r.pick(&[-0.5, 0.0, 0.3, 1.0, 1.5, f32::NAN]);
            (
                format!("dropout {:?} p {p}", a.shape()),
                ok(a.dropout(p, true, 1)),
            )
        }
        17 => (format!("gram {:?}", a.shape()), ok(a.gram())),
        18 => {
            let bias = r.chance(0.5).then(|| tensor(r, 2, dev));
            (
                format!("linear {:?} {:?}", a.shape(), b.shape()),
                ok(a.linear(&b, bias.as_ref())),
            )
        }
        19 => {
            let d = dim(r);
            let res = if r.chance(0.5) {
                a.softmax(d)
            } else {
                a.log_softmax(d)
            };
            (format!("softmax {:?} dim {d}", a.shape()), ok(res))
        }
        20 => {
            let t: Vec<usize> = (0..r.range(0, 4)).map(|_| small(r)).collect();
            (
                format!("cross_entropy {:?} targets {t:?}", a.shape()),
                ok(a.cross_entropy(&t)),
            )
        }
        21 => (
            format!("mse_loss {:?} {:?}", a.shape(), b.shape()),
            ok(a.mse_loss(&b)),
        ),
        22 => {
            let (d0, d1) = (dim(r), dim(r));
            let res = match r.range(0, 4) {
                0 => a.transpose(d0, d1),
                1 => a.squeeze(d0),
                2 => a.unsqueeze(d0),
                3 => a.flatten(small(r)),
                _ => a.t(),
            };
            (format!("shape op {:?} {d0} {d1}", a.shape()), ok(res))
        }
        23 => {
            let (s, e, st) = (
                r.pick(&[0.0, 1.0, -3.0, f32::NAN, -3e38]),
                r.pick(&[0.0, 5.0, f32::INFINITY, 1e30, 3e38]),
                r.pick(&[0.0, 1.0, -1.0, 0.5, 1e-30]),
            );
            (
                format!("arange {s} {e} {st}"),
                ok(Tensor::arange(s, e, st, dev)),
            )
        }
        24 => {
            let x = a.clone().requires_grad();
            let res = x.mul_scalar(2.0).backward();
            (format!("backward on {:?}", a.shape()), res)
        }
        25 => (format!("item {:?}", a.shape()), a.item().map(|_| ())),
        26 => {
            let s = small(r);
            (
                format!("upsample2d {:?} x{s}", a.shape()),
                ok(a.upsample2d(s)),
            )
        }
        27 => {
            let (x, w) = (volume(r, 3, dev).requires_grad(), volume(r, 3, dev));
            let o = Conv1dOptions {
                stride: small(r),
                padding: small(r),
                output_padding: small(r),
                dilation: small(r),
                groups: small(r),
            };
            let bias = r.chance(0.3).then(|| tensor(r, 2, dev));
            let transposed = r.chance(0.5);
            let res = if transposed {
                x.conv_transpose1d(&w, bias.as_ref(), o)
            } else {
                x.conv1d(&w, bias.as_ref(), o)
            };
            (
                format!(
                    "conv1d (transposed: {transposed}) x{:?} w{:?} {o:?}, then backward",
                    x.shape(),
                    w.shape()
                ),
                with_backward(res),
            )
        }
        28 => {
            let (x, w) = (volume(r, 5, dev).requires_grad(), volume(r, 5, dev));
            let o = Conv3dOptions {
                stride: triple(r),
                padding: triple(r),
                output_padding: triple(r),
                dilation: triple(r),
                groups: small(r),
            };
            let bias = r.chance(0.3).then(|| tensor(r, 2, dev));
            let transposed = r.chance(0.5);
            let res = if transposed {
                x.conv_transpose3d(&w, bias.as_ref(), o)
            } else {
                x.conv3d(&w, bias.as_ref(), o)
            };
            (
                format!(
                    "conv3d (transposed: {transposed}) x{:?} w{:?} {o:?}, then backward",
                    x.shape(),
                    w.shape()
                ),
                with_backward(res),
            )
        }
        29 => {
            let x = volume(r, 3, dev);
            let o = Pool1dOptions {
                kernel: small(r),
                stride: small(r),
                padding: small(r),
                dilation: small(r),
                ceil_mode: r.chance(0.5),
            };
            let size = small(r);
            let (what, res) = match r.range(0, 4) {
                0 => ("max_pool1d", x.max_pool1d(o)),
                1 => ("avg_pool1d", x.avg_pool1d(o, r.chance(0.5))),
                2 => ("adaptive_avg_pool1d", x.adaptive_avg_pool1d(size)),
                3 => ("upsample_nearest1d", x.upsample_nearest1d(size)),
                _ => (
                    "interpolate_linear",
                    x.interpolate_linear(size, r.chance(0.5)),
                ),
            };
            (
                format!("{what} x{:?} {o:?} size {size}", x.shape()),
                ok(res),
            )
        }
        30 => {
            let x = volume(r, 5, dev);
            let o = Pool3dOptions {
                kernel: triple(r),
                stride: triple(r),
                padding: triple(r),
                dilation: triple(r),
                ceil_mode: r.chance(0.5),
            };
            let size = triple(r);
            let (what, res) = match r.range(0, 4) {
                0 => ("max_pool3d", x.max_pool3d(o)),
                1 => ("avg_pool3d", x.avg_pool3d(o, r.chance(0.5))),
                2 => ("adaptive_avg_pool3d", x.adaptive_avg_pool3d(size)),
                3 => ("upsample_nearest3d", x.upsample_nearest3d(size)),
                _ => (
                    "interpolate_trilinear",
                    x.interpolate_trilinear(size, r.chance(0.5)),
                ),
            };
            (
                format!("{what} x{:?} {o:?} size {size:?}", x.shape()),
                ok(res),
            )
        }
        31 => {
            let logits = image(r, dev);
            let opts = CrossEntropy2dOptions {
                weight: r
                    .chance(0.3)
                    .then(|| vec![r.pick(&[1.0, 0.0, -1.0, f32::NAN]); r.range(0, 7)]),
                ignore_index: r.pick(&[-100, -1, 0, 2, i64::MAX]),
                reduction: r.pick(&[Reduction::Mean, Reduction::Sum, Reduction::None]),
            };
            let ids = |r: &mut Rng, n: usize| -> Vec<i64> {
                (0..n)
                    .map(|_| r.pick(&[-100, -1, 0, 1, 2, 6, 1000]))
                    .collect()
            };
            let s = logits.shape().to_vec();
            let (what, res) = match r.range(0, 3) {
                // Targets that fit the logits, so that the loss itself is reached.
                0 if s.len() == 4 && s.iter().all(|&d| d < 8) => {
                    let ids = ids(r, s[0] * s[2] * s[3]);
                    let t = PixelTargets::new(ids, [s[0], s[2], s[3]]);
                    (
                        "fitting targets",
                        t.and_then(|t| logits.cross_entropy2d(&t, &opts)),
                    )
                }
                0 | 1 => {
                    let n = r.range(0, 12);
                    let t = PixelTargets::new(ids(r, n), [size(r), size(r), size(r)]);
                    ("targets", t.and_then(|t| logits.cross_entropy2d(&t, &opts)))
                }
                2 => {
                    let masks: Vec<Vec<u8>> = (0..r.range(0, 3))
                        .map(|_| vec![r.pick(&[0, 1, 255]); r.range(0, 12)])
                        .collect();
                    let t = PixelTargets::from_masks(&masks, size(r), size(r));
                    ("masks", t.and_then(|t| logits.cross_entropy2d(&t, &opts)))
                }
                _ => {
                    let n = r.range(0, 12);
                    let t = PixelTargets::new(ids(r, n), [size(r), size(r), size(r)]);
                    let classes = small(r);
                    ("one_hot", t.and_then(|t| t.one_hot(classes, -100, dev)))
                }
            };
            (
                format!("cross_entropy2d ({what}) logits {s:?} {opts:?}"),
                ok(res),
            )
        }
        32 => {
            let (what, res) = match r.range(0, 2) {
                0 => {
                    let p = r.pick(&[0.0, 0.3, 1.0, -1.0, f32::NAN]);
                    (
                        format!("drop_path p {p}"),
                        a.drop_path(p, r.chance(0.7), r.next()),
                    )
                }
                1 => {
                    let s = rand_shape(r, 4);
                    (format!("sum_to_shape {s:?}"), a.sum_to_shape(&s))
                }
                _ => {
                    let (d, start, end) = (dim(r), small(r), small(r));
                    (format!("slice {d} {start}..{end}"), a.slice(d, start, end))
                }
            };
            (format!("{what} of {:?}", a.shape()), ok(res))
        }
        33 => {
            let x = image(r, dev);
            let (what, res) = match r.range(0, 2) {
                0 => {
                    let o = Pool2dOptions {
                        kernel: pair(r),
                        stride: pair(r),
                        padding: pair(r),
                        ..Default::default()
                    };
                    let size = if r.chance(0.5) {
                        pair(r)
                    } else {
                        [x.shape().get(2), x.shape().get(3)].map(|d| d.copied().unwrap_or(0))
                    };
                    let res = if r.chance(0.7) {
                        x.max_pool2d_with_indices(o)
                            .and_then(|(y, i)| y.max_unpool2d(&i, size))
                    } else {
                        x.max_unpool2d(&b, size)
                    };
                    (format!("max_unpool2d to {size:?} after {o:?}"), res)
                }
                1 => {
                    let size = pair(r);
                    let corners = r.chance(0.5);
                    let res = x.interpolate_bilinear(size, corners);
                    (format!("interpolate_bilinear to {size:?}"), res)
                }
                _ => {
                    let f = [0, 1].map(|_| r.pick(&[0.5, 1.0, 2.5, 0.0, -1.0, 1e30, f64::NAN]));
                    let res = x.interpolate_bilinear_scale(f, r.chance(0.5));
                    (format!("interpolate_bilinear_scale by {f:?}"), res)
                }
            };
            (format!("{what} x{:?}", x.shape()), ok(res))
        }
        34 => {
            let (what, res) = match r.range(0, 3) {
                0 => {
                    let t: Vec<usize> = (0..r.range(0, 6))
                        .map(|_| r.pick(&[0, 1, 2, 5, usize::MAX]))
                        .collect();
                    (format!("nll_loss targets {t:?}"), a.nll_loss(&t))
                }
                1 => {
                    let pw = r.pick(&[1.0, 0.0, -2.0, f32::INFINITY, f32::NAN]);
                    (
                        format!("bce_with_logits_weighted {:?} pos_weight {pw}", b.shape()),
                        a.bce_with_logits_weighted(&b, pw),
                    )
                }
                2 => {
                    let (d, eps) = (dim(r), r.pick(&[1e-8, 0.0, -1.0]));
                    (
                        format!("cosine_similarity with {:?} dim {d} eps {eps}", b.shape()),
                        a.cosine_similarity(&b, d, eps),
                    )
                }
                _ => {
                    let c = tensor(r, 4, dev);
                    let list: Vec<&Tensor> = [&a, &b, &c, &a][..r.range(0, 4)].to_vec();
                    let d = dim(r);
                    let shapes: Vec<&[usize]> = list.iter().map(|t| t.shape()).collect();
                    let res = if r.chance(0.5) {
                        Tensor::cat(&list, d)
                    } else {
                        Tensor::stack(&list, d)
                    };
                    (format!("cat or stack {shapes:?} along {d}"), res)
                }
            };
            (format!("{what} on {:?}", a.shape()), ok(res))
        }
        _ => {
            let s = rand_shape(r, 4);
            let v = r.pick(&[0.0, 1.5]);
            let res = match r.range(0, 6) {
                0 => Tensor::try_full(&s, v, dev),
                1 => Tensor::try_zeros(&s, dev),
                2 => Tensor::try_rand(&s, 3, dev),
                3 => Tensor::try_randn(&s, 4, dev),
                4 => {
                    // A layer's weights, sized by the caller's channels and kernel.
                    let (cin, cout, kernel) = (size(r), size(r), pair(r));
                    let opts = Conv2dOptions {
                        groups: small(r),
                        ..Default::default()
                    };
                    let layer = Conv2d::new(cin, cout, kernel, opts, r.chance(0.5), 5, dev);
                    let res = layer.map(|l| l.weight);
                    return (
                        format!("Conv2d::new({cin}, {cout}, {kernel:?}, {opts:?})"),
                        ok(res),
                    );
                }
                _ => a.to_device(dev),
            };
            (format!("constructor of {s:?}"), ok(res))
        }
    }
}

/// Ends the process with a replay line when one case runs past a minute
/// (`FOVEA_CASE_TIMEOUT_S` sets another limit): an op that never returns (a scratch buffer
/// sized by a stride of 2³² once kept CI busy for an hour) fails the run at once instead
/// of holding it to its time limit.
struct Watchdog {
    case: Arc<Mutex<(Instant, usize, u64)>>,
    done: Arc<AtomicBool>,
}

impl Watchdog {
    fn start(test: &str) -> Watchdog {
        let case = Arc::new(Mutex::new((Instant::now(), 0, 0)));
        let done = Arc::new(AtomicBool::new(false));
        let (c, d, test) = (case.clone(), done.clone(), test.to_string());
        let limit = std::env::var("FOVEA_CASE_TIMEOUT_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60);
        std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let (since, which, seed) = *c.lock().unwrap_or_else(|e| e.into_inner());
                if since.elapsed() > Duration::from_secs(limit) && !d.load(Ordering::Relaxed) {
                    // Past the test harness's capture, which ending the process discards.
                    let _ = writeln!(
                        std::io::stderr(),
                        "{test}: op #{which} still running after {limit} s \
                         (replay it alone with FOVEA_CASE={which}:{seed})"
                    );
                    // Not `exit`: its handlers could wait on the stuck call's threads.
                    std::process::abort();
                }
            }
        });
        Watchdog { case, done }
    }

    fn now_running(&self, which: usize, seed: u64) {
        *self.case.lock().unwrap_or_else(|e| e.into_inner()) = (Instant::now(), which, seed);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// Throws `calls` random calls at every op on `dev`: each is `Ok` with a tensor that holds
/// what its shape says, or an `Err` that names its op, never a panic.
fn never_panics(test: &str, dev: &Device, calls: usize) {
    const OPS: usize = 36;
    // FOVEA_CASE=op:seed replays one case from a failure report, its panic uncaught.
    if let Some((which, seed)) = std::env::var("FOVEA_CASE").ok().and_then(|c| {
        let (w, s) = c.split_once(':')?;
        Some((w.parse().ok()?, s.parse().ok()?))
    }) {
        let (desc, outcome) = call(&mut Rng(seed), which, dev);
        // Past the harness's capture, so that the replay shows without `--nocapture`.
        let _ = writeln!(std::io::stderr(), "{test}: {desc}: {outcome:?}");
        return;
    }
    let mut r = Rng(run_seed(test));
    let mut panics = Vec::new();
    let (mut oks, mut errs) = (0, 0);
    let watch = Watchdog::start(test);
    for i in 0..calls {
        let which = i % OPS;
        let case = r.next();
        watch.now_running(which, case);
        let outcome = catch_unwind(AssertUnwindSafe(|| call(&mut Rng(case), which, dev)));
        match outcome {
            Ok((_, Ok(()))) => oks += 1,
            Ok((desc, Err(e))) => {
                errs += 1;
                let msg = e.to_string();
                assert!(
                    !msg.is_empty() && msg.contains(':'),
                    "{desc}: error without context: {msg:?}"
                );
                assert!(!msg.contains("INCONSISTENT"), "{desc}: {msg}");
            }
            Err(_) => panics.push(format!(
                "op #{which} (replay it alone with FOVEA_CASE={which}:{case})"
            )),
        }
    }
    assert!(
        panics.is_empty(),
        "{} panics:\n{}",
        panics.len(),
        panics.join("\n")
    );
    // The generator must exercise both outcomes, or the test proves nothing.
    assert!(
        oks > calls / 40 && errs > calls / 40,
        "{oks} ok, {errs} errors"
    );
    eprintln!("{test}: {oks} calls succeeded, {errs} were refused with an error, none panicked");
}

/// On a CPU device whose tensors may hold at most 4 MiB: sizes past that are refused the
/// way sizes past the machine's memory are, without allocating them.
#[test]
fn random_bad_input_never_panics() {
    let dev = Device::cpu_with_memory_limit(4 << 20);
    never_panics("random_bad_input_never_panics", &dev, 20_000);
}

/// The same calls on the GPU (fewer: lavapipe is slow), whose limits are the adapter's.
#[test]
fn random_bad_input_never_panics_on_the_gpu() {
    let Some(gpu) = common::gpu("random_bad_input_never_panics_on_the_gpu") else {
        return;
    };
    never_panics("random_bad_input_never_panics_on_the_gpu", &gpu, 1_500);
}
