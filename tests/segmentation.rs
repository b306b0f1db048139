//! Semantic segmentation: the U-Net's shapes, names and counts, its bad inputs, a short
//! training run on digit canvases, one training step on the CPU and the GPU, and the
//! metrics and Dice loss against hand-worked cases.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use common::parity::parity;
use common::{gradcheck, rel_err, run_seed, Rng};
use fovea::data::{digit_canvases, load_mask, CanvasOptions, InMemoryDataset, MASK_CLASSES};
use fovea::models::segmentation::{confusion, predict_classes, soft_dice_loss, DiceOptions};
use fovea::models::{UNet, UNetConfig};
use fovea::nn::{summary, Module};
use fovea::ops::{CrossEntropy2dOptions, PixelTargets};
use fovea::optim::{Adam, AdamOptions, Optimizer, Sgd, SgdOptions};
use fovea::{Device, Error, Tensor};

fn small(
    in_channels: usize,
    classes: usize,
    width: usize,
    depth: usize,
    bilinear: bool,
) -> UNetConfig {
    UNetConfig {
        in_channels,
        classes,
        width,
        depth,
        bilinear,
    }
}

/// The error's message, which must name `op` (the op that refused).
fn message(e: Error, op: &str) -> String {
    let msg = e.to_string();
    assert!(msg.contains(op), "{msg:?} does not name {op}");
    msg
}

#[test]
fn unet_output_has_the_input_size() {
    let dev = Device::cpu();
    for (cfg, input) in [
        (small(1, 11, 2, 1, false), [2, 1, 2, 2]),
        (small(1, 3, 3, 2, false), [2, 1, 12, 20]),
        (small(3, 2, 2, 3, true), [1, 3, 8, 24]),
        (small(2, 5, 4, 3, false), [2, 2, 16, 8]),
        (small(1, 1, 2, 4, true), [1, 1, 48, 16]),
    ] {
        let net = UNet::new(cfg, 3, &dev).unwrap();
        let y = net.forward(&Tensor::randn(&input, 1, &dev)).unwrap();
        assert_eq!(
            y.shape(),
            &[input[0], cfg.classes, input[2], input[3]],
            "{cfg:?} on {input:?}"
        );
        assert!(y.to_vec().unwrap().iter().all(|v| v.is_finite()));
    }
}

/// Parameter and MAC counts of milesial/Pytorch-UNet's `UNet(3, 2, bilinear)`, counted by
/// PyTorch (`sum(p.numel())`, and forward hooks summing out.numel() · weight[0].numel() over
/// Conv2d and in.numel() · weight[0].numel() over ConvTranspose2d at 1×3×32×32).
#[test]
fn unet_matches_the_pytorch_implementation_in_names_and_counts() {
    let dev = Device::cpu();
    for (bilinear, params, macs) in [
        (false, 31_037_698, 752_680_960),
        (true, 17_263_042, 624_754_688),
    ] {
        let net = UNet::new(
            UNetConfig {
                bilinear,
                ..UNetConfig::new(3, 2)
            },
            0,
            &dev,
        )
        .unwrap();
        let s = summary(&net, &[1, 3, 32, 32], &dev).unwrap();
        assert_eq!(s.params(), params, "bilinear {bilinear}");
        assert_eq!(s.macs(), macs, "bilinear {bilinear}");
        assert_eq!(net.num_parameters(), params);
        // Either way the bottom's 1024 (or 512) channels come up as 512 at twice the side.
        assert_eq!(s.row("up1.up").unwrap().output, [1, 512, 4, 4]);
    }
    // Every name of UNet(3, 1, width 8, depth 2) from PyTorch's state_dict (66 entries).
    let net = UNet::new(small(3, 1, 8, 2, false), 0, &dev).unwrap();
    let names: Vec<String> = net.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 66);
    for want in [
        "inc.double_conv.0.weight",
        "inc.double_conv.1.running_var",
        "inc.double_conv.4.num_batches_tracked",
        "down1.maxpool_conv.1.double_conv.3.weight",
        "down2.maxpool_conv.1.double_conv.4.bias",
        "up1.up.weight",
        "up1.up.bias",
        "up2.conv.double_conv.0.weight",
        "outc.conv.weight",
        "outc.conv.bias",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    assert_eq!(names.last().unwrap(), "outc.conv.bias");
    let shapes: Vec<Vec<usize>> = net
        .state_dict()
        .iter()
        .filter(|(n, _)| n == "up1.up.weight" || n == "up2.conv.double_conv.0.weight")
        .map(|(_, t)| t.shape().to_vec())
        .collect();
    // up1: 32 → 16 channels by a transposed conv; up2's pair sees 8 (skip) + 8 (up).
    assert_eq!(shapes, [vec![32, 16, 2, 2], vec![8, 16, 3, 3]]);
}

