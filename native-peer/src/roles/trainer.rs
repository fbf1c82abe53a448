//! A native trainer: joins through the seed, and for every new head leases a slice, trains a
//! window with its workload (burn on the CPU, or a Python worker), and announces its signed
//! update by gossip (the validator fetches the delta blob from it).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use libp2p::{Multiaddr, PeerId};
use protocol::api::{ExperimentInfo, HeadInfo, LeaseGrant, LeaseRequest};
use protocol::update::{DeltaEncoding, Runtime, Update};
use protocol::{merge, BlobId, HeadId, Identity};
use tokio::sync::{mpsc, watch};
use workload::WindowConfig;

use super::gossiped;
use crate::net::{self, Announcement, Client, NetEvent, Request, Response};
use crate::metrics;
use crate::store::BlobStore;
use crate::workloads::{locate, Window, Workload, WorkloadKind};

/// The update a trainer announced last, kept until a newer head makes it moot.
struct Announced {
    /// The round of the head it was trained on.
    base_round: u64,
    update: protocol::Signed<Update>,
    /// [`Trainer::seed_links`] when it was announced.
    seed_links: u64,
}

/// A running trainer.
pub struct Trainer {
    identity: Identity,
    net: Client,
    seed: PeerId,
    blobs: BlobStore,
    /// Where shards being synced are assembled (resumable).
    partial_dir: std::path::PathBuf,
    experiment: ExperimentInfo,
    heads: watch::Receiver<Option<HeadId>>,
    /// How many connections to the seed have opened so far: a new one means the seed may have
    /// restarted (and lost an announcement it had not fetched yet).
    seed_links: watch::Receiver<u64>,
    /// Shared with the blocking task that trains (one window at a time).
    workload: Arc<Mutex<Box<dyn Workload>>>,
    runtime: Runtime,
    /// The experiment's validators, which issue leases between them; asked in turn.
    issuers: Vec<PeerId>,
    next_issuer: std::sync::atomic::AtomicUsize,
    name: String,
}

