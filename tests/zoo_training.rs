//! The zoo's models as trainable modules: batch norm folded into convolutions in eval mode
//! gives the unfolded result, GoogLeNet's auxiliary classifiers run only in training,
//! stochastic depth drops whole samples, state loading (strict and not) reports every
//! mismatch and changes nothing on error, and a training step of each family agrees on
//! the CPU and the GPU.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::rel_err;
use fovea::checkpoint::{self, NamedArrays};
use fovea::cpu::CpuBackend;
use fovea::models::{
    Block, EfficientNet, GoogLeNet, MobileNetV1, MobileNetV2, MobileNetV3, ResNet, ResNetConfig,
};
use fovea::nn::{Activation, BatchNorm2d, ConvNormAct, Module};
use fovea::ops::BatchNormOptions;
use fovea::optim::{Optimizer, Sgd, SgdOptions};
use fovea::{no_grad, Device, Tensor};

fn set_stats(bn: &BatchNorm2d, seed: u64) {
    let c = bn.weight.numel();
    let dev = bn.weight.device().clone();
    bn.running_mean
        .assign(&Tensor::randn(&[c], seed, &dev))
        .unwrap();
    bn.running_var
        .assign(&Tensor::rand(&[c], seed + 1, &dev).add_scalar(0.5))
        .unwrap();
    bn.weight
        .assign(&Tensor::randn(&[c], seed + 2, &dev))
        .unwrap();
    bn.bias
        .assign(&Tensor::randn(&[c], seed + 3, &dev))
        .unwrap();
}

/// `block`'s layers one after another, batch norm unfolded (its eval-mode statistics).
fn unfolded(block: &ConvNormAct, x: &Tensor) -> Tensor {
    let bn = &block.bn;
    let opts = BatchNormOptions {
        eps: bn.eps,
        ..Default::default()
    };
    x.conv2d(&block.conv.weight, None, block.conv.opts)
        .unwrap()
        .batch_norm(
            Some(&bn.running_mean),
            Some(&bn.running_var),
            Some(&bn.weight),
            Some(&bn.bias),
            opts,
        )
        .unwrap()
        .relu6()
}

#[test]
fn batch_norm_folded_into_the_conv_in_eval_matches_conv_then_batch_norm() {
    let dev = Device::cpu();
    let block = ConvNormAct::new(5, 7, 3, 2, 1, 1e-3, Activation::Relu6, 3, &dev).unwrap();
    set_stats(&block.bn, 11);
    block.eval();
    let x = Tensor::randn(&[2, 5, 9, 8], 4, &dev).requires_grad();
    let fused = block.forward(&x).unwrap();
    let bn = &block.bn;
    let plain = unfolded(&block, &x);
    let err = rel_err(&fused.to_vec().unwrap(), &plain.to_vec().unwrap());
    assert!(err < 1e-5, "folded forward differs: {err:.2e}");
    // The gradients reach the input and every parameter alike.
    let gy = Tensor::randn(fused.shape(), 5, &dev);
    let grads = |y: &Tensor| -> Vec<Vec<f32>> {
        for t in [&x, &block.conv.weight, &bn.weight, &bn.bias] {
            t.zero_grad();
        }
        y.backward_with(&gy).unwrap();
        [&x, &block.conv.weight, &bn.weight, &bn.bias]
            .iter()
            .map(|t| t.grad().unwrap().to_vec().unwrap())
            .collect()
    };
    let (a, b) = (grads(&fused), grads(&plain));
    for (i, (ga, gb)) in a.iter().zip(&b).enumerate() {
        let err = rel_err(ga, gb);
        assert!(
            err < 1e-4,
            "gradient {i} of the folded form differs: {err:.2e}"
        );
    }
}

