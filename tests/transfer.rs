//! Transfer learning: the feature cache against running the frozen backbone every epoch,
//! frozen parameters (no gradient, no change), per-group learning rates in SGD and Adam,
//! and the errors for bad layer names, depths and foreign caches.

use std::path::PathBuf;

use fovea::data::{
    cached_features, extract_features, load_features, CacheKey, DataLoader, InMemoryDataset,
};
use fovea::nn::{
    freeze_depth, freeze_matching, unfreeze_matching, AdaptiveAvgPool2d, Conv2d, Flatten, Linear,
    Module, Relu, Sequential,
};
use fovea::ops::Conv2dOptions;
use fovea::optim::{Adam, AdamOptions, Optimizer, ParamGroup, Sgd, SgdOptions};
use fovea::{no_grad, Device, Tensor};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fovea-transfer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

/// A small convolutional backbone: `[N, 1, 8, 8]` to `[N, 6]`.
fn backbone(seed: u64, dev: &Device) -> Sequential {
    let pad = Conv2dOptions {
        padding: [1, 1],
        ..Default::default()
    };
    let stride = Conv2dOptions {
        stride: [2, 2],
        ..Default::default()
    };
    Sequential::new()
        .push(Conv2d::new(1, 4, [3, 3], pad, true, seed, dev).unwrap())
        .push(Relu)
        .push(Conv2d::new(4, 6, [3, 3], stride, true, seed + 1, dev).unwrap())
        .push(Relu)
        .push(AdaptiveAvgPool2d([1, 1]))
        .push(Flatten)
}

fn toy_data(n: usize, seed: u64) -> InMemoryDataset {
    let values = Tensor::randn(&[n, 1, 8, 8], seed, &Device::cpu())
        .to_vec()
        .unwrap();
    InMemoryDataset {
        shape: vec![1, 8, 8],
        values,
        labels: (0..n).map(|i| (i * 7 + 3) % 3).collect(),
        classes: 3,
        background: 0.0,
    }
}

/// Trains a fresh head (same seed) for `epochs` on batches of `data`, each first passed
/// through `pre` (the backbone, or nothing for cached features); returns its weights.
fn train_head(
    data: &InMemoryDataset,
    pre: Option<&dyn Module>,
    epochs: usize,
    dev: &Device,
) -> Vec<f32> {
    let head = Linear::new(6, 3, true, 99, dev);
    let mut opt = Sgd::new(
        head.parameters(),
        SgdOptions {
            lr: 0.1,
            momentum: 0.9,
            ..Default::default()
        },
    );
    for epoch in 0..epochs {
        for b in DataLoader::new(data, 8, Some(epoch as u64), dev).unwrap() {
            let b = b.unwrap();
            let x = match pre {
                Some(m) => m.forward(&b.images).unwrap(),
                None => b.images,
            };
            opt.zero_grad();
            head.forward(&x)
                .unwrap()
                .cross_entropy(&b.labels)
                .unwrap()
                .backward()
                .unwrap();
            opt.step().unwrap();
        }
    }
    let mut w = head.weight.to_vec().unwrap();
    w.extend(head.bias.as_ref().unwrap().to_vec().unwrap());
    w
}

#[test]
fn cached_features_train_the_same_head_as_the_frozen_backbone() {
    let dev = Device::cpu();
    let net = backbone(5, &dev);
    net.freeze();
    net.eval();
    let data = toy_data(40, 1);
    let key = CacheKey::new("toy", &net, &data, &dev).unwrap();
    assert_eq!(key.feature_shape, vec![6]);
    let path = tmp("toy.safetensors");
    let (made, read) = cached_features(&path, &key, &net, &data, 3, 16, &dev).unwrap();
    assert!(!read);
    let (cache, read) = cached_features(&path, &key, &net, &data, 3, 16, &dev).unwrap();
    assert!(read, "the second call reads the file");
    assert_eq!(cache.values, made.values);
    assert_eq!(cache.labels, data.labels);
    let direct = train_head(&data, Some(&net), 3, &dev);
    let cached = train_head(&cache, None, 3, &dev);
    let untrained = train_head(&data, None, 0, &dev);
    let diff = direct
        .iter()
        .zip(&cached)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "head weights differ by {diff}");
    let moved = direct
        .iter()
        .zip(&untrained)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(moved > 1e-2, "the head trained ({moved})");
}

