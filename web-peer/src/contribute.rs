//! The contribution loop: for each new head, lease a slice, fetch and verify the checkpoint and
//! the slice, train a window, sign the update and deliver it.
//!
//! The worker is a libp2p peer when it can be ([`crate::peer`]): it learns heads by gossip, asks
//! the seed for leases, checkpoints and slices over request-response, and announces its update
//! by gossip (the seed then fetches the delta from the tab over the same connection). While no
//! peer connection exists it uses the edge's HTTP API, and dials again with backoff. A trained
//! update is stored in IndexedDB ([`crate::store`]) before it is delivered, so a reload delivers
//! it if its round is still open.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use gloo_timers::future::TimeoutFuture;
use protocol::api::{ExperimentInfo, LeaseGrant, LeaseRequest, UpdateSubmission};
use protocol::head::Head;
use protocol::update::{DeltaEncoding, Runtime, Update};
use protocol::wire::{self, Announcement, Request, Response};
use protocol::worker::{BackendChoice, PendingUpdate, TransportChoice, WorkerEvent};
use protocol::{merge, BlobId, Identity, LeaseId};
use serde::{Deserialize, Serialize};
use workload::data::Examples;
use workload::WindowConfig;

use crate::backend::{self, Backend, Selection};
use crate::edge::{Edge, EdgeFailure};
use crate::peer::{self, Peer};
use crate::store::Store;
use crate::worker::Outbox;

/// What the page asked for.
pub struct Options {
    pub edge_url: String,
    pub experiment: Option<String>,
    pub backend: BackendChoice,
    pub transport: TransportChoice,
    pub secret_key: Vec<u8>,
}

/// Redial backoff after a failed or lost peer connection.
const FIRST_BACKOFF_MS: f64 = 1_000.0;
const MAX_BACKOFF_MS: f64 = 30_000.0;
/// With a peer connection, heads come by gossip; if none came for this long, ask once (a lost
/// gossip message must not stall the tab).
const HEAD_CHECK_MS: f64 = 20_000.0;
/// Accepted updates kept in the tab's history.
const HISTORY_LEN: usize = 500;

/// A trained update waiting for delivery or for its round's head, as stored in IndexedDB.
#[derive(Clone, Serialize, Deserialize)]
struct Pending {
    round: u64,
    lease: LeaseId,
    submission: UpdateSubmission,
    /// Set once it went out: `websocket` (announced; the head tells whether it was merged).
    announced_via: Option<String>,
}

impl Pending {
    fn summary(&self) -> PendingUpdate {
        PendingUpdate { round: self.round, update_id: self.submission.update.id().to_hex() }
    }
}

/// One accepted update, as the tab remembers it.
#[derive(Clone, Serialize, Deserialize)]
struct Accepted {
    round: u64,
    update_id: String,
    via: String,
    at_ms: f64,
}

/// The peer connection and when to dial again.
struct Link {
    peer: Option<Peer>,
    next_dial_ms: f64,
    backoff_ms: f64,
    /// The peers version last reported to the page.
    reported: Option<u64>,
    last_head_check_ms: f64,
}

struct Session {
    edge: Edge,
    identity: Identity,
    experiment: ExperimentInfo,
    backend: Backend,
    /// WebGPU to measure against the CPU on the first lease (`auto` with an adapter).
    candidate: Option<Backend>,
    transport: TransportChoice,
    link: Link,
    store: Option<Store>,
    pending: Option<Pending>,
    outbox: Outbox,
    stop: Rc<Cell<bool>>,
    /// Checkpoints by blob id (the newest few), so a retry does not refetch.
    checkpoints: HashMap<BlobId, Vec<f32>>,
}

/// Runs until `stop` is raised. Failures are reported and retried after a pause.
pub async fn run(options: Options, outbox: Outbox, stop: Rc<Cell<bool>>) {
    let mut session = loop {
        match start(&options, outbox.clone(), stop.clone()).await {
            Ok(session) => break session,
            Err(message) => {
                outbox.send(WorkerEvent::Error { message });
                if pause(&stop, 2000).await {
                    return;
                }
            }
        }
    };
    let mut last_round = None;
    while !stop.get() {
        match session.contribute_once(&mut last_round).await {
            Ok(true) => {}
            Ok(false) => {
                if pause(&stop, 200).await {
                    return;
                }
            }
            Err(message) => {
                session.outbox.send(WorkerEvent::Error { message });
                if pause(&stop, 2000).await {
                    return;
                }
            }
        }
    }
}

