//! A feature cache for transfer learning: a frozen backbone runs once over a data set, and
//! its activations are stored with the labels as safetensors (`features` `[N, …]`,
//! `labels` `[N]`) and loaded back as a data set, so that each epoch of training a new
//! head reads the cache instead of running the backbone again.
//!
//! The file's metadata says what made it: a fingerprint of the backbone's weights, the
//! input and feature shapes and a fingerprint of the data. Loading it for another
//! backbone, another input shape or other data is an error that names both sides.

use std::collections::HashMap;
use std::path::Path;

use super::{DataLoader, Dataset, InMemoryDataset};
use crate::checkpoint;
use crate::nn::Module;
use crate::{no_grad, Device, Error, Result, Tensor};

/// What a cache was made from; a cache is only used where all of it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheKey {
    /// a readable name of the backbone (for messages only)
    pub name: String,
    /// [`fingerprint`] of the backbone's parameters and buffers
    pub backbone: String,
    /// one input item's shape
    pub input_shape: Vec<usize>,
    /// one item's features' shape
    pub feature_shape: Vec<usize>,
    /// [`data_fingerprint`] of the data set
    pub data: String,
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 = (self.0 ^ x as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// A 64-bit FNV-1a hash of a module's `state_dict` (names, shapes and values), as 16 hex
/// digits: equal for the same weights, different (almost surely) for any other.
pub fn fingerprint(module: &dyn Module) -> Result<String> {
    let mut h = Fnv::new();
    for (name, t) in module.state_dict() {
        h.bytes(name.as_bytes());
        for &d in t.shape() {
            h.bytes(&(d as u64).to_le_bytes());
        }
        for v in t.to_vec()? {
            h.bytes(&v.to_bits().to_le_bytes());
        }
    }
    Ok(h.hex())
}

/// A 64-bit FNV-1a hash of a data set's items and labels.
pub fn data_fingerprint(data: &dyn Dataset) -> String {
    let mut h = Fnv::new();
    let shape = data.item_shape();
    for &d in &shape {
        h.bytes(&(d as u64).to_le_bytes());
    }
    let mut item = vec![0.0f32; shape.iter().product()];
    for i in 0..data.len() {
        let label = data.get(i, &mut item);
        h.bytes(&(label as u64).to_le_bytes());
        for v in &item {
            h.bytes(&v.to_bits().to_le_bytes());
        }
    }
    h.hex()
}

impl CacheKey {
    /// The key of `backbone` over `data`: its feature shape is found by running one item.
    pub fn new(
        name: &str,
        backbone: &dyn Module,
        data: &dyn Dataset,
        device: &Device,
    ) -> Result<CacheKey> {
        let input_shape = data.item_shape();
        let mut probe = vec![1];
        probe.extend(&input_shape);
        let out = no_grad(|| backbone.forward(&Tensor::zeros(&probe, device)))?;
        Ok(CacheKey {
            name: name.to_string(),
            backbone: fingerprint(backbone)?,
            input_shape,
            feature_shape: out.shape()[1..].to_vec(),
            data: data_fingerprint(data),
        })
    }

    fn metadata(&self, classes: usize) -> HashMap<String, String> {
        [
            ("fovea", "feature_cache".to_string()),
            ("backbone_name", self.name.clone()),
            ("backbone", self.backbone.clone()),
            ("input_shape", dims(&self.input_shape)),
            ("feature_shape", dims(&self.feature_shape)),
            ("data", self.data.clone()),
            ("classes", classes.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

fn dims(s: &[usize]) -> String {
    s.iter().map(usize::to_string).collect::<Vec<_>>().join("x")
}

/// Runs `backbone` (frozen: eval mode, no graph) over every item of `data` in order, in
/// batches of `batch`, and returns the activations as a data set with the same labels.
pub fn extract_features(
    backbone: &dyn Module,
    data: &dyn Dataset,
    classes: usize,
    batch: usize,
    device: &Device,
) -> Result<InMemoryDataset> {
    backbone.eval();
    let mut values = Vec::new();
    let mut labels = Vec::with_capacity(data.len());
    let mut shape = Vec::new();
    for b in DataLoader::new(data, batch, None, device)? {
        let b = b?;
        let f = no_grad(|| backbone.forward(&b.images))?;
        shape = f.shape()[1..].to_vec();
        values.extend(f.to_vec()?);
        labels.extend(b.labels);
    }
    Ok(InMemoryDataset {
        shape,
        values,
        labels,
        classes,
        background: 0.0,
    })
}

/// Writes features (from [`extract_features`]) with their key to `path`, atomically.
pub fn save_features(features: &InMemoryDataset, key: &CacheKey, path: &Path) -> Result<()> {
    let mut shape = vec![features.labels.len()];
    shape.extend(&features.shape);
    let cpu = Device::cpu();
    let labels: Vec<f32> = features.labels.iter().map(|&l| l as f32).collect();
    let tensors = vec![
        (
            "features".to_string(),
            Tensor::from_slice(&features.values, &shape, &cpu)?,
        ),
        (
            "labels".to_string(),
            Tensor::from_vec(labels, &[features.labels.len()], &cpu)?,
        ),
    ];
    checkpoint::save_with_metadata(&tensors, key.metadata(features.classes), path)
}

/// Reads a feature cache, checking that it was made with `key` (same backbone weights,
/// input and feature shapes, data). A mismatch is an error that names what differs.
pub fn load_features(path: &Path, key: &CacheKey) -> Result<InMemoryDataset> {
    let bad = |msg: String| Error::Format {
        path: path.display().to_string(),
        msg,
    };
    let (tensors, meta) = checkpoint::load_with_metadata(path)?;
    if meta.get("fovea").map(String::as_str) != Some("feature_cache") {
        return Err(bad(
            "not a feature cache (its metadata lacks fovea=feature_cache)".into(),
        ));
    }
    let get = |k: &str| meta.get(k).cloned().unwrap_or_default();
    let mut wrong = Vec::new();
    if get("input_shape") != dims(&key.input_shape) {
        wrong.push(format!(
            "input shape {} (now {})",
            get("input_shape"),
            dims(&key.input_shape)
        ));
    }
    if get("feature_shape") != dims(&key.feature_shape) {
        wrong.push(format!(
            "feature shape {} (now {})",
            get("feature_shape"),
            dims(&key.feature_shape)
        ));
    }
    if get("backbone") != key.backbone {
        wrong.push(format!(
            "backbone {} with weights {} (now {} with weights {})",
            get("backbone_name"),
            get("backbone"),
            key.name,
            key.backbone
        ));
    }
    if get("data") != key.data {
        wrong.push(format!("data {} (now {})", get("data"), key.data));
    }
    if !wrong.is_empty() {
        return Err(bad(format!(
            "this feature cache was made from another {}; delete it or cache to another file",
            wrong.join(", another ")
        )));
    }
    let classes: usize = get("classes")
        .parse()
        .map_err(|_| bad("metadata has no class count".into()))?;
    let (Some((fshape, values)), Some((lshape, labels))) =
        (tensors.get("features"), tensors.get("labels"))
    else {
        return Err(bad("needs tensors `features` and `labels`".into()));
    };
    if fshape.first() != lshape.first() || fshape[1..] != key.feature_shape[..] {
        return Err(bad(format!(
            "features {fshape:?} and labels {lshape:?} do not fit feature shape {:?}",
            key.feature_shape
        )));
    }
    let labels = labels
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            if l >= 0.0 && l.fract() == 0.0 && (l as usize) < classes {
                Ok(l as usize)
            } else {
                Err(bad(format!(
                    "label {l} at {i} is not a class below {classes}"
                )))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(InMemoryDataset {
        shape: key.feature_shape.clone(),
        values: values.clone(),
        labels,
        classes,
        background: 0.0,
    })
}

/// The cached features of `backbone` over `data`: read from `path` when it holds them,
/// computed and written there otherwise. Returns them and whether they were read.
/// A file made from anything else is an error, never silently overwritten.
pub fn cached_features(
    path: &Path,
    key: &CacheKey,
    backbone: &dyn Module,
    data: &dyn Dataset,
    classes: usize,
    batch: usize,
    device: &Device,
) -> Result<(InMemoryDataset, bool)> {
    if path.exists() {
        return Ok((load_features(path, key)?, true));
    }
    let f = extract_features(backbone, data, classes, batch, device)?;
    save_features(&f, key, path)?;
    Ok((f, false))
}
