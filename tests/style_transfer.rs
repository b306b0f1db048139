//! Style transfer: the pretrained VGG16 against an independent numpy computation, the
//! costs falling on a tiny image (Adam and L-BFGS), one step agreeing between GPU and CPU,
//! the total-variation term, and torchvision-style VGG19 weights with ImageNet input.

mod common;

use std::path::{Path, PathBuf};

use common::rel_err;
use fovea::models::style::{
    preprocess_bgr, pretrained_vgg, pretrained_vgg16, total_variation, Preprocess, StyleTransfer,
    IMAGENET_MEAN, IMAGENET_STD,
};
use fovea::models::{Vgg, VggConfig};
use fovea::nn::Module;
use fovea::optim::{Adam, AdamOptions, Lbfgs, LbfgsOptions, LineSearch, Optimizer};
use fovea::{no_grad, Device, Tensor};

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

/// The objective on a 32×32 noise "photo" and a striped "painting", and the content
/// image to start from.
fn setup(dev: &Device, layers: &[&str]) -> (StyleTransfer, Tensor) {
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
    let problem = StyleTransfer::new(vgg, &content, &style, layers[0], &layers[1..]).unwrap();
    (problem, content)
}

/// Adam on the image, 4 intensity levels per step (the example's default).
fn adam(g: &Tensor) -> Adam {
    Adam::new(
        vec![g.clone()],
        AdamOptions {
            lr: 4.0,
            ..Default::default()
        },
    )
}

/// Total and style cost of `g`, read back.
fn values(problem: &StyleTransfer, g: &Tensor) -> (f32, f32) {
    let c = no_grad(|| problem.costs(g)).unwrap();
    (c.total.item().unwrap(), c.style.item().unwrap())
}

