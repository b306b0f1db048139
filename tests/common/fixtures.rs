//! The PyTorch fixture runner (tests/fixtures/README.md describes the format), shared by
//! the CPU and GPU tests: one loop over a file's cases, and per op family a function that
//! maps a case to fovea's call.

use std::collections::HashMap;

use super::rel_err;
use fovea::ops::{
    BatchNormOptions, Conv1dOptions, Conv2dOptions, Conv3dOptions, ConvTranspose2dOptions,
    CrossEntropy2dOptions, PixelTargets, Pool1dOptions, Pool2dOptions, Pool3dOptions, Reduction,
};
use fovea::{Device, Result, Tensor};
use safetensors::SafeTensors;
use serde_json::Value;

pub struct Fixtures {
    pub cases: Vec<Value>,
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

/// Reads `tests/fixtures/<file>`.
pub fn load(file: &str) -> Fixtures {
    let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path} is part of the repository: {e}"));
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

/// One case, its inputs on the device under test (the differentiable ones requiring grad).
pub struct Case<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub p: &'a Value,
    pub names: Vec<String>,
    pub inputs: Vec<Tensor>,
    fx: &'a Fixtures,
}

impl Case<'_> {
    /// The input called `k`, if the case has it.
    pub fn arg(&self, k: &str) -> Option<&Tensor> {
        self.names
            .iter()
            .position(|n| n == k)
            .map(|i| &self.inputs[i])
    }
    /// The first input.
    pub fn x(&self) -> &Tensor {
        &self.inputs[0]
    }
    /// A stored tensor of the case (`out`, an input, …) as host values.
    pub fn host(&self, k: &str) -> Option<&(Vec<usize>, Vec<f32>)> {
        self.fx.tensors.get(&format!("{}.{k}", self.name))
    }
    /// An integer-valued input as indices.
    pub fn indices(&self, k: &str) -> Vec<usize> {
        self.host(k)
            .unwrap_or_else(|| panic!("{}: no input {k}", self.name))
            .1
            .iter()
            .map(|&t| t as usize)
            .collect()
    }
    /// A list parameter of unsigned integers (`[k]`, `[h, w]`, `[d, h, w]`, pads).
    pub fn list(&self, key: &str) -> Vec<usize> {
        self.p[key]
            .as_array()
            .unwrap_or_else(|| panic!("{}: param {key}", self.name))
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect()
    }
    pub fn pair(&self, key: &str) -> [usize; 2] {
        let l = self.list(key);
        [l[0], l[1]]
    }
    pub fn uint(&self, key: &str) -> usize {
        self.p[key].as_u64().unwrap() as usize
    }
    pub fn float(&self, key: &str) -> f32 {
        self.p[key].as_f64().unwrap() as f32
    }
    pub fn flag(&self, key: &str) -> bool {
        self.p[key].as_bool().unwrap()
    }
}

