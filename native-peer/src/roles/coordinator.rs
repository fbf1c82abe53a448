//! The validator's round state: it grants leases over distinct slices, screens and collects
//! updates, decides when the round closes, and turns the merged candidate into a signed head.
//! Pure state, no IO: the validator task drives it and persists what it returns.

use std::collections::{HashMap, HashSet, VecDeque};

use anyhow::Context;

use crate::metrics;

use protocol::api::{HeadSummary, LeaseGrant, LeaseSummary, NetworkEvent};
use protocol::dataset::DatasetManifest;
use protocol::experiment::ExperimentManifest;
use protocol::head::{Contribution, Head, Metrics};
use protocol::lease::{Lease, SlicePlan};
use protocol::merge;
use protocol::proposal::ProposalInput;
use protocol::update::{Runtime, Update};
use protocol::{BlobId, HeadId, Identity, LeaseId, Signed, UnixMillis};

/// The slices `issuer` leases: its share of `plan` by its place in the validator set (none
/// for a peer outside it).
pub fn issuer_share(plan: &SlicePlan, validators: &[String], issuer: &str) -> Option<SlicePlan> {
    let index = validators.iter().position(|v| v == issuer)?;
    plan.share(index, validators.len())
}

/// What a trainer needs with its lease: the checkpoint to start from, the slice's chunk hashes
/// and the window's settings.
pub fn grant_of(manifest: &ExperimentManifest, dataset: &DatasetManifest, checkpoint: BlobId, lease: Signed<Lease>) -> Result<LeaseGrant, String> {
    let slice = lease.body.slice;
    let shard = dataset.train_shard(slice.shard).map_err(|e| e.to_string())?;
    let first_chunk = (slice.first_record / shard.chunk_records) as usize;
    let chunks = slice.count.div_ceil(shard.chunk_records) as usize;
    let chunk_hashes = shard.chunk_hashes.get(first_chunk..first_chunk + chunks).ok_or("the slice lies outside its shard")?.to_vec();
    Ok(LeaseGrant {
        lease_id: lease.id(),
        checkpoint,
        chunk_hashes,
        chunk_records: shard.chunk_records,
        record_bytes: dataset.layout.record_bytes,
        batch_size: manifest.lease.batch_size,
        local_steps: manifest.lease.local_steps,
        learning_rate: manifest.lease.learning_rate,
        lease,
    })
}

/// How many recent events the dashboard gets.
const RECENT_EVENTS: usize = 100;

/// An update that passed screening, waiting for its round to close.
#[derive(Clone, Debug)]
pub struct AcceptedUpdate {
    pub update: Signed<Update>,
    pub delta: Vec<f32>,
    /// Examples its lease granted: the merge weight.
    pub examples: u32,
}

/// A merged candidate waiting for evaluation and attestations.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub round: u64,
    pub base: HeadId,
    pub params: Vec<f32>,
    pub contributions: Vec<Contribution>,
    /// The merged updates with their leases, in the order of `contributions` (what a proposal
    /// names, so validators can check each one).
    pub inputs: Vec<ProposalInput>,
}

/// Why a lease is not granted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LeaseRefusal {
    #[error("round {0} is being merged; ask again in a moment")]
    RoundClosing(u64),
}

/// The validator's view of one experiment.
pub struct Coordinator {
    identity: Identity,
    experiment: Signed<ExperimentManifest>,
    dataset: DatasetManifest,
    /// The slices this validator issues: its share of `full_plan`.
    plan: SlicePlan,
    /// The experiment's whole slice plan, which the validators share between them.
    full_plan: SlicePlan,
    heads: Vec<Head>,
    head_params: Vec<f32>,
    next_slice: u64,
    opened_at: UnixMillis,
    closing: bool,
    leases: HashMap<LeaseId, Signed<Lease>>,
    submitted: HashSet<LeaseId>,
    /// Expired leases of the open round whose slice was leased again (each only once).
    reissued: HashSet<LeaseId>,
    accepted: Vec<AcceptedUpdate>,
    events: VecDeque<NetworkEvent>,
}

impl Coordinator {
    /// Starts from the newest of `heads` (at least the genesis head) and its parameters.
    pub fn new(
        identity: Identity,
        experiment: Signed<ExperimentManifest>,
        dataset: DatasetManifest,
        heads: Vec<Head>,
        head_params: Vec<f32>,
        now: UnixMillis,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(!heads.is_empty(), "a coordinator needs at least the genesis head");
        let full_plan = SlicePlan::new(&dataset, experiment.body.lease.examples)?;
        let plan = issuer_share(&full_plan, &experiment.body.validators, &identity.peer_id().to_string())
            .unwrap_or_else(|| full_plan.clone());
        let next_slice = heads.iter().map(|h| h.contributions.len() as u64).sum();
        Ok(Self {
            identity,
            experiment,
            dataset,
            plan,
            full_plan,
            heads,
            head_params,
            next_slice,
            opened_at: now,
            closing: false,
            leases: HashMap::new(),
            submitted: HashSet::new(),
            reissued: HashSet::new(),
            accepted: Vec::new(),
            events: VecDeque::new(),
        })
    }

    pub fn experiment(&self) -> &Signed<ExperimentManifest> {
        &self.experiment
    }

