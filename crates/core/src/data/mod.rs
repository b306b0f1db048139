//! Data: the IDX format (MNIST, Fashion-MNIST), datasets held in memory and a loader that
//! shuffles with a seed and batches into NCHW tensors.

mod idx;
mod loader;

pub use idx::{read_idx, Idx};
pub use loader::{Batch, DataLoader, Dataset, InMemoryDataset};