#[test]
fn total_and_style_costs_fall_on_a_tiny_image() {
    let dev = Device::cpu();
    let layers = ["relu4_2", "relu1_1", "relu2_1", "relu3_1", "relu4_1"];
    let (problem, content) = setup(&dev, &layers);
    let g = content.detach().requires_grad();
    let mut opt = adam(&g);
    let (j0, s0) = values(&problem, &g);
    for _ in 0..15 {
        opt.zero_grad();
        problem.costs(&g).unwrap().total.backward().unwrap();
        opt.step().unwrap();
    }
    let (j1, s1) = values(&problem, &g);
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
        let (problem, content) = setup(dev, &layers);
        let g = content.detach().requires_grad();
        let mut opt = adam(&g);
        problem.costs(&g).unwrap().total.backward().unwrap();
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

#[test]
fn lbfgs_with_line_search_lowers_total_and_style_costs() {
    let dev = Device::cpu();
    let layers = ["relu4_2", "relu1_1", "relu2_1", "relu3_1", "relu4_1"];
    let (problem, content) = setup(&dev, &layers);
    let g = content.detach().requires_grad();
    let mut opt = Lbfgs::new(
        vec![g.clone()],
        LbfgsOptions {
            max_iter: 15,
            line_search: Some(LineSearch::Armijo),
            ..Default::default()
        },
    )
    .unwrap();
    let (j0, s0) = values(&problem, &g);
    opt.step(&mut || {
        g.zero_grad();
        let j = problem.costs(&g)?.total;
        j.backward()?;
        Ok(j)
    })
    .unwrap();
    let (j1, s1) = values(&problem, &g);
    // The start has negative curvature along the gradient (no curvature pair is kept), so
    // the line search has to grow the step from PyTorch's tiny first one: a few dozen
    // evaluations, where Adam needs 15 steps of a hand-tuned size.
    assert!(opt.func_evals() <= 40, "{} evaluations", opt.func_evals());
    assert!(j1 < 0.5 * j0, "total cost {j0:.3e} -> {j1:.3e}");
    assert!(s1 < 0.5 * s0, "style (Gram) distance {s0:.3e} -> {s1:.3e}");
}

#[test]
fn total_variation_matches_its_definition_and_gradient() {
    let dev = Device::cpu();
    let (n, c, h, w) = (2, 3, 4, 5);
    let x = Tensor::randn(&[n, c, h, w], 3, &dev);
    let v = x.to_vec().unwrap();
    let at = |b: usize, ch: usize, i: usize, j: usize| v[((b * c + ch) * h + i) * w + j] as f64;
    let mut expected = 0.0;
    for b in 0..n {
        for ch in 0..c {
            for i in 0..h {
                for j in 0..w {
                    if i + 1 < h {
                        expected += (at(b, ch, i + 1, j) - at(b, ch, i, j)).powi(2);
                    }
                    if j + 1 < w {
                        expected += (at(b, ch, i, j + 1) - at(b, ch, i, j)).powi(2);
                    }
                }
            }
        }
    }
    let got = total_variation(&x).unwrap().item().unwrap() as f64;
    assert!(
        (got - expected).abs() < 1e-4 * expected,
        "{got} vs {expected}"
    );
    common::gradcheck("total_variation", &[x], &[true], &|xs| {
        total_variation(&xs[0])
    });
    let err = total_variation(&Tensor::zeros(&[1, 3, 1, 5], &dev)).unwrap_err();
    assert!(err.to_string().contains("[1, 3, 1, 5]"), "{err}");
}

#[test]
fn imagenet_preprocessing_is_torchvisions_and_inverts() {
    let dev = Device::cpu();
    let rgb = Tensor::rand(&[2, 3, 3, 4], 5, &dev);
    let v = rgb.to_vec().unwrap();
    let out = Preprocess::ImageNetRgb
        .apply(&rgb)
        .unwrap()
        .to_vec()
        .unwrap();
    for (i, (&o, &x)) in out.iter().zip(&v).enumerate() {
        let c = i / 12 % 3;
        let want = (x - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        assert!((o - want).abs() < 1e-5, "element {i}: {o} vs {want}");
    }
    for pre in [Preprocess::ImageNetRgb, Preprocess::CaffeBgr] {
        let back = pre
            .invert(&pre.apply(&rgb).unwrap())
            .unwrap()
            .to_vec()
            .unwrap();
        assert!(rel_err(&back, &v) < 1e-5, "{pre:?} does not invert");
    }
    let err = Preprocess::ImageNetRgb
        .apply(&Tensor::zeros(&[1, 1, 4, 4], &dev))
        .unwrap_err();
    assert!(err.to_string().contains("[1, 1, 4, 4]"), "{err}");
}

#[test]
fn torchvision_vgg19_weights_load_by_name_into_the_trunk() {
    // A VGG19 trunk saved under torchvision's names, plus a classifier tensor, stands in
    // for torchvision's export (whose 120M classifier weights would only slow the test).
    let dev = Device::cpu();
    let source = Vgg::features_only(VggConfig::Vgg19, false, 42, &dev).unwrap();
    let dir = std::env::temp_dir().join(format!("fovea-vgg19-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vgg19.safetensors");
    let mut state = source.state_dict();
    state.push(("classifier.6.bias".into(), Tensor::zeros(&[1000], &dev)));
    fovea::checkpoint::save(&state, &path).unwrap();
    let trunk = pretrained_vgg(VggConfig::Vgg19, &path, &dev).unwrap();
    assert_eq!(
        trunk.state_dict().len(),
        32,
        "16 convs, weight and bias each"
    );
    assert!(
        trunk.parameters().iter().all(|p| !p.is_requires_grad()),
        "frozen"
    );
    let x = Preprocess::ImageNetRgb
        .apply(&Tensor::rand(&[1, 3, 32, 32], 9, &dev))
        .unwrap();
    let names = ["relu1_1", "relu3_4", "relu5_4"];
    let (a, b) = no_grad(|| {
        (
            source.extract(&x, &names).unwrap(),
            trunk.extract(&x, &names).unwrap(),
        )
    });
    for ((fa, fb), name) in a.iter().zip(&b).zip(names) {
        assert_eq!(fa.to_vec().unwrap(), fb.to_vec().unwrap(), "{name}");
    }
    // The bundled VGG16 file is not a VGG19: the error lists what is missing.
    let err = pretrained_vgg(VggConfig::Vgg19, &weights(), &dev)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("missing features.34.weight"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).ok();
}
