//! The contribution loop: for each new head, lease a slice, fetch and verify the checkpoint and
//! the slice, train a window, sign the update and submit it.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use gloo_timers::future::TimeoutFuture;
use protocol::api::{ExperimentInfo, LeaseGrant, LeaseRequest, UpdateSubmission};
use protocol::update::{DeltaEncoding, Runtime, Update};
use protocol::worker::{BackendChoice, WorkerEvent};
use protocol::{merge, BlobId, Identity};
use workload::data::Examples;
use workload::WindowConfig;

use crate::backend::{self, Backend};
use crate::edge::{Edge, EdgeFailure};
use crate::worker::Outbox;

/// What the page asked for.
pub struct Options {
    pub edge_url: String,
    pub experiment: Option<String>,
    pub backend: BackendChoice,
    pub secret_key: Vec<u8>,
}

struct Session {
    edge: Edge,
    identity: Identity,
    experiment: ExperimentInfo,
    backend: Backend,
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
                if pause(&stop, 400).await {
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

async fn start(options: &Options, outbox: Outbox, stop: Rc<Cell<bool>>) -> Result<Session, String> {
    let secret: [u8; 32] = options
        .secret_key
        .as_slice()
        .try_into()
        .map_err(|_| format!("the tab's secret key must be 32 bytes, got {}", options.secret_key.len()))?;
    let identity = Identity::from_secret(secret).map_err(|e| format!("the tab's secret key is unusable: {e}"))?;
    outbox.send(WorkerEvent::Identity { peer_id: identity.peer_id().to_string() });
    let backend = backend::select(options.backend).await?;
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
    Ok(Session { edge, identity, experiment, backend, outbox, stop, checkpoints: HashMap::new() })
}

impl Session {
    fn phase(&self, round: u64, text: impl Into<String>) {
        self.outbox.send(WorkerEvent::Phase { round, text: text.into() });
    }

    /// One contribution; `Ok(false)` when there is nothing to do yet (same head as last time).
    async fn contribute_once(&mut self, last_round: &mut Option<u64>) -> Result<bool, String> {
        let manifest = self.experiment.manifest.body.clone();
        let head = self.edge.head(&manifest.id).await.map_err(|e| e.to_string())?;
        head.head
            .verify_for(&self.experiment.manifest)
            .map_err(|e| format!("the edge's head is not certified: {e}"))?;
        if *last_round == Some(head.head.round) {
            return Ok(false);
        }
        let round = head.head.round + 1;
        self.phase(round, "requesting a lease");
        let request = LeaseRequest { holder: self.identity.peer_id().to_string(), runtime: Runtime::Browser };
        let grant = match self.edge.lease(&manifest.id, &request).await {
            Ok(grant) => grant,
            // The round is being merged: the next head is moments away.
            Err(EdgeFailure::Refused { status: 409, .. }) => return Ok(false),
            Err(e) => return Err(e.to_string()),
        };
        let lease = grant.lease.verify().map_err(|e| format!("the lease's signature is invalid: {e}"))?.clone();
        if !manifest.validators.contains(&grant.lease.signer) {
            return Err(format!("lease signed by {}, who is not a validator", grant.lease.signer));
        }
        self.phase(lease.round, "fetching the head's checkpoint");
        let base = self.checkpoint(&grant).await?;
        self.phase(lease.round, format!("fetching {} leased records", lease.slice.count));
        let records = self.slice(&grant).await?;
        let examples = Examples::decode(&records, &self.experiment.dataset.layout).map_err(|e| e.to_string())?;
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
        self.phase(lease.round, "submitting the signed update");
        let submission = UpdateSubmission { update, delta };
        // The lease's base head: if a head was promoted while we asked, we still move on.
        *last_round = Some(lease.round - 1);
        match self.edge.submit(&grant.lease_id, &submission).await {
            Ok(receipt) => {
                self.outbox.send(WorkerEvent::UpdateAccepted { round: receipt.round, update_id: receipt.update_id.to_hex() });
            }
            Err(EdgeFailure::Refused { reason, .. }) => {
                self.outbox.send(WorkerEvent::UpdateRejected { round: lease.round, reason });
            }
            Err(e) => return Err(e.to_string()),
        }
        if self.stop.get() {
            return Ok(true);
        }
        self.phase(lease.round + 1, "waiting for the next head");
        Ok(true)
    }

    async fn checkpoint(&mut self, grant: &LeaseGrant) -> Result<Vec<f32>, String> {
        if let Some(params) = self.checkpoints.get(&grant.checkpoint) {
            return Ok(params.clone());
        }
        let bytes = self.edge.blob(&grant.checkpoint).await.map_err(|e| e.to_string())?;
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
        let bytes = self.edge.lease_data(&grant.lease_id).await.map_err(|e| e.to_string())?;
        let dataset = &self.experiment.dataset;
        let shard = dataset.train_shard(slice.shard).map_err(|e| e.to_string())?;
        shard
            .verify_slice(slice.shard, slice.first_record, slice.count, dataset.layout.record_bytes, &bytes)
            .map_err(|e| format!("leased data rejected: {e}"))?;
        Ok(bytes)
    }
}