/// Sleeps `ms`, returning true if a stop was requested meanwhile.
async fn pause(stop: &Rc<Cell<bool>>, ms: u32) -> bool {
    TimeoutFuture::new(ms).await;
    stop.get()
}

fn pending_key(identity: &Identity) -> String {
    format!("pending/{}", identity.peer_id())
}

fn history_key(identity: &Identity) -> String {
    format!("history/{}", identity.peer_id())
}

async fn start(options: &Options, outbox: Outbox, stop: Rc<Cell<bool>>) -> Result<Session, String> {
    let secret: [u8; 32] = options
        .secret_key
        .as_slice()
        .try_into()
        .map_err(|_| format!("the tab's secret key must be 32 bytes, got {}", options.secret_key.len()))?;
    let identity = Identity::from_secret(secret).map_err(|e| format!("the tab's secret key is unusable: {e}"))?;
    outbox.send(WorkerEvent::Identity { peer_id: identity.peer_id().to_string() });
    let (backend, candidate) = match backend::select(options.backend).await? {
        Selection::Fixed(backend) => (backend, None),
        Selection::Measure { cpu, webgpu } => (cpu, Some(webgpu)),
    };
    outbox.send(WorkerEvent::Backend { backend: backend.name.to_string(), adapter: backend.adapter.clone() });
    let edge = Edge::new(&options.edge_url);
    let id = match &options.experiment {
        Some(id) => id.clone(),
        None => edge.network().await.map_err(|e| e.to_string())?.experiments.into_iter().next().ok_or("the edge runs no experiment")?,
    };
    let experiment = edge.experiment(&id).await.map_err(|e| e.to_string())?;
    experiment.manifest.verify().map_err(|e| format!("the experiment manifest's signature is invalid: {e}"))?;
    // The chunk hashes we verify slices against must be the dataset the signed manifest names.
    if experiment.dataset.id() != experiment.manifest.body.dataset {
        return Err("the edge's dataset manifest does not match the experiment's signed dataset id".into());
    }
    // Without IndexedDB (blocked storage) the tab still trains; it just cannot resume.
    let store = match Store::open().await {
        Ok(store) => Some(store),
        Err(e) => {
            outbox.send(WorkerEvent::Error { message: format!("{e}; updates will not survive a reload") });
            None
        }
    };
    let (mut pending, mut history) = (None, 0);
    if let Some(store) = &store {
        pending = store.get::<Pending>(&pending_key(&identity)).await?;
        history = store.get::<Vec<Accepted>>(&history_key(&identity)).await?.map_or(0, |h| h.len() as u32);
    }
    outbox.send(WorkerEvent::Restored { pending: pending.as_ref().map(Pending::summary), history });
    let link = Link { peer: None, next_dial_ms: 0.0, backoff_ms: FIRST_BACKOFF_MS, reported: None, last_head_check_ms: 0.0 };
    Ok(Session {
        edge,
        identity,
        experiment,
        backend,
        candidate,
        transport: options.transport,
        link,
        store,
        pending,
        outbox,
        stop,
        checkpoints: HashMap::new(),
    })
}

impl Session {
    fn phase(&self, round: u64, text: impl Into<String>) {
        self.outbox.send(WorkerEvent::Phase { round, text: text.into() });
    }

    fn manifest_id(&self) -> String {
        self.experiment.manifest.body.id.clone()
    }

