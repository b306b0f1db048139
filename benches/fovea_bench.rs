//! GPU (or CPU) timing harness: `cargo run --release --bin fovea-bench -- --json`.
//!
//! Times the workloads with a warm-up and the median of repeats; every timed region
//! ends with a device sync. `--batch N` caps every batch and `--matmul N` sets the matmul
//! size, so the same rows can run on a software driver (lavapipe) in reasonable time.
//! `benches/torch_bench.py` times the same rows in PyTorch for a side-by-side ratio. With
//! `FOVEA_PROFILE=1` every row also lists each kernel's GPU time per run (timestamps
//! around every dispatch; each submission then waits, so wall times grow).

use std::time::Instant;

use anyhow::{bail, Context, Result};
use fovea::backend::KernelTime;
use fovea::ops::{Conv2dOptions, ConvTranspose2dOptions, Pool2dOptions};
use fovea::{no_grad, Device, DeviceExt, Tensor};
use serde_json::json;

mod face_rows;
mod metric_rows;
mod nd_rows;
mod parallel_rows;

struct Opts {
    device: String,
    batch_cap: usize,
    matmul: usize,
    repeats: usize,
    /// Least milliseconds of back-to-back runs before timing (see `time`); None: 1000 on a
    /// hardware GPU, 0 elsewhere.
    warm_ms: Option<f64>,
    json: bool,
    only: Option<String>,
    style_size: usize,
    unet_size: usize,
    /// The autocast training rows on the CPU too (its autocast is the GPU's reference:
    /// for memory and correctness, not speed).
    autocast_cpu: bool,
}

// A binary of the library crate, which cannot use the examples' `clap` (a dev-dependency)
// without making it every user's dependency.
const USAGE: &str = "usage: fovea-bench [--device cpu|gpu|best] [--batch N] [--matmul N] [--repeats N] [--warm-ms MS] [--only PART|PART...] [--style-size N] [--unet-size N] [--autocast-cpu] [--json]";

fn parse() -> Result<Opts> {
    let mut o = Opts {
        device: "gpu".into(),
        batch_cap: usize::MAX,
        matmul: 4096,
        repeats: 5,
        warm_ms: None,
        json: false,
        only: None,
        style_size: 512,
        unet_size: 256,
        autocast_cpu: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut v = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--device" => o.device = v()?,
            "--batch" => o.batch_cap = v()?.parse()?,
            "--matmul" => o.matmul = v()?.parse()?,
            "--repeats" => o.repeats = v()?.parse()?,
            "--warm-ms" => o.warm_ms = Some(v()?.parse()?),
            "--json" => o.json = true,
            "--only" => o.only = Some(v()?),
            "--style-size" => o.style_size = v()?.parse()?,
            "--unet-size" => o.unet_size = v()?.parse()?,
            "--autocast-cpu" => o.autocast_cpu = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => bail!("unknown flag {a:?}\n{USAGE}"),
        }
    }
    Ok(o)
}

/// A row's wall time and, with kernel timing on (`FOVEA_PROFILE=1`), the GPU time of each
/// kernel per run of the timed region.
struct Timed {
    ms: f64,
    /// Median time the host spent recording a run (until `f` returned, before the sync):
    /// where it nears `ms`, the row is bound by the host, not the GPU.
    host_ms: f64,
    kernels: Vec<KernelTime>,
}

/// Timed runs take at least this long in all (but no more than `MAX_REPEATS` runs), so that
/// rows of tens of microseconds take their median over enough runs: 5 runs of the LeNet C3
/// rows on an H100 gave backward/forward ratios from 0.9 to 3.8 (benches/RESULTS.md,
/// 2026-11-22, commit adfb16d).
const FILL_MS: f64 = 100.0;
const MAX_REPEATS: usize = 201;

