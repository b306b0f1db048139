//! Datasets and a batching, shuffling loader.

use std::path::Path;

use super::idx::read_idx;
use crate::{rng, Device, Error, Result, Tensor};

/// Items addressable by index: an image (`C×H×W` values) and a class label.
pub trait Dataset: Send + Sync {
    /// Number of items.
    fn len(&self) -> usize;
    /// True when empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Shape of one item (`[C, H, W]`).
    fn item_shape(&self) -> Vec<usize>;
    /// Writes item `i`'s values into `out` (of the item's size) and returns its label.
    fn get(&self, i: usize, out: &mut [f32]) -> usize;
    /// The value of an empty pixel after normalisation (what shifted-in borders hold).
    fn background(&self) -> f32 {
        0.0
    }
    /// An error where the items cannot be read as [`Dataset::item_shape`] says, which
    /// [`DataLoader::new`] asks before any batch; nothing to check by default.
    fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// Images and labels held in memory as f32.
#[derive(Clone, Debug)]
pub struct InMemoryDataset {
    /// `[C, H, W]` of one item
    pub shape: Vec<usize>,
    /// all items' values, item after item
    pub values: Vec<f32>,
    /// one label per item
    pub labels: Vec<usize>,
    /// number of classes (labels are below it)
    pub classes: usize,
    /// the normalised value of a black pixel
    pub background: f32,
}

impl InMemoryDataset {
    /// Loads an IDX image file (`[N, H, W]` bytes) and its label file, scaling pixels to
    /// [0, 1] and then normalising with `(v − mean) / std`. Mismatched counts and labels
    /// of `classes` or more are errors naming the files.
    pub fn from_idx(
        images: &Path,
        labels: &Path,
        classes: usize,
        mean: f32,
        std: f32,
    ) -> Result<Self> {
        let img = read_idx(images)?;
        let lab = read_idx(labels)?;
        if img.dims.len() != 3 {
            return Err(Error::Format {
                path: images.display().to_string(),
                msg: format!("expected [N, H, W] images, got dimensions {:?}", img.dims),
            });
        }
        if lab.dims.len() != 1 || lab.dims[0] != img.dims[0] {
            return Err(Error::Format {
                path: labels.display().to_string(),
                msg: format!(
                    "expected {} labels to match {}, got dimensions {:?}",
                    img.dims[0],
                    images.display(),
                    lab.dims
                ),
            });
        }
        if let Some((i, &l)) = lab
            .data
            .iter()
            .enumerate()
            .find(|&(_, &l)| l as usize >= classes)
        {
            return Err(Error::Format {
                path: labels.display().to_string(),
                msg: format!("label {l} at index {i} is out of range for {classes} classes"),
            });
        }
        // Four bytes of f32 for each byte of the file, reserved fallibly.
        let mut values = crate::host::with_capacity(img.data.len()).map_err(|e| Error::Format {
            path: images.display().to_string(),
            msg: e.to_string(),
        })?;
        values.extend(img.data.iter().map(|&b| (b as f32 / 255.0 - mean) / std));
        Ok(InMemoryDataset {
            shape: vec![1, img.dims[1], img.dims[2]],
            values,
            labels: lab.data.iter().map(|&l| l as usize).collect(),
            classes,
            background: -mean / std,
        })
    }