/// Batch norm + ReLU as one op gives `batch_norm(…)?.relu()` bit for bit on the CPU: the
/// values, the gradients of the input, weight and bias, and the running statistics, in
/// training and eval, on ranks 2, 4 and 5; and a `ConvNormAct` with ReLU (which fuses it)
/// gives its layers run one by one.
#[test]
fn batch_norm_relu_fused_matches_batch_norm_then_relu_bit_for_bit() {
    let dev = Device::cpu();
    let shapes: [&[usize]; 3] = [&[4, 3, 5, 7], &[6, 5], &[2, 3, 4, 2, 3]];
    for (s, training) in shapes.iter().flat_map(|s| [(s, true), (s, false)]) {
        let c = s[1];
        let x = Tensor::randn(s, 1, &dev).affine(2.0, 0.3);
        let (w, b) = (Tensor::randn(&[c], 2, &dev), Tensor::randn(&[c], 3, &dev));
        let gy = Tensor::randn(s, 4, &dev);
        let run = |fused: bool| -> Vec<Vec<f32>> {
            let [x, w, b] = [&x, &w, &b].map(|t| t.detach().requires_grad());
            let rm = Tensor::randn(&[c], 5, &dev);
            let rv = Tensor::rand(&[c], 6, &dev).add_scalar(0.5);
            let opts = BatchNormOptions {
                training,
                ..Default::default()
            };
            let (srm, srv) = (Some(&rm), Some(&rv));
            let y = if fused {
                x.batch_norm_relu(srm, srv, Some(&w), Some(&b), opts)
                    .unwrap()
            } else {
                let y = x.batch_norm(srm, srv, Some(&w), Some(&b), opts).unwrap();
                y.relu()
            };
            y.backward_with(&gy).unwrap();
            let grads = [&x, &w, &b].map(|t| t.grad().unwrap());
            [&y, &grads[0], &grads[1], &grads[2], &rm, &rv]
                .iter()
                .map(|t| t.to_vec().unwrap())
                .collect()
        };
        let (fused, plain) = (run(true), run(false));
        let zeros = fused[0].iter().filter(|&&v| v == 0.0).count();
        assert!(
            zeros > 0 && zeros < fused[0].len(),
            "{s:?}: the ReLU both clamps and passes"
        );
        for (i, (f, p)) in fused.iter().zip(&plain).enumerate() {
            let same = f.iter().zip(p).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{s:?} training {training}: result {i} differs");
        }
    }
    let block = ConvNormAct::new(5, 7, 3, 1, 1, 1e-3, Activation::Relu, 3, &dev).unwrap();
    let x = Tensor::randn(&[2, 5, 6, 7], 4, &dev);
    let fused = block.forward(&x).unwrap().to_vec().unwrap();
    let h = block.conv.forward(&x).unwrap();
    let plain = block.bn.forward(&h).unwrap().relu().to_vec().unwrap();
    assert_eq!(fused, plain, "ConvNormAct with ReLU, training");
}

/// Without gradients the folded weight is kept between calls: a second call folds nothing
/// (no products on a timed device); replacing any one parameter, running statistic or
/// `eps` makes the next call fold again, and every result equals the unfolded layers.
#[test]
fn a_kept_fold_is_reused_until_any_of_its_inputs_changes() {
    let dev = Device::from_backend(Arc::new(CpuBackend::new().with_profile(true)));
    let mut block = ConvNormAct::new(5, 7, 3, 2, 1, 1e-3, Activation::Relu6, 3, &dev).unwrap();
    set_stats(&block.bn, 11);
    block.eval();
    let x = Tensor::randn(&[2, 5, 9, 8], 4, &dev);
    let run = |block: &ConvNormAct| -> (Vec<f32>, usize) {
        dev.take_kernel_times();
        let y = no_grad(|| block.forward(&x)).unwrap().to_vec().unwrap();
        let times = dev.take_kernel_times().expect("a timed device");
        let products = times
            .iter()
            .filter(|k| k.name == "Mul")
            .map(|k| k.dispatches);
        (y, products.sum())
    };
    let plain = |block: &ConvNormAct| unfolded(block, &x).to_vec().unwrap();
    let (first, products) = run(&block);
    assert!(products > 0, "the first call folds");
    assert!(rel_err(&first, &plain(&block)) < 1e-5);
    let (again, products) = run(&block);
    assert_eq!(products, 0, "the second call reuses the fold");
    assert_eq!(again, first);
    let fresh = |seed: u64, shape: &[usize]| Tensor::rand(shape, seed, &dev).add_scalar(0.5);
    type Change<'a> = Box<dyn Fn(&mut ConvNormAct) + 'a>;
    let changes: Vec<(&str, Change)> = vec![
        (
            "running mean",
            Box::new(|b| b.bn.running_mean.assign(&fresh(21, &[7])).unwrap()),
        ),
        (
            "running var",
            Box::new(|b| b.bn.running_var.assign(&fresh(22, &[7])).unwrap()),
        ),
        (
            "weight",
            Box::new(|b| b.bn.weight.assign(&fresh(23, &[7])).unwrap()),
        ),
        (
            "bias",
            Box::new(|b| b.bn.bias.assign(&fresh(24, &[7])).unwrap()),
        ),
        (
            "conv weight",
            Box::new(|b| {
                let w = fresh(25, b.conv.weight.shape());
                b.conv.weight.assign(&w).unwrap()
            }),
        ),
        ("eps", Box::new(|b| b.bn.eps = 0.25)),
    ];
    for (what, change) in changes {
        change(&mut block);
        let (y, products) = run(&block);
        assert!(products > 0, "a new {what} folds again");
        let err = rel_err(&y, &plain(&block));
        assert!(err < 1e-5, "a new {what}: the fold differs by {err:.2e}");
    }
}

