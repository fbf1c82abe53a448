//! The seed: a bootstrap peer that issues leases, collects and screens updates, closes rounds
//! and proposes their merge (the reducer's job), serves the edge, and is one validator of the
//! experiment. A head is promoted only with a quorum of attestations: the seed's own and those
//! of the other validators (`bonfire validator`), each of which re-checks the proposal itself.
//! Native trainers reach the seed over libp2p (TCP, QUIC); browser workers over libp2p too
//! (WebSocket), with the edge's HTTP API as their bootstrap and fallback.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use burn::prelude::Device;
use futures::future::join_all;
use edge::{EdgeError, EdgeNode};
use libp2p::{Multiaddr, PeerId};
use protocol::api::{
    DashboardSnapshot, ExperimentInfo, HeadInfo, HeadSummary, LeaseGrant, LeaseRequest, NetworkEvent, NetworkInfo,
    PeerSummary, UpdateReceipt, UpdateSubmission,
};
use protocol::dataset::DatasetManifest;
use protocol::experiment::{ExperimentManifest, LeaseSpec, MergeSpec, ModelSpec};
use protocol::head::{Attestation, Head};
use protocol::proposal::{Proposal, ReduceRequest};
use protocol::ids::canonical_bytes;
use protocol::lease::Lease;
use protocol::update::Runtime;
use protocol::{merge, BlobId, Identity, LeaseId, Signed};
use tokio::sync::broadcast;
use workload::data::Examples;

use super::attest::{self, evaluate};
use super::coordinator::{sign_head, Candidate, Coordinator};
use super::gossiped;
use crate::dataset::bundle::Bundle;
use crate::net::{self, Announcement, AttestRequest, Client, DirectoryEntry, NetEvent, Request, Response};
use crate::metrics;
use crate::store::{BlobStore, Db, StoredUpdate};
use crate::{now_ms, Settings};

/// The experiment `bonfire up` creates.
pub const EXPERIMENT_ID: &str = "mnist-mlp";

/// Where the seed listens for peers.
pub struct Listen {
    /// Native peers (TCP).
    pub tcp: Multiaddr,
    /// Native peers (QUIC), if any.
    pub quic: Option<Multiaddr>,
    /// WebRTC-direct (e.g. `/ip4/127.0.0.1/udp/0/webrtc-direct`), with the certificate kept in
    /// the data directory, if any.
    pub webrtc: Option<Multiaddr>,
    /// Browser workers over WebSocket (e.g. `/ip4/127.0.0.1/tcp/0/ws`), if any.
    pub websocket: Option<Multiaddr>,
    /// Whether the edge's `POST /api/leases/{lease}/update` takes updates (the fallback for
    /// tabs without a peer connection). Off, browsers must deliver over libp2p.
    pub http_updates: bool,
}

/// Everything the seed's tasks and the edge share.
pub struct Seed {
    identity: Identity,
    coordinator: Mutex<Coordinator>,
    blobs: BlobStore,
    db: Db,
    events: broadcast::Sender<NetworkEvent>,
    peers: Mutex<HashMap<String, PeerSummary>>,
    /// Listen addresses of connected peers (identify), served as the peer directory.
    peer_addrs: Mutex<HashMap<String, Vec<String>>>,
    listen_addrs: Mutex<Vec<String>>,
    /// Addresses browsers dial, in the order they try them (WebSocket, WebRTC-direct), with
    /// `/p2p/<peer id>`.
    browser_addrs: Vec<String>,
    http_updates: bool,
    validation: Examples,
    device: Device,
    net: Client,
    stop_after_rounds: Option<u64>,
    /// How long a closing round waits for reducers' proposals.
    reduce_timeout: Duration,
    finished: tokio::sync::Notify,
}

