//! A validator in its own process: it follows the certified heads, issues leases over its share
//! of the slice plan (registering each with the round's coordinator), and when asked to attest
//! to a proposal it checks everything again itself (inputs against their signed
//! leases, the real deltas, the recomputed checkpoint, its own evaluation on the held-out shard)
//! before it signs. A head needs a quorum of such attestations, so no single process, the seed
//! included, can promote a head alone.
//!
//! State (heads, checkpoints, key) lives in its data directory; after a restart it resumes
//! there and catches up on heads it missed from the seed, checking each certificate and
//! checkpoint hash on the way.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use burn::prelude::Device;
use libp2p::{Multiaddr, PeerId};
use protocol::api::{ExperimentInfo, LeaseGrant, LeaseRequest};
use protocol::lease::{Lease, SlicePlan};
use protocol::head::{Attestation, Head};
use protocol::{merge, BlobId, HeadId, Identity, LeaseId, Signed, UnixMillis};
use tokio::sync::mpsc;
use workload::data::Examples;

use super::coordinator::{grant_of, issuer_share};
use super::{attest, gossiped};
use crate::metrics;
use crate::net::{self, Announcement, AttestRequest, Client, NetEvent, Request, Response};
use crate::store::{BlobStore, Db};

/// The head a validator stands on, and its parameters.
struct Tip {
    head: Head,
    params: Vec<f32>,
}

/// The leases this validator issued on its tip, and where it is in its share of the plan.
#[derive(Default)]
struct Issued {
    base: Option<HeadId>,
    next: u64,
    /// Every lease issued on `base`, by id.
    leases: HashMap<LeaseId, Signed<Lease>>,
    /// Leases whose update was announced on the updates topic.
    delivered: HashSet<LeaseId>,
    /// Expired, undelivered leases whose slice was leased again (once each).
    reissued: HashSet<LeaseId>,
}

impl Issued {
    /// Starts over on a new tip: leases of the old one are spent either way.
    fn on_tip(&mut self, base: HeadId) {
        if self.base != Some(base) {
            *self = Issued { base: Some(base), next: self.next, ..Issued::default() };
        }
    }

    /// `holder`'s live lease with no update yet, to hand back when it asks again.
    fn live_for(&self, holder: &str, now: UnixMillis) -> Option<&Signed<Lease>> {
        self.leases.values().find(|l| l.body.holder == holder && l.body.is_live(now) && !self.delivered.contains(&l.id()))
    }

    /// The oldest expired lease whose update never came (its holder vanished): its slice is
    /// leased again before the plan moves on.
    fn orphaned(&self, now: UnixMillis) -> Option<&Signed<Lease>> {
        self.leases
            .values()
            .filter(|l| !l.body.is_live(now) && !self.delivered.contains(&l.id()) && !self.reissued.contains(&l.id()))
            .min_by_key(|l| l.body.expires_at)
    }
}

/// A running validator.
pub struct Validator {
    identity: Identity,
    net: Client,
    seed: PeerId,
    blobs: BlobStore,
    db: Db,
    experiment: ExperimentInfo,
    validation: Examples,
    device: Device,
    tip: tokio::sync::Mutex<Tip>,
    /// Held while a proposal is checked: one at a time, so a flood of proposals cannot fan out
    /// into parallel fetches and evaluations.
    attesting: tokio::sync::Mutex<()>,
    /// This validator's share of the slice plan (none when no slice falls to it).
    plan: Option<SlicePlan>,
    issued: tokio::sync::Mutex<Issued>,
    name: String,
}

/// The `Db` meta key under which the attestation given for `round` is kept: a validator never
/// signs two different results for one round, across restarts too.
fn attested_key(round: u64) -> String {
    format!("attested/{round}")
}