    /// Dials when there is no connection and the backoff has passed; reports changes.
    async fn refresh_link(&mut self) {
        if self.transport == TransportChoice::Http {
            if self.link.reported.is_none() {
                self.link.reported = Some(0);
                self.report_link(Some("?transport=http: the edge's HTTP API only".into()), None);
            }
            return;
        }
        if let Some(why) = self.link.peer.as_ref().and_then(Peer::closed) {
            self.link.peer = None;
            self.link.next_dial_ms = js_sys::Date::now();
            self.report_link(Some(why), None);
        }
        let now = js_sys::Date::now();
        if self.link.peer.is_none() && now >= self.link.next_dial_ms {
            let dialled = match self.edge.network().await {
                Ok(network) => {
                    let addrs: Vec<String> = network.browser_addrs.into_iter().filter(|a| self.transport.admits(a)).collect();
                    peer::connect(&self.identity, &addrs, &self.manifest_id()).await
                }
                Err(e) => Err(e.to_string()),
            };
            match dialled {
                Ok(peer) => {
                    let connect_ms = peer.connect_ms;
                    self.link.peer = Some(peer);
                    self.link.backoff_ms = FIRST_BACKOFF_MS;
                    self.link.last_head_check_ms = 0.0;
                    self.report_link(None, Some(connect_ms));
                }
                Err(why) => {
                    self.link.next_dial_ms = now + self.link.backoff_ms;
                    self.link.backoff_ms = (self.link.backoff_ms * 2.0).min(MAX_BACKOFF_MS);
                    let retry = format!("{why} (dialling again in {:.0} s)", (self.link.next_dial_ms - now) / 1000.0);
                    self.report_link(Some(retry), None);
                }
            }
        }
        if let Some(peer) = &self.link.peer {
            let (version, _) = peer.peers();
            if self.link.reported != Some(version) {
                self.report_link(None, None);
            }
        }
    }

    fn report_link(&mut self, detail: Option<String>, connect_ms: Option<f64>) {
        let event = match &self.link.peer {
            Some(peer) => {
                let (version, peers) = peer.peers();
                self.link.reported = Some(version);
                // While connected, say why an earlier address (WebRTC-direct) was passed over.
                let detail = detail.or_else(|| peer.passed_over.as_ref().map(|why| format!("connected over {} after: {why}", peer.transport)));
                WorkerEvent::Link { path: peer.transport.into(), peers, detail, connect_ms }
            }
            None => WorkerEvent::Link { path: "http-fallback".into(), peers: vec![], detail, connect_ms: None },
        };
        self.outbox.send(event);
    }

    /// The next head above `last_round`: by gossip with a peer connection (asking the seed
    /// when nothing was heard for a while or right after connecting), by HTTP without.
    /// Also returns when the head arrived (ms since the epoch).
    async fn next_head(&mut self, last_round: Option<u64>) -> Result<Option<(Head, &'static str, f64)>, String> {
        let id = self.manifest_id();
        let now = js_sys::Date::now();
        let ask = now - self.link.last_head_check_ms >= HEAD_CHECK_MS;
        let Some(peer) = &self.link.peer else {
            let info = self.edge.head(&id).await.map_err(|e| e.to_string())?;
            return Ok(Some((info.head, "http", js_sys::Date::now())));
        };
        if let Some(heard) = peer.heard_head(last_round) {
            return Ok(Some((heard.head, "gossip", heard.at_ms)));
        }
        if !ask {
            return Ok(None);
        }
        let answer = peer.request(Request::Head { experiment: id }).await;
        self.link.last_head_check_ms = now;
        match answer? {
            Response::Head(info) => Ok(Some((info.head, "rpc", js_sys::Date::now()))),
            other => Err(format!("asked the seed for the head, got {other:?}")),
        }
    }