impl Seed {
    /// Opens (or creates, on first start) the seed in `dir` over the prepared `bundle`.
    pub async fn start(
        dir: &Path,
        bundle: &Bundle,
        settings: &Settings,
        listen: Listen,
    ) -> Result<Arc<Self>> {
        let identity = crate::store::load_or_create_identity(dir)?;
        let blobs = BlobStore::open(&dir.join("blobs"))?;
        let db = Db::open(&dir.join("bonfire.redb"))?;
        let device = Device::flex();
        let validation = Examples::decode(&bundle.shard_bytes(&bundle.manifest.validation.blob)?, &bundle.manifest.layout)?;
        import_bundle(&blobs, bundle)?;
        let coordinator = match db.meta("experiment")? {
            Some(bytes) => resume(&identity, &db, &blobs, bundle, &bytes)?,
            None => create(&identity, &db, &blobs, bundle, settings, &device, &validation).await?,
        };
        let certificate = match listen.webrtc {
            Some(_) => Some(net::webrtc::load_or_create_certificate(dir)?),
            None => None,
        };
        let (net, net_events) = net::spawn(&identity, "seed+validator", certificate).await?;
        let experiment = coordinator.manifest().id.clone();
        net.subscribe(net::updates_topic(&experiment)).await?;
        net.subscribe(net::heads_topic(&experiment)).await?;
        let with_peer = |addr: Multiaddr| format!("{addr}/p2p/{}", identity.peer_id());
        let mut listen_addrs = vec![with_peer(net.listen(listen.tcp).await.context("listening for native peers")?)];
        if let Some(quic) = listen.quic {
            listen_addrs.push(with_peer(net.listen(quic).await.context("listening for native peers over QUIC")?));
        }
        // Browsers try these in order: WebSocket first; WebRTC-direct (with its certhash) is
        // second while the tab's WebRTC transport is experimental (its streams stall after a
        // few rounds, see docs/ARCHITECTURE.md), so a tab uses it only with ?transport=webrtc.
        let mut browser_addrs = Vec::new();
        if let Some(ws) = listen.websocket {
            browser_addrs.push(with_peer(net.listen(ws).await.context("listening for browsers over WebSocket")?));
        }
        if let Some(webrtc) = listen.webrtc {
            browser_addrs.push(with_peer(net.listen(webrtc).await.context("listening on WebRTC-direct")?));
        }
        let (events, _) = broadcast::channel(256);
        let seed = Arc::new(Self {
            identity,
            coordinator: Mutex::new(coordinator),
            blobs,
            db,
            events,
            peers: Mutex::new(HashMap::new()),
            peer_addrs: Mutex::new(HashMap::new()),
            listen_addrs: Mutex::new(listen_addrs),
            browser_addrs,
            http_updates: listen.http_updates,
            validation,
            device,
            net,
            stop_after_rounds: settings.stop_after_rounds,
            reduce_timeout: Duration::from_millis(settings.reduce_timeout_ms),
            finished: tokio::sync::Notify::new(),
        });
        tokio::spawn(seed.clone().handle_network(net_events));
        tokio::spawn(seed.clone().close_rounds());
        Ok(seed)
    }

    /// The seed's libp2p address for trainers to dial (TCP).
    pub fn bootstrap_addr(&self) -> Result<Multiaddr> {
        let addrs = self.listen_addrs.lock().expect("lock");
        Ok(addrs.first().context("the seed is not listening")?.parse()?)
    }

    /// The seed's QUIC address, when it listens on one.
    pub fn quic_addr(&self) -> Option<Multiaddr> {
        let addrs = self.listen_addrs.lock().expect("lock");
        addrs.iter().find(|a| a.contains("/quic-v1/")).and_then(|a| a.parse().ok())
    }

    /// Resolves once `--stop-after-rounds` heads were promoted (never without the flag).
    pub async fn finished(&self) {
        self.finished.notified().await
    }