impl Validator {
    /// Starts a validator with its data in `dir`, joining through `bootstrap`. Refuses to run
    /// unless its key is in the experiment's validator set.
    pub async fn start(dir: &Path, name: &str, bootstrap: Multiaddr, experiment: &str) -> Result<Arc<Self>> {
        let identity = crate::store::load_or_create_identity(dir)?;
        let blobs = BlobStore::open(&dir.join("blobs"))?;
        let db = Db::open(&dir.join("bonfire.redb"))?;
        let super::join::Joined { net, events, seed, experiment: info } =
            super::join::join(&identity, "validator", name, &bootstrap, experiment).await?;
        // Update announcements tell which of our leases were used.
        net.subscribe(net::updates_topic(experiment)).await?;
        let me = identity.peer_id().to_string();
        ensure!(
            info.manifest.body.validators.contains(&me),
            "this node ({me}) is not in experiment {experiment}'s validator set {:?}",
            info.manifest.body.validators
        );
        // The held-out shard: synced once (from the seed and any other validator that has it),
        // checked chunk by chunk and whole against the manifest's hashes.
        let shard = &info.dataset.validation;
        let mut sources: Vec<PeerId> = net.directory(seed).await.map(|peers| peers.into_iter().map(|(p, _)| p).collect()).unwrap_or_default();
        sources.retain(|p| *p != identity.peer_id());
        sources.push(seed);
        let record_bytes = info.dataset.layout.record_bytes;
        let bytes = crate::dataset::sync::sync_shard(&net, &sources, &blobs, &dir.join("partial"), shard, "the validation shard", record_bytes, name)
            .await
            .context("syncing the validation shard")?;
        let validation = Examples::decode(&bytes, &info.dataset.layout)?;

        // Kept so `bonfire heads verify --data-dir <this dir>` can check our copy of the heads.
        db.set_meta("experiment", &postcard::to_allocvec(&info.manifest)?)?;
        let mut heads = db.heads()?;
        let tip = match heads.pop() {
            Some(head) => {
                let bytes = blobs.get(&head.checkpoint)?.with_context(|| format!("checkpoint of round {} is missing", head.round))?;
                let params = merge::decode_f32le(&bytes, info.manifest.body.model.parameter_count())?;
                tracing::info!("{name}: resuming at round {}", head.round);
                Tip { head, params }
            }
            None => {
                let head = head_at(&net, seed, &info.manifest.body.id, 0).await?;
                head.verify_for(&info.manifest).context("the seed's genesis head")?;
                let bytes = fetch_blob(&net, &blobs, seed, &head.checkpoint).await?;
                let params = merge::decode_f32le(&bytes, info.manifest.body.model.parameter_count())?;
                db.put_head(&head)?;
                Tip { head, params }
            }
        };
        let plan = SlicePlan::new(&info.dataset, info.manifest.body.lease.examples)?;
        let plan = issuer_share(&plan, &info.manifest.body.validators, &me);
        let next = match db.meta("next_slice")? {
            Some(bytes) => u64::from_le_bytes(bytes.as_slice().try_into().context("the stored slice position is corrupt")?),
            None => 0,
        };
        let validator = Arc::new(Self {
            identity,
            net,
            seed,
            blobs,
            db,
            experiment: info,
            validation,
            device: Device::flex(),
            tip: tokio::sync::Mutex::new(tip),
            attesting: tokio::sync::Mutex::new(()),
            plan,
            issued: tokio::sync::Mutex::new(Issued { next, ..Issued::default() }),
            name: name.into(),
        });
        tokio::spawn(validator.clone().handle_network(events));
        tracing::info!("{name} ({me}) validates {experiment}");
        Ok(validator)
    }