    /// Loads an image classification folder: one sub-folder per class (classes sorted by
    /// name, labels in that order), every PNG or JPEG inside resized to `width × height`
    /// with `channels` 1 or 3, values in [0, 1]. Returns the dataset and the class names.
    /// An unreadable image is an error naming it; an empty class folder is an error too.
    pub fn from_image_folder(
        root: &Path,
        width: u32,
        height: u32,
        channels: usize,
    ) -> Result<(Self, Vec<String>)> {
        let io = |path: &Path, source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let listing = |dir: &Path| -> Result<Vec<std::path::PathBuf>> {
            let mut entries = std::fs::read_dir(dir)
                .map_err(|e| io(dir, e))?
                .map(|e| e.map(|e| e.path()).map_err(|e| io(dir, e)))
                .collect::<Result<Vec<_>>>()?;
            entries.sort();
            Ok(entries)
        };
        let class_dirs: Vec<_> = listing(root)?.into_iter().filter(|p| p.is_dir()).collect();
        if class_dirs.is_empty() {
            return Err(Error::Format {
                path: root.display().to_string(),
                msg: "no class sub-folders".into(),
            });
        }
        let mut classes = Vec::with_capacity(class_dirs.len());
        for dir in &class_dirs {
            let images: Vec<_> = listing(dir)?
                .into_iter()
                .filter(|p| {
                    p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str())
                    })
                })
                .collect();
            if images.is_empty() {
                return Err(Error::Format {
                    path: dir.display().to_string(),
                    msg: "class folder holds no PNG or JPEG images".into(),
                });
            }
            classes.push(images);
        }
        // Every image's values reserved before the first is decoded: a folder too large
        // for memory is refused at once, not after minutes of decoding (or killed).
        let count: usize = classes.iter().map(Vec::len).sum();
        let item = [channels, height as usize, width as usize];
        let mut values = item
            .iter()
            .try_fold(count, |n, &d| n.checked_mul(d))
            .ok_or_else(|| Error::Backend("more values than a usize counts".into()))
            .and_then(crate::host::with_capacity)
            .map_err(|e| Error::Format {
                path: root.display().to_string(),
                msg: format!("{count} images of {item:?} each: {e}"),
            })?;
        let cpu = Device::cpu();
        let size = super::Resize::Exact { width, height };
        let (mut labels, mut names) = (Vec::with_capacity(count), Vec::new());
        for (label, (dir, images)) in class_dirs.iter().zip(classes).enumerate() {
            for path in images {
                values.extend(super::load_image(&path, channels, size, &cpu)?.to_vec()?);
                labels.push(label);
            }
            names.push(
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
        }
        let dataset = InMemoryDataset {
            shape: vec![channels, height as usize, width as usize],
            values,
            labels,
            classes: names.len(),
            background: 0.0,
        };
        Ok((dataset, names))
    }

    /// Normalises every channel `c` in place: `(v − mean[c]) / std[c]` (torchvision's
    /// `Normalize`). The fill value of shifted-in borders follows channel 0.
    pub fn normalize(&mut self, mean: &[f32], std: &[f32]) -> Result<()> {
        let c = self.shape.first().copied().unwrap_or(0);
        if mean.len() != c || std.len() != c || std.contains(&0.0) {
            return Err(Error::op(
                "InMemoryDataset::normalize",
                format!(
                    "needs one mean and one non-zero std per channel ({c}), got {} and {:?}",
                    mean.len(),
                    std
                ),
            ));
        }
        let plane: usize = self.shape[1..].iter().product();
        for item in self.values.chunks_mut(c * plane) {
            for (ch, values) in item.chunks_mut(plane).enumerate() {
                values
                    .iter_mut()
                    .for_each(|v| *v = (*v - mean[ch]) / std[ch]);
            }
        }
        self.background = (self.background - mean[0]) / std[0];
        Ok(())
    }

    /// The first `n` items (for quick runs and tests).
    pub fn take(&self, n: usize) -> InMemoryDataset {
        let n = n.min(self.labels.len());
        let size = self.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        // A dataset that does not add up ([`Dataset::check`]) keeps what it has; the
        // loader then names what is wrong.
        let end = size.map_or(usize::MAX, |size| n.saturating_mul(size));
        let end = end.min(self.values.len());
        InMemoryDataset {
            shape: self.shape.clone(),
            values: self.values[..end].to_vec(),
            labels: self.labels[..n].to_vec(),
            classes: self.classes,
            background: self.background,
        }
    }
}