    fn coordinator(&self) -> std::sync::MutexGuard<'_, Coordinator> {
        self.coordinator.lock().expect("coordinator lock poisoned")
    }

    fn publish_last_event(&self, coordinator: &Coordinator) {
        if let Some(event) = coordinator.last_event() {
            let _ = self.events.send(event.clone());
        }
    }

    fn touch_peer(&self, peer_id: &str, role: &str, transport: &str) {
        let mut peers = self.peers.lock().expect("lock");
        peers.insert(
            peer_id.to_string(),
            PeerSummary { peer_id: peer_id.into(), role: role.into(), transport: transport.into(), last_seen: now_ms() },
        );
    }

    fn lease_grant(&self, coordinator: &Coordinator, lease: Signed<Lease>) -> Result<LeaseGrant, EdgeError> {
        super::coordinator::grant_of(coordinator.manifest(), coordinator.dataset(), coordinator.head().checkpoint, lease)
            .map_err(EdgeError::Internal)
    }

    fn grant(&self, experiment: &str, request: &LeaseRequest) -> Result<LeaseGrant, EdgeError> {
        let holder: PeerId = request
            .holder
            .parse()
            .map_err(|_| EdgeError::BadRequest(format!("`{}` is not a peer id", request.holder)))?;
        let mut coordinator = self.coordinator();
        check_experiment(&coordinator, experiment)?;
        let lease = coordinator
            .grant_lease(&holder.to_string(), request.runtime, now_ms())
            .map_err(|e| EdgeError::Conflict(e.to_string()))?;
        self.publish_last_event(&coordinator);
        let next_slice = coordinator.next_slice().to_le_bytes();
        if let Err(e) = self.db.put_lease(&lease).and_then(|()| self.db.set_meta("next_slice", &next_slice)) {
            tracing::warn!("could not persist lease {}: {e:#}", lease.id().short());
        }
        self.lease_grant(&coordinator, lease)
    }

    /// A lease another validator issued, registered in the open round and persisted.
    fn register_lease(&self, peer: PeerId, lease: Signed<Lease>) -> Result<(), EdgeError> {
        if lease.signer != peer.to_string() {
            return Err(EdgeError::Forbidden(format!("{peer} registered a lease signed by {}", lease.signer)));
        }
        let mut coordinator = self.coordinator();
        coordinator.register_lease(lease.clone(), now_ms()).map_err(EdgeError::Conflict)?;
        self.publish_last_event(&coordinator);
        if let Err(e) = self.db.put_lease(&lease) {
            tracing::warn!("could not persist lease {}: {e:#}", lease.id().short());
        }
        Ok(())
    }

    fn ingest(&self, submission: &UpdateSubmission) -> Result<UpdateReceipt, EdgeError> {
        let mut coordinator = self.coordinator();
        let now = now_ms();
        let result = coordinator.ingest(&submission.update, &submission.delta, now);
        self.publish_last_event(&coordinator);
        let pending = result.map_err(EdgeError::Unprocessable)?;
        // Kept on disk until the round is promoted, so a restart of the seed loses no update.
        let stored = StoredUpdate { round: coordinator.open_round(), seq: pending, accepted_at: now, update: submission.update.clone() };
        if let Err(e) = self.blobs.put(&submission.delta).and_then(|_| self.db.put_update(&stored)) {
            tracing::warn!("could not keep update {} for a restart: {e:#}", submission.update.id().short());
        }
        Ok(UpdateReceipt { update_id: submission.update.id(), round: coordinator.open_round(), pending_in_round: pending })
    }

    /// The record bytes of a live lease's slice (served over HTTP and libp2p).
    fn slice_records(&self, lease: &LeaseId) -> Result<Vec<u8>, EdgeError> {
        let (slice, shard_blob, record_bytes) = {
            let coordinator = self.coordinator();
            let lease = coordinator
                .lease(lease)
                .ok_or_else(|| EdgeError::NotFound(format!("no lease {} in the open round", lease.short())))?;
            let now = now_ms();
            if !lease.body.is_live(now) {
                return Err(EdgeError::Forbidden(format!(
                    "lease {} expired {} s ago; request a new one",
                    lease.id().short(),
                    (now - lease.body.expires_at) / 1000
                )));
            }
            let shard = coordinator.dataset().train_shard(lease.body.slice.shard).map_err(|e| EdgeError::Internal(e.to_string()))?;
            (lease.body.slice, shard.blob, coordinator.dataset().layout.record_bytes)
        };
        let bytes = self
            .blobs
            .get(&shard_blob)
            .map_err(|e| EdgeError::Internal(format!("{e:#}")))?
            .ok_or_else(|| EdgeError::Internal(format!("shard {shard_blob} is missing from the store")))?;
        let start = slice.first_record as usize * record_bytes as usize;
        let end = start + slice.count as usize * record_bytes as usize;
        let records = bytes.get(start..end).ok_or_else(|| EdgeError::Internal("shard shorter than its manifest".into()))?;
        Ok(records.to_vec())
    }

    /// The connected peers that listen somewhere, with their roles and addresses.
    fn directory(&self) -> Vec<DirectoryEntry> {
        let peers = self.peers.lock().expect("lock");
        let addrs = self.peer_addrs.lock().expect("lock");
        let mut entries: Vec<DirectoryEntry> = addrs
            .iter()
            .filter(|(_, a)| !a.is_empty())
            .map(|(peer, a)| DirectoryEntry {
                peer_id: peer.clone(),
                role: peers.get(peer).map_or_else(|| "peer".to_string(), |p| p.role.clone()),
                addrs: a.clone(),
            })
            .collect();
        entries.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        entries
    }

    /// Answers peers' requests and ingests gossiped updates.
    async fn handle_network(self: Arc<Self>, mut events: tokio::sync::mpsc::Receiver<NetEvent>) {
        while let Some(event) = events.recv().await {
            match event {
                NetEvent::Request { peer, request, channel } => {
                    let response = self.answer(peer, request);
                    let _ = self.net.respond(channel, response).await;
                }
                NetEvent::Announcement { source, announcement: Announcement::Update(update) } => {
                    let seed = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = seed.fetch_and_ingest(source, *update).await {
                            tracing::warn!("gossiped update not ingested: {e:#}");
                        }
                    });
                }
                NetEvent::Announcement { source, announcement: Announcement::Head(head) } => {
                    // Heads are promoted here, so a gossiped one is at best an echo of ours:
                    // screened only so that forgeries show in the metrics and the log.
                    let experiment = self.coordinator().experiment().clone();
                    gossiped::certified("seed", &experiment, source, &head);
                }
                NetEvent::PeerChanged { peer, connected, agent, transport, addrs } => {
                    let role = agent.as_deref().and_then(|a| a.split(' ').nth(1)).unwrap_or("peer").to_string();
                    if connected {
                        self.touch_peer(&peer.to_string(), &role, transport);
                        self.peer_addrs.lock().expect("lock").insert(peer.to_string(), addrs.iter().map(|a| a.to_string()).collect());
                    } else {
                        self.peers.lock().expect("lock").remove(&peer.to_string());
                        self.peer_addrs.lock().expect("lock").remove(&peer.to_string());
                    }
                }
            }
        }
    }

    fn answer(&self, peer: PeerId, request: Request) -> Response {
        let result = match request {
            Request::Experiment { experiment } => self.experiment(&experiment).map(|i| Response::Experiment(Box::new(i))),
            Request::Head { experiment } => self.head(&experiment).map(|h| Response::Head(Box::new(h))),
            Request::Lease { experiment, request } => {
                if request.holder != peer.to_string() {
                    Err(EdgeError::Forbidden(format!("{peer} asked for a lease for another peer")))
                } else {
                    self.grant(&experiment, &request).map(|g| Response::Lease(Box::new(g)))
                }
            }
            Request::Blob(id) => match self.blobs.get(&id) {
                Ok(Some(bytes)) => Ok(Response::Blob(bytes)),
                Ok(None) => Err(EdgeError::NotFound(format!("no blob {id}"))),
                Err(e) => Err(EdgeError::Internal(format!("{e:#}"))),
            },
            Request::HeadAt { experiment, round } => {
                let coordinator = self.coordinator();
                check_experiment(&coordinator, &experiment).and_then(|()| {
                    let head = coordinator.heads().get(round as usize).filter(|h| h.round == round).cloned();
                    head.map(|head| Response::Head(Box::new(HeadInfo { id: head.id(), head })))
                        .ok_or_else(|| EdgeError::NotFound(format!("no head of round {round} yet")))
                })
            }
            Request::Attest(_) => Err(EdgeError::Forbidden("the seed proposes; it is not asked to attest".into())),
            Request::Reduce(_) => Err(EdgeError::Forbidden("the seed asks reducers; it is not one".into())),
            Request::Peers => Ok(Response::Peers(self.directory())),
            Request::BlobRange { blob, offset, len } => Ok(net::serve_blob_range(&self.blobs, &blob, offset, len)),
            Request::RegisterLease(lease) => self.register_lease(peer, *lease).map(|()| Response::Registered),
            Request::LeaseData(lease) => self.slice_records(&lease).map(|records| {
                metrics::bytes_out("libp2p", records.len());
                Response::Blob(records)
            }),
        };
        result.unwrap_or_else(|e| Response::Error(e.to_string()))
    }

    async fn fetch_and_ingest(&self, source: Option<PeerId>, update: Signed<protocol::update::Update>) -> Result<()> {
        let author: PeerId = update.body.holder.parse().context("update holder is not a peer id")?;
        // The cheap checks first: an update for no lease of ours, a closed round or a stale
        // head is refused without downloading its delta.
        {
            let mut coordinator = self.coordinator();
            if coordinator.has_accepted(&update) {
                tracing::debug!("update {} announced again; it is already in the round", update.id().short());
                return Ok(());
            }
            let vetted = coordinator.vet(&update, now_ms());
            if vetted.is_err() {
                self.publish_last_event(&coordinator); // the rejection
            }
            vetted.map_err(anyhow::Error::msg).context("refused before fetching its delta")?;
        }
        let from = source.unwrap_or(author);
        let delta = match self.net.request(from, Request::Blob(update.body.delta)).await? {
            Response::Blob(bytes) => bytes,
            other => bail!("asked {from} for delta {}, got {other:?}", update.body.delta.short()),
        };
        self.ingest(&UpdateSubmission { update, delta })?;
        Ok(())
    }

    /// Closes rounds when they are ready: merge, evaluate, sign, persist, announce.
    async fn close_rounds(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let candidate = {
                let mut coordinator = self.coordinator();
                if !coordinator.should_close(now_ms()) {
                    continue;
                }
                match coordinator.take_candidate() {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!("merging round {} failed: {e:#}", coordinator.open_round());
                        continue;
                    }
                }
            };
            // The closed round's candidate is frozen: it is proposed again, identical, until a
            // quorum attests to it. Letting new updates in would make a second, different
            // proposal for the round, which validators that attested the first must refuse.
            let head = loop {
                match self.promote(&candidate).await {
                    Ok(head) => break head,
                    Err(e) => {
                        // Most often a validator is down or restarting.
                        tracing::warn!("promoting round {} failed: {e:#}; proposing it again in 2 s", candidate.round);
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            };
            record_promotion(&head);
            tracing::info!(
                "round {} promoted: {} updates, validation accuracy {:.2}%, loss {:.4}",
                head.round,
                head.contributions.len(),
                head.metrics.val_accuracy * 100.0,
                head.metrics.val_loss
            );
            let announce = Announcement::Head(Box::new(head.clone()));
            if let Err(e) = self.net.publish(net::heads_topic(&head.experiment), &announce).await {
                tracing::debug!("head gossip: {e:#}");
            }
            if self.stop_after_rounds.is_some_and(|n| head.round >= n) {
                self.finished.notify_waiters();
            }
        }
    }

    /// Evaluates, gathers attestations, stores and signs the candidate; persists the head; only
    /// then adopts it.
    async fn promote(&self, candidate: &Candidate) -> Result<Head> {
        let head = self.sign_and_store(candidate).await?;
        let mut coordinator = self.coordinator();
        coordinator.adopt(head.clone(), candidate.clone(), now_ms());
        self.publish_last_event(&coordinator);
        Ok(head)
    }

    /// Evaluates the candidate (while connected reducers aggregate it too), proposes it to the
    /// other validators and gathers attestations; with a quorum that agrees with our own
    /// evaluation, builds, checks and stores the head.
    async fn sign_and_store(&self, candidate: &Candidate) -> Result<Head> {
        let experiment = self.coordinator().experiment().clone();
        let manifest = &experiment.body;
        let checkpoint = self.blobs.put(&merge::encode_f32le(&candidate.params))?;
        let request = ReduceRequest {
            experiment: manifest.id.clone(),
            round: candidate.round,
            base_head: candidate.base,
            inputs: candidate.inputs.clone(),
        };
        let (metrics, reduction) = tokio::join!(
            evaluate(&self.device, &manifest.model, &candidate.params, &self.validation),
            self.reduction(&request, checkpoint)
        );
        let metrics = metrics?;
        let ours = self.coordinator().attest(candidate, checkpoint, metrics);
        let expected = ours.body.clone();
        let me = self.identity.peer_id().to_string();
        let mut certificate = Vec::new();
        if manifest.validators.contains(&me) {
            certificate.push(ours);
        }
        let proposal = self.identity.sign(Proposal {
            experiment: request.experiment,
            round: request.round,
            base_head: request.base_head,
            inputs: request.inputs,
            checkpoint,
        });
        let ask = AttestRequest { proposal, reduction };
        let others: Vec<&String> = manifest.validators.iter().filter(|v| **v != me).collect();
        let asks = others.iter().map(|v| self.ask_to_attest(v, &ask, &expected));
        certificate.extend(join_all(asks).await.into_iter().flatten());
        if certificate.len() < manifest.quorum as usize {
            bail!(
                "round {}: {} of {} validators attested, the quorum is {}",
                candidate.round,
                certificate.len(),
                manifest.validators.len(),
                manifest.quorum
            );
        }
        let head = self.coordinator().certify(candidate, checkpoint, metrics, certificate, now_ms());
        head.verify_for(&experiment).context("the assembled certificate")?;
        self.db.put_head(&head)?;
        Ok(head)
    }

    /// Asks every connected reducer to aggregate `request` (each within the reduce timeout) and
    /// judges each answer against our own checkpoint `ours`. Returns the reducer proposal the
    /// validators get to see: one that agrees, else one that does not (so each of them checks
    /// and counts it too). A reducer that is wrong, late or silent changes nothing else: our own
    /// aggregate is what is proposed.
    async fn reduction(&self, request: &ReduceRequest, ours: BlobId) -> Option<Signed<Proposal>> {
        let reducers: Vec<PeerId> = {
            let peers = self.peers.lock().expect("lock");
            peers.values().filter(|p| p.role == "reducer").filter_map(|p| p.peer_id.parse().ok()).collect()
        };
        let asks = reducers.into_iter().map(|peer| async move {
            let ask = self.net.request(peer, Request::Reduce(Box::new(request.clone())));
            let (verdict, proposal) = match tokio::time::timeout(self.reduce_timeout, ask).await {
                Ok(Ok(Response::Proposal(p))) if p.signer == peer.to_string() => (attest::reduction_verdict(request, ours, &p), Some(*p)),
                Ok(Ok(Response::Proposal(_))) => ("bad-signature", None),
                Ok(Ok(_)) => ("bad-answer", None),
                Ok(Err(e)) => {
                    tracing::warn!("reducer {peer} did not reduce round {}: {e:#}", request.round);
                    ("refused", None)
                }
                Err(_) => ("missing", None),
            };
            attest::record_reduction("seed", request.round, &peer.to_string(), verdict);
            proposal.map(|p| (verdict == "agreed", p))
        });
        let mut answers: Vec<(bool, Signed<Proposal>)> = join_all(asks).await.into_iter().flatten().collect();
        answers.sort_by_key(|(agreed, _)| !agreed);
        answers.into_iter().next().map(|(_, p)| p)
    }

    /// One validator's attestation to `proposal`, if it gives one that matches ours.
    async fn ask_to_attest(&self, validator: &str, ask: &AttestRequest, expected: &Attestation) -> Option<Signed<Attestation>> {
        let round = ask.proposal.body.round;
        let peer: PeerId = match validator.parse() {
            Ok(peer) => peer,
            Err(e) => {
                tracing::error!("validator {validator} in the manifest is not a peer id: {e}");
                return None;
            }
        };
        let answer = self.net.request(peer, Request::Attest(Box::new(ask.clone()))).await;
        let outcome = match &answer {
            Ok(Response::Attestation(a)) if a.signer == validator && a.verify().is_ok() && a.body == *expected => "attested",
            Ok(Response::Attestation(_)) => "disagreed",
            Ok(Response::Error(_)) => "refused",
            Ok(_) => "bad-answer",
            Err(_) => "unreachable",
        };
        metrics::inc("bonfire_attestation_requests_total", "Proposals sent to other validators, by outcome", &[("outcome", outcome)]);
        match answer {
            Ok(Response::Attestation(a)) if outcome == "attested" => Some(*a),
            Ok(Response::Attestation(a)) => {
                tracing::warn!("validator {validator} attested something else for round {round}: {:?}", a.body);
                None
            }
            Ok(Response::Error(reason)) => {
                tracing::warn!("validator {validator} refused round {round}: {reason}");
                None
            }
            Ok(other) => {
                tracing::warn!("validator {validator} answered {other:?}");
                None
            }
            Err(e) => {
                tracing::warn!("validator {validator} did not answer for round {round}: {e:#}");
                None
            }
        }
    }
}