#[test]
fn googlenet_runs_its_auxiliary_classifiers_in_training_only() {
    let dev = Device::cpu();
    let m = GoogLeNet::new(7, true, 0, &dev).unwrap();
    let x = Tensor::randn(&[2, 3, 64, 64], 1, &dev);
    let out = m.forward_with_aux(&x).unwrap();
    assert_eq!(out.logits.shape(), &[2, 7]);
    assert_eq!(out.aux1.as_ref().unwrap().shape(), &[2, 7]);
    assert_eq!(out.aux2.as_ref().unwrap().shape(), &[2, 7]);
    let loss = out.loss(&[1, 6]).unwrap();
    let main_only = out.logits.cross_entropy(&[1, 6]).unwrap();
    assert!(loss.item().unwrap() > main_only.item().unwrap());
    loss.backward().unwrap();
    let aux_w = &m.aux.as_ref().unwrap()[0].fc2.weight;
    assert!(aux_w.grad().is_some(), "the auxiliary classifier trains");
    m.eval();
    let out = m.forward_with_aux(&x).unwrap();
    assert!(out.aux1.is_none() && out.aux2.is_none());
}

#[test]
fn drop_path_keeps_or_drops_whole_samples_and_is_the_identity_in_eval() {
    let dev = Device::cpu();
    let x = Tensor::rand(&[64, 3, 4, 4], 1, &dev).add_scalar(1.0);
    let y = x.drop_path(0.25, true, 9).unwrap().to_vec().unwrap();
    let xs = x.to_vec().unwrap();
    let mut kept = 0;
    for (a, b) in xs.chunks(48).zip(y.chunks(48)) {
        let dropped = b.iter().all(|&v| v == 0.0);
        let scaled = a.iter().zip(b).all(|(&p, &q)| (q - p / 0.75).abs() < 1e-5);
        assert!(
            dropped || scaled,
            "a sample is neither dropped nor scaled whole"
        );
        kept += scaled as usize;
    }
    assert!(
        (32..=60).contains(&kept),
        "{kept} of 64 samples kept at p = 0.25"
    );
    assert_eq!(x.drop_path(0.25, false, 9).unwrap().to_vec().unwrap(), xs);
    assert!(x.drop_path(1.5, true, 9).is_err());
}

fn small_resnet(classes: usize, dev: &Device) -> ResNet {
    let config = ResNetConfig {
        in_channels: 1,
        width: 4,
        small_input: true,
        ..ResNetConfig::torchvision(Block::Basic, [1, 1, 1, 1], classes)
    };
    ResNet::new(config, 3, dev).unwrap()
}

fn state(m: &dyn Module) -> NamedArrays {
    m.state_dict()
        .into_iter()
        .map(|(n, t)| (n, (t.shape().to_vec(), t.to_vec().unwrap())))
        .collect()
}

#[test]
fn a_backbone_loads_non_strictly_and_a_wrong_model_changes_nothing() {
    let dev = Device::cpu();
    let source = small_resnet(10, &dev);
    let target = small_resnet(4, &dev);
    // A head of another size: not strict, everything but fc loads and fc is reported.
    let mut file: NamedArrays = state(&source);
    file.retain(|n, _| !n.starts_with("fc."));
    file.insert("extra.weight".into(), (vec![2], vec![1.0, 2.0]));
    let report = checkpoint::load_state(&target, &file, false, "mem").unwrap();
    assert_eq!(report.missing, ["fc.weight", "fc.bias"]);
    assert_eq!(report.unexpected, ["extra.weight"]);
    let name = "layer2.0.conv1.weight";
    assert_eq!(state(&target)[name].1, state(&source)[name].1);
    // Strict, the same file is refused, naming each problem.
    let err = checkpoint::load_state(&target, &file, true, "mem")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing fc.weight") && err.contains("unexpected extra.weight"),
        "{err}"
    );
    // A shape mismatch is an error even when not strict, and nothing changes.
    let fresh = small_resnet(4, &dev);
    let before = state(&fresh);
    let wrong: NamedArrays = state(&MobileNetV2::small_input(1, 4, 0.25, 0, &dev).unwrap());
    let mut mixed: HashMap<_, _> = state(&source);
    mixed.insert(
        "layer1.0.conv1.weight".into(),
        (vec![1, 1, 1, 1], vec![0.5]),
    );
    for f in [&wrong, &mixed] {
        let strict = checkpoint::load_state(&fresh, f, true, "mem");
        assert!(strict.is_err());
        if f.contains_key("layer1.0.conv1.weight") {
            let e = checkpoint::load_state(&fresh, f, false, "mem")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("layer1.0.conv1.weight: file has shape [1, 1, 1, 1]"),
                "{e}"
            );
        }
        assert_eq!(state(&fresh), before, "a refused load changed the model");
    }
}