    /// One contribution; `Ok(false)` when there is nothing to do yet (same head as last time).
    async fn contribute_once(&mut self, last_round: &mut Option<u64>) -> Result<bool, String> {
        self.refresh_link().await;
        let Some((head, via, arrived_ms)) = self.next_head(*last_round).await? else {
            return self.retry_delivery(last_round).await;
        };
        head.verify_for(&self.experiment.manifest).map_err(|e| format!("the head is not certified: {e}"))?;
        if *last_round == Some(head.round) {
            return self.retry_delivery(last_round).await;
        }
        if last_round.is_none_or(|r| head.round > r) {
            let latency_ms = (arrived_ms - head.promoted_at as f64).max(0.0);
            self.outbox.send(WorkerEvent::HeadReceived { round: head.round, via: via.into(), latency_ms });
        }
        self.settle_pending(&head).await;
        let round = head.round + 1;
        if self.pending.as_ref().is_some_and(|p| p.round == round) {
            // Trained before a reload or a lost connection, and its round is still open.
            return self.deliver(last_round).await;
        }
        self.phase(round, "requesting a lease");
        let Some(grant) = self.lease(round).await? else {
            // The round is being merged: the next head is moments away.
            *last_round = Some(head.round);
            return Ok(false);
        };
        let lease = grant.lease.verify().map_err(|e| format!("the lease's signature is invalid: {e}"))?.clone();
        if !self.experiment.manifest.body.validators.contains(&grant.lease.signer) {
            return Err(format!("lease signed by {}, who is not a validator", grant.lease.signer));
        }
        self.phase(lease.round, "fetching the head's checkpoint");
        let base = self.checkpoint(&grant).await?;
        self.phase(lease.round, format!("fetching {} leased records", lease.slice.count));
        let records = self.slice(&grant).await?;
        let examples = Examples::decode(&records, &self.experiment.dataset.layout).map_err(|e| e.to_string())?;
        self.calibrate(lease.round, &base, &examples, grant.batch_size).await;
        let manifest = self.experiment.manifest.body.clone();
        let config = WindowConfig { batch_size: grant.batch_size, local_steps: grant.local_steps, learning_rate: grant.learning_rate };
        let started = js_sys::Date::now();
        let (outbox, steps) = (self.outbox.clone(), grant.local_steps);
        let result = workload::train_window(&self.backend.device, &manifest.model, &base, &examples, config, |step| {
            outbox.send(WorkerEvent::Phase { round: lease.round, text: format!("training step {step}/{steps}") });
        })
        .await
        .map_err(|e| format!("training failed: {e}"))?;
        let seconds = ((js_sys::Date::now() - started) / 1000.0).max(1e-6);
        self.outbox.send(WorkerEvent::WindowTrained {
            round: lease.round,
            loss: result.mean_loss,
            examples: result.examples_processed as u32,
            seconds,
            examples_per_sec: result.examples_processed as f64 / seconds,
        });
        let delta = merge::encode_f32le(&result.delta);
        let update = self.identity.sign(Update {
            experiment: manifest.id.clone(),
            lease: grant.lease_id,
            base_head: lease.base_head,
            delta: BlobId::of(&delta),
            encoding: DeltaEncoding::F32Le,
            holder: self.identity.peer_id().to_string(),
            runtime: Runtime::Browser,
            train_loss: result.mean_loss,
            steps: result.steps,
        });
        let pending = Pending { round: lease.round, lease: grant.lease_id, submission: UpdateSubmission { update, delta }, announced_via: None };
        self.keep_pending(Some(pending)).await;
        self.deliver(last_round).await
    }

    /// Stores (or clears) the pending update, in memory and in IndexedDB, and tells the page.
    async fn keep_pending(&mut self, pending: Option<Pending>) {
        if let Some(store) = &self.store {
            let key = pending_key(&self.identity);
            let stored = match &pending {
                Some(p) => store.put(&key, p).await,
                None => store.delete(&key).await,
            };
            if let Err(e) = stored {
                self.outbox.send(WorkerEvent::Error { message: format!("{e}; the pending update will not survive a reload") });
            }
        }
        self.outbox.send(WorkerEvent::Pending { update: pending.as_ref().map(Pending::summary) });
        self.pending = pending;
    }

    /// Delivers the pending update: announced by gossip over the peer connection (its head
    /// tells whether it was merged), or posted to the edge while there is none.
    async fn deliver(&mut self, last_round: &mut Option<u64>) -> Result<bool, String> {
        let Some(mut pending) = self.pending.clone() else { return Ok(true) };
        // The head this update builds on: whatever happens next, wait for a newer one.
        *last_round = Some(pending.round - 1);
        if pending.announced_via.is_some() {
            return Ok(false);
        }
        if let Some(peer) = &self.link.peer {
            self.phase(pending.round, "announcing the signed update by gossip");
            let announcement = Announcement::Update(Box::new(pending.submission.update.clone()));
            let topic = wire::updates_topic(&self.manifest_id());
            let transport = peer.transport;
            // With a peer connection the update goes by gossip only (HTTP is the fallback for
            // tabs without one): a failed announcement is retried on the next pass.
            peer.announce(topic, &announcement, pending.submission.delta.clone())
                .await
                .map_err(|e| format!("announcing the update failed ({e}); trying again"))?;
            pending.announced_via = Some(transport.into());
            self.keep_pending(Some(pending.clone())).await;
            self.phase(pending.round, "update announced; waiting for the round's head");
            return Ok(true);
        }
        self.phase(pending.round, "submitting the signed update over HTTP");
        match self.edge.submit(&pending.lease, &pending.submission).await {
            Ok(receipt) => {
                let update_id = receipt.update_id.to_hex();
                self.accepted(receipt.round, update_id, "http-fallback").await;
                self.keep_pending(None).await;
            }
            Err(EdgeFailure::Refused { reason, .. }) => {
                self.outbox.send(WorkerEvent::UpdateRejected { round: pending.round, reason });
                self.keep_pending(None).await;
            }
            // Kept: delivered again on the next pass while its round is open.
            Err(e) => return Err(e.to_string()),
        }
        if !self.stop.get() {
            self.phase(pending.round + 1, "waiting for the next head");
        }
        Ok(true)
    }