/// Round counters and the head gauges of a promoted head.
fn record_promotion(head: &Head) {
    metrics::inc("bonfire_rounds_promoted_total", "Heads promoted (rounds closed with a quorum)", &[]);
    metrics::set("bonfire_head_round", "Round of the newest head", &[], head.round as f64);
    metrics::set("bonfire_head_val_accuracy", "Validation accuracy of the newest head", &[], head.metrics.val_accuracy as f64);
    metrics::set("bonfire_head_val_loss", "Validation loss of the newest head", &[], head.metrics.val_loss as f64);
    metrics::set("bonfire_head_contributions", "Updates merged into the newest head", &[], head.contributions.len() as f64);
}

fn check_experiment(coordinator: &Coordinator, experiment: &str) -> Result<(), EdgeError> {
    if coordinator.manifest().id != experiment {
        return Err(EdgeError::NotFound(format!("no experiment `{experiment}` (this node runs `{}`)", coordinator.manifest().id)));
    }
    Ok(())
}

/// Copies the bundle's shard blobs into the node's blob store (they are served to peers).
fn import_bundle(blobs: &BlobStore, bundle: &Bundle) -> Result<()> {
    let manifest = &bundle.manifest;
    for shard in manifest.train.iter().chain(std::iter::once(&manifest.validation)) {
        if !blobs.has(&shard.blob) {
            blobs.put_verified(&shard.blob, &bundle.shard_bytes(&shard.blob)?)?;
        }
    }
    blobs.put(&canonical_bytes(manifest))?;
    Ok(())
}

