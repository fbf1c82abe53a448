//! `bonfire heads verify`: re-checks a node's promoted heads from what is on disk, trusting
//! nothing the node said at the time: the experiment manifest's signature, every head's
//! certificate against the validator set and quorum, the parent chain, and each checkpoint
//! blob's hash.

use std::path::Path;

use anyhow::{Context, Result};
use protocol::experiment::ExperimentManifest;
use protocol::{BlobId, Signed};
use serde::Serialize;

use crate::store::{BlobStore, Db};

/// What the check found (printed as JSON).
#[derive(Debug, Serialize)]
pub struct HeadsReport {
    pub experiment: String,
    pub validators: usize,
    pub quorum: u32,
    pub heads: usize,
    pub heads_with_valid_certificate: usize,
    pub newest_round: Option<u64>,
    /// One line per problem; empty when everything holds.
    pub problems: Vec<String>,
}

/// Checks the heads in a node's data directory (the seed's, or a validator's).
pub fn verify_heads(dir: &Path) -> Result<HeadsReport> {
    let db = Db::open(&dir.join("bonfire.redb")).with_context(|| format!("opening the node in {}", dir.display()))?;
    let blobs = BlobStore::open(&dir.join("blobs"))?;
    let experiment = match db.meta("experiment")? {
        Some(bytes) => postcard::from_bytes::<Signed<ExperimentManifest>>(&bytes).context("the stored experiment is corrupt")?,
        None => anyhow::bail!("{} holds no experiment (is it a seed's data directory?)", dir.display()),
    };
    let mut problems = Vec::new();
    if let Err(e) = experiment.verify() {
        problems.push(format!("the experiment manifest's signature: {e}"));
    }
    let heads = db.heads()?;
    let mut valid = 0;
    let mut previous = None;
    for (i, head) in heads.iter().enumerate() {
        let round = head.round;
        if round != i as u64 {
            problems.push(format!("round {round} is stored in position {i}: a round is missing"));
        }
        match head.verify_for(&experiment) {
            Ok(()) => valid += 1,
            Err(e) => problems.push(format!("round {round}: {e}")),
        }
        if head.parent != previous {
            problems.push(format!("round {round} does not extend the head before it"));
        }
        match blobs.get(&head.checkpoint) {
            Ok(Some(bytes)) if BlobId::of(&bytes) == head.checkpoint => {}
            Ok(Some(_)) => problems.push(format!("round {round}: checkpoint {} is corrupt", head.checkpoint.short())),
            Ok(None) => problems.push(format!("round {round}: checkpoint {} is missing", head.checkpoint.short())),
            Err(e) => problems.push(format!("round {round}: reading its checkpoint: {e:#}")),
        }
        previous = Some(head.id());
    }
    Ok(HeadsReport {
        experiment: experiment.body.id.clone(),
        validators: experiment.body.validators.len(),
        quorum: experiment.body.quorum,
        heads: heads.len(),
        heads_with_valid_certificate: valid,
        newest_round: heads.last().map(|h| h.round),
        problems,
    })
}