/// Median milliseconds of `f` after warming up, each run closed by a device sync, over
/// `--repeats` runs or as many more as fill `FILL_MS`. With `--repeats 0` the one warm-up
/// run itself is timed (for slow software drivers).
///
/// The warm-up repeats `f` until `warm_ms` have passed, not once: an NVIDIA GPU under
/// Vulkan drops to its idle clock (345 MHz on an H100, against 1980 MHz boost) while the
/// host prepares the next row, and one short run does not bring it back, so rows after
/// host-heavy set-up ran up to 5.7× slow (benches/RESULTS.md, 2026-11-22, commit 9e29339).
fn time(dev: &Device, o: &Opts, mut f: impl FnMut() -> Result<()>) -> Result<Timed> {
    let repeats = o.repeats;
    let warm_ms = o.warm_ms.unwrap_or(if dev.is_gpu() && !dev.is_software() {
        1000.0
    } else {
        0.0
    });
    dev.sync()?;
    dev.take_kernel_times();
    let start = Instant::now();
    let (mut ms, mut host) = (Vec::new(), Vec::new());
    while ms.is_empty() || (repeats > 0 && start.elapsed().as_secs_f64() * 1e3 < warm_ms) {
        let t = Instant::now();
        f()?;
        host.push(t.elapsed().as_secs_f64() * 1e3);
        dev.sync()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    if repeats > 0 {
        // The warm-up compiles pipelines and fills the pool: its kernel times are left out.
        dev.take_kernel_times();
        let typical = median(&mut ms).max(1e-3);
        let runs = ((FILL_MS / typical).ceil() as usize).clamp(repeats, MAX_REPEATS.max(repeats));
        ms.clear();
        host.clear();
        for _ in 0..runs {
            let t = Instant::now();
            f()?;
            host.push(t.elapsed().as_secs_f64() * 1e3);
            dev.sync()?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let runs = ms.len() as f64;
    let kernels = dev
        .take_kernel_times()
        .unwrap_or_default()
        .into_iter()
        .map(|k| KernelTime {
            ms: k.ms / runs,
            dispatches: (k.dispatches as f64 / runs).round() as usize,
            ..k
        })
        .collect();
    Ok(Timed {
        ms: median(&mut ms),
        host_ms: median(&mut host),
        kernels,
    })
}

fn median(ms: &mut [f64]) -> f64 {
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

struct Row {
    name: String,
    timed: Timed,
    flop: f64,
}

fn main() -> Result<()> {
    let o = parse()?;
    let dev = Device::by_name(&o.device)?;
    let mut rows = Vec::new();
    // `--only gram` runs just the rows whose name contains "gram"; `--only 'gram|lenet'`
    // those that contain either.
    let wanted = |name: &str| {
        o.only
            .as_ref()
            .is_none_or(|s| s.split('|').any(|part| name.contains(part)))
    };
    // (N, Cin, H, W, Cout, k, stride, pad, groups) from the issue.
    let convs = [
        (8, 64, 224, 224, 64, 3, 1, 1, 1),
        (64, 128, 28, 28, 128, 3, 1, 1, 1),
        (64, 256, 28, 28, 256, 3, 2, 1, 1),
        (32, 256, 56, 56, 64, 1, 1, 0, 1),
        (32, 256, 56, 56, 256, 3, 1, 1, 256),
        (256, 6, 14, 14, 16, 5, 1, 0, 1),
        // ResNet-18's deep 3×3 layers at batch 8: short planes, many channels.
        (8, 256, 14, 14, 256, 3, 1, 1, 1),
        (8, 512, 7, 7, 512, 3, 1, 1, 1),
        (8, 256, 14, 14, 512, 3, 2, 1, 1),
    ];
    for (n, cin, h, w, cout, k, s, p, g) in convs {
        let n = n.min(o.batch_cap);
        // Filtered rows allocate and compute nothing.
        let name = format!("conv2d n{n} c{cin} {h}x{w} -> {cout} k{k} s{s} p{p} g{g}");
        let (fwd, both) = (format!("{name} fwd"), format!("{name} fwd+bwd"));
        if !wanted(&fwd) && !wanted(&both) {
            continue;
        }
        let x = Tensor::randn(&[n, cin, h, w], 1, &dev).requires_grad();
        let wt = Tensor::randn(&[cout, cin / g, k, k], 2, &dev)
            .mul_scalar(0.05)
            .detach()
            .requires_grad();
        let opts = Conv2dOptions {
            stride: [s, s],
            padding: [p, p],
            groups: g,
            ..Default::default()
        };
        let y = no_grad(|| x.conv2d(&wt, None, opts))?;
        let flop = 2.0 * (y.numel() * (cin / g) * k * k) as f64;
        let gy = Tensor::randn(y.shape(), 3, &dev);
        if wanted(&fwd) {
            let timed = time(&dev, &o, || {
                no_grad(|| x.conv2d(&wt, None, opts))?;
                Ok(())
            })?;
            rows.push(Row {
                name: fwd,
                timed,
                flop,
            });
        }
        if wanted(&both) {
            let timed = time(&dev, &o, || {
                x.zero_grad();
                wt.zero_grad();
                x.conv2d(&wt, None, opts)?.backward_with(&gy)?;
                Ok(())
            })?;
            rows.push(Row {
                name: both,
                timed,
                flop: 3.0 * flop,
            });
        }
    }
    if wanted("conv_transpose2d") {
        let n = 16.min(o.batch_cap);
        let x = Tensor::randn(&[n, 512, 32, 32], 4, &dev);
        let w = Tensor::randn(&[512, 256, 2, 2], 5, &dev);
        let opts = ConvTranspose2dOptions {
            stride: [2, 2],
            ..Default::default()
        };
        let timed = time(&dev, &o, || {
            x.conv_transpose2d(&w, None, opts)?;
            Ok(())
        })?;
        let flop = 2.0 * (n * 512 * 32 * 32 * 256 * 4) as f64;
        rows.push(Row {
            name: format!("conv_transpose2d n{n} 512 32x32 -> 256 k2 s2 fwd"),
            timed,
            flop,
        });
    }
    if wanted("max_pool2d") {
        let n = 64.min(o.batch_cap);
        let x = Tensor::randn(&[n, 64, 112, 112], 6, &dev);
        let opts = Pool2dOptions {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
            ..Default::default()
        };
        let timed = time(&dev, &o, || {
            x.max_pool2d(opts)?;
            Ok(())
        })?;
        rows.push(Row {
            name: format!("max_pool2d n{n} 64 112x112 k3 s2 p1 fwd"),
            timed,
            flop: (n * 64 * 56 * 56 * 9) as f64,
        });
        // ResNet's stem pooling in training: the backward finds each window's arg-max
        // again and scatters the output gradient there.
        let x = x.requires_grad();
        let gy = Tensor::randn(&[n, 64, 56, 56], 12, &dev);
        let timed = time(&dev, &o, || {
            x.max_pool2d(opts)?.backward_with(&gy)?;
            x.zero_grad();
            Ok(())
        })?;
        rows.push(Row {
            name: format!("max_pool2d n{n} 64 112x112 k3 s2 p1 fwd+bwd"),
            timed,
            flop: f64::NAN,
        });
    }
    if wanted("batch_norm") {
        // Training mode, forward and backward with the affine parameters: ResNet-18's first
        // normalisation at batch 64.
        let n = 64.min(o.batch_cap);
        let x = Tensor::randn(&[n, 64, 112, 112], 10, &dev).requires_grad();
        let gy = Tensor::randn(&[n, 64, 112, 112], 11, &dev);
        let (w, b) = (
            Tensor::ones(&[64], &dev).requires_grad(),
            Tensor::zeros(&[64], &dev).requires_grad(),
        );
        let opts = fovea::ops::BatchNormOptions {
            training: true,
            ..Default::default()
        };
        let timed = time(&dev, &o, || {
            let y = x.batch_norm(None, None, Some(&w), Some(&b), opts)?;
            y.backward_with(&gy)?;
            for t in [&x, &w, &b] {
                t.zero_grad();
            }
            Ok(())
        })?;
        rows.push(Row {
            name: format!("batch_norm train n{n} 64 112x112 fwd+bwd"),
            timed,
            flop: f64::NAN,
        });
    }
    if wanted("gram") {
        let f = Tensor::randn(&[1, 256, 128, 128], 7, &dev);
        let timed = time(&dev, &o, || {
            f.gram()?;
            Ok(())
        })?;
        rows.push(Row {
            name: "gram 1x256x128x128".into(),
            timed,
            flop: 2.0 * (256 * 256 * 128 * 128) as f64,
        });
    }
    if wanted("matmul") {
        let m = o.matmul;
        let a = Tensor::randn(&[m, m], 8, &dev);
        let b = Tensor::randn(&[m, m], 9, &dev);
        let timed = time(&dev, &o, || {
            a.matmul(&b)?;
            Ok(())
        })?;
        rows.push(Row {
            name: format!("matmul {m}^3"),
            timed,
            flop: 2.0 * (m * m * m) as f64,
        });
        // Autocast on the GPU only: the CPU's rounds its operands in an extra pass, a
        // reference with no speed to gain.
        if dev.is_gpu() {
            let timed = time(&dev, &o, || {
                fovea::autocast(|| a.matmul(&b))?;
                Ok(())
            })?;
            rows.push(Row {
                name: format!("matmul {m}^3 autocast"),
                timed,
                flop: 2.0 * (m * m * m) as f64,
            });
        }
    }
    if wanted("dispatch") {
        // 1,000 dependent one-element ops: the cost of recording and running one dispatch,
        // which bounds small-batch training steps such as LeNet's.
        let one = Tensor::ones(&[1], &dev);
        let timed = time(&dev, &o, || {
            let mut x = one.clone();
            for _ in 0..1000 {
                x = x.add_scalar(1.0);
            }
            Ok(())
        })?;
        rows.push(Row {
            name: "dispatch: 1000 one-element ops (ms = us per op)".into(),
            timed,
            flop: f64::NAN,
        });
    }
    if wanted("latency") {
        // One one-element op, then a sync: the fixed cost each timed row above pays once
        // (and a training step at each read-back), next to PyTorch's launch-and-synchronize.
        let one = Tensor::ones(&[1], &dev);
        let timed = time(&dev, &o, || {
            one.add_scalar(1.0);
            Ok(())
        })?;
        rows.push(Row {
            name: "latency: one-element op + sync".into(),
            timed,
            flop: f64::NAN,
        });
        // Its two halves, medians of 200: recording the op, and the sync (submit and wait).
        let (mut record, mut wait) = (Vec::new(), Vec::new());
        for _ in 0..200 {
            let t = Instant::now();
            one.add_scalar(1.0);
            record.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            dev.sync()?;
            wait.push(t.elapsed().as_secs_f64() * 1e3);
        }
        for (what, mut ms) in [("recording it", record), ("syncing it", wait)] {
            rows.push(Row {
                name: format!("latency: {what}"),
                timed: Timed {
                    ms: median(&mut ms),
                    host_ms: f64::NAN,
                    kernels: Vec::new(),
                },
                flop: f64::NAN,
            });
        }
    }
    // The whole name: "lenet" alone would also select the zoo's mobilenet rows.
    if wanted("lenet5 training step batch 256") {
        // One LeNet-5 training step at batch 256 (forward, cross-entropy, backward, Adam):
        // small enough that launches and submissions, not kernels, set its time.
        use fovea::nn::Module;
        use fovea::optim::Optimizer;
        let model = fovea::models::LeNet5::new(10, 0.1, 0, &dev)?;
        let mut opt = fovea::optim::Adam::new(model.parameters(), Default::default());
        let x = Tensor::randn(&[256, 1, 28, 28], 12, &dev);
        let labels: Vec<usize> = (0..256).map(|i| i % 10).collect();
        let timed = time(&dev, &o, || {
            opt.zero_grad();
            model.forward(&x)?.cross_entropy(&labels)?.backward()?;
            opt.step()?;
            Ok(())
        })?;
        rows.push(Row {
            name: "lenet5 training step batch 256".into(),
            timed,
            flop: f64::NAN,
        });
    }
    if wanted("style") {
        // One style-transfer step at 512×512 on VGG19's trunk: features to relu5_1, content
        // and Gram style costs, backward to the image, an Adam update.
        let vgg =
            fovea::models::Vgg::features_only(fovea::models::VggConfig::Vgg19, false, 0, &dev)?;
        fovea::nn::Module::freeze(&vgg);
        let side = o.style_size;
        let content = Tensor::randn(&[1, 3, side, side], 10, &dev).mul_scalar(50.0);
        let style = Tensor::randn(&[1, 3, side, side], 12, &dev).mul_scalar(50.0);
        let problem = fovea::models::style::StyleTransfer::new(
            vgg,
            &content,
            &style,
            "relu4_2",
            &["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"],
        )?;
        let g = Tensor::randn(&[1, 3, side, side], 11, &dev)
            .mul_scalar(50.0)
            .detach()
            .requires_grad();
        let mut opt = fovea::optim::Adam::new(vec![g.clone()], Default::default());
        let timed = time(&dev, &o, || {
            use fovea::optim::Optimizer;
            opt.zero_grad();
            problem.costs(&g)?.total.backward()?;
            opt.step()?;
            Ok(())
        })?;
        rows.push(Row {
            name: format!("style transfer step {side}x{side} vgg19 (relu4_2 + 5 style layers)"),
            timed,
            flop: f64::NAN,
        });
    }
    nd_rows::rows(&dev, &o, &wanted, &mut rows)?;
    face_rows::rows(&dev, &o, &wanted, &mut rows)?;
    metric_rows::rows(&dev, &o, &wanted, &mut rows)?;
    parallel_rows::rows(&dev, &o, &wanted, &mut rows)?;
    zoo_rows(&dev, &o, &wanted, &mut rows)?;
    detection_rows(&dev, &o, &wanted, &mut rows)?;
    if wanted("unet") {
        unet_row(&dev, &o, &mut rows)?;
    }
    // The most the device held at once over the whole run (run one row with --only to
    // see that row's footprint; on the CPU it counts live tensors, on a GPU the pool).
    let peak_mib = dev.stats().peak_bytes as f64 / (1u64 << 20) as f64;
    if o.json {
        let round = |x: f64| (x * 1e4).round() / 1e4;
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                let kernels: Vec<_> = r
                    .timed
                    .kernels
                    .iter()
                    .map(|k| json!({"name": k.name, "dispatches": k.dispatches, "ms": round(k.ms)}))
                    .collect();
                // Rows without a FLOP count (NaN) report null.
                let tflops = Some(r.flop / r.timed.ms / 1e9).filter(|t| t.is_finite());
                json!({"name": r.name, "ms": round(r.timed.ms), "host_ms": round(r.timed.host_ms), "tflops": tflops.map(round), "kernels": kernels})
            })
            .collect();
        let doc = json!({"device": dev.name(), "peak_mib": round(peak_mib), "rows": rows});
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("device: {}  (peak memory {peak_mib:.1} MiB)", dev.name());
        for r in &rows {
            let ms = r.timed.ms;
            if r.flop.is_nan() {
                println!("{:60} {ms:10.3} ms", r.name);
            } else {
                println!(
                    "{:60} {ms:10.3} ms {:8.3} TFLOP/s",
                    r.name,
                    r.flop / ms / 1e9
                );
            }
            for k in &r.timed.kernels {
                println!(
                    "    {:56} {:10.3} ms  ({} calls)",
                    k.name, k.ms, k.dispatches
                );
            }
        }
    }
    Ok(())
}

/// The zoo's networks at 224×224: a training step (forward in training mode with batch
/// statistics, cross-entropy, backward, SGD with momentum 0.9) and an inference pass (eval
/// mode, no graph) each for ResNet-18 (batch 64), MobileNetV2 (64) and VGG-16 (32), capped
/// by `--batch`; on a GPU (or with `--autocast-cpu`) the training step again under
/// autocast with a `GradScaler` (PyTorch's AMP recipe).
fn zoo_rows(
    dev: &Device,
    o: &Opts,
    wanted: &dyn Fn(&str) -> bool,
    rows: &mut Vec<Row>,
) -> Result<()> {
    use fovea::models::{MobileNetV2, ResNet, Vgg, VggConfig};
    use fovea::nn::Module;
    use fovea::optim::{GradScaler, Optimizer, Sgd, SgdOptions};
    type Build = fn(&Device) -> fovea::Result<Box<dyn Module>>;
    let nets: [(&str, usize, Build); 3] = [
        ("resnet18", 64, |d| {
            Ok(Box::new(ResNet::resnet18(1000, 0, d)?))
        }),
        ("mobilenet_v2", 64, |d| {
            Ok(Box::new(MobileNetV2::new(1000, 1.0, 0, d)?))
        }),
        ("vgg16", 32, |d| {
            Ok(Box::new(Vgg::new(VggConfig::Vgg16, false, 1000, 0, d)?))
        }),
    ];
    for (net, batch, build) in nets {
        let n = batch.min(o.batch_cap);
        let (train, infer) = (
            format!("{net} training step 224x224 batch {n}"),
            format!("{net} inference 224x224 batch {n}"),
        );
        let amp = format!("{train} autocast");
        let amp_wanted = wanted(&amp) && (dev.is_gpu() || o.autocast_cpu);
        if !wanted(&train) && !wanted(&infer) && !amp_wanted {
            continue;
        }
        let model = build(dev)?;
        let x = Tensor::randn(&[n, 3, 224, 224], 20, dev);
        let labels: Vec<usize> = (0..n).map(|i| (i * 37) % 1000).collect();
        model.train();
        let mut opt = Sgd::new(
            model.parameters(),
            SgdOptions {
                lr: 0.01,
                momentum: 0.9,
                ..Default::default()
            },
        );
        if wanted(&train) {
            let timed = time(dev, o, || {
                opt.zero_grad();
                model.forward(&x)?.cross_entropy(&labels)?.backward()?;
                opt.step()?;
                Ok(())
            })?;
            rows.push(Row {
                name: train.clone(),
                timed,
                flop: f64::NAN,
            });
        }
        if amp_wanted {
            let mut scaler = GradScaler::new(Default::default())?;
            let timed = time(dev, o, || {
                opt.zero_grad();
                let loss = fovea::autocast(|| model.forward(&x)?.cross_entropy(&labels))?;
                scaler.scale(&loss).backward()?;
                scaler.step(&mut opt)?;
                scaler.update()?;
                Ok(())
            })?;
            rows.push(Row {
                name: amp,
                timed,
                flop: f64::NAN,
            });
        }
        if wanted(&infer) {
            model.eval();
            let timed = time(dev, o, || {
                no_grad(|| model.forward(&x))?;
                Ok(())
            })?;
            rows.push(Row {
                name: infer,
                timed,
                flop: f64::NAN,
            });
        }
    }
    Ok(())
}

/// Detection's rows: the course's sliding-window classifier run over a 64×64 image the
/// naive way (every 14×14 window cropped and classified) and the convolutional way (one
/// pass, fully connected layers as convolutions), and one training step of the `detect`
/// example's detector.
fn detection_rows(
    dev: &Device,
    o: &Opts,
    wanted: &dyn Fn(&str) -> bool,
    rows: &mut Vec<Row>,
) -> Result<()> {
    use fovea::models::detection::{WindowClassifier, YoloSpec};
    use fovea::nn::Module;
    use fovea::optim::Optimizer;
    let naive = "sliding windows naive: 64x64x3, 26x26 windows of 14x14 (crop + classify)";
    let conv = "sliding windows convolutional: 64x64x3, 26x26 windows in one pass";
    if wanted(naive) || wanted(conv) {
        let classifier = WindowClassifier::new(3, 4, 0, dev)?;
        let convolutional = classifier.to_convolutional()?;
        let x = Tensor::randn(&[1, 3, 64, 64], 13, dev);
        for (name, run) in [(naive, true), (conv, false)] {
            if !wanted(name) {
                continue;
            }
            let timed = time(dev, o, || {
                no_grad(|| {
                    if run {
                        classifier.slide(&x, 2)
                    } else {
                        convolutional.forward(&x)
                    }
                })?;
                Ok(())
            })?;
            rows.push(Row {
                name: name.into(),
                timed,
                flop: f64::NAN,
            });
        }
    }
    let n = 32.min(o.batch_cap);
    let name = format!("yolo detector training step batch {n} 96x96 (tiny darknet width 8, 3 anchors, 10 classes, Adam)");
    if wanted(&name) {
        let spec = YoloSpec::new(96.0, 12, vec![[10.0, 18.0], [16.0, 21.0], [23.0, 26.0]], 10)?;
        let model = fovea::models::Yolo::tiny(spec, 1, 8, 0, dev)?;
        let mut opt = fovea::optim::Adam::new(model.parameters(), Default::default());
        let x = Tensor::rand(&[n, 1, 96, 96], 14, dev);
        // Three digit-sized objects per image, spread over the grid.
        let boxes: Vec<Vec<[f32; 4]>> = (0..n)
            .map(|i| {
                (0..3)
                    .map(|k| {
                        let (x0, y0) = ((7 * i + 29 * k) % 60, (13 * i + 31 * k) % 60);
                        let (w, h) = (12 + (i + k) % 12, 18 + (i * k) % 14);
                        [x0 as f32, y0 as f32, (x0 + w) as f32, (y0 + h) as f32]
                    })
                    .collect()
            })
            .collect();
        let labels: Vec<Vec<usize>> = (0..n)
            .map(|i| (0..3).map(|k| (i + k) % 10).collect())
            .collect();
        let targets = model.spec.encode(&boxes, &labels)?;
        let timed = time(dev, o, || {
            opt.zero_grad();
            let loss = model
                .spec
                .loss(&model.forward(&x)?, &targets, &Default::default())?;
            loss.total.backward()?;
            opt.step()?;
            Ok(())
        })?;
        rows.push(Row {
            name,
            timed,
            flop: f64::NAN,
        });
    }
    Ok(())
}

/// One U-Net training step (the paper's widths 64-…-1024, transposed convolutions, 3
/// channels in, 2 classes) at batch 8: forward, per-pixel cross-entropy, backward, Adam.
fn unet_row(dev: &Device, o: &Opts, rows: &mut Vec<Row>) -> Result<()> {
    use fovea::nn::Module;
    use fovea::ops::{CrossEntropy2dOptions, PixelTargets};
    use fovea::optim::Optimizer;
    let (n, side) = (8.min(o.batch_cap), o.unet_size);
    let model = fovea::models::UNet::new(fovea::models::UNetConfig::new(3, 2), 0, dev)?;
    let mut opt = fovea::optim::Adam::new(model.parameters(), Default::default());
    let x = Tensor::randn(&[n, 3, side, side], 13, dev);
    let ids = (0..n * side * side)
        .map(|i| (i * 7 / 5 % 2) as i64)
        .collect();
    let target = PixelTargets::new(ids, [n, side, side])?;
    let ce = CrossEntropy2dOptions::default();
    let timed = time(dev, o, || {
        opt.zero_grad();
        model
            .forward(&x)?
            .cross_entropy2d(&target, &ce)?
            .backward()?;
        opt.step()?;
        Ok(())
    })?;
    rows.push(Row {
        name: format!("unet training step {side}x{side} batch {n} (width 64, depth 4)"),
        timed,
        flop: f64::NAN,
    });
    Ok(())
}
