//! Shard-bundle sync: a peer that has the dataset manifest fetches the shards it needs from any
//! peer that has them, chunk by chunk. Each chunk is checked against the manifest's chunk hash
//! as it arrives, chunks come from several peers at once, and progress is kept on disk so a
//! restarted peer resumes where it stopped. A peer that sends a bad chunk is not asked again
//! for that shard; the chunk is fetched from another.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use protocol::dataset::ShardInfo;
use protocol::BlobId;

use crate::metrics;
use crate::net::{Client, Request, Response};
use crate::store::BlobStore;

/// Chunks fetched at the same time (spread over the sources).
const PARALLEL: usize = 4;

/// A shard being assembled on disk: `<hex>.part` holds the bytes at their offsets and
/// `<hex>.have` one byte per chunk (1 = verified and written).
pub struct Partial {
    shard: ShardInfo,
    record_bytes: u32,
    part: File,
    have_path: PathBuf,
    have: Vec<u8>,
    part_path: PathBuf,
}

impl Partial {
    /// Opens (or starts) the partial copy of `shard` in `dir`. Chunks marked as had are hashed
    /// again, so a torn write or a tampered file is fetched anew rather than trusted.
    pub fn open(dir: &Path, shard: &ShardInfo, record_bytes: u32) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let hex = shard.blob.to_hex();
        let (part_path, have_path) = (dir.join(format!("{hex}.part")), dir.join(format!("{hex}.have")));
        let total = shard.records as u64 * record_bytes as u64;
        let mut part = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part_path)
            .with_context(|| format!("opening {}", part_path.display()))?;
        part.set_len(total).with_context(|| format!("sizing {}", part_path.display()))?;
        let chunks = shard.chunk_hashes.len();
        let mut have = match std::fs::read(&have_path) {
            Ok(bytes) if bytes.len() == chunks => bytes,
            _ => vec![0; chunks],
        };
        for (index, had) in have.iter_mut().enumerate() {
            if *had == 1 {
                let (offset, len) = chunk_range(shard, record_bytes, index);
                let mut bytes = vec![0; len as usize];
                part.seek(SeekFrom::Start(offset))?;
                part.read_exact(&mut bytes)?;
                if BlobId::of(&bytes) != shard.chunk_hashes[index] {
                    *had = 0;
                }
            }
        }
        Ok(Self { shard: shard.clone(), record_bytes, part, have_path, have, part_path })
    }

    /// Byte offset and length of chunk `index`.
    pub fn chunk_range(&self, index: usize) -> (u64, u32) {
        chunk_range(&self.shard, self.record_bytes, index)
    }

    /// Chunks still missing, in order.
    pub fn missing(&self) -> Vec<usize> {
        (0..self.have.len()).filter(|&i| self.have[i] == 0).collect()
    }

    /// How many chunks are here.
    pub fn had(&self) -> usize {
        self.have.iter().filter(|&&h| h == 1).count()
    }

    /// Writes chunk `index` if its bytes hash to the manifest's chunk hash; `false` otherwise.
    pub fn accept(&mut self, index: usize, bytes: &[u8]) -> Result<bool> {
        let (offset, len) = self.chunk_range(index);
        if bytes.len() != len as usize || self.shard.chunk_hashes.get(index) != Some(&BlobId::of(bytes)) {
            return Ok(false);
        }
        self.part.seek(SeekFrom::Start(offset))?;
        self.part.write_all(bytes)?;
        self.part.sync_data()?;
        self.have[index] = 1;
        std::fs::write(&self.have_path, &self.have).with_context(|| format!("writing {}", self.have_path.display()))?;
        Ok(true)
    }

    /// Once every chunk is here: checks the whole shard's hash, stores it, removes the partial
    /// files and returns the bytes.
    pub fn finish(mut self, blobs: &BlobStore) -> Result<Vec<u8>> {
        if let Some(missing) = self.missing().first() {
            bail!("shard {} is not complete: chunk {missing} is missing", self.shard.blob.short());
        }
        let mut bytes = Vec::new();
        self.part.seek(SeekFrom::Start(0))?;
        self.part.read_to_end(&mut bytes)?;
        blobs.put_verified(&self.shard.blob, &bytes)?;
        let _ = std::fs::remove_file(&self.part_path);
        let _ = std::fs::remove_file(&self.have_path);
        Ok(bytes)
    }
}

