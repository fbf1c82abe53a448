//! Proposals: a reducer's claim "these updates, with these weights, make this checkpoint".
//! Validators trust none of it: they re-check every input against its signed lease, fetch and
//! screen the deltas, recompute the aggregate and only then attest. A [`ReduceRequest`] is how
//! the round's coordinator asks a reducer (`bonfire reducer`) for such a claim.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::dataset::DatasetManifest;
use crate::experiment::ExperimentManifest;
use crate::head::Contribution;
use crate::ids::{canonical_bytes, BlobId, HeadId};
use crate::lease::Lease;
use crate::signing::{Signable, Signed};
use crate::update::Update;

/// One merged update with the lease that authorised it (the lease carries its weight).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProposalInput {
    pub update: Signed<Update>,
    pub lease: Signed<Lease>,
}

/// A round's proposed merge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub experiment: String,
    pub round: u64,
    pub base_head: HeadId,
    pub inputs: Vec<ProposalInput>,
    /// The proposed checkpoint: base + outer step × weighted mean of the input deltas.
    pub checkpoint: BlobId,
}

impl Signable for Proposal {
    const DOMAIN: &'static str = "proposal";
}

/// A closed round's inputs, sent to a reducer to aggregate: it answers with a signed
/// [`Proposal`] naming the same inputs and the checkpoint it computed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReduceRequest {
    pub experiment: String,
    pub round: u64,
    pub base_head: HeadId,
    pub inputs: Vec<ProposalInput>,
}

impl ReduceRequest {
    /// The same checks as [`Proposal::check_inputs`]: a reducer refuses inputs a validator
    /// would refuse.
    pub fn check_inputs(&self, manifest: &ExperimentManifest, dataset: &DatasetManifest) -> Result<Vec<Contribution>, String> {
        check_round_inputs(&self.experiment, self.round, self.base_head, &self.inputs, manifest, dataset)
    }

    /// Whether `proposal` answers this request: same experiment, round, base head and inputs.
    pub fn is_answered_by(&self, proposal: &Proposal) -> bool {
        proposal.experiment == self.experiment
            && proposal.round == self.round
            && proposal.base_head == self.base_head
            && proposal.inputs == self.inputs
    }
}

impl Proposal {
    /// Content id of the proposal body.
    pub fn content_id(&self) -> BlobId {
        BlobId::of(&canonical_bytes(self))
    }

    /// Checks every input without fetching anything: signatures, the lease's issuer (a
    /// validator, signing as itself), holder, round, base head and runtime, one update per
    /// lease and one lease per slice, each slice inside the dataset and no larger than the
    /// experiment's lease size (the slice is the merge weight), and the round's size limit.
    /// Returns the contributions (weights from the leases), in input order.
    pub fn check_inputs(&self, manifest: &ExperimentManifest, dataset: &DatasetManifest) -> Result<Vec<Contribution>, String> {
        check_round_inputs(&self.experiment, self.round, self.base_head, &self.inputs, manifest, dataset)
    }

    /// The request this proposal answers (its round's inputs).
    pub fn request(&self) -> ReduceRequest {
        ReduceRequest { experiment: self.experiment.clone(), round: self.round, base_head: self.base_head, inputs: self.inputs.clone() }
    }
}

fn check_round_inputs(
    experiment: &str,
    round: u64,
    base_head: HeadId,
    inputs: &[ProposalInput],
    manifest: &ExperimentManifest,
    dataset: &DatasetManifest,
) -> Result<Vec<Contribution>, String> {
    if experiment != manifest.id {
        return Err(format!("the proposal is for experiment `{}`, not `{}`", experiment, manifest.id));
    }
    if inputs.is_empty() {
        return Err("the proposal merges no updates".into());
    }
    if inputs.len() as u32 > manifest.merge.max_updates {
        return Err(format!("{} inputs exceed the round's limit of {}", inputs.len(), manifest.merge.max_updates));
    }
    let mut leases = HashSet::new();
    let mut slices = HashSet::new();
    let mut out = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let bad = |why: String| format!("input {i}: {why}");
        let update = input.update.verify_by(&input.update.body.holder).map_err(|e| bad(format!("update signature: {e}")))?;
        let lease = input.lease.verify().map_err(|e| bad(format!("lease signature: {e}")))?;
        if !manifest.validators.contains(&input.lease.signer) {
            return Err(bad(format!("lease signed by {}, who is not a validator", input.lease.signer)));
        }
        if lease.issuer != input.lease.signer {
            return Err(bad(format!("lease names issuer {} but is signed by {}", lease.issuer, input.lease.signer)));
        }
        let slice = lease.slice;
        let shard = dataset.train_shard(slice.shard).map_err(|e| bad(format!("lease slice: {e}")))?;
        let end = slice.first_record as u64 + slice.count as u64;
        if slice.count == 0 || slice.count > manifest.lease.examples || end > shard.records as u64 {
            return Err(bad(format!(
                "lease slice {}:{}+{} is empty, larger than a lease ({} records) or outside its shard ({} records)",
                slice.shard, slice.first_record, slice.count, manifest.lease.examples, shard.records
            )));
        }
        if !slices.insert((slice.shard, slice.first_record)) {
            return Err(bad(format!("slice {}:{} is merged twice", slice.shard, slice.first_record)));
        }
        let lease_id = input.lease.id();
        if update.lease != lease_id {
            return Err(bad(format!("the update names lease {}, the proposal pairs it with {}", update.lease.short(), lease_id.short())));
        }
        if !leases.insert(lease_id) {
            return Err(bad(format!("lease {} is used twice", lease_id.short())));
        }
        if lease.holder != update.holder {
            return Err(bad(format!("lease held by {}, update signed by {}", lease.holder, update.holder)));
        }
        if update.experiment != manifest.id || lease.experiment != manifest.id {
            return Err(bad("update or lease of another experiment".into()));
        }
        if lease.round != round || lease.base_head != base_head || update.base_head != base_head {
            return Err(bad(format!(
                "lease/update for round {} on head {}, the proposal is round {} on head {}",
                lease.round,
                update.base_head.short(),
                round,
                base_head.short()
            )));
        }
        if update.runtime != lease.runtime {
            return Err(bad(format!("the update says {}, its lease says {}", update.runtime.label(), lease.runtime.label())));
        }
        out.push(Contribution {
            update: input.update.id(),
            holder: update.holder.clone(),
            runtime: update.runtime,
            examples: lease.slice.count,
        });
    }
    Ok(out)
}