    pub fn manifest(&self) -> &ExperimentManifest {
        &self.experiment.body
    }

    pub fn dataset(&self) -> &DatasetManifest {
        &self.dataset
    }

    pub fn head(&self) -> &Head {
        self.heads.last().expect("never empty")
    }

    pub fn head_id(&self) -> HeadId {
        self.head().id()
    }

    /// All heads, oldest first.
    pub fn heads(&self) -> &[Head] {
        &self.heads
    }

    /// The round now open for updates.
    pub fn open_round(&self) -> u64 {
        self.head().round + 1
    }

    /// A lease already granted in the open round.
    pub fn lease(&self, id: &LeaseId) -> Option<&Signed<Lease>> {
        self.leases.get(id)
    }

    /// Re-adopts leases granted before a restart (those for the open round).
    pub fn restore_leases(&mut self, leases: Vec<Signed<Lease>>) {
        let head = self.head_id();
        for lease in leases.into_iter().filter(|l| l.body.base_head == head) {
            self.leases.insert(lease.id(), lease);
        }
        self.next_slice += self.leases.len() as u64;
    }

    /// Grants `holder` a lease over the next slice, or returns its live unused one.
    pub fn grant_lease(&mut self, holder: &str, runtime: Runtime, now: UnixMillis) -> Result<Signed<Lease>, LeaseRefusal> {
        if self.closing {
            return Err(LeaseRefusal::RoundClosing(self.open_round()));
        }
        if let Some(existing) = self
            .leases
            .values()
            .find(|l| l.body.holder == holder && l.body.is_live(now) && !self.submitted.contains(&l.id()))
        {
            return Ok(existing.clone());
        }
        // A slice whose lease expired without an update (its holder vanished) is leased again
        // before the plan moves on, so no data of the round is skipped. Only slices of our own
        // share: another validator's slices are its to lease again.
        let orphaned = self
            .leases
            .values()
            .filter(|l| !l.body.is_live(now) && !self.submitted.contains(&l.id()) && !self.reissued.contains(&l.id()))
            .filter(|l| self.plan.contains(&l.body.slice))
            .min_by_key(|l| l.body.expires_at)
            .map(|l| (l.id(), l.body.slice));
        let slice = match orphaned {
            Some((expired, slice)) => {
                self.reissued.insert(expired);
                slice
            }
            None => {
                self.next_slice += 1;
                self.plan.slice(self.next_slice - 1)
            }
        };
        let spec = &self.experiment.body.lease;
        let lease = self.identity.sign(Lease {
            experiment: self.experiment.body.id.clone(),
            round: self.open_round(),
            base_head: self.head_id(),
            slice,
            holder: holder.to_string(),
            runtime,
            issued_at: now,
            expires_at: now + spec.ttl_ms,
            issuer: self.identity.peer_id().to_string(),
        });
        self.leases.insert(lease.id(), lease.clone());
        metrics::inc("bonfire_leases_granted_total", "Leases granted, by runtime", &[("runtime", runtime.label())]);
        self.record(NetworkEvent::LeaseGranted { lease: LeaseSummary::of(&lease.body) });
        Ok(lease)
    }

    /// Takes a lease another validator issued for the open round, so its update is accepted
    /// and the round waits for it. It must be signed by its issuer, a validator of the
    /// experiment, for the open round on the current head, no longer than a lease lives, and
    /// over a slice of the issuer's share that no other lease of the round holds or has used.
    pub fn register_lease(&mut self, lease: Signed<Lease>, now: UnixMillis) -> Result<(), String> {
        if self.closing {
            return Err(LeaseRefusal::RoundClosing(self.open_round()).to_string());
        }
        let id = lease.id();
        if self.leases.contains_key(&id) {
            return Ok(());
        }
        let body = lease.verify().map_err(|e| format!("lease signature: {e}"))?;
        let manifest = &self.experiment.body;
        if body.issuer != lease.signer {
            return Err(format!("the lease names issuer {} but is signed by {}", body.issuer, lease.signer));
        }
        let share = issuer_share(&self.full_plan, &manifest.validators, &lease.signer)
            .ok_or_else(|| format!("{} is not a validator of {} (or has no share of its slices)", lease.signer, manifest.id))?;
        if body.experiment != manifest.id || body.round != self.open_round() || body.base_head != self.head_id() {
            return Err(format!(
                "the lease is for round {} on head {}; the open round is {} on head {}",
                body.round,
                body.base_head.short(),
                self.open_round(),
                self.head_id().short()
            ));
        }
        if !body.is_live(now) || body.expires_at.saturating_sub(body.issued_at) > manifest.lease.ttl_ms {
            return Err("the lease has expired or lives longer than the experiment's leases".into());
        }
        if !share.contains(&body.slice) {
            return Err(format!("slice {}:{} is not in {}'s share of the plan", body.slice.shard, body.slice.first_record, lease.signer));
        }
        // A slice is taken while a lease of the round holds it or once its update came: one
        // update per slice and round, as the validators check in every proposal.
        let taken = self.leases.values().any(|l| l.body.slice == body.slice && (l.body.is_live(now) || self.submitted.contains(&l.id())));
        if taken {
            return Err(format!("slice {}:{} is already leased in round {}", body.slice.shard, body.slice.first_record, self.open_round()));
        }
        metrics::inc("bonfire_leases_registered_total", "Leases other validators issued and registered here", &[]);
        self.record(NetworkEvent::LeaseGranted { lease: LeaseSummary::of(&lease.body) });
        self.leases.insert(id, lease);
        Ok(())
    }