    /// No new head: delivers again an update whose delivery failed (its round is still open as
    /// far as this tab knows).
    async fn retry_delivery(&mut self, last_round: &mut Option<u64>) -> Result<bool, String> {
        match &self.pending {
            Some(p) if p.announced_via.is_none() && Some(p.round - 1) == *last_round => self.deliver(last_round).await,
            _ => Ok(false),
        }
    }

    /// Settles a pending update whose round `head` closed: merged (accepted) or not.
    async fn settle_pending(&mut self, head: &Head) {
        let Some(pending) = self.pending.clone() else { return };
        if pending.round > head.round {
            return;
        }
        let update_id = pending.submission.update.id();
        // Heads can come faster than this tab looks (the newest one heard wins): when its
        // round's head went by unseen, ask for that head rather than guess.
        let round_head = match (&self.link.peer, pending.round < head.round) {
            (Some(peer), true) => match peer.request(Request::HeadAt { experiment: self.manifest_id(), round: pending.round }).await {
                Ok(Response::Head(info)) if info.head.verify_for(&self.experiment.manifest).is_ok() => Some(info.head),
                _ => None,
            },
            _ => None,
        };
        let head = round_head.as_ref().unwrap_or(head);
        if pending.round == head.round && head.contributions.iter().any(|c| c.update == update_id) {
            let via = pending.announced_via.clone().unwrap_or_else(|| "http-fallback".into());
            self.accepted(pending.round, update_id.to_hex(), &via).await;
        } else {
            let reason = match &pending.announced_via {
                Some(_) => format!("round {} was promoted without this update", head.round),
                None => format!("round {} closed before this update was delivered", pending.round),
            };
            self.outbox.send(WorkerEvent::UpdateRejected { round: pending.round, reason });
        }
        self.keep_pending(None).await;
    }

    /// Reports an accepted update and adds it to the tab's history.
    async fn accepted(&mut self, round: u64, update_id: String, via: &str) {
        self.outbox.send(WorkerEvent::UpdateAccepted { round, update_id: update_id.clone(), via: via.into() });
        let Some(store) = &self.store else { return };
        let key = history_key(&self.identity);
        let mut history = store.get::<Vec<Accepted>>(&key).await.ok().flatten().unwrap_or_default();
        history.push(Accepted { round, update_id, via: via.into(), at_ms: js_sys::Date::now() });
        if history.len() > HISTORY_LEN {
            history.drain(..history.len() - HISTORY_LEN);
        }
        if let Err(e) = store.put(&key, &history).await {
            self.outbox.send(WorkerEvent::Error { message: format!("{e}; the contribution history was not saved") });
        }
    }

