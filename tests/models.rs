//! Model zoo checks against torchvision's own numbers (../shared/fixtures/torchvision_specs.json,
//! copied to tests/fixtures/): parameter counts and the full state_dict, names and shapes.

use fovea::models::{Vgg, VggConfig};
use fovea::nn::Module;
use fovea::Device;
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