    /// Screens an update on its real tensor and enters it into the open round. The error is
    /// the reason, recorded as an event too.
    pub fn ingest(&mut self, update: &Signed<Update>, delta_bytes: &[u8], now: UnixMillis) -> Result<u32, String> {
        let result = self.screen(update, delta_bytes, now);
        match result {
            Ok(accepted) => {
                metrics::inc(
                    "bonfire_updates_accepted_total",
                    "Updates that passed screening, by runtime",
                    &[("runtime", update.body.runtime.label())],
                );
                let id = update.id();
                self.submitted.insert(update.body.lease);
                self.accepted.push(accepted);
                self.record(NetworkEvent::UpdateAccepted {
                    update: id,
                    holder: update.body.holder.clone(),
                    runtime: update.body.runtime,
                    round: self.open_round(),
                    at: now,
                });
                Ok(self.accepted.len() as u32)
            }
            Err((kind, reason)) => Err(self.reject(update, kind, reason, now)),
        }
    }

    /// Whether `update` is already in the open round (announced again after a reconnect).
    pub fn has_accepted(&self, update: &Signed<Update>) -> bool {
        let id = update.id();
        self.accepted.iter().any(|a| a.update.id() == id)
    }

    /// The checks an update passes before its delta is worth fetching: everything but the
    /// tensor. A gossiped update that fails them costs no download; the rejection is recorded
    /// as on ingest.
    pub fn vet(&mut self, update: &Signed<Update>, now: UnixMillis) -> Result<(), String> {
        match self.check_claims(update, now) {
            Ok(_) => Ok(()),
            Err((kind, reason)) => Err(self.reject(update, kind, reason, now)),
        }
    }

    fn reject(&mut self, update: &Signed<Update>, kind: &'static str, reason: String, now: UnixMillis) -> String {
        metrics::inc("bonfire_updates_rejected_total", "Updates refused by screening, by reason", &[("reason", kind)]);
        self.record(NetworkEvent::UpdateRejected { holder: update.body.holder.clone(), lease: Some(update.body.lease), reason: reason.clone(), at: now });
        reason
    }

    fn screen(&self, signed: &Signed<Update>, delta_bytes: &[u8], now: UnixMillis) -> Result<AcceptedUpdate, (&'static str, String)> {
        let lease = self.check_claims(signed, now)?;
        let manifest = &self.experiment.body;
        let update = &signed.body;
        if BlobId::of(delta_bytes) != update.delta {
            return Err(("hash", format!("delta bytes do not hash to the announced blob {}", update.delta.short())));
        }
        let delta = merge::decode_f32le(delta_bytes, manifest.model.parameter_count()).map_err(|e| ("shape", format!("delta shape: {e}")))?;
        merge::screen(&delta, manifest.merge.max_delta_norm).map_err(|e| ("screening", format!("delta screening: {e}")))?;
        Ok(AcceptedUpdate { update: signed.clone(), delta, examples: lease.body.slice.count })
    }

    /// Signature, experiment, round, lease, holder, expiry, base head, room, runtime and one
    /// update per lease: the update's claims, checked against the open round. Returns its lease.
    fn check_claims(&self, signed: &Signed<Update>, now: UnixMillis) -> Result<&Signed<Lease>, (&'static str, String)> {
        let update = signed.verify_by(&signed.body.holder).map_err(|e| ("signature", format!("signature: {e}")))?;
        let manifest = &self.experiment.body;
        if update.experiment != manifest.id {
            return Err(("experiment", format!("update is for experiment `{}`, not `{}`", update.experiment, manifest.id)));
        }
        if self.closing {
            return Err(("round-closed", format!("round {} closed before the update arrived", self.open_round())));
        }
        let lease = self.leases.get(&update.lease).ok_or_else(|| {
            let why = format!("lease {} is unknown or from a closed round (open round: {})", update.lease.short(), self.open_round());
            ("unknown-lease", why)
        })?;
        if lease.body.holder != update.holder {
            return Err(("not-the-holder", format!("lease {} is held by {}, not the update's signer", update.lease.short(), lease.body.holder)));
        }
        if !lease.body.is_live(now) {
            let ago = now.saturating_sub(lease.body.expires_at) / 1000;
            return Err(("lease-expired", format!("lease {} expired {ago} s ago; request a new one", update.lease.short())));
        }
        if update.base_head != self.head_id() {
            return Err(("stale-base-head", format!("stale base head {} (current head is {})", update.base_head.short(), self.head_id().short())));
        }
        if self.accepted.len() as u32 >= manifest.merge.max_updates {
            return Err(("round-full", format!("round {} is full ({} updates)", self.open_round(), manifest.merge.max_updates)));
        }
        if update.runtime != lease.body.runtime {
            return Err(("runtime", format!("the update says {}, its lease was granted to a {}", update.runtime.label(), lease.body.runtime.label())));
        }
        if self.submitted.contains(&update.lease) {
            return Err(("duplicate", format!("lease {} already has an update", update.lease.short())));
        }
        Ok(lease)
    }