#[test]
fn bad_inputs_are_errors_naming_the_shapes() {
    let dev = Device::cpu();
    let net = UNet::new(small(1, 3, 2, 2, false), 0, &dev).unwrap();
    let msg = message(
        net.forward(&Tensor::zeros(&[1, 1, 12, 10], &dev))
            .unwrap_err(),
        "UNet",
    );
    assert!(msg.contains("[1, 1, 12, 10]") && msg.contains("4"), "{msg}");
    message(
        net.forward(&Tensor::zeros(&[1, 2, 8, 8], &dev))
            .unwrap_err(),
        "UNet",
    );
    message(
        net.forward(&Tensor::zeros(&[8, 8], &dev)).unwrap_err(),
        "UNet",
    );
    message(
        UNet::new(small(1, 0, 2, 2, false), 0, &dev).err().unwrap(),
        "UNet::new",
    );

    let logits = Tensor::zeros(&[2, 3, 4, 5], &dev);
    let opts = CrossEntropy2dOptions::default();
    let wrong_shape = PixelTargets::new(vec![0; 2 * 4 * 4], [2, 4, 4]).unwrap();
    let msg = message(
        logits.cross_entropy2d(&wrong_shape, &opts).unwrap_err(),
        "cross_entropy2d",
    );
    assert!(
        msg.contains("[2, 4, 4]") && msg.contains("[2, 3, 4, 5]"),
        "{msg}"
    );
    let mut ids = vec![1; 40];
    ids[27] = 3;
    let out_of_range = PixelTargets::new(ids, [2, 4, 5]).unwrap();
    let msg = message(
        logits.cross_entropy2d(&out_of_range, &opts).unwrap_err(),
        "cross_entropy2d",
    );
    assert!(msg.contains("target 3 at [1, 1, 2]"), "{msg}");
    // The same id is fine when it is the ignore index; −1 is not (the default is −100).
    let ignoring = CrossEntropy2dOptions {
        ignore_index: 3,
        ..Default::default()
    };
    assert!(logits.cross_entropy2d(&out_of_range, &ignoring).is_ok());
    let negative = PixelTargets::new(vec![-1; 40], [2, 4, 5]).unwrap();
    message(
        logits.cross_entropy2d(&negative, &opts).unwrap_err(),
        "cross_entropy2d",
    );
    let bad_weight = CrossEntropy2dOptions {
        weight: Some(vec![1.0; 2]),
        ..Default::default()
    };
    let fine = PixelTargets::new(vec![0; 40], [2, 4, 5]).unwrap();
    message(
        logits.cross_entropy2d(&fine, &bad_weight).unwrap_err(),
        "cross_entropy2d",
    );
    message(
        Tensor::zeros(&[3, 4, 5], &dev)
            .cross_entropy2d(&fine, &opts)
            .unwrap_err(),
        "cross_entropy2d",
    );
    message(
        PixelTargets::new(vec![0; 39], [2, 4, 5]).unwrap_err(),
        "PixelTargets::new",
    );
    message(
        PixelTargets::from_masks(&[vec![0u8; 6], vec![0; 5]], 2, 3).unwrap_err(),
        "from_masks",
    );
    message(
        soft_dice_loss(&logits, &wrong_shape, &DiceOptions::default()).unwrap_err(),
        "soft_dice_loss",
    );

    let one = Tensor::zeros(&[2, 1, 4, 5], &dev);
    message(
        one.bce_with_logits_weighted(&logits, 2.0).unwrap_err(),
        "bce_with_logits_weighted",
    );
    message(
        one.interpolate_bilinear([0, 3], false).unwrap_err(),
        "interpolate_bilinear",
    );
    message(
        logits
            .reshape(&[6, 4, 5])
            .unwrap()
            .interpolate_bilinear([2, 3], true)
            .unwrap_err(),
        "interpolate_bilinear",
    );
    message(
        one.interpolate_bilinear_scale([0.1, 1.0], false)
            .unwrap_err(),
        "interpolate_bilinear_scale",
    );
    message(
        one.interpolate_bilinear_scale([f64::NAN, 1.0], false)
            .unwrap_err(),
        "interpolate_bilinear_scale",
    );
    message(
        confusion(&[0, 1], &[0], 2, -100).unwrap_err(),
        "Confusion::add",
    );
    message(
        confusion(&[0, 2], &[0, 1], 2, -100).unwrap_err(),
        "Confusion::add",
    );
    message(
        predict_classes(&Tensor::zeros(&[2, 3], &dev)).unwrap_err(),
        "predict_classes",
    );
}

