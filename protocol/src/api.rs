//! The JSON shapes of the edge's HTTP API (`/api/...`), shared by the edge, the worker and the
//! web app. Routes:
//!
//! | route | body / answer |
//! |---|---|
//! | `GET /api/network` | [`NetworkInfo`] |
//! | `GET /api/experiments/{id}` | [`ExperimentInfo`] |
//! | `GET /api/experiments/{id}/head` | [`HeadInfo`] |
//! | `POST /api/experiments/{id}/leases` | [`LeaseRequest`] → [`LeaseGrant`] |
//! | `GET /api/leases/{lease}/data` | the leased slice's record bytes |
//! | `POST /api/leases/{lease}/update` | [`UpdateSubmission`] → [`UpdateReceipt`] |
//! | `GET /api/blobs/{id}` | blob bytes (immutable, `Range` supported) |
//! | `GET /api/experiments/{id}/dashboard` | [`DashboardSnapshot`] |
//! | `GET /api/events` | server-sent [`NetworkEvent`]s |
//!
//! Every error is a 4xx/5xx with an [`ApiError`] body.

use serde::{Deserialize, Serialize};

use crate::dataset::DatasetManifest;
use crate::experiment::ExperimentManifest;
use crate::head::{Head, Metrics};
use crate::ids::{BlobId, HeadId, LeaseId, UpdateId};
use crate::lease::{Lease, LeaseAsk};
use crate::signing::{b64, Signed};
use crate::update::{Runtime, Update};
use crate::UnixMillis;

/// The body of every error answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// What a newcomer needs to join.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// The edge node's libp2p peer id.
    pub peer_id: String,
    /// The node's libp2p listen addresses for native peers (TCP, QUIC).
    pub listen_addrs: Vec<String>,
    /// Addresses a browser worker dials (WebSocket, ending in `/p2p/<peer id>`); empty when the
    /// node takes browsers over HTTP only.
    #[serde(default)]
    pub browser_addrs: Vec<String>,
    pub experiments: Vec<String>,
    pub version: String,
}

/// An experiment with the dataset it trains on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentInfo {
    pub manifest: Signed<ExperimentManifest>,
    pub dataset: DatasetManifest,
}

/// The current head and where its weights are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadInfo {
    pub id: HeadId,
    pub head: Head,
}

/// Ask for a lease for the named holder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// The peer id that will sign the update.
    pub holder: String,
    pub runtime: Runtime,
    /// The holder's signature over the ask: required by the edge's HTTP route, which cannot
    /// otherwise tell who is asking; not needed over libp2p (the connection is authenticated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Signed<LeaseAsk>>,
}

impl LeaseRequest {
    /// A request signed by `identity`, as the HTTP route wants it.
    pub fn signed(identity: &crate::Identity, experiment: &str, runtime: Runtime, now: crate::UnixMillis) -> Self {
        let proof = identity.sign(LeaseAsk { experiment: experiment.into(), runtime, asked_at: now });
        Self { holder: identity.peer_id().to_string(), runtime, proof: Some(proof) }
    }
}

/// A granted lease and how to get its inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseGrant {
    pub lease_id: LeaseId,
    pub lease: Signed<Lease>,
    /// The base head's checkpoint blob.
    pub checkpoint: BlobId,
    /// Hashes of the chunks the slice covers, in order, and records per chunk.
    pub chunk_hashes: Vec<BlobId>,
    pub chunk_records: u32,
    pub record_bytes: u32,
    /// Training hyper-parameters from the experiment.
    pub batch_size: u32,
    pub local_steps: u32,
    pub learning_rate: f64,
}

/// A trained update and its delta bytes, for peers that speak only HTTP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateSubmission {
    pub update: Signed<Update>,
    #[serde(with = "b64")]
    pub delta: Vec<u8>,
}

/// The verdict on a submitted update: it entered the open round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateReceipt {
    pub update_id: UpdateId,
    pub round: u64,
    /// Updates now waiting in the round.
    pub pending_in_round: u32,
}

/// A head as the dashboard shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadSummary {
    pub id: HeadId,
    pub round: u64,
    pub parent: Option<HeadId>,
    pub checkpoint: BlobId,
    pub metrics: Metrics,
    pub contributors: Vec<ContributorSummary>,
    pub attestations: u32,
    pub promoted_at: UnixMillis,
}

/// One contributor to a head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContributorSummary {
    pub peer_id: String,
    pub runtime: Runtime,
    pub examples: u32,
}

impl HeadSummary {
    /// Summarises a head.
    pub fn of(head: &Head) -> Self {
        Self {
            id: head.id(),
            round: head.round,
            parent: head.parent,
            checkpoint: head.checkpoint,
            metrics: head.metrics,
            contributors: head
                .contributions
                .iter()
                .map(|c| ContributorSummary { peer_id: c.holder.clone(), runtime: c.runtime, examples: c.examples })
                .collect(),
            attestations: head.certificate.len() as u32,
            promoted_at: head.promoted_at,
        }
    }
}

/// A live lease as the dashboard shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseSummary {
    pub id: LeaseId,
    pub holder: String,
    pub runtime: Runtime,
    pub round: u64,
    pub shard: u32,
    pub first_record: u32,
    pub count: u32,
    pub expires_at: UnixMillis,
    /// The validator that issued it.
    #[serde(default)]
    pub issuer: String,
}

impl LeaseSummary {
    /// Summarises a lease.
    pub fn of(lease: &Lease) -> Self {
        Self {
            id: lease.id(),
            holder: lease.holder.clone(),
            runtime: lease.runtime,
            round: lease.round,
            shard: lease.slice.shard,
            first_record: lease.slice.first_record,
            count: lease.slice.count,
            expires_at: lease.expires_at,
            issuer: lease.issuer.clone(),
        }
    }
}

/// A peer the edge's node knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerSummary {
    pub peer_id: String,
    /// e.g. `validator`, `trainer`, `browser`.
    pub role: String,
    /// `tcp`, `quic` or `websocket` (from the libp2p connection), or `http-fallback` (a tab that last
    /// reached the edge over HTTP).
    pub transport: String,
    pub last_seen: UnixMillis,
}

/// Everything the dashboard draws, in one answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DashboardSnapshot {
    pub experiment: String,
    pub validators: Vec<String>,
    pub quorum: u32,
    /// The round now open (current head's round + 1).
    pub open_round: u64,
    /// Newest first.
    pub heads: Vec<HeadSummary>,
    pub leases: Vec<LeaseSummary>,
    pub peers: Vec<PeerSummary>,
    /// Newest last.
    pub recent_events: Vec<NetworkEvent>,
    pub now: UnixMillis,
}

/// Something that happened on the network, streamed to the dashboard and pages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum NetworkEvent {
    LeaseGranted { lease: LeaseSummary },
    UpdateAccepted { update: UpdateId, holder: String, runtime: Runtime, round: u64, at: UnixMillis },
    UpdateRejected { holder: String, lease: Option<LeaseId>, reason: String, at: UnixMillis },
    HeadPromoted { head: HeadSummary },
}
