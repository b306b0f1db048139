//! Model zoo checks against torchvision's own numbers (../shared/fixtures/torchvision_specs.json,
//! copied to tests/fixtures/): parameter counts and the full state_dict, names and shapes.

use fovea::models::{
    AlexNet, EfficientNet, GoogLeNet, LeNet5, MobileNetV2, MobileNetV3, ResNet, SiameseEncoder,
    Vgg, VggConfig,
};
use fovea::nn::{summary, Module};
use fovea::{Device, Error, Tensor};
use serde_json::Value;

fn spec(name: &str) -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/torchvision_specs.json"
    ))
    .unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    all[name].clone()
}

fn check(model: &dyn Module, name: &str) {
    let s = spec(name);
    let want: Vec<(String, Vec<usize>)> = s["state_dict"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e[0].as_str().unwrap().to_string(),
                e[1].as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect(),
            )
        })
        .collect();
    let got: Vec<(String, Vec<usize>)> = model
        .state_dict()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec()))
        .collect();
    assert_eq!(got, want, "{name}: state_dict differs from torchvision");
    assert_eq!(
        model.num_parameters() as u64,
        s["params"].as_u64().unwrap(),
        "{name}: parameter count"
    );
}

/// The model's output shape for a 1×3×224×224 input equals torchvision's, and its summary
/// gives the published parameter and multiply-accumulate counts (convolutions and linear
/// layers) at 224×224.
fn check_summary(model: &dyn Module, name: &str, params: usize, macs: usize) {
    let dev = Device::cpu();
    model.eval();
    let s = summary(model, &[1, 3, 224, 224], &dev).unwrap();
    let want: Vec<usize> = spec(name)["output_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(s.rows.last().unwrap().output, want, "{name}: output shape");
    assert_eq!(
        (s.params(), s.macs()),
        (params, macs),
        "{name}: params and MACs"
    );
}

#[test]
fn alexnet_matches_torchvision() {
    let m = AlexNet::new(1000, 0, &Device::cpu()).unwrap();
    check(&m, "alexnet");
    check_summary(&m, "alexnet", 61_100_840, 714_188_480);
}

#[test]
fn resnets_match_torchvision() {
    let dev = Device::cpu();
    let r18 = ResNet::resnet18(1000, 0, &dev).unwrap();
    check(&r18, "resnet18");
    check_summary(&r18, "resnet18", 11_689_512, 1_814_073_344);
    let r34 = ResNet::resnet34(1000, 0, &dev).unwrap();
    check(&r34, "resnet34");
    check_summary(&r34, "resnet34", 21_797_672, 3_663_761_408);
    let r50 = ResNet::resnet50(1000, 0, &dev).unwrap();
    check(&r50, "resnet50");
    check_summary(&r50, "resnet50", 25_557_032, 4_089_184_256);
}

#[test]
fn googlenet_matches_torchvision_with_and_without_aux() {
    let dev = Device::cpu();
    check(&GoogLeNet::new(1000, true, 0, &dev).unwrap(), "googlenet");
    let plain = GoogLeNet::new(1000, false, 0, &dev).unwrap();
    check_summary(&plain, "googlenet", 6_624_904, 1_498_376_192);
}

#[test]
fn mobilenets_and_efficientnet_match_torchvision() {
    let dev = Device::cpu();
    let v2 = MobileNetV2::new(1000, 1.0, 0, &dev).unwrap();
    check(&v2, "mobilenet_v2");
    check_summary(&v2, "mobilenet_v2", 3_504_872, 300_774_272);
    check(
        &MobileNetV3::small(1000, 0, &dev).unwrap(),
        "mobilenet_v3_small",
    );
    let b0 = EfficientNet::new(0, 1000, 0, &dev).unwrap();
    check(&b0, "efficientnet_b0");
    check_summary(&b0, "efficientnet_b0", 5_288_548, 385_814_752);
}

#[test]
fn vgg16_summary_gives_the_published_counts() {
    let m = Vgg::new(VggConfig::Vgg16, false, 1000, 0, &Device::cpu()).unwrap();
    check_summary(&m, "vgg16", 138_357_544, 15_470_264_320);
}

#[test]
fn an_input_too_small_names_the_layer_where_it_vanished() {
    let dev = Device::cpu();
    let m = AlexNet::new(10, 0, &dev).unwrap();
    let err = m
        .forward(&Tensor::zeros(&[1, 3, 16, 16], &dev))
        .unwrap_err();
    // 16 → conv 11/4 pad 2 → 3 → pool 3/2 → 1 → conv 5 pad 2 → 1 → pool 3/2: nothing left.
    match &err {
        Error::Layer { path, .. } => assert_eq!(path, "features.5", "{err}"),
        e => panic!("expected an error naming the layer, got {e}"),
    }
    assert!(err.to_string().contains("max_pool2d"), "{err}");
    assert!(summary(&m, &[1, 3, 16, 16], &dev)
        .unwrap_err()
        .to_string()
        .contains("features.5"));
}

#[test]
fn vgg_matches_torchvision() {
    let dev = Device::cpu();
    check(
        &Vgg::new(VggConfig::Vgg11, false, 1000, 0, &dev).unwrap(),
        "vgg11",
    );
    check(
        &Vgg::new(VggConfig::Vgg16, false, 1000, 0, &dev).unwrap(),
        "vgg16",
    );
    check(
        &Vgg::new(VggConfig::Vgg19, false, 1000, 0, &dev).unwrap(),
        "vgg19",
    );
    check(
        &Vgg::new(VggConfig::Vgg16, true, 1000, 0, &dev).unwrap(),
        "vgg16_bn",
    );
}

#[test]
fn vgg_layer_names_map_to_torchvision_indices() {
    let v16 = Vgg::features_only(VggConfig::Vgg16, false, 0, &Device::cpu()).unwrap();
    let idx: Vec<usize> = [
        "relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1", "relu5_3",
    ]
    .iter()
    .map(|n| v16.layer_index(n).unwrap())
    .collect();
    assert_eq!(idx, [1, 6, 11, 18, 20, 25, 29]);
    let v19 = Vgg::features_only(VggConfig::Vgg19, false, 0, &Device::cpu()).unwrap();
    let idx: Vec<usize> = [
        "relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1",
    ]
    .iter()
    .map(|n| v19.layer_index(n).unwrap())
    .collect();
    assert_eq!(idx, [1, 6, 11, 20, 22, 29]);
    assert!(v16.layer_index("relu6_1").is_err() && v16.layer_index("31").is_err());
    let x = fovea::Tensor::randn(&[1, 3, 32, 32], 0, &Device::cpu());
    let feats = v16.extract(&x, &["relu2_1", "relu1_1"]).unwrap();
    assert_eq!(feats[0].shape(), &[1, 128, 16, 16]);
    assert_eq!(feats[1].shape(), &[1, 64, 32, 32]);
}

/// The zoo's constructors return `Result`, so a size no device holds or an impossible
/// setting is an error naming the layer, never a panic from inside (a classifier of 2⁴⁰
/// classes panicked in its `Linear` before).
#[test]
fn the_zoos_constructors_refuse_impossible_sizes_with_errors() {
    let dev = Device::cpu();
    for classes in [1usize << 40, usize::MAX] {
        let errors = [
            ("LeNet5", LeNet5::new(classes, 0.5, 0, &dev).err()),
            ("resnet18", ResNet::resnet18(classes, 0, &dev).err()),
            ("MobileNetV2", MobileNetV2::new(classes, 1.0, 0, &dev).err()),
            ("GoogLeNet", GoogLeNet::new(classes, false, 0, &dev).err()),
            (
                "SiameseEncoder",
                SiameseEncoder::with_grid(1, 4, classes, 2, 0, &dev).err(),
            ),
        ];
        for (name, err) in errors {
            let msg = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(
                msg.contains("Linear::new") && msg.contains(&classes.to_string()),
                "{name} with {classes} outputs: {msg:?}"
            );
        }
    }
    for width in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let msg = MobileNetV2::new(10, width, 0, &dev)
            .err()
            .map(|e| e.to_string());
        assert!(
            msg.as_deref()
                .is_some_and(|m| m.contains("width multiplier")),
            "width {width}: {msg:?}"
        );
    }
    for p in [-0.5, 1.5, f32::NAN] {
        assert!(LeNet5::new(10, p, 0, &dev).is_err(), "dropout {p}");
    }
}