    /// A lease in the open round, or `None` when the seed grants none right now.
    async fn lease(&self, round: u64) -> Result<Option<LeaseGrant>, String> {
        let id = self.manifest_id();
        if let Some(peer) = &self.link.peer {
            let request = LeaseRequest { holder: self.identity.peer_id().to_string(), runtime: Runtime::Browser, proof: None };
            return match peer.request(Request::Lease { experiment: id, request }).await {
                Ok(Response::Lease(grant)) => Ok(Some(*grant)),
                Ok(other) => Err(format!("asked the seed for a lease, got {other:?}")),
                // Refused (the round is merging, or every slice is leased): wait for a head.
                Err(why) if peer.closed().is_none() => {
                    self.phase(round, format!("no lease now: {why}"));
                    Ok(None)
                }
                Err(why) => Err(why),
            };
        }
        // Over HTTP the edge cannot see who asks: the request carries the holder's signature.
        let request = LeaseRequest::signed(&self.identity, &id, Runtime::Browser, js_sys::Date::now() as u64);
        match self.edge.lease(&id, &request).await {
            Ok(grant) => Ok(Some(grant)),
            Err(EdgeFailure::Refused { status: 409, .. }) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Measures WebGPU against the CPU once (`auto` with an adapter) and keeps the faster.
    async fn calibrate(&mut self, round: u64, base: &[f32], examples: &Examples, batch_size: u32) {
        let Some(webgpu) = self.candidate.take() else { return };
        self.phase(round, "measuring WebGPU against the CPU");
        let spec = self.experiment.manifest.body.model.clone();
        let cpu_rate = backend::calibrate(&self.backend, &spec, base, examples, batch_size).await;
        let gpu_rate = backend::calibrate(&webgpu, &spec, base, examples, batch_size).await;
        match (cpu_rate, gpu_rate) {
            (Ok(cpu), Ok(gpu)) => {
                if gpu > cpu {
                    self.backend = webgpu;
                }
                self.outbox.send(WorkerEvent::Calibrated {
                    cpu_examples_per_sec: cpu,
                    webgpu_examples_per_sec: gpu,
                    chosen: self.backend.name.into(),
                });
            }
            (cpu, gpu) => {
                let why = [cpu.err(), gpu.err()].into_iter().flatten().collect::<Vec<_>>().join("; ");
                self.outbox.send(WorkerEvent::Error { message: format!("calibration failed ({why}); training on the CPU") });
            }
        }
        self.outbox.send(WorkerEvent::Backend { backend: self.backend.name.to_string(), adapter: self.backend.adapter.clone() });
    }

    fn fetched(&self, what: &str, bytes: usize, started_ms: f64, via: &str) {
        let ms = js_sys::Date::now() - started_ms;
        self.outbox.send(WorkerEvent::Fetched { what: what.into(), bytes: bytes as u64, ms, via: via.into() });
    }

    async fn checkpoint(&mut self, grant: &LeaseGrant) -> Result<Vec<f32>, String> {
        if let Some(params) = self.checkpoints.get(&grant.checkpoint) {
            return Ok(params.clone());
        }
        let started = js_sys::Date::now();
        let (bytes, via) = match &self.link.peer {
            Some(peer) => (peer.blob(Request::Blob(grant.checkpoint), Some(grant.checkpoint)).await?, peer.transport),
            None => (self.edge.blob(&grant.checkpoint).await.map_err(|e| e.to_string())?, "http"),
        };
        self.fetched("checkpoint", bytes.len(), started, via);
        if BlobId::of(&bytes) != grant.checkpoint {
            return Err(format!("checkpoint {} failed its hash check", grant.checkpoint.short()));
        }
        let params = merge::decode_f32le(&bytes, self.experiment.manifest.body.model.parameter_count()).map_err(|e| e.to_string())?;
        if self.checkpoints.len() >= 2 {
            self.checkpoints.clear();
        }
        self.checkpoints.insert(grant.checkpoint, params.clone());
        Ok(params)
    }

    /// The leased records, each chunk checked against the dataset manifest's hashes.
    async fn slice(&self, grant: &LeaseGrant) -> Result<Vec<u8>, String> {
        let slice = grant.lease.body.slice;
        let started = js_sys::Date::now();
        let (bytes, via) = match &self.link.peer {
            Some(peer) => (peer.blob(Request::LeaseData(grant.lease_id), None).await?, peer.transport),
            None => (self.edge.lease_data(&grant.lease_id).await.map_err(|e| e.to_string())?, "http"),
        };
        self.fetched("slice", bytes.len(), started, via);
        let dataset = &self.experiment.dataset;
        let shard = dataset.train_shard(slice.shard).map_err(|e| e.to_string())?;
        shard
            .verify_slice(slice.shard, slice.first_record, slice.count, dataset.layout.record_bytes, &bytes)
            .map_err(|e| format!("leased data rejected: {e}"))?;
        Ok(bytes)
    }
}