#[test]
fn a_cache_from_another_backbone_or_shape_is_refused() {
    let dev = Device::cpu();
    let net = backbone(5, &dev);
    let data = toy_data(12, 2);
    let key = CacheKey::new("toy", &net, &data, &dev).unwrap();
    let path = tmp("other.safetensors");
    let f = extract_features(&net, &data, 3, 5, &dev).unwrap();
    fovea::data::save_features(&f, &key, &path).unwrap();
    assert!(load_features(&path, &key).is_ok());

    let other = backbone(6, &dev);
    let key2 = CacheKey::new("toy2", &other, &data, &dev).unwrap();
    let e = load_features(&path, &key2).unwrap_err().to_string();
    assert!(e.contains("backbone toy") && e.contains("now toy2"), "{e}");

    // Another input shape: the same backbone over 10×10 items.
    let big = InMemoryDataset {
        shape: vec![1, 10, 10],
        values: vec![0.5; 12 * 100],
        ..data.clone()
    };
    let key3 = CacheKey::new("toy", &net, &big, &dev).unwrap();
    let e = load_features(&path, &key3).unwrap_err().to_string();
    assert!(e.contains("input shape 1x8x8 (now 1x10x10)"), "{e}");

    // A backbone with another feature width.
    let wide = Sequential::new()
        .push(Flatten)
        .push(Linear::new(64, 5, true, 1, &dev));
    let key4 = CacheKey::new("linear", &wide, &data, &dev).unwrap();
    let e = load_features(&path, &key4).unwrap_err().to_string();
    assert!(e.contains("feature shape 6 (now 5)"), "{e}");
}

#[test]
fn frozen_parameters_get_no_gradient_and_do_not_change() {
    let dev = Device::cpu();
    let net = backbone(3, &dev).push(Linear::new(6, 3, true, 4, &dev));
    // By pattern: the first convolution; by depth: nothing more (0 of the chain).
    assert_eq!(freeze_matching(&net, "0").unwrap(), 2);
    let before: Vec<(String, Vec<f32>)> = net
        .named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.to_vec().unwrap()))
        .collect();
    let mut opt = Adam::new(net.parameters(), AdamOptions::default());
    let data = toy_data(8, 3);
    let b = DataLoader::new(&data, 8, None, &dev)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    for _ in 0..2 {
        opt.zero_grad();
        net.forward(&b.images)
            .unwrap()
            .cross_entropy(&b.labels)
            .unwrap()
            .backward()
            .unwrap();
        for (n, p) in net.named_parameters() {
            assert_eq!(p.grad().is_some(), !n.starts_with("0."), "{n}");
        }
        opt.step().unwrap();
    }
    for ((n, p), (_, old)) in net.named_parameters().iter().zip(&before) {
        let same = p.to_vec().unwrap() == *old;
        assert_eq!(same, n.starts_with("0."), "{n} changed: {}", !same);
    }

    // By depth: the first 3 children frozen, the rest trainable again.
    net.freeze();
    assert_eq!(freeze_depth(&net, "", 3).unwrap(), 7);
    let trainable: Vec<String> = net
        .named_parameters()
        .into_iter()
        .filter(|(_, p)| p.is_requires_grad())
        .map(|(n, _)| n)
        .collect();
    assert_eq!(trainable, ["6.weight", "6.bias"]);
    // Unfreezing by a wildcard pattern.
    unfreeze_matching(&net, "*.bias").unwrap();
    assert!(net.named_parameters()[1].1.is_requires_grad());
    assert!(!net.named_parameters()[0].1.is_requires_grad());
}

