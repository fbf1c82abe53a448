//! Writing and reading shard bundles: `<dir>/manifest.json` and `<dir>/blobs/<id>`.

use std::path::{Path, PathBuf};

use protocol::dataset::{DatasetManifest, RecordLayout, ShardInfo};
use protocol::BlobId;

use super::{io_error, DatasetError, Digit};

/// How a bundle is cut.
#[derive(Clone, Debug)]
pub struct BundleOptions {
    pub validation: usize,
    pub shard_records: u32,
    pub chunk_records: u32,
    /// Seed of the deterministic shuffle that splits training from validation.
    pub seed: u64,
}

impl Default for BundleOptions {
    fn default() -> Self {
        Self { validation: 2000, shard_records: 2000, chunk_records: 50, seed: 0x5eed }
    }
}

/// Shuffles deterministically, splits, shards and writes the bundle; returns its manifest.
pub fn write_bundle(dir: &Path, name: &str, source: &str, mut digits: Vec<Digit>, options: &BundleOptions) -> Result<DatasetManifest, DatasetError> {
    if digits.len() <= options.validation {
        return Err(DatasetError::Invalid(format!(
            "{} records cannot leave {} for validation and some for training",
            digits.len(),
            options.validation
        )));
    }
    shuffle(&mut digits, options.seed);
    let layout = RecordLayout::mnist();
    let encode = |ds: &[Digit]| -> Vec<u8> {
        ds.iter().flat_map(|d| d.pixels.iter().copied().chain(std::iter::once(d.label))).collect()
    };
    let (validation, train) = digits.split_at(options.validation);
    let blobs = dir.join("blobs");
    std::fs::create_dir_all(&blobs).map_err(io_error(&blobs))?;
    let mut write_shard = |records: &[Digit]| -> Result<ShardInfo, DatasetError> {
        let bytes = encode(records);
        let info = ShardInfo::describe(&bytes, layout.record_bytes, options.chunk_records);
        let path = blobs.join(info.blob.to_hex());
        std::fs::write(&path, &bytes).map_err(io_error(&path))?;
        Ok(info)
    };
    let validation = write_shard(validation)?;
    let train = train.chunks(options.shard_records as usize).map(&mut write_shard).collect::<Result<Vec<_>, _>>()?;
    let manifest = DatasetManifest { name: name.into(), source: source.into(), layout, train, validation };
    let path = dir.join("manifest.json");
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| DatasetError::Invalid(e.to_string()))?;
    std::fs::write(&path, json).map_err(io_error(&path))?;
    Ok(manifest)
}

/// A prepared bundle on disk.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: DatasetManifest,
}

impl Bundle {
    /// Opens `<dir>/manifest.json`, checking that every shard blob is present and intact.
    pub fn open(dir: &Path) -> Result<Self, DatasetError> {
        let path = dir.join("manifest.json");
        let json = std::fs::read(&path).map_err(io_error(&path))?;
        let manifest: DatasetManifest = serde_json::from_slice(&json).map_err(|e| DatasetError::Malformed {
            file: path.clone(),
            offset: e.column() as u64,
            message: format!("not a dataset manifest: {e} (line {})", e.line()),
        })?;
        let bundle = Self { dir: dir.to_path_buf(), manifest };
        for shard in bundle.manifest.train.iter().chain(std::iter::once(&bundle.manifest.validation)) {
            let bytes = bundle.shard_bytes(&shard.blob)?;
            if BlobId::of(&bytes) != shard.blob {
                return Err(DatasetError::Invalid(format!("shard {} is corrupt: its bytes do not hash to its id", shard.blob)));
            }
        }
        Ok(bundle)
    }

    /// The bytes of one shard blob.
    pub fn shard_bytes(&self, id: &BlobId) -> Result<Vec<u8>, DatasetError> {
        let path = self.dir.join("blobs").join(id.to_hex());
        std::fs::read(&path).map_err(io_error(&path))
    }
}

/// Fisher–Yates with SplitMix64: the split must be the same on every machine.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = workload::model::SplitMix64(seed);
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits(n: usize) -> Vec<Digit> {
        (0..n).map(|i| Digit { pixels: vec![(i % 256) as u8; 784], label: (i % 10) as u8 }).collect()
    }

    #[test]
    fn a_bundle_splits_deterministically_and_reopens_verified() {
        let dir = tempfile::tempdir().unwrap();
        let opts = BundleOptions { validation: 20, shard_records: 30, chunk_records: 10, seed: 1 };
        let m = write_bundle(dir.path(), "t", "test", digits(100), &opts).unwrap();
        assert_eq!(m.validation.records, 20);
        assert_eq!(m.train.iter().map(|s| s.records).collect::<Vec<_>>(), vec![30, 30, 20]);
        let again = write_bundle(dir.path(), "t", "test", digits(100), &opts).unwrap();
        assert_eq!(m, again, "the same input gives the same bundle");
        let bundle = Bundle::open(dir.path()).unwrap();
        assert_eq!(bundle.manifest.id(), m.id());
        // Corrupt a shard: opening names it.
        let shard = dir.path().join("blobs").join(m.train[1].blob.to_hex());
        let mut bytes = std::fs::read(&shard).unwrap();
        bytes[0] ^= 0xff;
        std::fs::write(&shard, bytes).unwrap();
        assert!(Bundle::open(dir.path()).unwrap_err().to_string().contains("corrupt"));
    }

    #[test]
    fn too_few_records_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_bundle(dir.path(), "t", "t", digits(10), &BundleOptions::default()).is_err());
    }
}