/// Byte offset and length of chunk `index` of `shard`.
fn chunk_range(shard: &ShardInfo, record_bytes: u32, index: usize) -> (u64, u32) {
    let first = index as u64 * shard.chunk_records as u64;
    let records = (shard.records as u64).saturating_sub(first).min(shard.chunk_records as u64);
    (first * record_bytes as u64, (records * record_bytes as u64) as u32)
}

/// Fetches `shard` (called `label` in logs, e.g. "shard 3") into `blobs` from `sources`, several chunks
/// at a time, resuming from `partial_dir`. Sources that do not have the shard drop out; one that
/// sends a chunk that fails its hash is dropped too and the chunk is asked of the next.
/// Progress is logged every 2 s while it lasts. Returns the shard's bytes.
pub async fn sync_shard(
    net: &Client,
    sources: &[PeerId],
    blobs: &BlobStore,
    partial_dir: &Path,
    shard: &ShardInfo,
    label: &str,
    record_bytes: u32,
    name: &str,
) -> Result<Vec<u8>> {
    if let Some(bytes) = blobs.get(&shard.blob)? {
        return Ok(bytes);
    }
    let mut partial = Partial::open(partial_dir, shard, record_bytes)?;
    let chunks = shard.chunk_hashes.len().max(1);
    let resumed = partial.had();
    if resumed > 0 {
        tracing::info!("{name}: {label}: resuming with {resumed} of {chunks} chunks already here");
    }
    let mut live: Vec<PeerId> = Vec::new();
    for peer in sources {
        if !live.contains(peer) {
            live.push(*peer);
        }
    }
    let started = Instant::now();
    let mut queue: std::collections::VecDeque<usize> = partial.missing().into();
    let mut in_flight = FuturesUnordered::new();
    let mut next_source = 0usize;
    let mut from_peers: std::collections::BTreeMap<PeerId, usize> = Default::default();
    let mut last_report = Instant::now();
    loop {
        while in_flight.len() < PARALLEL && !queue.is_empty() {
            if live.is_empty() {
                bail!("{label}: no peer has it ({} of {chunks} chunks here)", partial.had());
            }
            let chunk = queue.pop_front().expect("not empty");
            let peer = live[next_source % live.len()];
            next_source += 1;
            let (offset, len) = partial.chunk_range(chunk);
            let request = Request::BlobRange { blob: shard.blob, offset, len };
            in_flight.push(async move { (chunk, peer, net.request(peer, request).await) });
        }
        let Some((chunk, peer, answer)) = in_flight.next().await else { break };
        match answer {
            Ok(Response::Blob(bytes)) if partial.accept(chunk, &bytes)? => {
                *from_peers.entry(peer).or_default() += 1;
                metrics::inc("bonfire_chunks_synced_total", "Shard chunks fetched and verified", &[]);
                let had = partial.had();
                if last_report.elapsed().as_secs() >= 2 && had < chunks {
                    tracing::info!("{name}: {label}: {had} of {chunks} chunks ({}%)", had * 100 / chunks);
                    last_report = Instant::now();
                }
            }
            Ok(Response::Blob(_)) => {
                metrics::inc("bonfire_blobs_rejected_total", "Blobs from peers that failed their hash check", &[("reason", "hash")]);
                tracing::warn!("{name}: {peer} sent chunk {chunk} of {label} with the wrong hash: rejected, asking another peer");
                live.retain(|p| *p != peer);
                queue.push_back(chunk);
            }
            Ok(other) => {
                tracing::debug!("{name}: {peer} answered {other:?} for {label}");
                live.retain(|p| *p != peer);
                queue.push_back(chunk);
            }
            Err(e) => {
                // "no blob …" (it does not have the shard) or unreachable: ask the others.
                tracing::debug!("{name}: {peer} has no chunk {chunk} of {label}: {e:#}");
                live.retain(|p| *p != peer);
                queue.push_back(chunk);
            }
        }
        if queue.is_empty() && in_flight.is_empty() {
            break;
        }
    }
    let bytes = partial.finish(blobs)?;
    let seconds = started.elapsed().as_secs_f64();
    let peers: Vec<String> = from_peers.iter().map(|(p, n)| format!("{n} from {p}")).collect();
    tracing::info!(
        "{name}: {label} synced: {:.2} MB in {seconds:.2} s, every chunk and the whole shard hash-checked; chunks: {}",
        bytes.len() as f64 / 1e6,
        if peers.is_empty() { "none needed".to_string() } else { peers.join(", ") }
    );
    metrics::set("bonfire_shard_sync_peers", "Peers the last synced shard came from", &[], from_peers.len() as f64);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(records: u32, chunk_records: u32, record_bytes: u32) -> (ShardInfo, Vec<u8>) {
        let bytes: Vec<u8> = (0..records * record_bytes).map(|i| (i * 7 % 251) as u8).collect();
        (ShardInfo::describe(&bytes, record_bytes, chunk_records), bytes)
    }

    #[test]
    fn a_partial_shard_resumes_with_the_chunks_it_had_and_refetches_a_tampered_one() {
        let dir = tempfile::tempdir().unwrap();
        let (info, bytes) = shard(25, 10, 4); // chunks of 40, 40 and 20 bytes
        let chunk = |i: usize| &bytes[i * 40..((i + 1) * 40).min(bytes.len())];
        {
            let mut partial = Partial::open(dir.path(), &info, 4).unwrap();
            assert_eq!(partial.missing(), [0, 1, 2]);
            assert!(partial.accept(2, chunk(2)).unwrap());
            assert!(!partial.accept(0, chunk(1)).unwrap(), "the wrong bytes for chunk 0 are refused");
            assert!(partial.accept(0, chunk(0)).unwrap());
        } // the peer stops here
        let partial = Partial::open(dir.path(), &info, 4).unwrap();
        assert_eq!(partial.missing(), [1], "chunks 0 and 2 survived the restart");
        drop(partial);

        // A chunk on disk that no longer matches its hash is fetched again.
        let part = dir.path().join(format!("{}.part", info.blob.to_hex()));
        let mut on_disk = std::fs::read(&part).unwrap();
        on_disk[0] ^= 1;
        std::fs::write(&part, on_disk).unwrap();
        let mut partial = Partial::open(dir.path(), &info, 4).unwrap();
        assert_eq!(partial.missing(), [0, 1]);
        assert!(partial.accept(1, chunk(1)).unwrap());
        assert!(partial.accept(0, chunk(0)).unwrap());
        let blobs = BlobStore::open(&dir.path().join("blobs")).unwrap();
        assert_eq!(partial.finish(&blobs).unwrap(), bytes);
        assert!(blobs.has(&info.blob));
        assert!(!part.exists(), "the partial files are removed once the shard is stored");
    }

    #[test]
    fn an_incomplete_shard_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (info, bytes) = shard(20, 10, 4);
        let mut partial = Partial::open(dir.path(), &info, 4).unwrap();
        assert!(partial.accept(0, &bytes[..40]).unwrap());
        let blobs = BlobStore::open(&dir.path().join("blobs")).unwrap();
        assert!(partial.finish(&blobs).is_err());
        assert!(!blobs.has(&info.blob));
    }
}
