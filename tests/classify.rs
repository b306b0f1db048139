//! The pretrained MobileNetV2 against torchvision's own answers on the bundled photos
//! (tests/fixtures/mobilenet_v2_reference.json, made by mobilenet_v2_reference.py beside
//! it): the same top-1 class on every photo and its probability within ±0.02, in f32 and
//! in f16; the GPU backend gives the CPU's logits.

mod common;

use std::path::Path;

use fovea::checkpoint;
use fovea::models::{imagenet, MobileNetV2};
use fovea::nn::Module;
use fovea::{no_grad, DType, Device};
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn pretrained(dev: &Device) -> MobileNetV2 {
    let m = MobileNetV2::new(1000, 1.0, 0, dev).unwrap();
    checkpoint::load_module(
        &m,
        &root().join("assets/weights/mobilenet_v2_imagenet.safetensors"),
    )
    .unwrap();
    m.eval();
    m
}

#[test]
fn mobilenet_v2_agrees_with_torchvision_on_every_bundled_photo() {
    agrees_with_torchvision(DType::F32);
}

/// The same in f16 (weights and activations): the answers must survive the rounding.
#[test]
fn mobilenet_v2_in_f16_agrees_with_torchvision_on_every_bundled_photo() {
    agrees_with_torchvision(DType::F16);
}

fn agrees_with_torchvision(dtype: DType) {
    let dev = Device::cpu();
    let model = pretrained(&dev);
    model.to_dtype(dtype).unwrap();
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/mobilenet_v2_reference.json")).unwrap();
    let reference: Value = serde_json::from_str(&text).unwrap();
    let photos = reference["photos"].as_object().unwrap();
    assert!(photos.len() >= 8);
    for (photo, top) in photos {
        let x = imagenet::load(&root().join("assets/images").join(photo), 256, 224, &dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let y = no_grad(|| model.forward(&x)).unwrap();
        assert_eq!(y.dtype(), dtype);
        let probs = y.softmax(1).unwrap().to_vec().unwrap();
        let (class, p) = imagenet::top_k(&probs, 1)[0];
        let want_class = top[0][0].as_u64().unwrap() as usize;
        let want_p = top[0][2].as_f64().unwrap() as f32;
        assert_eq!(
            class, want_class,
            "{dtype}: {photo}: top-1 {class} ({p}), torchvision {top}"
        );
        assert!(
            (p - want_p).abs() <= 0.02,
            "{dtype}: {photo}: p {p} vs torchvision {want_p}"
        );
    }
}

#[test]
fn mobilenet_v2_gives_the_same_logits_on_the_gpu() {
    let Some(gpu) = common::gpu("mobilenet_v2_gives_the_same_logits_on_the_gpu") else {
        return;
    };
    let cpu = Device::cpu();
    let x = imagenet::load(&root().join("assets/images/chelsea.png"), 256, 224, &cpu).unwrap();
    let want = no_grad(|| pretrained(&cpu).forward(&x))
        .unwrap()
        .to_vec()
        .unwrap();
    let got = no_grad(|| pretrained(&gpu).forward(&x.to_device(&gpu)?))
        .unwrap()
        .to_vec()
        .unwrap();
    let err = common::rel_err(&got, &want);
    assert!(
        err < 1e-4,
        "GPU logits differ from the CPU's: rel. error {err:.2e}"
    );
}
