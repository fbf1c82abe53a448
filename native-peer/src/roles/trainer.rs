//! A native trainer: joins through the seed, and for every new head leases a slice, trains a
//! window with burn on the CPU, and announces its signed update by gossip (the validator
//! fetches the delta blob from it).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use burn::prelude::Device;
use libp2p::{Multiaddr, PeerId};
use protocol::api::{ExperimentInfo, HeadInfo, LeaseGrant, LeaseRequest};
use protocol::update::{DeltaEncoding, Runtime, Update};
use protocol::{merge, BlobId, HeadId, Identity};
use tokio::sync::{mpsc, watch};
use workload::data::Examples;
use workload::WindowConfig;

use crate::net::{self, Announcement, Client, NetEvent, Request, Response};
use crate::store::BlobStore;

/// A running trainer.
pub struct Trainer {
    identity: Identity,
    net: Client,
    seed: PeerId,
    blobs: BlobStore,
    experiment: ExperimentInfo,
    heads: watch::Receiver<Option<HeadId>>,
    device: Device,
    name: String,
}

impl Trainer {
    /// Starts a trainer with its data in `dir`, joining the network through `bootstrap`.
    pub async fn start(dir: &Path, name: &str, bootstrap: Multiaddr, experiment: &str) -> Result<Arc<Self>> {
        let identity = crate::store::load_or_create_identity(dir)?;
        let blobs = BlobStore::open(&dir.join("blobs"))?;
        let seed = net::split_peer_addr(&bootstrap)?;
        let (net, events) = net::spawn(&identity, "trainer")?;
        net.listen("/ip4/127.0.0.1/tcp/0".parse()?).await?;
        net.dial(bootstrap.clone()).await.with_context(|| format!("{name}: dialing the seed at {bootstrap}"))?;
        net.subscribe(net::heads_topic(experiment)).await?;
        let info = match net.request(seed, Request::Experiment { experiment: experiment.into() }).await? {
            Response::Experiment(info) => *info,
            other => bail!("the seed answered {other:?} when asked for experiment {experiment}"),
        };
        info.manifest.verify().context("the experiment manifest's signature is invalid")?;
        if info.dataset.id() != info.manifest.body.dataset {
            bail!("the seed's dataset manifest does not match the experiment's dataset id");
        }
        let (head_tx, heads) = watch::channel(None);
        let trainer = Arc::new(Self {
            identity,
            net,
            seed,
            blobs,
            experiment: info,
            heads,
            device: Device::flex(),
            name: name.to_string(),
        });
        tokio::spawn(trainer.clone().handle_network(events, head_tx));
        tracing::info!("{name} ({}) joined {experiment}", trainer.identity.peer_id());
        Ok(trainer)
    }

    /// Serves our blobs (deltas) and follows gossiped heads.
    async fn handle_network(self: Arc<Self>, mut events: mpsc::Receiver<NetEvent>, heads: watch::Sender<Option<HeadId>>) {
        let validators = &self.experiment.manifest.body.validators;
        let quorum = self.experiment.manifest.body.quorum;
        while let Some(event) = events.recv().await {
            match event {
                NetEvent::Request { request: Request::Blob(id), channel, .. } => {
                    let response = match self.blobs.get(&id) {
                        Ok(Some(bytes)) => Response::Blob(bytes),
                        _ => Response::Error(format!("no blob {id}")),
                    };
                    let _ = self.net.respond(channel, response).await;
                }
                NetEvent::Request { channel, .. } => {
                    let _ = self.net.respond(channel, Response::Error("trainers only serve blobs".into())).await;
                }
                NetEvent::Announcement { announcement: Announcement::Head(head), .. } => {
                    // A head counts only with a valid certificate from the experiment's validators.
                    match head.verify_certificate(validators, quorum) {
                        Ok(()) => {
                            heads.send_replace(Some(head.id()));
                        }
                        Err(e) => tracing::warn!("{}: ignoring a gossiped head: {e}", self.name),
                    }
                }
                _ => {}
            }
        }
    }

    /// Trains one window per head, forever (until the task is dropped).
    pub async fn run(self: Arc<Self>) {
        let mut last_round = None;
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.contribute_once(&mut last_round).await {
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
                let manifest = &self.experiment.manifest.body;
                head.head.verify_certificate(&manifest.validators, manifest.quorum).context("the seed's head is not certified")?;
                Ok(*head)
            }
            other => bail!("unexpected answer to a head request: {other:?}"),
        }
    }

    async fn contribute_once(&self, last_round: &mut Option<u64>) -> Result<()> {
        let head = self.current_head().await?;
        if *last_round == Some(head.head.round) {
            // Already trained on this head: wait for the next one (gossip, or poll as a fallback).
            let mut heads = self.heads.clone();
            let _ = tokio::time::timeout(Duration::from_secs(1), heads.changed()).await;
            return Ok(());
        }
        let manifest = &self.experiment.manifest.body;
        let request = LeaseRequest { holder: self.identity.peer_id().to_string(), runtime: Runtime::NativeBurn };
        let grant = match self.net.request(self.seed, Request::Lease { experiment: manifest.id.clone(), request }).await? {
            Response::Lease(grant) => *grant,
            other => bail!("unexpected answer to a lease request: {other:?}"),
        };
        let lease = grant.lease.verify().context("the lease's signature is invalid")?.clone();
        if !manifest.validators.contains(&grant.lease.signer) {
            bail!("lease signed by {}, who is not a validator of this experiment", grant.lease.signer);
        }
        let base = self.checkpoint(&grant).await?;
        let records = self.slice(&grant).await?;
        let examples = Examples::decode(&records, &self.experiment.dataset.layout)?;
        let config = WindowConfig { batch_size: grant.batch_size, local_steps: grant.local_steps, learning_rate: grant.learning_rate };
        let (device, spec) = (self.device.clone(), manifest.model.clone());
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            futures::executor::block_on(workload::train_window(&device, &spec, &base, &examples, config, |_| {}))
        })
        .await??;
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
            runtime: Runtime::NativeBurn,
            train_loss: result.mean_loss,
            steps: result.steps,
        });
        tracing::info!(
            "{}: round {} window: loss {:.4}, {:.0} examples/s",
            self.name,
            lease.round,
            result.mean_loss,
            result.examples_processed as f64 / seconds
        );
        self.announce(&update).await?;
        // The lease's base head, not the head fetched before asking: a head promoted in between
        // would otherwise make us train the same (returned) lease twice.
        *last_round = Some(lease.round - 1);
        Ok(())
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
        let bytes = self.fetch_blob(&shard.blob).await?;
        let range = shard.byte_range(slice.first_record, slice.count, dataset.layout.record_bytes);
        let records = bytes.get(range).context("shard shorter than its manifest")?.to_vec();
        shard.verify_slice(slice.shard, slice.first_record, slice.count, dataset.layout.record_bytes, &records)?;
        Ok(records)
    }
}