#[test]
fn bad_layer_names_and_depths_list_the_valid_ones() {
    let dev = Device::cpu();
    let net = Sequential::new()
        .push_named("features", backbone(1, &dev))
        .push_named("head", Linear::new(6, 3, true, 2, &dev));
    let e = freeze_matching(&net, "feature.0").unwrap_err().to_string();
    assert!(
        e.contains("\"feature.0\"") && e.contains("features.0, features.2, head"),
        "{e}"
    );
    let e = freeze_depth(&net, "features", 9).unwrap_err().to_string();
    assert!(e.contains("it has 6") && e.contains("features.5"), "{e}");
    let e = freeze_depth(&net, "backbone", 1).unwrap_err().to_string();
    assert!(
        e.contains("no child \"backbone\"") && e.contains("features, head"),
        "{e}"
    );
}

#[test]
fn group_learning_rates_are_applied() {
    let dev = Device::cpu();
    let a = Tensor::from_vec(vec![1.0, -2.0], &[2], &dev)
        .unwrap()
        .requires_grad();
    let b = Tensor::from_vec(vec![3.0, 0.5], &[2], &dev)
        .unwrap()
        .requires_grad();
    let grads = |a: &Tensor, b: &Tensor| {
        // d/dp of Σ p² is 2p.
        a.square()
            .sum()
            .add(&b.square().sum())
            .unwrap()
            .backward()
            .unwrap();
    };
    let groups = || {
        vec![
            ParamGroup::with_lr(vec![a.clone()], 0.01),
            ParamGroup::new(vec![b.clone()]),
        ]
    };
    let opts = SgdOptions {
        lr: 0.1,
        ..Default::default()
    };
    let mut sgd = Sgd::with_groups(groups(), opts).unwrap();
    assert_eq!(sgd.param_lrs(), [0.01, 0.1]);
    grads(&a, &b);
    sgd.step().unwrap();
    let close = |x: Vec<f32>, y: [f32; 2]| {
        assert!(
            x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-6),
            "{x:?} vs {y:?}"
        );
    };
    close(a.to_vec().unwrap(), [1.0 - 0.01 * 2.0, -2.0 + 0.01 * 4.0]);
    close(b.to_vec().unwrap(), [3.0 - 0.1 * 6.0, 0.5 - 0.1 * 1.0]);
    // A schedule's rate keeps the groups' ratio.
    sgd.set_lr(0.05);
    let lrs = sgd.param_lrs();
    assert!((lrs[0] - 0.005).abs() < 1e-9 && lrs[1] == 0.05, "{lrs:?}");

    // Adam's first step moves each parameter by its group's rate (m̂/√v̂ = ±1).
    let (a0, b0) = (a.to_vec().unwrap(), b.to_vec().unwrap());
    a.zero_grad();
    b.zero_grad();
    let mut adam = Adam::with_groups(
        groups(),
        AdamOptions {
            lr: 0.1,
            ..Default::default()
        },
    )
    .unwrap();
    grads(&a, &b);
    adam.step().unwrap();
    let step = |now: Vec<f32>, then: &[f32]| -> Vec<f32> {
        now.iter().zip(then).map(|(x, y)| (x - y).abs()).collect()
    };
    close(step(a.to_vec().unwrap(), &a0), [0.01, 0.01]);
    close(step(b.to_vec().unwrap(), &b0), [0.1, 0.1]);

    let e = Sgd::with_groups(vec![ParamGroup::with_lr(vec![a.clone()], f32::NAN)], opts)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("group 0") && e.contains("NaN"), "{e}");
}

#[test]
fn extract_features_runs_without_a_graph() {
    let dev = Device::cpu();
    let net = backbone(2, &dev);
    let data = toy_data(5, 4);
    let f = extract_features(&net, &data, 3, 2, &dev).unwrap();
    assert_eq!((f.shape.clone(), f.labels.len()), (vec![6], 5));
    let x = Tensor::from_slice(&data.values[..64], &[1, 1, 8, 8], &dev).unwrap();
    let y = no_grad(|| net.forward(&x)).unwrap().to_vec().unwrap();
    assert_eq!(&f.values[..6], &y[..]);
}