    /// Updates accepted in the open round.
    #[cfg(test)]
    pub fn accepted(&self) -> usize {
        self.accepted.len()
    }

    /// Leases of the open round that are live and still owe an update.
    pub fn pending_leases(&self, now: UnixMillis) -> usize {
        self.leases.values().filter(|l| l.body.is_live(now) && !self.submitted.contains(&l.id())).count()
    }

    /// Whether the open round should close now: enough updates and nobody left to wait for,
    /// the maximum reached, or the deadline passed with at least one update.
    pub fn should_close(&self, now: UnixMillis) -> bool {
        let merge = &self.experiment.body.merge;
        let n = self.accepted.len() as u32;
        if self.closing || n == 0 {
            return false;
        }
        n >= merge.max_updates
            || (n >= merge.min_updates && self.pending_leases(now) == 0)
            || now.saturating_sub(self.opened_at) >= merge.round_deadline_ms
    }

    /// Closes the open round: merges accepted deltas (weighted by granted examples) into a
    /// candidate. Updates arriving from now until promotion are refused.
    pub fn take_candidate(&mut self) -> anyhow::Result<Candidate> {
        // The same arithmetic every validator repeats, so their checkpoints match to the bit.
        let deltas: Vec<(Vec<f32>, u32)> = self.accepted.iter().map(|a| (a.delta.clone(), a.examples)).collect();
        let params = super::attest::aggregate(&self.experiment.body, &self.head_params, &deltas)?;
        let mut inputs = Vec::with_capacity(self.accepted.len());
        for a in &self.accepted {
            let lease = self.leases.get(&a.update.body.lease).context("an accepted update's lease is gone")?;
            inputs.push(ProposalInput { update: a.update.clone(), lease: lease.clone() });
        }
        let contributions = self
            .accepted
            .iter()
            .map(|a| Contribution {
                update: a.update.id(),
                holder: a.update.body.holder.clone(),
                runtime: a.update.body.runtime, // equal to the lease's runtime (checked in screen)
                examples: a.examples,
            })
            .collect();
        self.closing = true;
        Ok(Candidate { round: self.open_round(), base: self.head_id(), params, contributions, inputs })
    }

    /// The head for an evaluated candidate with its certificate, without adopting it yet: the
    /// caller checks and persists it first, so a crash can never leave a head that was shown
    /// but not saved.
    pub fn certify(
        &self,
        candidate: &Candidate,
        checkpoint: BlobId,
        metrics: Metrics,
        certificate: Vec<Signed<protocol::head::Attestation>>,
        now: UnixMillis,
    ) -> Head {
        Head {
            experiment: self.experiment.body.id.clone(),
            round: candidate.round,
            parent: Some(candidate.base),
            checkpoint,
            metrics,
            contributions: candidate.contributions.clone(),
            certificate,
            promoted_at: now,
        }
    }

    /// This node's own attestation to a candidate (when it is one of the validators).
    pub fn attest(&self, candidate: &Candidate, checkpoint: BlobId, metrics: Metrics) -> Signed<protocol::head::Attestation> {
        self.identity.sign(protocol::head::Attestation {
            experiment: self.experiment.body.id.clone(),
            round: candidate.round,
            base_head: Some(candidate.base),
            checkpoint,
            inputs_root: protocol::head::inputs_root(&candidate.contributions),
            metrics,
        })
    }

    /// Adopts a signed (and persisted) head for the candidate and opens the next round.
    pub fn adopt(&mut self, head: Head, candidate: Candidate, now: UnixMillis) {
        self.heads.push(head.clone());
        self.head_params = candidate.params;
        self.leases.clear();
        self.submitted.clear();
        self.reissued.clear();
        self.accepted.clear();
        self.closing = false;
        self.opened_at = now;
        self.record(NetworkEvent::HeadPromoted { head: HeadSummary::of(&head) });
    }


    /// The position in the slice plan of the next lease (persisted so restarts keep slices
    /// distinct).
    pub fn next_slice(&self) -> u64 {
        self.next_slice
    }

    /// Resumes the slice plan at `next` (from the data directory).
    pub fn resume_slices_at(&mut self, next: u64) {
        self.next_slice = self.next_slice.max(next);
    }

    /// Live leases of the open round, for the dashboard.
    pub fn live_leases(&self, now: UnixMillis) -> Vec<LeaseSummary> {
        let mut out: Vec<_> = self.leases.values().filter(|l| l.body.is_live(now)).map(|l| LeaseSummary::of(&l.body)).collect();
        out.sort_by_key(|l| l.expires_at);
        out
    }

    /// Recent events, oldest first.
    pub fn recent_events(&self) -> Vec<NetworkEvent> {
        self.events.iter().cloned().collect()
    }

