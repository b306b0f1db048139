//! The PyTorch fixture suite runner (tests/fixtures/README.md describes the format), shared
//! by the CPU and GPU tests.

use std::collections::HashMap;

use super::rel_err;
use fovea::ops::{BatchNormOptions, Conv2dOptions, ConvTranspose2dOptions, Pool2dOptions};
use fovea::{Device, Tensor};
use safetensors::SafeTensors;
use serde_json::Value;

pub struct Fixtures {
    pub cases: Vec<Value>,
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

pub fn load() -> Fixtures {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/torch_ops.safetensors"
    );
    let bytes = std::fs::read(path)
        .expect("tests/fixtures/torch_ops.safetensors is part of the repository");
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let cases: Vec<Value> =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["cases"]).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (view.shape().to_vec(), data))
        })
        .collect();
    Fixtures { cases, tensors }
}

fn pair(p: &Value, key: &str) -> [usize; 2] {
    let a = p[key].as_array().unwrap_or_else(|| panic!("param {key}"));
    [
        a[0].as_u64().unwrap() as usize,
        a[1].as_u64().unwrap() as usize,
    ]
}

/// Runs one case on `dev`; returns (what, relative error, tolerance) for every compared
/// tensor.
pub fn run_case(fx: &Fixtures, case: &Value, dev: &Device) -> Vec<(String, f64, f64)> {
    let name = case["name"].as_str().unwrap();
    let kind = case["kind"].as_str().unwrap();
    let p = &case["params"];
    let get = |k: &str| fx.tensors.get(&format!("{name}.{k}"));
    let input = |k: &str| {
        let (shape, data) = get(k).unwrap();
        Tensor::from_slice(data, shape, dev)
            .unwrap()
            .requires_grad()
    };
    let names: Vec<String> = case["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let inputs: Vec<Tensor> = names.iter().map(|n| input(n)).collect();
    let arg = |k: &str| names.iter().position(|n| n == k).map(|i| &inputs[i]);
    let x = &inputs[0];
    let out = match kind {
        "conv2d" => x.conv2d(
            arg("w").unwrap(),
            arg("b"),
            Conv2dOptions {
                stride: pair(p, "stride"),
                padding: pair(p, "padding"),
                dilation: pair(p, "dilation"),
                groups: p["groups"].as_u64().unwrap() as usize,
            },
        ),
        "conv_transpose2d" => x.conv_transpose2d(
            arg("w").unwrap(),
            arg("b"),
            ConvTranspose2dOptions {
                stride: pair(p, "stride"),
                padding: pair(p, "padding"),
                output_padding: pair(p, "output_padding"),
                dilation: pair(p, "dilation"),
                groups: p["groups"].as_u64().unwrap() as usize,
            },
        ),
        "max_pool2d" | "avg_pool2d" => {
            let o = Pool2dOptions {
                kernel: pair(p, "kernel"),
                stride: pair(p, "stride"),
                padding: pair(p, "padding"),
                ceil_mode: p["ceil_mode"].as_bool().unwrap(),
            };
            if kind == "max_pool2d" {
                x.max_pool2d(o)
            } else {
                x.avg_pool2d_with(o, p["count_include_pad"].as_bool().unwrap())
            }
        }
        "adaptive_avg_pool2d" => x.adaptive_avg_pool2d(pair(p, "output_size")),
        "gram" => x.gram().and_then(|g| g.reshape(&g.shape()[1..])),
        "batch_norm2d_train" => x.batch_norm(
            None,
            None,
            arg("weight"),
            arg("bias"),
            BatchNormOptions {
                training: true,
                eps: p["eps"].as_f64().unwrap() as f32,
                ..Default::default()
            },
        ),
        "cross_entropy" => {
            let targets: Vec<usize> = get("target")
                .unwrap()
                .1
                .iter()
                .map(|&t| t as usize)
                .collect();
            x.cross_entropy(&targets).and_then(|l| l.reshape(&[1]))
        }
        "linear" => x.linear(arg("w").unwrap(), arg("b")),
        other => panic!("unknown fixture kind {other}"),
    }
    .unwrap_or_else(|e| panic!("{name} ({kind}): {e}"));
    let (out_shape, expected) = get("out").unwrap();
    assert_eq!(out.shape(), &out_shape[..], "{name} ({kind}): output shape");
    let mut results = vec![(
        format!("{name} {kind} out"),
        rel_err(&out.to_vec().unwrap(), expected),
        1e-4,
    )];
    let (_, gy) = get("gy").unwrap();
    let gy = Tensor::from_slice(gy, out.shape(), dev).unwrap();
    out.mul(&gy).unwrap().sum().backward().unwrap();
    for (n, t) in names.iter().zip(&inputs) {
        let (_, want) = get(&format!("grad_{n}")).unwrap();
        let got = t
            .grad()
            .unwrap_or_else(|| panic!("{name}: no gradient for {n}"))
            .to_vec()
            .unwrap();
        results.push((format!("{name} {kind} grad_{n}"), rel_err(&got, want), 1e-3));
    }
    results
}

/// Runs every case and fails listing each one over its tolerance.
pub fn run_all(dev: &Device) {
    let fx = load();
    assert!(
        fx.cases.len() >= 300,
        "expected the full fixture set, found {}",
        fx.cases.len()
    );
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &fx.cases {
        for (what, err, tol) in run_case(&fx, case, dev) {
            checked += 1;
            if err.is_nan() || err > tol {
                failures.push(format!("{what}: rel. error {err:.3e} > {tol:e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} comparisons failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{checked} comparisons against PyTorch passed on {}",
        dev.name()
    );
}