/// What an op family gives for a case: the output compared with `out` (and whose
/// gradient is checked), and further outputs compared exactly with `out_<name>`.
pub struct Outputs {
    pub out: Tensor,
    pub exact: Vec<(&'static str, Tensor)>,
}

impl From<Tensor> for Outputs {
    fn from(out: Tensor) -> Outputs {
        Outputs {
            out,
            exact: Vec::new(),
        }
    }
}

/// An op family: `None` for a kind it does not know.
pub type Family = fn(&Case) -> Option<Result<Outputs>>;

fn run_case(fx: &Fixtures, case: &Value, dev: &Device, family: Family) -> Vec<(String, f64, f64)> {
    let name = case["name"].as_str().unwrap();
    let kind = case["kind"].as_str().unwrap();
    let p = &case["params"];
    let no_grad: Vec<&str> = p["no_grad"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap()).collect())
        .unwrap_or_default();
    let names: Vec<String> = case["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let inputs: Vec<Tensor> = names
        .iter()
        .map(|n| {
            let (shape, data) = &fx.tensors[&format!("{name}.{n}")];
            let t = Tensor::from_slice(data, shape, dev).unwrap();
            if no_grad.contains(&n.as_str()) {
                t
            } else {
                t.requires_grad()
            }
        })
        .collect();
    let c = Case {
        name,
        kind,
        p,
        names,
        inputs,
        fx,
    };
    let outs = family(&c)
        .unwrap_or_else(|| panic!("unknown fixture kind {kind}"))
        .unwrap_or_else(|e| panic!("{name} ({kind}): {e}"));
    let (out_shape, expected) = c.host("out").unwrap();
    assert_eq!(
        outs.out.shape(),
        &out_shape[..],
        "{name} ({kind}): output shape"
    );
    let mut results = vec![(
        format!("{name} {kind} out"),
        rel_err(&outs.out.to_vec().unwrap(), expected),
        1e-4,
    )];
    for (what, t) in &outs.exact {
        // `out` itself may be listed to be compared exactly (index lists such as nms's).
        let key = if *what == "out" {
            "out".to_string()
        } else {
            format!("out_{what}")
        };
        let (shape, want) = c.host(&key).unwrap();
        assert_eq!(t.shape(), &shape[..], "{name} ({kind}): {what} shape");
        assert_eq!(&t.to_vec().unwrap(), want, "{name} ({kind}): {what}");
    }
    let Some((_, gy)) = c.host("gy") else {
        return results;
    };
    let gy = Tensor::from_slice(gy, outs.out.shape(), dev).unwrap();
    outs.out.mul(&gy).unwrap().sum().backward().unwrap();
    for (n, t) in c.names.iter().zip(&c.inputs) {
        let Some((_, want)) = c.host(&format!("grad_{n}")) else {
            continue;
        };
        let got = t
            .grad()
            .unwrap_or_else(|| panic!("{name}: no gradient for {n}"))
            .to_vec()
            .unwrap();
        results.push((format!("{name} {kind} grad_{n}"), rel_err(&got, want), 1e-3));
    }
    results
}

/// Runs every case of `file` (at least `min_cases` of them) through `family` and fails
/// listing each comparison over its tolerance.
pub fn run_file(file: &str, min_cases: usize, dev: &Device, family: Family) {
    run_file_except(file, min_cases, dev, family, &[]);
}

/// [`run_file`] but for the cases of the kinds in `except`, which the test names.
pub fn run_file_except(
    file: &str,
    min_cases: usize,
    dev: &Device,
    family: Family,
    except: &[&str],
) {
    let mut fx = load(file);
    fx.cases
        .retain(|c| !except.contains(&c["kind"].as_str().unwrap()));
    assert!(
        fx.cases.len() >= min_cases,
        "{file}: expected at least {min_cases} cases, found {}",
        fx.cases.len()
    );
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &fx.cases {
        for (what, err, tol) in run_case(&fx, case, dev, family) {
            checked += 1;
            if err.is_nan() || err > tol {
                failures.push(format!("{what}: rel. error {err:.3e} > {tol:e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{file}: {} of {checked} comparisons failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{file}: {checked} comparisons against PyTorch passed on {}",
        dev.name()
    );
}

/// The first file: convolution, pooling, normalisation, losses (torch_ops.safetensors).
pub fn torch_ops(c: &Case) -> Option<Result<Outputs>> {
    let x = c.x();
    let out = match c.kind {
        "conv2d" => x.conv2d(
            c.arg("w").unwrap(),
            c.arg("b"),
            Conv2dOptions {
                stride: c.pair("stride"),
                padding: c.pair("padding"),
                dilation: c.pair("dilation"),
                groups: c.uint("groups"),
                ..Default::default()
            },
        ),
        "conv_transpose2d" => x.conv_transpose2d(
            c.arg("w").unwrap(),
            c.arg("b"),
            ConvTranspose2dOptions {
                stride: c.pair("stride"),
                padding: c.pair("padding"),
                output_padding: c.pair("output_padding"),
                dilation: c.pair("dilation"),
                groups: c.uint("groups"),
            },
        ),
        "max_pool2d" | "avg_pool2d" => {
            let o = Pool2dOptions {
                kernel: c.pair("kernel"),
                stride: c.pair("stride"),
                padding: c.pair("padding"),
                ceil_mode: c.flag("ceil_mode"),
                ..Default::default()
            };
            if c.kind == "max_pool2d" {
                x.max_pool2d(o)
            } else {
                x.avg_pool2d_with(o, c.flag("count_include_pad"))
            }
        }
        "adaptive_avg_pool2d" => x.adaptive_avg_pool2d(c.pair("output_size")),
        "gram" => x.gram().and_then(|g| g.reshape(&g.shape()[1..])),
        "batch_norm2d_train" => x.batch_norm(
            None,
            None,
            c.arg("weight"),
            c.arg("bias"),
            BatchNormOptions {
                training: true,
                eps: c.float("eps"),
                ..Default::default()
            },
        ),
        "cross_entropy" => x
            .cross_entropy(&c.indices("target"))
            .and_then(|l| l.reshape(&[1])),
        "linear" => x.linear(c.arg("w").unwrap(), c.arg("b")),
        _ => return None,
    };
    Some(out.map(Outputs::from))
}

/// `pads` = [left, right, top, bottom] as pooling options' `padding` ([top, left]) and
/// `padding_end` ([bottom, right]).
fn pool_pads(c: &Case) -> Pool2dOptions {
    let pads = c.list("pads");
    Pool2dOptions {
        kernel: c.pair("kernel"),
        stride: c.pair("stride"),
        padding: [pads[2], pads[0]],
        padding_end: Some([pads[3], pads[1]]),
        ..Default::default()
    }
}

/// The model zoo's ops (zoo_ops.safetensors).
pub fn zoo_ops(c: &Case) -> Option<Result<Outputs>> {
    let x = c.x();
    let max_opts = || Pool2dOptions {
        kernel: c.pair("kernel"),
        stride: c.pair("stride"),
        padding: c.pair("padding"),
        dilation: c.pair("dilation"),
        ceil_mode: c.flag("ceil_mode"),
        ..Default::default()
    };
    let out = match c.kind {
        "hardtanh" => Ok(x.hardtanh(c.float("min_val"), c.float("max_val"))),
        "relu6" => Ok(x.relu6()),
        "silu" => Ok(x.silu()),
        "hardswish" => Ok(x.hardswish()),
        "hardsigmoid" => Ok(x.hardsigmoid()),
        "max_pool2d" => x.max_pool2d(max_opts()),
        "max_pool2d_with_indices" => {
            return Some(
                x.max_pool2d_with_indices(max_opts())
                    .map(|(out, idx)| Outputs {
                        out,
                        exact: vec![("indices", idx)],
                    }),
            )
        }
        "max_unpool2d" => x.max_unpool2d(c.arg("indices").unwrap(), c.pair("output_size")),
        "max_pool2d_pad4" => x.max_pool2d(Pool2dOptions {
            dilation: c.pair("dilation"),
            ..pool_pads(c)
        }),
        "avg_pool2d_pad4" => x.avg_pool2d_with(pool_pads(c), false),
        "conv2d_same" => x.conv2d(
            c.arg("w").unwrap(),
            c.arg("b"),
            Conv2dOptions {
                stride: c.pair("stride"),
                dilation: c.pair("dilation"),
                groups: c.uint("groups"),
                same: true,
                ..Default::default()
            },
        ),
        "batch_norm2d_eval" => x.batch_norm(
            c.arg("running_mean"),
            c.arg("running_var"),
            c.arg("weight"),
            c.arg("bias"),
            BatchNormOptions {
                eps: c.float("eps"),
                ..Default::default()
            },
        ),
        _ => return None,
    };
    Some(out.map(Outputs::from))
}

/// Detection's box ops (detection.safetensors): IoU matrices, box format conversion (with
/// gradients) and the kept-index lists of nms and batched_nms, compared exactly.
pub fn detection(c: &Case) -> Option<Result<Outputs>> {
    use fovea::models::detection::{batched_nms, box_convert, box_iou, nms, BoxFormat};
    let dev = c.x().device();
    let boxes = |k: &str| -> Vec<[f32; 4]> {
        let (_, v) = c.host(k).unwrap_or_else(|| panic!("{}: no {k}", c.name));
        v.chunks(4).map(|b| [b[0], b[1], b[2], b[3]]).collect()
    };
    let kept = |keep: Result<Vec<usize>>| -> Result<Outputs> {
        let keep: Vec<f32> = keep?.into_iter().map(|i| i as f32).collect();
        let n = keep.len();
        let out = Tensor::from_vec(keep, &[n], dev)?;
        Ok(Outputs {
            out: out.clone(),
            exact: vec![("out", out)],
        })
    };
    let scores = || c.host("scores").unwrap().1.clone();
    Some(match c.kind {
        "box_iou" => {
            let (a, b) = (boxes("boxes1"), boxes("boxes2"));
            box_iou(&a, &b)
                .and_then(|v| Tensor::from_vec(v, &[a.len(), b.len()], dev))
                .map(Outputs::from)
        }
        "nms" => kept(nms(&boxes("boxes"), &scores(), c.float("iou_threshold"))),
        "batched_nms" => kept(batched_nms(
            &boxes("boxes"),
            &scores(),
            &c.indices("idxs"),
            c.float("iou_threshold"),
        )),
        "box_convert" => {
            let fmt = |k: &str| c.p[k].as_str().unwrap().parse::<BoxFormat>();
            fmt("in_fmt")
                .and_then(|a| Ok((a, fmt("out_fmt")?)))
                .and_then(|(a, b)| box_convert(c.x(), a, b))
                .map(Outputs::from)
        }
        _ => return None,
    })
}

/// Segmentation's ops (segmentation.safetensors): per-pixel cross-entropy and BCE,
/// bilinear and nearest interpolation.
pub fn segmentation(c: &Case) -> Option<Result<Outputs>> {
    let x = c.x();
    let out = match c.kind {
        "cross_entropy2d" => {
            let (shape, ids) = c.host("target").unwrap();
            let target = PixelTargets::new(
                ids.iter().map(|&t| t as i64).collect(),
                [shape[0], shape[1], shape[2]],
            )
            .unwrap();
            let opts = CrossEntropy2dOptions {
                weight: c.host("weight").map(|(_, w)| w.clone()),
                // null: the argument was not passed (PyTorch's default, −100).
                ignore_index: c.p["ignore_index"].as_i64().unwrap_or(-100),
                reduction: match c.p["reduction"].as_str().unwrap() {
                    "mean" => Reduction::Mean,
                    "sum" => Reduction::Sum,
                    _ => Reduction::None,
                },
            };
            assert_eq!(c.float("label_smoothing"), 0.0, "{}", c.name);
            x.cross_entropy2d(&target, &opts).and_then(|l| {
                if opts.reduction == Reduction::None {
                    Ok(l)
                } else {
                    l.reshape(&[1])
                }
            })
        }
        "bce_with_logits2d" => {
            let target = c.arg("target").unwrap();
            match c.host("pos_weight") {
                Some((_, p)) => x.bce_with_logits_weighted(target, p[0]),
                None => x.bce_with_logits(target),
            }
            .and_then(|l| l.reshape(&[1]))
        }
        "interpolate_bilinear" => {
            let align = c.flag("align_corners");
            if c.p["size"].is_null() {
                let f: Vec<f64> = c.p["scale_factor"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                x.interpolate_bilinear_scale([f[0], f[1]], align)
            } else {
                x.interpolate_bilinear(c.pair("size"), align)
            }
        }
        "interpolate_nearest" => x.upsample_nearest2d(c.pair("size")),
        _ => return None,
    };
    Some(out.map(Outputs::from))
}

fn triple(c: &Case, key: &str) -> [usize; 3] {
    let l = c.list(key);
    [l[0], l[1], l[2]]
}

/// 1-D and 3-D convolution, pooling, normalisation and resizing (conv_nd.safetensors).
pub fn conv_nd(c: &Case) -> Option<Result<Outputs>> {
    let x = c.x();
    let (w, b) = (c.arg("w"), c.arg("b"));
    let one = |k: &str| c.list(k)[0];
    let conv1 = || Conv1dOptions {
        stride: one("stride"),
        padding: one("padding"),
        output_padding: c
            .p
            .get("output_padding")
            .map_or(0, |_| one("output_padding")),
        dilation: one("dilation"),
        groups: c.uint("groups"),
    };
    let conv3 = || Conv3dOptions {
        stride: triple(c, "stride"),
        padding: triple(c, "padding"),
        output_padding: c
            .p
            .get("output_padding")
            .map_or([0; 3], |_| triple(c, "output_padding")),
        dilation: triple(c, "dilation"),
        groups: c.uint("groups"),
    };
    let dilation1 = || c.p.get("dilation").map_or(1, |_| one("dilation"));
    let dilation3 = || {
        c.p.get("dilation")
            .map_or([1; 3], |_| triple(c, "dilation"))
    };
    let pool1 = || Pool1dOptions {
        kernel: one("kernel"),
        stride: one("stride"),
        padding: one("padding"),
        dilation: dilation1(),
        ceil_mode: c.flag("ceil_mode"),
    };
    let pool3 = || Pool3dOptions {
        kernel: triple(c, "kernel"),
        stride: triple(c, "stride"),
        padding: triple(c, "padding"),
        dilation: dilation3(),
        ceil_mode: c.flag("ceil_mode"),
    };
    let train = || BatchNormOptions {
        training: true,
        eps: c.float("eps"),
        ..Default::default()
    };
    let out = match c.kind {
        "conv1d" => x.conv1d(w.unwrap(), b, conv1()),
        "conv3d" => x.conv3d(w.unwrap(), b, conv3()),
        "conv_transpose1d" => x.conv_transpose1d(w.unwrap(), b, conv1()),
        "conv_transpose3d" => x.conv_transpose3d(w.unwrap(), b, conv3()),
        "max_pool1d" => x.max_pool1d(pool1()),
        "max_pool3d" => x.max_pool3d(pool3()),
        "avg_pool1d" => x.avg_pool1d(pool1(), c.flag("count_include_pad")),
        "avg_pool3d" => x.avg_pool3d(pool3(), c.flag("count_include_pad")),
        "adaptive_avg_pool1d" => x.adaptive_avg_pool1d(one("output_size")),
        "adaptive_avg_pool3d" => x.adaptive_avg_pool3d(triple(c, "output_size")),
        "batch_norm1d_train" | "batch_norm3d_train" => {
            x.batch_norm(None, None, c.arg("weight"), c.arg("bias"), train())
        }
        "interpolate_nearest1d" => x.upsample_nearest1d(one("size")),
        "interpolate_nearest3d" => x.upsample_nearest3d(triple(c, "size")),
        "interpolate_linear" => x.interpolate_linear(one("size"), c.flag("align_corners")),
        "interpolate_trilinear" => {
            x.interpolate_trilinear(triple(c, "size"), c.flag("align_corners"))
        }
        _ => return None,
    };
    Some(out.map(Outputs::from))
}

/// Metric learning's ops (metric.safetensors): both triplet losses, cosine similarity and
/// pairwise distance.
pub fn metric(c: &Case) -> Option<Result<Outputs>> {
    let x = c.x();
    let out = match c.kind {
        "triplet_margin_loss" => {
            assert!(!c.flag("swap") && c.uint("p") == 2, "{}", c.name);
            x.triplet_margin_loss(
                c.arg("positive").unwrap(),
                c.arg("negative").unwrap(),
                c.float("margin"),
                c.float("eps"),
            )
            .and_then(|l| l.reshape(&[1]))
        }
        "triplet_squared" => x
            .triplet_squared_loss(
                c.arg("positive").unwrap(),
                c.arg("negative").unwrap(),
                c.float("margin"),
            )
            .and_then(|l| l.reshape(&[1])),
        "cosine_similarity" => {
            x.cosine_similarity(c.arg("x2").unwrap(), c.uint("dim") as isize, c.float("eps"))
        }
        "pairwise_distance" => {
            assert_eq!(c.uint("p"), 2, "{}", c.name);
            x.pairwise_distance(c.arg("x2").unwrap(), c.float("eps"))
        }
        _ => return None,
    };
    Some(out.map(Outputs::from))
}