/// The experiment's defaults for one laptop: they reach ≥ 90 % validation accuracy on the
/// 10,000-digit MNIST bundle within 20 rounds.
pub fn default_manifest(settings: &Settings, dataset: &DatasetManifest, validator: &Identity, genesis: BlobId) -> ExperimentManifest {
    ExperimentManifest {
        id: EXPERIMENT_ID.into(),
        title: "MNIST digits, 784-128-10 MLP".into(),
        dataset: dataset.id(),
        model: ModelSpec::Mlp { inputs: dataset.layout.features, hidden: 128, classes: dataset.layout.classes },
        lease: LeaseSpec {
            examples: settings.lease_examples,
            batch_size: settings.batch_size,
            local_steps: settings.local_steps,
            learning_rate: settings.learning_rate,
            ttl_ms: settings.lease_ttl_secs * 1000,
        },
        merge: MergeSpec {
            min_updates: settings.min_updates,
            max_updates: 32,
            round_deadline_ms: settings.round_deadline_secs * 1000,
            max_delta_norm: 100.0,
            outer_learning_rate: 1.0,
        },
        validators: std::iter::once(validator.peer_id().to_string()).chain(settings.extra_validators.iter().cloned()).collect(),
        quorum: settings.quorum.unwrap_or(1 + settings.extra_validators.len() as u32),
        genesis,
    }
}