impl Trainer {
    /// Starts a trainer with its data in `dir`, joining the network through `bootstrap`.
    pub async fn start(
        dir: &Path,
        name: &str,
        bootstrap: Multiaddr,
        experiment: &str,
        kind: &WorkloadKind,
    ) -> Result<Arc<Self>> {
        let identity = crate::store::load_or_create_identity(dir)?;
        let blobs = BlobStore::open(&dir.join("blobs"))?;
        let super::join::Joined { net, events, seed, experiment: info } =
            super::join::join(&identity, "trainer", name, &bootstrap, experiment).await?;
        let workload = {
            let (kind, spec, dir, name) = (kind.clone(), info.manifest.body.model.clone(), dir.to_path_buf(), name.to_string());
            tokio::task::spawn_blocking(move || kind.start(&spec, &dir, &name)).await??
        };
        let runtime = workload.runtime();
        tracing::info!("{name}: training with {}", workload.describe());
        let (head_tx, heads) = watch::channel(None);
        let (links_tx, seed_links) = watch::channel(1);
        let issuers: Vec<PeerId> = info.manifest.body.validators.iter().filter_map(|v| v.parse().ok()).collect();
        // Trainers start at different validators, so the leases of a round spread over them.
        let start = identity.peer_id().to_bytes().iter().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(*b as usize));
        let trainer = Arc::new(Self {
            identity,
            net,
            seed,
            blobs,
            partial_dir: dir.join("partial"),
            experiment: info,
            heads,
            seed_links,
            workload: Arc::new(Mutex::new(workload)),
            runtime,
            issuers,
            next_issuer: std::sync::atomic::AtomicUsize::new(start),
            name: name.to_string(),
        });
        tokio::spawn(trainer.clone().handle_network(events, head_tx, links_tx));
        trainer.check_workload().await?;
        tracing::info!("{name} ({}) joined {experiment}", trainer.identity.peer_id());
        Ok(trainer)
    }

    /// Serves our blobs (deltas), follows gossiped heads and counts connections to the seed.
    async fn handle_network(
        self: Arc<Self>,
        mut events: mpsc::Receiver<NetEvent>,
        heads: watch::Sender<Option<HeadId>>,
        seed_links: watch::Sender<u64>,
    ) {
        let mut seed_lost = false;
        while let Some(event) = events.recv().await {
            match event {
                NetEvent::Request { request: Request::Blob(id), channel, .. } => {
                    let _ = self.net.respond(channel, net::serve_blob(&self.blobs, &id)).await;
                }
                NetEvent::Request { request: Request::BlobRange { blob, offset, len }, channel, .. } => {
                    let _ = self.net.respond(channel, net::serve_blob_range(&self.blobs, &blob, offset, len)).await;
                }
                NetEvent::Request { channel, .. } => {
                    let _ = self.net.respond(channel, Response::Error("trainers only serve blobs".into())).await;
                }
                NetEvent::Announcement { source, announcement: Announcement::Head(head) } => {
                    // A head counts only with a valid certificate from the experiment's validators.
                    if gossiped::certified(&self.name, &self.experiment.manifest, source, &head) {
                        heads.send_replace(Some(head.id()));
                    }
                }
                NetEvent::PeerChanged { peer, connected, .. } if peer == self.seed => {
                    // Identify repeats `connected: true`; only one after a loss is a new link.
                    if !connected {
                        seed_lost = true;
                    } else if std::mem::take(&mut seed_lost) {
                        seed_links.send_modify(|n| *n += 1);
                    }
                }
                _ => {}
            }
        }
    }

    /// Trains one window per head, forever (until the task is dropped).
    pub async fn run(self: Arc<Self>) {
        let mut last = None;
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.contribute_once(&mut last).await {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => {
                    tracing::warn!("{}: {e:#}", self.name);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn current_head(&self) -> Result<HeadInfo> {
        match self.net.request(self.seed, Request::Head { experiment: self.experiment.manifest.body.id.clone() }).await? {
            Response::Head(head) => {
                head.head.verify_for(&self.experiment.manifest).context("the seed's head is not certified")?;
                Ok(*head)
            }
            other => bail!("unexpected answer to a head request: {other:?}"),
        }
    }

    async fn contribute_once(&self, last: &mut Option<Announced>) -> Result<()> {
        let head = self.current_head().await?;
        if let Some(announced) = last.as_mut().filter(|a| a.base_round == head.head.round) {
            // Already trained on this head: wait for the next one (gossip, or poll as a
            // fallback). If the seed connection is new since the announcement, the seed may
            // have restarted before fetching the update: announce it again (an update the
            // seed already has is ignored there).
            let links = *self.seed_links.borrow();
            if links != announced.seed_links {
                tracing::info!(
                    "{}: reconnected to the seed since announcing update {} of round {}; announcing it again",
                    self.name,
                    announced.update.id().short(),
                    head.head.round + 1
                );
                self.announce(&announced.update).await?;
                announced.seed_links = links;
            }
            let mut heads = self.heads.clone();
            let _ = tokio::time::timeout(Duration::from_secs(1), heads.changed()).await;
            return Ok(());
        }
        let manifest = &self.experiment.manifest.body;
        let request = LeaseRequest { holder: self.identity.peer_id().to_string(), runtime: self.runtime, proof: None };
        // Each validator issues leases over its own share of the slices: ask them in turn (a
        // refusal or an absent validator only costs a retry with the next one).
        let issuer = match self.issuers.len() {
            0 => self.seed,
            n => self.issuers[self.next_issuer.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n],
        };
        if let Err(e) = self.net.locate(self.seed, issuer).await {
            tracing::debug!("{}: could not look up validator {issuer}: {e:#}", self.name);
        }
        let grant = match self.net.request(issuer, Request::Lease { experiment: manifest.id.clone(), request }).await? {
            Response::Lease(grant) => *grant,
            other => bail!("unexpected answer to a lease request from {issuer}: {other:?}"),
        };
        if grant.lease.signer != issuer.to_string() {
            bail!("validator {issuer} handed out a lease signed by {}", grant.lease.signer);
        }
        let lease = grant.lease.verify().context("the lease's signature is invalid")?.clone();
        if !manifest.validators.contains(&grant.lease.signer) {
            bail!("lease signed by {}, who is not a validator of this experiment", grant.lease.signer);
        }
        let base = self.checkpoint(&grant).await?;
        let records = self.slice(&grant).await?;
        let config = WindowConfig { batch_size: grant.batch_size, local_steps: grant.local_steps, learning_rate: grant.learning_rate };
        let started = Instant::now();
        let deadline = Instant::now() + Duration::from_millis(lease.expires_at.saturating_sub(crate::now_ms()));
        let result = self.train_window(base, records, config, deadline).await?;
        let seconds = started.elapsed().as_secs_f64();
        let bytes = merge::encode_f32le(&result.delta);
        let delta = self.blobs.put(&bytes)?;
        let update = self.identity.sign(Update {
            experiment: manifest.id.clone(),
            lease: grant.lease_id,
            base_head: lease.base_head,
            delta,
            encoding: DeltaEncoding::F32Le,
            holder: self.identity.peer_id().to_string(),
            runtime: self.runtime,
            train_loss: result.mean_loss,
            steps: result.steps,
        });
        tracing::info!(
            "{}: round {} window: loss {:.4}, {:.0} examples/s ({:.0} ms computing, {:.0} ms in all)",
            self.name,
            lease.round,
            result.mean_loss,
            result.examples as f64 / seconds,
            result.compute_seconds * 1e3,
            seconds * 1e3
        );
        metrics::inc("bonfire_windows_trained_total", "Training windows completed", &[("runtime", self.runtime.label())]);
        metrics::add("bonfire_examples_trained_total", "Examples processed in training windows", &[], result.examples as f64);
        metrics::set("bonfire_window_seconds", "Wall time of the last training window", &[], seconds);
        metrics::set("bonfire_window_compute_seconds", "Compute time of the last training window", &[], result.compute_seconds);
        let seed_links = *self.seed_links.borrow();
        self.announce(&update).await?;
        // The lease's base head, not the head fetched before asking: a head promoted in between
        // would otherwise make us train the same (returned) lease twice.
        let base_round = lease.round.checked_sub(1).context("a lease for round 0 (the genesis) is invalid")?;
        *last = Some(Announced { base_round, update, seed_links });
        Ok(())
    }

    /// Loads the genesis checkpoint into the workload and exports it again: the values must come
    /// back bit for bit. Catches a workload that reorders or transposes tensors before it
    /// spends a single lease.
    async fn check_workload(&self) -> Result<()> {
        let manifest = &self.experiment.manifest.body;
        let genesis = merge::decode_f32le(&self.fetch_blob(&manifest.genesis).await?, manifest.model.parameter_count())?;
        let (workload, spec) = (self.workload.clone(), manifest.model.clone());
        tokio::task::spawn_blocking(move || {
            let mut workload = workload.lock().map_err(|_| anyhow!("the workload panicked"))?;
            workload.load(&genesis)?;
            let back = workload.export()?;
            match genesis.iter().zip(&back).position(|(a, b)| a.to_bits() != b.to_bits()) {
                None if back.len() == genesis.len() => Ok(()),
                None => bail!("the workload exported {} parameters after loading {}", back.len(), genesis.len()),
                Some(i) => {
                    let (tensor, index) = locate(&spec, i);
                    bail!(
                        "the workload changed parameters between load and export: {tensor}[{index}] went in as {} and came back as {} (does it transpose or reorder tensors?)",
                        genesis[i],
                        back[i]
                    )
                }
            }
        })
        .await?
        .context("checking the workload (load the genesis, export it again)")
    }

    /// Trains one window off the async runtime. A workload whose process failed (a crashed or
    /// silent Python worker) is restarted and the window retried once on the same lease; after
    /// that the lease is left to expire and its slice is leased again.
    async fn train_window(&self, base: Vec<f32>, records: Vec<u8>, config: WindowConfig, deadline: Instant) -> Result<Window> {
        let layout = self.experiment.dataset.layout.clone();
        let workload = self.workload.clone();
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || {
            let mut workload = workload.lock().map_err(|_| anyhow!("the workload panicked in an earlier window"))?;
            let workload: &mut dyn Workload = workload.as_mut();
            // A window delivered after its lease expired would be refused: never wait longer.
            workload.set_deadline(Some(deadline));
            let attempt = |w: &mut dyn Workload| -> Result<Window> {
                w.load(&base)?;
                w.train(&records, &layout, config)
            };
            match attempt(workload) {
                Err(e) if workload.retryable(&e) && deadline > Instant::now() + Duration::from_secs(1) => {
                    tracing::warn!("{name}: {e:#}; retrying the window once");
                    attempt(workload).context("the retried window failed too")
                }
                other => other,
            }
        })
        .await?
    }

    /// Announces by gossip, retrying while the mesh forms.
    async fn announce(&self, update: &protocol::Signed<Update>) -> Result<()> {
        let topic = net::updates_topic(&update.body.experiment);
        let announcement = Announcement::Update(Box::new(update.clone()));
        let mut last = None;
        for _ in 0..20 {
            match self.net.publish(topic.clone(), &announcement).await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(last.expect("at least one attempt")).context("announcing the update")
    }

    async fn fetch_blob(&self, id: &BlobId) -> Result<Vec<u8>> {
        if let Some(bytes) = self.blobs.get(id)? {
            return Ok(bytes);
        }
        let bytes = match self.net.request(self.seed, Request::Blob(*id)).await? {
            Response::Blob(bytes) => bytes,
            other => bail!("unexpected answer to a blob request: {other:?}"),
        };
        self.blobs.put_verified(id, &bytes)?;
        Ok(bytes)
    }

    async fn checkpoint(&self, grant: &LeaseGrant) -> Result<Vec<f32>> {
        let bytes = self.fetch_blob(&grant.checkpoint).await?;
        Ok(merge::decode_f32le(&bytes, self.experiment.manifest.body.model.parameter_count())?)
    }

    /// The leased slice, cut from the whole shard (synced once, hash-checked) and verified
    /// chunk by chunk against the dataset manifest.
    async fn slice(&self, grant: &LeaseGrant) -> Result<Vec<u8>> {
        let slice = grant.lease.body.slice;
        let dataset = &self.experiment.dataset;
        let shard = dataset.train_shard(slice.shard)?;
        let bytes = match self.blobs.get(&shard.blob)? {
            Some(bytes) => bytes,
            None => {
                // A shard is synced once (megabytes), chunk by chunk from every peer that has
                // it: the trainers, validators and reducers in the seed's directory, and the seed.
                let (have, of) = (dataset.train.iter().filter(|s| self.blobs.has(&s.blob)).count(), dataset.train.len());
                let me = self.identity.peer_id();
                let mut sources: Vec<PeerId> = match self.net.directory(self.seed).await {
                    Ok(peers) => peers.into_iter().filter(|(p, role)| *p != me && role != "browser").map(|(p, _)| p).collect(),
                    Err(e) => {
                        tracing::warn!("{}: no peer directory ({e:#}); syncing from the seed alone", self.name);
                        Vec::new()
                    }
                };
                sources.push(self.seed);
                tracing::info!(
                    "{}: syncing shard {} ({have} of {of} shards here) from up to {} peers",
                    self.name,
                    slice.shard,
                    sources.len()
                );
                let record_bytes = dataset.layout.record_bytes;
                let label = format!("shard {}", slice.shard);
                crate::dataset::sync::sync_shard(&self.net, &sources, &self.blobs, &self.partial_dir, shard, &label, record_bytes, &self.name)
                    .await?
            }
        };
        let range = shard.byte_range(slice.first_record, slice.count, dataset.layout.record_bytes);
        let records = bytes.get(range).context("shard shorter than its manifest")?.to_vec();
        shard.verify_slice(slice.shard, slice.first_record, slice.count, dataset.layout.record_bytes, &records)?;
        Ok(records)
    }
}