impl Dataset for InMemoryDataset {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn item_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn get(&self, i: usize, out: &mut [f32]) -> usize {
        let size = out.len();
        out.copy_from_slice(&self.values[i * size..(i + 1) * size]);
        self.labels[i]
    }
    fn background(&self) -> f32 {
        self.background
    }
    /// The fields are public, so a dataset built by hand may not add up: its values must
    /// be one item's size per label, and its labels below `classes` (a short `values` made
    /// the loader's batches panic on a slice out of range).
    fn check(&self) -> Result<()> {
        let op = "InMemoryDataset";
        let size = crate::shape::checked_numel(op, &self.shape)?;
        let (n, got) = (self.labels.len(), self.values.len());
        if size.checked_mul(n) != Some(got) {
            return Err(Error::op(
                op,
                format!(
                    "{n} labels of items shaped {:?} need {n} × {size} values, got {got}",
                    self.shape
                ),
            ));
        }
        if let Some((i, l)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l >= self.classes)
        {
            return Err(Error::op(
                op,
                format!(
                    "label {l} of item {i} is not below its {} classes",
                    self.classes
                ),
            ));
        }
        Ok(())
    }
}

/// Moves a `[C, H, W]` item by `(dy, dx)` pixels, filling the uncovered border with `fill`
/// (random translation: the random crop of a padded image).
fn shift(item: &mut [f32], shape: &[usize], dy: isize, dx: isize, fill: f32) {
    let (h, w) = (
        shape[shape.len() - 2] as isize,
        shape[shape.len() - 1] as isize,
    );
    let src = item.to_vec();
    for (c, plane) in item.chunks_mut((h * w) as usize).enumerate() {
        let sp = &src[c * (h * w) as usize..(c + 1) * (h * w) as usize];
        for y in 0..h {
            for x in 0..w {
                let (sy, sx) = (y - dy, x - dx);
                plane[(y * w + x) as usize] = if sy >= 0 && sy < h && sx >= 0 && sx < w {
                    sp[(sy * w + sx) as usize]
                } else {
                    fill
                };
            }
        }
    }
}

/// The augmentation stream of the batch that ends at item `end`: the same whichever
/// batch the epoch started from.
fn batch_seed(seed: u64, end: usize) -> u64 {
    seed ^ (end as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// One batch: `[B, C, H, W]` inputs and their labels.
pub struct Batch {
    /// the inputs
    pub images: Tensor,
    /// the labels
    pub labels: Vec<usize>,
}

/// Yields batches of a dataset in an order shuffled per epoch from a seed.
pub struct DataLoader<'a> {
    dataset: &'a dyn Dataset,
    batch_size: usize,
    order: Vec<usize>,
    next: usize,
    device: Device,
    drop_last: bool,
    shift: Option<(usize, u64)>,
    flip: Option<u64>,
}

impl<'a> DataLoader<'a> {
    /// Batches of `batch_size` for one epoch; `shuffle_seed` `Some(s)` shuffles (the same
    /// seed gives the same order), `None` keeps the dataset order. Fails when the items
    /// are empty (a zero in the item shape) or a batch of them would not fit the device.
    pub fn new(
        dataset: &'a dyn Dataset,
        batch_size: usize,
        shuffle_seed: Option<u64>,
        device: &Device,
    ) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::op("DataLoader", "batch_size must be positive"));
        }
        let item = dataset.item_shape();
        let size = crate::shape::checked_numel("DataLoader", &item)?;
        if size == 0 {
            return Err(Error::op(
                "DataLoader",
                format!("items of shape {item:?} hold no values"),
            ));
        }
        let mut batch_shape = vec![batch_size.min(dataset.len()).max(1)];
        batch_shape.extend(&item);
        crate::ops::check_output("DataLoader", &[&item], &batch_shape, device)?;
        dataset.check()?;
        let order = match shuffle_seed {
            Some(seed) => rng::permutation(dataset.len(), seed),
            None => (0..dataset.len()).collect(),
        };
        Ok(DataLoader {
            dataset,
            batch_size,
            order,
            next: 0,
            device: device.clone(),
            drop_last: false,
            shift: None,
            flip: None,
        })
    }

    /// Keeps this process's share of the epoch for data-parallel training over `size`
    /// processes: every `size`-th item of the (shuffled) order from item `rank`, cut so
    /// that every rank gets the same count (the last `len % size` items of the order are
    /// left out this epoch). With the same shuffling seed on every rank, batch `k` of all
    /// ranks together holds the items of batch `k` of one process with `size` times the
    /// batch size.
    pub fn shard(mut self, rank: usize, size: usize) -> Result<Self> {
        if size == 0 || rank >= size {
            return Err(Error::op(
                "DataLoader::shard",
                format!("rank {rank} of {size} processes"),
            ));
        }
        let each = self.order.len() / size;
        self.order = self
            .order
            .iter()
            .skip(rank)
            .step_by(size)
            .take(each)
            .copied()
            .collect();
        self.next = 0;
        Ok(self)
    }

    /// Skips a last batch smaller than `batch_size`.
    pub fn drop_last(mut self) -> Self {
        self.drop_last = true;
        self
    }

    /// Augments every item with a random translation of up to `max` pixels in each
    /// direction (seeded; a different shift per item and epoch when the seed changes).
    pub fn random_shift(mut self, max: usize, seed: u64) -> Self {
        self.shift = Some((max, seed));
        self
    }

    /// Augments every item with a horizontal flip, with probability ½ (seeded like
    /// [`DataLoader::random_shift`]). For natural images, not digits.
    pub fn random_flip(mut self, seed: u64) -> Self {
        self.flip = Some(seed);
        self
    }

    /// Starts the epoch at batch `index` (resuming a run part-way through an epoch: the
    /// batches and their augmentation are those the whole epoch would have yielded).
    pub fn start_at(mut self, index: usize) -> Self {
        self.next = index.saturating_mul(self.batch_size).min(self.order.len());
        self
    }

    /// Number of batches still to come this epoch (all of them before iterating, fewer
    /// after [`DataLoader::start_at`]).
    pub fn batches(&self) -> usize {
        let left = self.order.len() - self.next;
        if self.drop_last {
            left / self.batch_size
        } else {
            left.div_ceil(self.batch_size)
        }
    }
}