    async fn handle_network(self: Arc<Self>, mut events: mpsc::Receiver<NetEvent>) {
        while let Some(event) = events.recv().await {
            match event {
                NetEvent::Request { peer, request: Request::Attest(ask), channel } => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        let response = match me.attest(peer, &ask).await {
                            Ok(attestation) => {
                                metrics::inc("bonfire_proposals_total", "Proposals checked, by verdict", &[("verdict", "attested")]);
                                Response::Attestation(Box::new(attestation))
                            }
                            Err(e) => {
                                metrics::inc("bonfire_proposals_total", "Proposals checked, by verdict", &[("verdict", "refused")]);
                                tracing::warn!("{}: refused {peer}'s proposal for round {}: {e:#}", me.name, ask.proposal.body.round);
                                Response::Error(format!("{e:#}"))
                            }
                        };
                        let _ = me.net.respond(channel, response).await;
                    });
                }
                NetEvent::Request { request: Request::Blob(id), channel, .. } => {
                    let _ = self.net.respond(channel, net::serve_blob(&self.blobs, &id)).await;
                }
                NetEvent::Request { request: Request::BlobRange { blob, offset, len }, channel, .. } => {
                    let _ = self.net.respond(channel, net::serve_blob_range(&self.blobs, &blob, offset, len)).await;
                }
                NetEvent::Request { peer, request: Request::Lease { experiment, request }, channel } => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        let response = match me.lease(peer, &experiment, &request).await {
                            Ok(grant) => Response::Lease(Box::new(grant)),
                            Err(e) => Response::Error(format!("{e:#}")),
                        };
                        let _ = me.net.respond(channel, response).await;
                    });
                }
                NetEvent::Request { channel, .. } => {
                    let _ = self.net.respond(channel, Response::Error("validators answer attest, lease and blob requests".into())).await;
                }
                NetEvent::Announcement { announcement: Announcement::Update(update), .. } => {
                    // Only to know which of our leases were used (an unused one's slice is
                    // leased again when it expires); the seed screens the update itself.
                    if update.verify().is_ok() {
                        self.issued.lock().await.delivered.insert(update.body.lease);
                    }
                }
                NetEvent::Announcement { source, announcement: Announcement::Head(head) } => {
                    if !gossiped::certified(&self.name, &self.experiment.manifest, source, &head) {
                        continue;
                    }
                    // Off the event loop: following may wait for an attestation in progress.
                    let me = self.clone();
                    tokio::spawn(async move {
                        let round = head.round;
                        if let Err(e) = me.follow(*head).await {
                            tracing::warn!("{}: could not follow the head of round {round}: {e:#}", me.name);
                        }
                    });
                }
                _ => {}
            }
        }
    }

    /// Checks a proposal from scratch and signs an attestation if it holds. Only a validator of
    /// the experiment may propose, and only for itself; everything it claims is checked before
    /// anything is fetched, and fetched deltas are kept only in memory. A reducer's proposal
    /// that came along is judged against our own aggregate (it never decides what we sign), and
    /// deltas are fetched from that reducer first, then the proposer, then their author.
    async fn attest(&self, from: PeerId, ask: &AttestRequest) -> Result<Signed<Attestation>> {
        let signed = &ask.proposal;
        let manifest = &self.experiment.manifest.body;
        ensure!(
            signed.signer == from.to_string() && manifest.validators.contains(&signed.signer),
            "proposals come from the experiment's validators, signed by themselves ({from} sent one signed by {})",
            signed.signer
        );
        let proposal = signed.verify().context("the proposal's signature is invalid")?;
        ensure!(proposal.round >= 1, "round 0 is the genesis: nothing to attest");
        proposal.check_inputs(manifest, &self.experiment.dataset).map_err(anyhow::Error::msg)?;
        let _one_at_a_time = self.attesting.lock().await;
        let earlier: Option<Attestation> = match self.db.meta(&attested_key(proposal.round))? {
            Some(bytes) => Some(postcard::from_bytes(&bytes).context("a stored attestation is corrupt")?),
            None => None,
        };
        // Stand on the proposal's base head first (catching up if we missed heads).
        self.catch_up_to(proposal.base_head, proposal.round - 1).await?;
        let reducer: Option<PeerId> = ask.reduction.as_ref().and_then(|r| r.signer.parse().ok());
        if let Some(reducer) = reducer {
            if let Err(e) = self.net.locate(self.seed, reducer).await {
                tracing::debug!("{}: could not look up reducer {reducer}: {e:#}", self.name);
            }
        }
        let mut deltas = Vec::with_capacity(proposal.inputs.len());
        for input in &proposal.inputs {
            let author: Option<PeerId> = input.update.body.holder.parse().ok();
            let sources: Vec<PeerId> = reducer.into_iter().chain([from]).chain(author).collect();
            deltas.push(net::fetch_verified(&self.net, &sources, &input.update.body.delta).await?.0);
        }
        let checked = {
            let tip = self.tip.lock().await;
            ensure!(tip.head.id() == proposal.base_head, "the proposal builds on {}, not on our head", proposal.base_head.short());
            let dataset = &self.experiment.dataset;
            attest::check(manifest, dataset, proposal, &tip.params, &deltas, &self.device, &self.validation)
                .await
                .map_err(anyhow::Error::msg)?
        };
        if let Some(reduction) = &ask.reduction {
            let verdict = attest::reduction_verdict(&proposal.request(), checked.attestation.checkpoint, reduction);
            attest::record_reduction(&self.name, proposal.round, &reduction.signer, verdict);
        }
        if let Some(earlier) = earlier {
            ensure!(
                earlier == checked.attestation,
                "already attested a different result for round {} (checkpoint {})",
                proposal.round,
                earlier.checkpoint.short()
            );
        }
        self.db.set_meta(&attested_key(proposal.round), &postcard::to_allocvec(&checked.attestation)?)?;
        self.blobs.put(&merge::encode_f32le(&checked.params))?;
        tracing::info!(
            "{}: attested round {}: {} inputs, validation accuracy {:.2}%",
            self.name,
            proposal.round,
            checked.contributions.len(),
            checked.attestation.metrics.val_accuracy * 100.0
        );
        Ok(self.identity.sign(checked.attestation))
    }

    /// Issues `peer` a lease over the next slice of our share, on our tip, and registers it with
    /// the round's coordinator (the seed) before handing it out: a lease the coordinator does
    /// not know would not be merged. A holder asking again on the same tip gets its live lease
    /// back; the slice of a lease that expired unused is leased again first. A refused
    /// registration (the round is closing, our tip is behind, the slice was used after all)
    /// costs no slice of the plan.
    async fn lease(&self, peer: PeerId, experiment: &str, request: &LeaseRequest) -> Result<LeaseGrant> {
        let manifest = &self.experiment.manifest.body;
        ensure!(request.holder == peer.to_string(), "{peer} asked for a lease for another peer");
        ensure!(experiment == manifest.id, "no experiment `{experiment}` here (this validator validates `{}`)", manifest.id);
        let plan = self.plan.as_ref().context("no slice of the plan falls to this validator")?;
        let (base, round, checkpoint) = {
            let tip = self.tip.lock().await;
            (tip.head.id(), tip.head.round + 1, tip.head.checkpoint)
        };
        let mut issued = self.issued.lock().await;
        issued.on_tip(base);
        let now = crate::now_ms();
        if let Some(lease) = issued.live_for(&request.holder, now) {
            let lease = lease.clone();
            self.register(&lease).await?;
            return grant_of(manifest, &self.experiment.dataset, checkpoint, lease).map_err(anyhow::Error::msg);
        }
        let orphaned = issued.orphaned(now).map(|l| (l.id(), l.body.slice));
        let slice = match orphaned {
            Some((_, slice)) => slice,
            None => plan.slice(issued.next),
        };
        let lease = self.identity.sign(Lease {
            experiment: manifest.id.clone(),
            round,
            base_head: base,
            slice,
            holder: request.holder.clone(),
            runtime: request.runtime,
            issued_at: now,
            expires_at: now + manifest.lease.ttl_ms,
            issuer: self.identity.peer_id().to_string(),
        });
        let registered = self.register(&lease).await;
        if let Some((expired, _)) = orphaned {
            // Leased again, or refused because its update did reach the seed: either way done.
            issued.reissued.insert(expired);
        }
        registered?;
        if orphaned.is_none() {
            issued.next += 1;
            self.db.set_meta("next_slice", &issued.next.to_le_bytes())?;
        }
        issued.leases.insert(lease.id(), lease.clone());
        metrics::inc("bonfire_leases_granted_total", "Leases granted, by runtime", &[("runtime", request.runtime.label())]);
        grant_of(manifest, &self.experiment.dataset, checkpoint, lease).map_err(anyhow::Error::msg)
    }

    /// Registers one of our leases with the round's coordinator (the seed).
    async fn register(&self, lease: &Signed<Lease>) -> Result<()> {
        match self.net.request(self.seed, Request::RegisterLease(Box::new(lease.clone()))).await? {
            Response::Registered => Ok(()),
            Response::Error(e) => bail!("the seed refused the lease: {e}"),
            other => bail!("the seed answered {other:?} to a lease registration"),
        }
    }

    /// Adopts a gossiped head (its certificate already checked) that extends ours, or catches up
    /// to it.
    async fn follow(&self, head: Head) -> Result<()> {
        let round = head.round;
        if round <= self.tip.lock().await.head.round {
            return Ok(()); // already there (we catch up on demand before attesting too)
        }
        self.catch_up_to(head.id(), round).await
    }

    /// Moves our tip forward, head by head from the seed, until it is `target` (round
    /// `round`). Each head must carry a valid certificate and extend the one before it.
    async fn catch_up_to(&self, target: HeadId, round: u64) -> Result<()> {
        let mut tip = self.tip.lock().await;
        if tip.head.id() == target {
            return Ok(());
        }
        ensure!(tip.head.round < round, "head {} of round {round} is not ahead of ours (round {})", target.short(), tip.head.round);
        let experiment = &self.experiment.manifest.body.id;
        while tip.head.round < round {
            let next = head_at(&self.net, self.seed, experiment, tip.head.round + 1).await?;
            next.verify_for(&self.experiment.manifest).with_context(|| format!("the head of round {}", next.round))?;
            ensure!(next.parent == Some(tip.head.id()), "the head of round {} does not extend ours: a fork", next.round);
            let bytes = fetch_blob(&self.net, &self.blobs, self.seed, &next.checkpoint).await?;
            let params = merge::decode_f32le(&bytes, self.experiment.manifest.body.model.parameter_count())?;
            self.db.put_head(&next)?;
            metrics::set("bonfire_head_round", "Round of the newest head", &[], next.round as f64);
            *tip = Tip { head: next, params };
        }
        ensure!(tip.head.id() == target, "the seed's head of round {round} is not {}", target.short());
        Ok(())
    }
}

/// A blob by id, from the store or from `peer` (hash-checked, then kept).
async fn fetch_blob(net: &Client, blobs: &BlobStore, peer: PeerId, id: &BlobId) -> Result<Vec<u8>> {
    if let Some(bytes) = blobs.get(id)? {
        return Ok(bytes);
    }
    let (bytes, _) = net::fetch_verified(net, &[peer], id).await?;
    blobs.put_verified(id, &bytes).with_context(|| format!("blob {} from {peer}", id.short()))?;
    Ok(bytes)
}

async fn head_at(net: &Client, seed: PeerId, experiment: &str, round: u64) -> Result<Head> {
    match net.request(seed, Request::HeadAt { experiment: experiment.into(), round }).await? {
        Response::Head(info) => Ok(info.head),
        other => bail!("asked the seed for the head of round {round}, got {other:?}"),
    }
}
