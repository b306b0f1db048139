//! Data: the IDX format (MNIST, Fashion-MNIST), datasets held in memory and a loader that
//! shuffles with a seed and batches into NCHW tensors, and image files to and from tensors.

pub mod cache;
mod canvas;
mod idx;
mod image;
mod loader;
mod moving;

pub use cache::{cached_features, extract_features, load_features, save_features, CacheKey};
pub use canvas::{canvas_images, digit_canvases, CanvasOptions, DigitCanvas, MASK_CLASSES};
pub use idx::{read_idx, Idx};
pub use image::{load_image, load_mask, resize_exact, save_image, Resize};
pub use loader::{Batch, DataLoader, Dataset, InMemoryDataset};
pub use moving::{moving_digits, MovingDigits, MovingOptions, DIRECTIONS, DIRECTION_NAMES};