async fn create(
    identity: &Identity,
    db: &Db,
    blobs: &BlobStore,
    bundle: &Bundle,
    settings: &Settings,
    device: &Device,
    validation: &Examples,
) -> Result<Coordinator> {
    let dataset = bundle.manifest.clone();
    let spec = ModelSpec::Mlp { inputs: dataset.layout.features, hidden: 128, classes: dataset.layout.classes };
    let params = workload::model::genesis_parameters(&spec, settings.seed);
    let genesis = blobs.put(&merge::encode_f32le(&params))?;
    let manifest = default_manifest(settings, &dataset, identity, genesis);
    let validators = manifest.validators.len();
    if manifest.quorum == 0 || manifest.quorum as usize > validators {
        bail!("--quorum {} is not between 1 and the number of validators ({validators})", manifest.quorum);
    }
    let metrics = evaluate(device, &manifest.model, &params, validation).await?;
    let head = sign_head(identity, &manifest.id, 0, None, genesis, metrics, vec![], now_ms());
    let experiment = identity.sign(manifest);
    db.set_meta("experiment", &postcard::to_allocvec(&experiment)?)?;
    db.put_head(&head)?;
    tracing::info!("created experiment {} (genesis accuracy {:.2}%)", experiment.body.id, metrics.val_accuracy * 100.0);
    Coordinator::new(identity.clone(), experiment, dataset, vec![head], params, now_ms())
}

