//! The bundled MNIST digits and Fashion-MNIST garments, and a classifier's accuracy on
//! them, for the examples that train on either.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use fovea::data::{DataLoader, InMemoryDataset};
use fovea::nn::Module;
use fovea::{no_grad, Device};

/// MNIST's pixel mean and standard deviation (after scaling to [0, 1]).
pub const MEAN: f32 = 0.1307;
/// See [`MEAN`].
pub const STD: f32 = 0.3081;

/// Fashion-MNIST's pixel mean and standard deviation (after scaling to [0, 1]).
pub const FASHION_MEAN: f32 = 0.2860;
/// See [`FASHION_MEAN`].
pub const FASHION_STD: f32 = 0.3530;

/// Fashion-MNIST's class names, by label.
pub const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// The bundled 10,000 digits' folder (`assets/data/mnist-10k`).
pub fn bundled_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/data/mnist-10k")
}

/// The bundled Fashion-MNIST folder (`assets/data/fashion-mnist`, 60,000 + 10,000 images).
pub fn fashion_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/data/fashion-mnist")
}

/// The `train` or `t10k` split of the MNIST IDX files in `dir`, normalised.
pub fn load(dir: &Path, split: &str) -> Result<InMemoryDataset> {
    load_normalised(dir, split, MEAN, STD)
}

/// The `train` or `t10k` split of the Fashion-MNIST IDX files in `dir`, normalised.
pub fn load_fashion(dir: &Path, split: &str) -> Result<InMemoryDataset> {
    load_normalised(dir, split, FASHION_MEAN, FASHION_STD)
}

fn load_normalised(dir: &Path, split: &str, mean: f32, std: f32) -> Result<InMemoryDataset> {
    let images = dir.join(format!("{split}-images-idx3-ubyte.gz"));
    let labels = dir.join(format!("{split}-labels-idx1-ubyte.gz"));
    InMemoryDataset::from_idx(&images, &labels, 10, mean, std)
        .with_context(|| format!("loading the {split} split from {}", dir.display()))
}

/// Top-1 accuracy of a classifier over `data`, in eval mode (training mode restored).
pub fn accuracy(model: &dyn Module, data: &InMemoryDataset, dev: &Device) -> Result<f64> {
    model.eval();
    let mut correct = 0;
    let classes = data.classes.max(1);
    for batch in DataLoader::new(data, 500, None, dev)? {
        let batch = batch?;
        let logits = no_grad(|| model.forward(&batch.images))?.to_vec()?;
        correct += logits
            .chunks(classes)
            .zip(&batch.labels)
            .filter(|(row, &label)| {
                row.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(i, _)| i)
                    == Some(label)
            })
            .count();
    }
    model.train();
    Ok(correct as f64 / data.labels.len().max(1) as f64)
}
