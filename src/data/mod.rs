//! Data: in-memory datasets, loaders for the formats the experiments use (the shipped digits
//! CSV, MNIST-format IDX, CIFAR-10 binary, NumPy `.npy`), a synthetic generator of latent
//! subclasses, seeded augmentations, and multi-view batching with a background prefetcher.
//!
//! Loaders read whole files into memory (the largest, Fashion-MNIST, is 47 MB raw), detect gzip
//! by its magic bytes, scale pixel values to `[0, 1]`, and report a corrupt or truncated file as
//! [`Error::Data`] with the file name and the byte offset where reading failed. For a gzip file
//! the offset of a format error refers to the decompressed bytes (the message says so), while
//! an error in the compressed stream itself gives its offset in the file.

pub mod augment;
pub mod cifar;
mod dataset;
pub mod digits;
pub mod gzip;
pub mod idx;
pub mod loader;
pub mod npy;
pub mod synthetic;
pub mod transforms;

pub use augment::{Augment, Step};
pub use cifar::{load_cifar10, load_cifar10_dir};
pub use dataset::Dataset;
pub use digits::{digits_embedded, digits_train_test, load_digits};
pub use idx::load_idx;
pub use loader::{Batch, Loader, LoaderConfig, Prefetcher, Sampler};
pub use npy::{NpyArray, NpyData, load_npy_dataset};
pub use synthetic::{LatentSubclasses, SyntheticConfig};

use crate::error::{Error, Result};
use std::path::Path;

/// A file's bytes, gunzipped when they start with the gzip magic number, and whether they were.
pub(crate) fn read_maybe_gzip(path: &Path) -> Result<(Vec<u8>, bool)> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    if gzip::is_gzip(&bytes) {
        Ok((gzip::decompress(&bytes, &path.display().to_string())?, true))
    } else {
        Ok((bytes, false))
    }
}

/// A corrupt-file error; `decompressed` says that `at` counts bytes after gunzipping.
pub(crate) fn corrupt(
    file: &str,
    decompressed: bool,
    at: usize,
    message: impl Into<String>,
) -> Error {
    let mut message = message.into();
    if decompressed {
        message.push_str(" (offset in the decompressed data)");
    }
    Error::Data {
        file: file.to_string(),
        at: at as u64,
        message,
    }
}
