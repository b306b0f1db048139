//! HED edges against an independent PyTorch computation (tests/fixtures/hed_reference.py)
//! on a 67×75 crop of chelsea.png, bilinear resizing against `F.interpolate`, and the
//! detector's errors.

use std::path::Path;

use fovea::checkpoint;
use fovea::models::style::preprocess_bgr;
use fovea::models::Hed;
use fovea::{Device, Tensor};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn hed_matches_pytorch_on_a_photo_crop() {
    let dev = Device::cpu();
    let want = checkpoint::load(&root().join("tests/fixtures/hed_chelsea.safetensors")).unwrap();
    let img = image::open(root().join("assets/images/chelsea.png"))
        .unwrap()
        .to_rgb8();
    let (top, left, h, w) = (40u32, 150u32, 67usize, 75usize);
    let mut chw = vec![0.0f32; 3 * h * w];
    for y in 0..h {
        for x in 0..w {
            let p = img.get_pixel(left + x as u32, top + y as u32).0;
            for c in 0..3 {
                chw[c * h * w + y * w + x] = p[c] as f32 / 255.0;
            }
        }
    }
    let rgb = Tensor::from_vec(chw, &[1, 3, h, w], &dev).unwrap();
    let hed = Hed::pretrained(
        &root().join("assets/weights/vgg16_hed_bsds500.safetensors"),
        &dev,
    )
    .unwrap();
    let out = hed.forward_all(&preprocess_bgr(&rgb).unwrap()).unwrap();
    assert_eq!(out.fused.shape(), &[1, 1, h, w]);
    let fused = out.fused.to_vec().unwrap();
    let d = max_diff(&fused, &want["fused"].1);
    assert!(d < 2e-4, "fused differs from PyTorch by {d}");
    for (k, side) in out.sides.iter().enumerate() {
        let d = max_diff(&side.to_vec().unwrap(), &want[&format!("side{}", k + 1)].1);
        assert!(d < 2e-4, "side {} differs from PyTorch by {d}", k + 1);
    }
    // Edges are there: the map is neither flat nor saturated.
    let hi = fused.iter().filter(|&&p| p > 0.5).count();
    assert!(hi > 50 && hi < h * w / 2, "{hi} edge pixels of {}", h * w);
}

#[test]
fn bilinear_resize_matches_pytorch() {
    let dev = Device::cpu();
    let want = checkpoint::load(&root().join("tests/fixtures/hed_chelsea.safetensors")).unwrap();
    let x: Vec<f32> = (0..70).map(|i| (i as f64).sin() as f32).collect();
    let x = Tensor::from_vec(x, &[1, 2, 5, 7], &dev).unwrap();
    for (name, size) in [("resize_up", [9, 11]), ("resize_down", [3, 4])] {
        let y = x.resize_bilinear(size).unwrap();
        assert_eq!(y.shape(), &want[name].0[..]);
        let d = max_diff(&y.to_vec().unwrap(), &want[name].1);
        assert!(d < 1e-6, "{name} differs by {d}");
    }
    let e = x.resize_bilinear([0, 3]).unwrap_err().to_string();
    assert!(e.contains("resize_bilinear") && e.contains("[0, 3]"), "{e}");
}

#[test]
fn hed_refuses_inputs_that_are_not_rgb_images() {
    let dev = Device::cpu();
    let hed = Hed::new(0, &dev).unwrap();
    let e = hed
        .forward_all(&Tensor::zeros(&[1, 1, 8, 8], &dev))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("hed") && e.contains("[1, 1, 8, 8]"), "{e}");
}