/// Random shapes, sizes, factors and targets thrown at the new ops give `Ok` or an error,
/// never a panic.
#[test]
fn random_bad_input_never_panics() {
    let mut r = Rng(run_seed("segmentation random_bad_input_never_panics"));
    let dev = Device::cpu();
    let (mut oks, mut errs) = (0, 0);
    for i in 0..3000 {
        let rank = r.pick(&[3, 4, 4, 4, 5]);
        let shape: Vec<usize> = (0..rank).map(|_| r.pick(&[0, 1, 2, 3, 5])).collect();
        let x = Tensor::randn(&shape, r.next(), &dev);
        let pick = |r: &mut Rng| r.pick(&[0, 1, 2, 7]);
        let t_shape = [pick(&mut r), pick(&mut r), pick(&mut r)];
        let ids: Vec<i64> = (0..t_shape.iter().product::<usize>())
            .map(|_| r.pick(&[-100, -1, 0, 1, 2, 255]))
            .collect();
        let factor = [r.pick(&[-1.0, 0.0, 0.3, 1.0, 2.5, f64::INFINITY]), 1.5];
        let size = [pick(&mut r), pick(&mut r)];
        let align = r.chance(0.5);
        let ignore = r.pick(&[-100, 255, 1]);
        let outcome = catch_unwind(AssertUnwindSafe(|| match i % 4 {
            0 => x.interpolate_bilinear(size, align).map(|_| ()),
            1 => x.interpolate_bilinear_scale(factor, align).map(|_| ()),
            2 => {
                let t = PixelTargets::new(ids, t_shape).unwrap();
                let opts = CrossEntropy2dOptions {
                    ignore_index: ignore,
                    ..Default::default()
                };
                x.cross_entropy2d(&t, &opts).map(|_| ())
            }
            _ => {
                let t = PixelTargets::new(ids, t_shape).unwrap();
                let opts = DiceOptions {
                    ignore_index: ignore,
                    ..Default::default()
                };
                soft_dice_loss(&x, &t, &opts).map(|_| ())
            }
        }));
        match outcome {
            Ok(Ok(())) => oks += 1,
            Ok(Err(e)) => {
                errs += 1;
                assert!(e.to_string().contains(':'), "error without context: {e}");
            }
            Err(_) => panic!("call {i} panicked on shape {shape:?}, targets {t_shape:?}"),
        }
    }
    assert!(oks > 200 && errs > 200, "{oks} ok, {errs} errors");
}

