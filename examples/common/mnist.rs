//! The bundled MNIST digits and a classifier's accuracy on them, for the examples that
//! train on digits.

use std::path::Path;

use anyhow::Result;
use fovea::data::{DataLoader, InMemoryDataset};
use fovea::nn::Module;
use fovea::{no_grad, Device};

/// MNIST's pixel mean and standard deviation (after scaling to [0, 1]).
pub const MEAN: f32 = 0.1307;
/// See [`MEAN`].
pub const STD: f32 = 0.3081;

/// The bundled 10,000 digits' folder (`assets/data/mnist-10k`).
pub fn bundled_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/data/mnist-10k")
}

/// The `train` or `t10k` split of the IDX files in `dir`, normalised.
pub fn load(dir: &Path, split: &str) -> Result<InMemoryDataset> {
    let images = dir.join(format!("{split}-images-idx3-ubyte.gz"));
    let labels = dir.join(format!("{split}-labels-idx1-ubyte.gz"));
    Ok(InMemoryDataset::from_idx(&images, &labels, 10, MEAN, STD)?)
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