fn resume(identity: &Identity, db: &Db, blobs: &BlobStore, bundle: &Bundle, experiment: &[u8]) -> Result<Coordinator> {
    let experiment: Signed<ExperimentManifest> = postcard::from_bytes(experiment).context("the stored experiment is corrupt")?;
    experiment.verify_by(&identity.peer_id().to_string()).context("the stored experiment is not signed by this node")?;
    if experiment.body.dataset != bundle.manifest.id() {
        bail!(
            "this data directory trains on dataset {}, but --dataset holds {}; use the same dataset or a new --data-dir",
            experiment.body.dataset.short(),
            bundle.manifest.id().short()
        );
    }
    let heads = db.heads()?;
    let head = heads.last().context("the data directory has an experiment but no heads")?;
    let bytes = blobs.get(&head.checkpoint)?.with_context(|| format!("checkpoint {} of round {} is missing", head.checkpoint, head.round))?;
    if BlobId::of(&bytes) != head.checkpoint {
        bail!("checkpoint {} of round {} is corrupt", head.checkpoint, head.round);
    }
    let params = merge::decode_f32le(&bytes, experiment.body.model.parameter_count())?;
    tracing::info!("resuming {} at round {} ({} heads on disk)", experiment.body.id, head.round, heads.len());
    let round = head.round + 1;
    let mut coordinator = Coordinator::new(identity.clone(), experiment, bundle.manifest.clone(), heads, params, now_ms())?;
    coordinator.restore_leases(db.leases_for_round(round)?);
    // Updates accepted before the restart enter the round again, screened as of when they came.
    let stored = db.take_updates_for_round(round)?;
    let mut restored = 0;
    for StoredUpdate { update, accepted_at, .. } in &stored {
        let Some(delta) = blobs.get(&update.body.delta)? else {
            tracing::warn!("the delta of accepted update {} is missing; its lease is owed again", update.id().short());
            continue;
        };
        match coordinator.ingest(update, &delta, *accepted_at) {
            Ok(_) => restored += 1,
            Err(e) => tracing::warn!("accepted update {} does not enter round {round} again: {e}", update.id().short()),
        }
    }
    if !stored.is_empty() {
        tracing::info!("round {round}: {restored} of {} accepted updates restored", stored.len());
    }
    if let Some(bytes) = db.meta("next_slice")? {
        let bytes: [u8; 8] = bytes.as_slice().try_into().context("the stored slice position is corrupt")?;
        coordinator.resume_slices_at(u64::from_le_bytes(bytes));
    }
    Ok(coordinator)
}