/// One SGD step on `dev`; every parameter's update, concatenated.
fn step_on(model: &dyn Module, dev: &Device, x: &Tensor, labels: &[usize]) -> Vec<f32> {
    let before: Vec<f32> = model
        .parameters()
        .iter()
        .flat_map(|p| p.to_vec().unwrap())
        .collect();
    let mut opt = Sgd::new(
        model.parameters(),
        SgdOptions {
            lr: 0.1,
            momentum: 0.9,
            ..Default::default()
        },
    );
    opt.zero_grad();
    let loss = model
        .forward(&x.to_device(dev).unwrap())
        .unwrap()
        .cross_entropy(labels)
        .unwrap();
    loss.backward().unwrap();
    opt.step().unwrap();
    let after: Vec<f32> = model
        .parameters()
        .iter()
        .flat_map(|p| p.to_vec().unwrap())
        .collect();
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}

#[test]
fn a_training_step_of_each_family_agrees_on_cpu_and_gpu() {
    let Some(gpu) = common::gpu("a_training_step_of_each_family_agrees_on_cpu_and_gpu") else {
        return;
    };
    let cpu = Device::cpu();
    type Build = fn(&Device) -> Box<dyn Module>;
    // Batch norm over a handful of values amplifies float rounding in backward (with 3
    // values per channel, gradients differed by 5e-3 while the losses agreed to 4e-6), so
    // every layer here sees at least 8.
    let families: [(&str, Build, usize); 4] = [
        ("resnet", |d| Box::new(small_resnet(3, d)), 1),
        (
            "mobilenet_v1",
            |d| Box::new(MobileNetV1::new(0.125, 1, 3, 1, d).unwrap()),
            1,
        ),
        (
            "mobilenet_v2",
            |d| Box::new(MobileNetV2::small_input(1, 3, 0.25, 2, d).unwrap()),
            1,
        ),
        (
            "mobilenet_v3",
            |d| Box::new(MobileNetV3::small(3, 4, d).unwrap()),
            3,
        ),
    ];
    let labels = [0, 2, 1, 1, 0, 2, 2, 0];
    for (name, build, channels) in families {
        let x = Tensor::randn(&[8, channels, 32, 32], 7, &cpu);
        let (a, b) = (build(&cpu), build(&gpu));
        let want = step_on(a.as_ref(), &cpu, &x, &labels);
        let got = step_on(b.as_ref(), &gpu, &x, &labels);
        // The whole update, not each tensor's: a batch norm bias whose gradient is a sum
        // that cancels to about zero (the next layer's batch norm centres it) has no
        // meaningful relative error of its own.
        let err = rel_err(&got, &want);
        assert!(err < 1e-3, "{name}: the step's update differs: {err:.2e}");
    }
}

#[test]
fn efficientnet_scales_width_and_depth_and_trains() {
    let dev = Device::cpu();
    let b0 = EfficientNet::new(0, 5, 0, &dev).unwrap();
    let b1 = EfficientNet::new(1, 5, 0, &dev).unwrap();
    let b2 = EfficientNet::new(2, 5, 0, &dev).unwrap();
    let blocks = |m: &EfficientNet| -> usize {
        let stages = m.features.children();
        assert_eq!(stages.len(), 9, "stem, seven stages, head");
        stages[1..8].iter().map(|(_, s)| s.children().len()).sum()
    };
    // Repeats ⌈n · depth⌉ per stage: 16 blocks in B0, 23 at depth 1.1 (B1) and at 1.2 (B2,
    // which also widens its channels by 1.1).
    assert_eq!((blocks(&b0), blocks(&b1), blocks(&b2)), (16, 23, 23));
    assert!(b1.num_parameters() > b0.num_parameters());
    assert!(b2.num_parameters() > b1.num_parameters());
    assert!(EfficientNet::new(8, 5, 0, &dev).is_err());
    // Eval mode: stochastic depth and dropout off, the same output twice.
    b0.eval();
    let x = Tensor::randn(&[1, 3, 32, 32], 1, &dev);
    let y1 = no_grad(|| b0.forward(&x)).unwrap().to_vec().unwrap();
    let y2 = no_grad(|| b0.forward(&x)).unwrap().to_vec().unwrap();
    assert_eq!(y1, y2);
}