    /// Takes events recorded since the last call, to broadcast them.
    fn record(&mut self, event: NetworkEvent) {
        if self.events.len() == RECENT_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// The newest event, for broadcasting right after an operation.
    pub fn last_event(&self) -> Option<&NetworkEvent> {
        self.events.back()
    }
}

/// Builds a head and its certificate (this validator's attestation; quorum 1 here).
#[allow(clippy::too_many_arguments)]
pub fn sign_head(
    identity: &Identity,
    experiment: &str,
    round: u64,
    parent: Option<HeadId>,
    checkpoint: BlobId,
    metrics: Metrics,
    contributions: Vec<Contribution>,
    now: UnixMillis,
) -> Head {
    let mut head = Head {
        experiment: experiment.to_string(),
        round,
        parent,
        checkpoint,
        metrics,
        contributions,
        certificate: Vec::new(),
        promoted_at: now,
    };
    head.certificate.push(identity.sign(head.expected_attestation()));
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::dataset::{RecordLayout, ShardInfo};
    use protocol::experiment::{LeaseSpec, MergeSpec, ModelSpec};
    use protocol::update::DeltaEncoding;

    const PARAMS: usize = 4 * 2 + 2 + 2 * 2 + 2;

    struct Fixture {
        validator: Identity,
        coordinator: Coordinator,
    }

    fn fixture() -> Fixture {
        fixture_with_validators(&[])
    }

    /// A coordinator whose experiment has `others` as validators besides itself.
    fn fixture_with_validators(others: &[Identity]) -> Fixture {
        let validator = Identity::generate();
        let shard = |n: u32| ShardInfo::describe(&vec![0u8; n as usize * 785], 785, 10);
        let dataset = DatasetManifest {
            name: "t".into(),
            source: "t".into(),
            layout: RecordLayout::mnist(),
            train: vec![shard(100), shard(70)],
            validation: shard(20),
        };
        let manifest = ExperimentManifest {
            id: "exp".into(),
            title: "t".into(),
            dataset: dataset.id(),
            model: ModelSpec::Mlp { inputs: 4, hidden: 2, classes: 2 },
            lease: LeaseSpec { examples: 20, batch_size: 4, local_steps: 2, learning_rate: 0.01, ttl_ms: 1000 },
            merge: MergeSpec { min_updates: 2, max_updates: 3, round_deadline_ms: 5000, max_delta_norm: 100.0, outer_learning_rate: 1.0 },
            validators: std::iter::once(&validator).chain(others).map(|v| v.peer_id().to_string()).collect(),
            quorum: 1,
            genesis: BlobId::of(b"genesis"),
        };
        let metrics = Metrics { val_loss: 2.0, val_accuracy: 0.1, val_examples: 20 };
        let genesis = sign_head(&validator, "exp", 0, None, manifest.genesis, metrics, vec![], 0);
        let experiment = validator.sign(manifest);
        let coordinator = Coordinator::new(validator.clone(), experiment, dataset, vec![genesis], vec![0.0; PARAMS], 0).unwrap();
        Fixture { validator, coordinator }
    }

    fn update_for(trainer: &Identity, lease: &Signed<Lease>, delta: &[f32]) -> (Signed<Update>, Vec<u8>) {
        let bytes = merge::encode_f32le(delta);
        let update = trainer.sign(Update {
            experiment: "exp".into(),
            lease: lease.id(),
            base_head: lease.body.base_head,
            delta: BlobId::of(&bytes),
            encoding: DeltaEncoding::F32Le,
            holder: trainer.peer_id().to_string(),
            runtime: lease.body.runtime,
            train_loss: 0.5,
            steps: 2,
        });
        (update, bytes)
    }

    #[test]
    fn validators_issue_leases_from_their_own_shares_and_the_coordinator_takes_only_those() {
        let second = Identity::generate();
        let mut f = fixture_with_validators(&[second.clone()]);
        let plan = SlicePlan::new(f.coordinator.dataset(), 20).unwrap(); // 9 slices
        let ours = plan.share(0, 2).unwrap();
        for _ in 0..3 {
            let (_, lease) = trainer_lease(&mut f, 0);
            assert!(ours.contains(&lease.body.slice), "the coordinator leases only from its own share");
        }
        let head = f.coordinator.head_id();
        let lease_from = |issuer: &Identity, holder: &Identity, slice: u64, round: u64| {
            issuer.sign(Lease {
                experiment: "exp".into(),
                round,
                base_head: head,
                slice: plan.slice(slice),
                holder: holder.peer_id().to_string(),
                runtime: Runtime::NativeBurn,
                issued_at: 0,
                expires_at: 1000,
                issuer: issuer.peer_id().to_string(),
            })
        };
        let (t1, t2) = (Identity::generate(), Identity::generate());
        // Slice 1 is the second validator's: registered, and its update is merged.
        let theirs = lease_from(&second, &t1, 1, 1);
        f.coordinator.register_lease(theirs.clone(), 10).unwrap();
        f.coordinator.register_lease(theirs.clone(), 10).unwrap(); // again: no change
        let (update, bytes) = update_for(&t1, &theirs, &[0.1; PARAMS]);
        f.coordinator.ingest(&update, &bytes, 20).unwrap();
        // The same slice to someone else in the same round, a slice of our share, an outsider's
        // lease, and a lease for another round are all refused.
        f.coordinator.register_lease(lease_from(&second, &t2, 3, 1), 10).expect("slice 3 is theirs too");
        let twice = f.coordinator.register_lease(lease_from(&second, &Identity::generate(), 3, 1), 10).unwrap_err();
        assert!(twice.contains("already leased"), "{twice}");
        let not_theirs = f.coordinator.register_lease(lease_from(&second, &t2, 0, 1), 10).unwrap_err();
        assert!(not_theirs.contains("share"), "{not_theirs}");
        let outsider = f.coordinator.register_lease(lease_from(&Identity::generate(), &t2, 1, 1), 10).unwrap_err();
        assert!(outsider.contains("not a validator"), "{outsider}");
        let stale = f.coordinator.register_lease(lease_from(&second, &t2, 5, 7), 10).unwrap_err();
        assert!(stale.contains("open round"), "{stale}");
        let expired = f.coordinator.register_lease(lease_from(&second, &t2, 5, 1), 5000).unwrap_err();
        assert!(expired.contains("expired"), "{expired}");
        // Slice 1's update came: after its lease expired the slice is still spent for the round.
        let mut again = lease_from(&second, &t2, 1, 1).body;
        (again.issued_at, again.expires_at) = (1500, 2500);
        let used = f.coordinator.register_lease(second.sign(again), 1600).unwrap_err();
        assert!(used.contains("already leased"), "{used}");
    }

    fn trainer_lease(f: &mut Fixture, now: UnixMillis) -> (Identity, Signed<Lease>) {
        let t = Identity::generate();
        let lease = f.coordinator.grant_lease(&t.peer_id().to_string(), Runtime::NativeBurn, now).unwrap();
        (t, lease)
    }

    #[test]
    fn leases_cover_distinct_slices_and_are_signed_by_the_validator() {
        let mut f = fixture();
        let (_, a) = trainer_lease(&mut f, 0);
        let (_, b) = trainer_lease(&mut f, 0);
        assert_ne!(a.body.slice, b.body.slice);
        a.verify_by(&f.validator.peer_id().to_string()).unwrap();
        assert_eq!(a.body.slice.count, 20);
    }

    #[test]
    fn asking_twice_returns_the_same_live_lease() {
        let mut f = fixture();
        let (t, a) = trainer_lease(&mut f, 0);
        let again = f.coordinator.grant_lease(&t.peer_id().to_string(), Runtime::NativeBurn, 10).unwrap();
        assert_eq!(a.id(), again.id());
    }

    #[test]
    fn the_merge_is_weighted_by_leased_examples_not_claims() {
        let mut f = fixture();
        let (t1, l1) = trainer_lease(&mut f, 0);
        // Seven more leases use up the 20-record slices; the ninth is shard 1's 10-record tail.
        for _ in 0..7 {
            trainer_lease(&mut f, 0);
        }
        let (t2, l2) = trainer_lease(&mut f, 0);
        assert_eq!((l1.body.slice.count, l2.body.slice.count), (20, 10));
        let (u1, b1) = update_for(&t1, &l1, &[1.0; PARAMS]);
        let (mut u2, b2) = update_for(&t2, &l2, &[4.0; PARAMS]);
        f.coordinator.ingest(&u1, &b1, 1).unwrap();
        assert!(!f.coordinator.should_close(1), "leases are still pending");
        // Claims in the update (steps, loss) do not change the weight.
        u2.body.steps = 1000;
        let u2 = t2.sign(u2.body);
        f.coordinator.ingest(&u2, &b2, 1).unwrap();
        let candidate = f.coordinator.take_candidate().unwrap();
        assert_eq!(candidate.params, vec![2.0; PARAMS], "(20·1 + 10·4) / 30");
        assert_eq!(candidate.contributions.iter().map(|c| c.examples).collect::<Vec<_>>(), vec![20, 10]);
        let metrics = Metrics { val_loss: 1.0, val_accuracy: 0.5, val_examples: 20 };
        // The proposal names each input with its lease; a validator's check accepts it.
        assert_eq!(candidate.inputs.len(), 2);
        let proposal = protocol::proposal::Proposal {
            experiment: f.coordinator.manifest().id.clone(),
            round: candidate.round,
            base_head: candidate.base,
            inputs: candidate.inputs.clone(),
            checkpoint: BlobId::of(b"c1"),
        };
        assert_eq!(proposal.check_inputs(f.coordinator.manifest(), f.coordinator.dataset()).unwrap(), candidate.contributions);
        let attestation = f.coordinator.attest(&candidate, BlobId::of(b"c1"), metrics);
        let head = f.coordinator.certify(&candidate, BlobId::of(b"c1"), metrics, vec![attestation], 2);
        f.coordinator.adopt(head.clone(), candidate, 2);
        assert_eq!(head.round, 1);
        head.verify_for(f.coordinator.experiment()).unwrap();
        assert_eq!(f.coordinator.open_round(), 2);
    }

    /// Two accepted updates, closed into a candidate and proposed as a validator would receive it.
    fn proposed(f: &mut Fixture) -> (Candidate, protocol::proposal::Proposal, Vec<Vec<u8>>) {
        let (t1, l1) = trainer_lease(f, 0);
        let (t2, l2) = trainer_lease(f, 0);
        let (u1, b1) = update_for(&t1, &l1, &[0.1; PARAMS]);
        let (u2, b2) = update_for(&t2, &l2, &[0.4; PARAMS]);
        f.coordinator.ingest(&u1, &b1, 1).unwrap();
        f.coordinator.ingest(&u2, &b2, 1).unwrap();
        let candidate = f.coordinator.take_candidate().unwrap();
        let proposal = protocol::proposal::Proposal {
            experiment: "exp".into(),
            round: candidate.round,
            base_head: candidate.base,
            inputs: candidate.inputs.clone(),
            checkpoint: BlobId::of(&merge::encode_f32le(&candidate.params)),
        };
        (candidate, proposal, vec![b1, b2])
    }

    fn check(f: &Fixture, proposal: &protocol::proposal::Proposal, deltas: &[Vec<u8>]) -> Result<super::super::attest::Checked, String> {
        let validation = workload::data::Examples { features: 4, inputs: vec![0.5; 4 * 6], labels: vec![0, 1, 0, 1, 1, 0] };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let device = burn::prelude::Device::flex();
        let (manifest, dataset) = (f.coordinator.manifest(), f.coordinator.dataset());
        runtime.block_on(super::super::attest::check(manifest, dataset, proposal, &[0.0; PARAMS], deltas, &device, &validation))
    }

    #[test]
    fn a_validator_recomputes_the_proposal_and_attests_to_the_same_checkpoint() {
        let mut f = fixture();
        let (candidate, proposal, deltas) = proposed(&mut f);
        let checked = check(&f, &proposal, &deltas).unwrap();
        assert_eq!(checked.params, candidate.params, "bit-identical aggregate");
        assert_eq!(checked.contributions, candidate.contributions);
        assert_eq!(checked.attestation.checkpoint, proposal.checkpoint);
        assert_eq!(checked.attestation.inputs_root, protocol::head::inputs_root(&candidate.contributions));
    }

    #[test]
    fn a_validator_refuses_a_wrong_aggregate_a_tampered_delta_and_an_outside_lease() {
        let mut f = fixture();
        let (_, proposal, deltas) = proposed(&mut f);
        let mut wrong = proposal.clone();
        wrong.checkpoint = BlobId::of(b"a reducer's mistake");
        assert!(check(&f, &wrong, &deltas).unwrap_err().contains("recomputed checkpoint"));

        let mut tampered = deltas.clone();
        tampered[1] = merge::encode_f32le(&[9.0; PARAMS]);
        assert!(check(&f, &proposal, &tampered).unwrap_err().contains("do not hash"));

        // A lease issued by someone outside the validator set (re-signed by an outsider).
        let outsider = Identity::generate();
        let mut forged = proposal.clone();
        forged.inputs[0].lease = outsider.sign(forged.inputs[0].lease.body.clone());
        assert!(check(&f, &forged, &deltas).unwrap_err().contains("not a validator"));

        // Weights come from the leases: a proposal cannot repeat an input to double it…
        let mut doubled = proposal.clone();
        doubled.inputs[1] = doubled.inputs[0].clone();
        assert!(check(&f, &doubled, &deltas).unwrap_err().contains("twice"));
        // …nor can a validator sign itself an oversized lease to outweigh the others.
        let mut heavy = proposal.clone();
        let mut lease = heavy.inputs[0].lease.body.clone();
        lease.slice.count = 1_000_000;
        heavy.inputs[0].lease = f.validator.sign(lease);
        assert!(check(&f, &heavy, &deltas).unwrap_err().contains("larger than a lease"));
    }

    #[test]
    fn the_slice_of_an_expired_unused_lease_is_leased_again_once() {
        let mut f = fixture();
        let (_, vanished) = trainer_lease(&mut f, 0); // ttl 1000 ms; its holder never answers
        let (_, live) = trainer_lease(&mut f, 800); // still live at 1500
        assert_ne!(vanished.body.slice, live.body.slice);
        let (_, again) = trainer_lease(&mut f, 1500);
        assert_eq!(again.body.slice, vanished.body.slice, "the orphaned slice comes first");
        let (_, next) = trainer_lease(&mut f, 1500);
        assert!(next.body.slice != vanished.body.slice && next.body.slice != live.body.slice, "and only once");
    }

    #[test]
    fn vetting_refuses_a_bad_claim_before_any_delta_and_records_why() {
        let mut f = fixture();
        let (t1, l1) = trainer_lease(&mut f, 0);
        let (good, bytes) = update_for(&t1, &l1, &[1.0; PARAMS]);
        let events = f.coordinator.recent_events().len();
        f.coordinator.vet(&good, 1).unwrap();
        assert_eq!(f.coordinator.recent_events().len(), events, "passing the vetting records nothing");
        // Someone else's update on t1's lease: refused without its delta, with the reason.
        let intruder = Identity::generate();
        let (forged, _) = update_for(&intruder, &l1, &[1.0; PARAMS]);
        let why = f.coordinator.vet(&forged, 1).unwrap_err();
        assert!(why.contains("held by"), "{why}");
        assert!(matches!(f.coordinator.last_event(), Some(NetworkEvent::UpdateRejected { reason, .. }) if *reason == why));
        // Once the update is in, the same claim is a duplicate; the seed recognises the same
        // update announced again (after a reconnect) before vetting it.
        assert!(!f.coordinator.has_accepted(&good));
        f.coordinator.ingest(&good, &bytes, 2).unwrap();
        assert!(f.coordinator.has_accepted(&good) && !f.coordinator.has_accepted(&forged));
        assert!(f.coordinator.vet(&good, 3).unwrap_err().contains("already has an update"));
    }

    #[test]
    fn a_round_closes_once_min_updates_arrived_and_no_lease_is_pending() {
        let mut f = fixture();
        let (t1, l1) = trainer_lease(&mut f, 0);
        let (t2, l2) = trainer_lease(&mut f, 0);
        let (u1, b1) = update_for(&t1, &l1, &[1.0; PARAMS]);
        let (u2, b2) = update_for(&t2, &l2, &[1.0; PARAMS]);
        f.coordinator.ingest(&u1, &b1, 1).unwrap();
        assert!(!f.coordinator.should_close(1));
        f.coordinator.ingest(&u2, &b2, 1).unwrap();
        assert!(f.coordinator.should_close(1));
    }

    #[test]
    fn bad_updates_are_rejected_with_reasons() {
        let mut f = fixture();
        let (t, lease) = trainer_lease(&mut f, 0);
        let reject = |f: &mut Fixture, u: &Signed<Update>, b: &[u8], now| f.coordinator.ingest(u, b, now).unwrap_err();

        // Wrong signer: someone else signs an update naming the holder.
        let mallory = Identity::generate();
        let (mut forged, bytes) = update_for(&mallory, &lease, &[0.1; PARAMS]);
        forged.body.holder = t.peer_id().to_string();
        assert!(reject(&mut f, &forged, &bytes, 1).contains("signature"));

        // A valid update by a peer that does not hold the lease.
        let (stolen, bytes) = update_for(&mallory, &lease, &[0.1; PARAMS]);
        assert!(reject(&mut f, &stolen, &bytes, 1).contains("held by"));

        // Non-finite values, wrong shape, oversized norm, wrong bytes.
        let (nan, bytes) = update_for(&t, &lease, &[f32::NAN; PARAMS]);
        assert!(reject(&mut f, &nan, &bytes, 1).contains("not finite"));
        let (short, bytes) = update_for(&t, &lease, &[0.1; 3]);
        assert!(reject(&mut f, &short, &bytes, 1).contains("shape"));
        let (huge, bytes) = update_for(&t, &lease, &[100.0; PARAMS]);
        assert!(reject(&mut f, &huge, &bytes, 1).contains("norm"));
        let (good, _) = update_for(&t, &lease, &[0.1; PARAMS]);
        assert!(reject(&mut f, &good, &merge::encode_f32le(&[0.2; PARAMS]), 1).contains("hash"));

        // Expired lease.
        let (late, bytes) = update_for(&t, &lease, &[0.1; PARAMS]);
        assert!(reject(&mut f, &late, &bytes, 5000).contains("expired"));

        // Stale base head.
        let mut stale_lease = lease.clone();
        stale_lease.body.base_head = HeadId::of(b"old");
        let (stale, bytes) = update_for(&t, &stale_lease, &[0.1; PARAMS]);
        assert!(reject(&mut f, &stale, &bytes, 1).contains("unknown"), "a lease with another base is not ours");

        // The good one is accepted once; a second update for the same lease is refused.
        let (ok, bytes) = update_for(&t, &lease, &[0.1; PARAMS]);
        f.coordinator.ingest(&ok, &bytes, 1).unwrap();
        let (dup, bytes) = update_for(&t, &lease, &[0.2; PARAMS]);
        assert!(reject(&mut f, &dup, &bytes, 1).contains("already"));
        assert_eq!(f.coordinator.accepted(), 1);
        let rejections = f.coordinator.recent_events().iter().filter(|e| matches!(e, NetworkEvent::UpdateRejected { .. })).count();
        assert_eq!(rejections, 9);
    }

    #[test]
    fn the_deadline_closes_a_round_with_whatever_arrived() {
        let mut f = fixture();
        let (t, lease) = trainer_lease(&mut f, 0);
        let _ = trainer_lease(&mut f, 0);
        let (u, b) = update_for(&t, &lease, &[0.1; PARAMS]);
        f.coordinator.ingest(&u, &b, 10).unwrap();
        assert!(!f.coordinator.should_close(100));
        assert!(f.coordinator.should_close(5000));
        f.coordinator.take_candidate().unwrap();
        assert!(f.coordinator.grant_lease("x", Runtime::Browser, 5001).is_err(), "no leases while merging");
        assert!(!f.coordinator.should_close(5002), "a closed round is not closed twice");
    }

    #[test]
    fn an_update_must_match_its_lease_runtime() {
        let mut f = fixture();
        let (t, lease) = trainer_lease(&mut f, 0);
        let (mut update, bytes) = update_for(&t, &lease, &[0.1; PARAMS]);
        update.body.runtime = Runtime::Browser;
        let update = t.sign(update.body);
        assert!(f.coordinator.ingest(&update, &bytes, 1).unwrap_err().contains("granted to a native-burn"));
    }
}