#[test]
fn masks_load_and_must_match_their_image() {
    let dir = std::env::temp_dir().join(format!("fovea-mask-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mask.png");
    let ids: Vec<u8> = (0..12).map(|i| (i % 4) as u8).collect();
    image::GrayImage::from_raw(4, 3, ids.clone())
        .unwrap()
        .save(&path)
        .unwrap();
    assert_eq!(load_mask(&path, &[1, 3, 3, 4]).unwrap(), ids);
    let e = load_mask(&path, &[1, 3, 4, 3]).unwrap_err().to_string();
    assert!(
        e.contains("mask.png") && e.contains("3 × 4") && e.contains("[1, 3, 4, 3]"),
        "{e}"
    );
    let rgb = dir.join("rgb.png");
    image::RgbImage::new(4, 3).save(&rgb).unwrap();
    assert!(load_mask(&rgb, &[3, 4])
        .unwrap_err()
        .to_string()
        .contains("gray"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn metrics_match_hand_worked_cases() {
    // Truth and prediction of six pixels, one ignored (255), four classes of which class 3
    // appears nowhere: counts (t, p) = (0,0) (0,1) (1,1) (1,1) (2,0).
    let truth = [0, 0, 1, 1, 2, 255];
    let pred = [0, 1, 1, 1, 0, 2];
    let m = confusion(&pred, &truth, 4, 255).unwrap();
    assert_eq!(m.total(), 5);
    assert_eq!(
        (m.count(0, 0), m.count(0, 1), m.count(1, 1), m.count(2, 0)),
        (1, 1, 2, 1)
    );
    assert!((m.pixel_accuracy() - 3.0 / 5.0).abs() < 1e-12);
    // IoU: class 0 TP 1 FP 1 FN 1; class 1 TP 2 FP 1 FN 0; class 2 TP 0 FP 0 FN 1.
    let iou = m.iou_per_class();
    let want = [Some(1.0 / 3.0), Some(2.0 / 3.0), Some(0.0), None];
    for (got, want) in iou.iter().zip(want) {
        assert_eq!(got.is_some(), want.is_some());
        assert!(
            (got.unwrap_or(0.0) - want.unwrap_or(0.0)).abs() < 1e-12,
            "{iou:?}"
        );
    }
    assert!((m.mean_iou() - 1.0 / 3.0).abs() < 1e-12);
    // Dice: 2/4, 4/5, 0.
    assert!((m.dice() - (0.5 + 0.8) / 3.0).abs() < 1e-12, "{}", m.dice());
    // Perfect predictions.
    let p = confusion(&[0, 1, 2, 2], &[0, 1, 2, 2], 3, -100).unwrap();
    assert_eq!(
        (p.pixel_accuracy(), p.mean_iou(), p.dice()),
        (1.0, 1.0, 1.0)
    );

    let dev = Device::cpu();
    // Scores of two 1×2 images over 3 classes: argmax 2, 0 | 1, 1.
    let logits = Tensor::from_vec(
        vec![
            0.0, 5.0, 1.0, 2.0, 3.0, 0.0, /* second */ 0.0, 0.0, 9.0, 8.0, 1.0, 1.0,
        ],
        &[2, 3, 1, 2],
        &dev,
    )
    .unwrap();
    assert_eq!(predict_classes(&logits).unwrap(), [2, 0, 1, 1]);

    // Soft Dice of uniform scores over two classes, targets [0, 1]: p = ½ everywhere, so
    // each class has 2·½ / (1 + 1) = ½ (smooth 0) or (1 + 1) / (2 + 1) (smooth 1).
    let t = PixelTargets::new(vec![0, 1], [1, 1, 2]).unwrap();
    let zeros = Tensor::zeros(&[1, 2, 1, 2], &dev);
    let l0 = soft_dice_loss(
        &zeros,
        &t,
        &DiceOptions {
            smooth: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    let l1 = soft_dice_loss(&zeros, &t, &DiceOptions::default()).unwrap();
    assert!((l0.item().unwrap() - 0.5).abs() < 1e-6);
    assert!((l1.item().unwrap() - 1.0 / 3.0).abs() < 1e-6);
    // Confident and right: near 0; an ignored pixel changes nothing.
    let sure = Tensor::from_vec(vec![9.0, -9.0, -9.0, 9.0], &[1, 2, 1, 2], &dev).unwrap();
    assert!(
        soft_dice_loss(&sure, &t, &DiceOptions::default())
            .unwrap()
            .item()
            .unwrap()
            < 1e-3
    );
    let t3 = PixelTargets::new(vec![0, 1, -100], [1, 1, 3]).unwrap();
    let z3 = Tensor::randn(&[1, 2, 1, 3], 4, &dev);
    let l3 = soft_dice_loss(&z3, &t3, &DiceOptions::default())
        .unwrap()
        .item()
        .unwrap();
    let l2 = soft_dice_loss(&z3.narrow(3, 0, 2).unwrap(), &t, &DiceOptions::default())
        .unwrap()
        .item()
        .unwrap();
    assert!((l3 - l2).abs() < 1e-6, "{l3} vs {l2}");
}

#[test]
fn dice_loss_gradient_and_gpu_parity() {
    let mut r = Rng(run_seed("dice_loss_gradient_and_gpu_parity"));
    let (n, c, h, w) = (2, r.range(2, 4), r.range(1, 4), r.range(2, 5));
    let ids: Vec<i64> = (0..n * h * w)
        .map(|i| {
            if i % 4 == 3 {
                -100
            } else {
                r.range(0, c - 1) as i64
            }
        })
        .collect();
    let t = PixelTargets::new(ids, [n, h, w]).unwrap();
    let x = Tensor::randn(&[n, c, h, w], r.next(), &Device::cpu());
    let f = |t_: &[Tensor]| soft_dice_loss(&t_[0], &t, &DiceOptions::default());
    gradcheck("soft_dice_loss", std::slice::from_ref(&x), &[true], &f);
    if let Some(gpu) = common::gpu("dice_loss_gradient_and_gpu_parity") {
        parity(&gpu, "soft_dice_loss", &[x], &f);
    }
}

fn digits(split: &str) -> InMemoryDataset {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/data/mnist-10k");
    InMemoryDataset::from_idx(
        &dir.join(format!("{split}-images-idx3-ubyte.gz")),
        &dir.join(format!("{split}-labels-idx1-ubyte.gz")),
        10,
        0.0,
        1.0,
    )
    .unwrap()
    .take(500)
}

/// Canvases of `side` pixels as a batch: images and per-pixel targets.
fn canvas_batch(count: usize, side: usize, seed: u64, dev: &Device) -> (Tensor, PixelTargets) {
    let opts = CanvasOptions {
        size: side,
        digits: [1, 2],
        digit_size: [side / 2, side * 3 / 4],
        ..Default::default()
    };
    let canvases = digit_canvases(&digits("train"), count, &opts, seed).unwrap();
    let x = fovea::data::canvas_images(&canvases, dev).unwrap();
    let masks: Vec<&[u8]> = canvases.iter().map(|c| c.mask.as_slice()).collect();
    (x, PixelTargets::from_masks(&masks, side, side).unwrap())
}

#[test]
fn loss_falls_in_a_short_run_on_digit_canvases() {
    let dev = Device::cpu();
    let (x, t) = canvas_batch(8, 32, 1, &dev);
    let net = UNet::new(small(1, MASK_CLASSES, 4, 2, false), 0, &dev).unwrap();
    let mut opt = Adam::new(
        net.parameters(),
        AdamOptions {
            lr: 1e-2,
            ..Default::default()
        },
    );
    let opts = CrossEntropy2dOptions::default();
    let mut losses = Vec::new();
    for _ in 0..20 {
        opt.zero_grad();
        let loss = net.forward(&x).unwrap().cross_entropy2d(&t, &opts).unwrap();
        losses.push(loss.item().unwrap());
        loss.backward().unwrap();
        opt.step().unwrap();
    }
    // From about ln 11 ≈ 2.4 for a fresh network, falling at every step (most pixels are
    // background, which the network learns first).
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(
        last < 0.8 * first,
        "loss went from {first} to {last}: {losses:?}"
    );
    assert!(losses.windows(2).all(|w| w[1] < w[0]), "{losses:?}");
}

#[test]
fn a_training_step_agrees_on_cpu_and_gpu() {
    let Some(gpu) = common::gpu("a_training_step_agrees_on_cpu_and_gpu") else {
        return;
    };
    let cpu = Device::cpu();
    let (x, t) = canvas_batch(2, 16, 2, &cpu);
    let weight: Vec<f32> = (0..MASK_CLASSES)
        .map(|c| if c == 0 { 0.2 } else { 1.0 })
        .collect();
    let opts = CrossEntropy2dOptions {
        weight: Some(weight),
        ..Default::default()
    };
    // SGD, whose update is linear in the gradient: Adam's first step is about lr·sign(g)
    // and would turn rounding in near-zero gradients into full-size differences.
    let step = |dev: &Device| {
        let net = UNet::new(small(1, MASK_CLASSES, 3, 2, false), 7, dev).unwrap();
        let mut opt = Sgd::new(
            net.parameters(),
            SgdOptions {
                lr: 0.1,
                momentum: 0.9,
                ..Default::default()
            },
        );
        let x = x.to_device(dev).unwrap();
        let loss = net.forward(&x).unwrap().cross_entropy2d(&t, &opts).unwrap();
        loss.backward().unwrap();
        let grads: Vec<(String, Vec<f32>)> = net
            .named_parameters()
            .into_iter()
            .map(|(n, p)| (n, p.grad().unwrap().to_vec().unwrap()))
            .collect();
        opt.step().unwrap();
        let after = net.forward(&x).unwrap().cross_entropy2d(&t, &opts).unwrap();
        (loss.item().unwrap(), grads, after.item().unwrap())
    };
    let (lc, gc, ac) = step(&cpu);
    let (lg, gg, ag) = step(&gpu);
    assert!(
        rel_err(&[lg], &[lc]) < 1e-4,
        "loss {lg} on the GPU, {lc} on the CPU"
    );
    for ((name, c), (_, g)) in gc.iter().zip(&gg) {
        let e = rel_err(g, c);
        assert!(e < 1e-3, "gradient of {name}: rel. error {e:.2e}");
    }
    assert!(
        rel_err(&[ag], &[ac]) < 1e-3,
        "loss after the step {ag} on the GPU, {ac} on the CPU"
    );
    assert!(ac < lc, "the step lowered the loss ({lc} → {ac})");
}
