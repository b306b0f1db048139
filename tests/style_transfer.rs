//! Style transfer: the pretrained VGG16 against an independent numpy computation, the
//! costs falling on a tiny image, and one step agreeing between GPU and CPU.

mod common;

use std::path::{Path, PathBuf};

use common::rel_err;
use fovea::models::style::{content_cost, preprocess_bgr, pretrained_vgg16, style_layer_cost};
use fovea::models::Vgg;
use fovea::optim::{Adam, AdamOptions, Optimizer};
use fovea::{no_grad, Device, Result, Tensor};

fn weights() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/weights/vgg16_hed_bsds500.safetensors")
}

#[test]
fn pretrained_vgg16_matches_an_independent_numpy_forward() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vgg16_hed_reference.json"
    ))
    .unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let values = |k: &str| -> Vec<f32> {
        reference[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    let dev = Device::cpu();
    let vgg = pretrained_vgg16(&weights(), &dev).unwrap();
    let x: Vec<f32> = (0..3)
        .flat_map(|c| {
            (0..12).flat_map(move |i| {
                (0..12).map(move |j| ((c * 7 + i * 3 + j * 5) % 17) as f32 * 15.0 - 120.0)
            })
        })
        .collect();
    let x = Tensor::from_vec(x, &[1, 3, 12, 12], &dev).unwrap();
    let feats = vgg.extract(&x, &["relu1_1", "relu2_1"]).unwrap();
    let (e1, e2) = (
        rel_err(&feats[0].to_vec().unwrap(), &values("relu1_1")),
        rel_err(&feats[1].to_vec().unwrap(), &values("relu2_1")),
    );
    assert!(
        e1 < 1e-4 && e2 < 1e-4,
        "relu1_1 rel. error {e1:.2e}, relu2_1 {e2:.2e}"
    );
}

/// `J = α J_content + β Σ λ J_style` on `g`, and the style part alone.
fn costs(
    vgg: &Vgg,
    g: &Tensor,
    a_c: &Tensor,
    grams: &[Tensor],
    layers: &[&str],
) -> Result<(Tensor, Tensor)> {
    let feats = vgg.extract(g, layers)?;
    let mut style = Tensor::zeros(&[], g.device());
    for (gram, a) in grams.iter().zip(&feats[1..]) {
        style = style.add(&style_layer_cost(gram, a)?)?;
    }
    Ok((
        content_cost(a_c, &feats[0])?.add(&style.mul_scalar(1e4))?,
        style,
    ))
}

fn setup(dev: &Device, layers: &[&str]) -> (Vgg, Tensor, Tensor, Vec<Tensor>) {
    let vgg = pretrained_vgg16(&weights(), dev).unwrap();
    let content = preprocess_bgr(&Tensor::rand(&[1, 3, 32, 32], 1, dev)).unwrap();
    // A "painting" with stripes: a style quite unlike the content's noise.
    let stripes: Vec<f32> = (0..3 * 32 * 32)
        .map(|i| {
            if (i % 32 + i / 32 % 32) % 8 < 4 {
                0.9
            } else {
                0.1
            }
        })
        .collect();
    let style = preprocess_bgr(&Tensor::from_vec(stripes, &[1, 3, 32, 32], dev).unwrap()).unwrap();
    let (a_c, grams) = no_grad(|| {
        let a_c = vgg.extract(&content, &layers[..1]).unwrap().remove(0);
        let grams = vgg
            .extract(&style, &layers[1..])
            .unwrap()
            .iter()
            .map(|f| f.gram().unwrap())
            .collect();
        (a_c, grams)
    });
    (vgg, content, a_c, grams)
}

#[test]
fn total_and_style_costs_fall_on_a_tiny_image() {
    let dev = Device::cpu();
    let layers = ["relu4_2", "relu1_1", "relu2_1", "relu3_1", "relu4_1"];
    let (vgg, content, a_c, grams) = setup(&dev, &layers);
    let g = content.detach().requires_grad();
    let mut opt = Adam::new(
        vec![g.clone()],
        AdamOptions {
            lr: 4.0,
            ..Default::default()
        },
    );
    let (j0, s0) = costs(&vgg, &g, &a_c, &grams, &layers).unwrap();
    let (j0, s0) = (j0.item().unwrap(), s0.item().unwrap());
    for _ in 0..15 {
        opt.zero_grad();
        costs(&vgg, &g, &a_c, &grams, &layers)
            .unwrap()
            .0
            .backward()
            .unwrap();
        opt.step().unwrap();
    }
    let (j1, s1) = costs(&vgg, &g, &a_c, &grams, &layers).unwrap();
    let (j1, s1) = (j1.item().unwrap(), s1.item().unwrap());
    assert!(j1 < 0.5 * j0, "total cost {j0:.3e} -> {j1:.3e}");
    assert!(s1 < 0.5 * s0, "style (Gram) distance {s0:.3e} -> {s1:.3e}");
}

#[test]
fn one_style_step_agrees_between_gpu_and_cpu() {
    let Some(gpu) = common::gpu("one_style_step_agrees_between_gpu_and_cpu") else {
        return;
    };
    // Shallow layers keep the software GPU quick.
    let layers = ["relu2_2", "relu1_1", "relu2_1"];
    let step = |dev: &Device| -> Vec<f32> {
        let (vgg, content, a_c, grams) = setup(dev, &layers);
        let g = content.detach().requires_grad();
        let mut opt = Adam::new(
            vec![g.clone()],
            AdamOptions {
                lr: 4.0,
                ..Default::default()
            },
        );
        costs(&vgg, &g, &a_c, &grams, &layers)
            .unwrap()
            .0
            .backward()
            .unwrap();
        opt.step().unwrap();
        g.to_vec().unwrap()
    };
    let (c, g) = (step(&Device::cpu()), step(&gpu));
    let err = rel_err(&g, &c);
    assert!(
        err < 1e-4,
        "the updated image differs between GPU and CPU: rel. error {err:.2e}"
    );
}