impl EdgeNode for Seed {
    fn network(&self) -> NetworkInfo {
        NetworkInfo {
            peer_id: self.identity.peer_id().to_string(),
            listen_addrs: self.listen_addrs.lock().expect("lock").clone(),
            browser_addrs: self.browser_addrs.clone(),
            experiments: vec![self.coordinator().manifest().id.clone()],
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn experiment(&self, experiment: &str) -> Result<ExperimentInfo, EdgeError> {
        let coordinator = self.coordinator();
        check_experiment(&coordinator, experiment)?;
        Ok(ExperimentInfo { manifest: coordinator.experiment().clone(), dataset: coordinator.dataset().clone() })
    }

    fn head(&self, experiment: &str) -> Result<HeadInfo, EdgeError> {
        let coordinator = self.coordinator();
        check_experiment(&coordinator, experiment)?;
        Ok(HeadInfo { id: coordinator.head_id(), head: coordinator.head().clone() })
    }

    fn grant_lease(&self, experiment: &str, request: LeaseRequest) -> Result<LeaseGrant, EdgeError> {
        // Over HTTP nothing else shows the asker holds the holder's key.
        let proof = request.proof.as_ref().ok_or_else(|| {
            EdgeError::Forbidden("a lease request over HTTP needs `proof`: the holder's signed LeaseAsk (experiment, runtime, asked_at)".into())
        })?;
        proof.check(experiment, &request.holder, request.runtime, now_ms()).map_err(EdgeError::Forbidden)?;
        let grant = self.grant(experiment, &request)?;
        if request.runtime == Runtime::Browser {
            self.touch_peer(&grant.lease.body.holder, "browser", "http-fallback");
        }
        Ok(grant)
    }

    fn lease_data(&self, lease: &LeaseId) -> Result<Vec<u8>, EdgeError> {
        let records = self.slice_records(lease)?;
        metrics::bytes_out("http", records.len());
        Ok(records)
    }

    fn submit_update(&self, lease: &LeaseId, submission: UpdateSubmission) -> Result<UpdateReceipt, EdgeError> {
        if !self.http_updates {
            return Err(EdgeError::Forbidden(
                "this edge takes updates over libp2p only (started with --no-http-updates): announce the update on the experiment's updates topic".into(),
            ));
        }
        if &submission.update.body.lease != lease {
            return Err(EdgeError::BadRequest(format!(
                "the update is for lease {}, but was posted to lease {}",
                submission.update.body.lease.short(),
                lease.short()
            )));
        }
        metrics::bytes_in("http", submission.delta.len());
        let receipt = self.ingest(&submission)?;
        self.touch_peer(&submission.update.body.holder, submission.update.body.runtime.label(), "http-fallback");
        Ok(receipt)
    }

    fn blob(&self, id: &BlobId) -> Result<Option<Vec<u8>>, EdgeError> {
        // Whole shards are for peers that sync the dataset (chunk by chunk over libp2p); over
        // HTTP a browser gets only its live lease's slice.
        let dataset = self.coordinator().dataset().clone();
        if dataset.validation.blob == *id || dataset.train.iter().any(|s| s.blob == *id) {
            return Err(EdgeError::Forbidden(format!(
                "blob {} is a dataset shard: shards are synced by peers over libp2p, and a lease's slice is at /api/leases/{{lease}}/data",
                id.short()
            )));
        }
        let blob = self.blobs.get(id).map_err(|e| EdgeError::Internal(format!("{e:#}")))?;
        if let Some(bytes) = &blob {
            metrics::bytes_out("http", bytes.len());
        }
        Ok(blob)
    }

    fn dashboard(&self, experiment: &str) -> Result<DashboardSnapshot, EdgeError> {
        let now = now_ms();
        let coordinator = self.coordinator();
        check_experiment(&coordinator, experiment)?;
        let mut peers: Vec<PeerSummary> = self.peers.lock().expect("lock").values().cloned().collect();
        peers.sort_by(|a, b| a.role.cmp(&b.role).then(a.peer_id.cmp(&b.peer_id)));
        Ok(DashboardSnapshot {
            experiment: coordinator.manifest().id.clone(),
            validators: coordinator.manifest().validators.clone(),
            quorum: coordinator.manifest().quorum,
            open_round: coordinator.open_round(),
            heads: coordinator.heads().iter().rev().map(HeadSummary::of).collect(),
            leases: coordinator.live_leases(now),
            peers,
            recent_events: coordinator.recent_events(),
            now,
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<NetworkEvent> {
        self.events.subscribe()
    }
}