impl Iterator for DataLoader<'_> {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Result<Batch>> {
        let end = (self.next + self.batch_size).min(self.order.len());
        if self.next >= end || (self.drop_last && end - self.next < self.batch_size) {
            return None;
        }
        let shape = self.dataset.item_shape();
        let size: usize = shape.iter().product();
        let ids = &self.order[self.next..end];
        self.next = end;
        let mut values = match crate::host::zeros(ids.len() * size) {
            Ok(v) => v,
            Err(e) => return Some(Err(e.in_op("DataLoader", &[&shape]))),
        };
        let labels: Vec<usize> = ids
            .iter()
            .zip(values.chunks_mut(size))
            .map(|(&i, out)| self.dataset.get(i, out))
            .collect();
        if let Some((max, seed)) = self.shift.filter(|&(m, _)| m > 0 && shape.len() >= 2) {
            let u = rng::uniform(2 * ids.len(), batch_seed(seed, self.next));
            let span = 2 * max + 1;
            for (k, item) in values.chunks_mut(size).enumerate() {
                let dy = (u[2 * k] * span as f32) as isize - max as isize;
                let dx = (u[2 * k + 1] * span as f32) as isize - max as isize;
                shift(item, &shape, dy, dx, self.dataset.background());
            }
        }
        if let Some(seed) = self.flip.filter(|_| !shape.is_empty()) {
            let u = rng::uniform(ids.len(), batch_seed(seed, self.next));
            let w = shape[shape.len() - 1];
            for (item, &coin) in values.chunks_mut(size).zip(&u) {
                if coin < 0.5 {
                    item.chunks_mut(w).for_each(<[f32]>::reverse);
                }
            }
        }
        let mut batch_shape = vec![ids.len()];
        batch_shape.extend(shape);
        Some(
            Tensor::from_vec(values, &batch_shape, &self.device)
                .map(|images| Batch { images, labels }),
        )
    }
}
