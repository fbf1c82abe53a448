//! What peers say to each other over libp2p: native peers and browser workers alike. Gossip
//! carries [`Announcement`]s on `bonfire/<experiment>/heads` and `bonfire/<experiment>/updates`;
//! request-response `/bonfire/rpc/1` (CBOR) carries [`Request`] / [`Response`].

use crate::api::{ExperimentInfo, HeadInfo, LeaseGrant, LeaseRequest};
use crate::head::{Attestation, Head};
use crate::proposal::{Proposal, ReduceRequest};
use crate::update::Update;
use crate::lease::Lease;
use crate::{BlobId, LeaseId, Signed};
use serde::{Deserialize, Serialize};

/// The request-response protocol every peer speaks.
pub const RPC_PROTOCOL: &str = "/bonfire/rpc/1";
/// The identify protocol name; the agent string names the role (`bonfire/<version> <role>`).
pub const IDENTIFY_PROTOCOL: &str = "/bonfire/id/1";
/// The largest gossip message (a head with its certificate, or a signed update).
pub const MAX_GOSSIP_BYTES: usize = 256 * 1024;
/// The largest request (a proposal names every input).
pub const MAX_REQUEST_BYTES: u64 = 1024 * 1024;
/// The largest answer (a blob: checkpoint, delta, shard).
pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// Gossipsub's heartbeat: short, so a new peer joins the mesh within a second.
pub const GOSSIP_HEARTBEAT_MS: u64 = 500;

/// Gossiped announcements.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Announcement {
    /// A validator promoted a head.
    Head(Box<Head>),
    /// A trainer has an update; fetch its delta blob from the author.
    Update(Box<Signed<Update>>),
}

/// Request-response questions.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    Experiment { experiment: String },
    Head { experiment: String },
    Lease { experiment: String, request: LeaseRequest },
    Blob(BlobId),
    /// The promoted head of `round` (validators catching up after a restart).
    HeadAt { experiment: String, round: u64 },
    /// The round's coordinator asks a validator to check a proposal and attest to it.
    Attest(Box<AttestRequest>),
    /// The record bytes of a live lease's slice (browsers, which keep no shards).
    LeaseData(LeaseId),
    /// The round's coordinator asks a reducer to aggregate a closed round's inputs; the answer
    /// is a [`Response::Proposal`] signed by the reducer.
    Reduce(Box<ReduceRequest>),
    /// The seed's peer directory: who is connected, in which role, at which addresses.
    Peers,
    /// `len` bytes of a blob from `offset` (a chunk of a shard being synced). Answered with
    /// [`Response::Blob`]; the asker checks the bytes against the chunk hashes it knows.
    BlobRange { blob: BlobId, offset: u64, len: u32 },
    /// A validator tells the round's coordinator of a lease it issued (from its share of the
    /// slice plan), so the coordinator takes its update and waits for it. Answered with
    /// [`Response::Registered`].
    RegisterLease(Box<Signed<Lease>>),
}

/// One peer in the seed's directory, with the listen addresses it reported (identify).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    pub peer_id: String,
    pub role: String,
    pub addrs: Vec<String>,
}

/// A proposal to attest to, with the reducer's proposal for the same inputs when one came.
/// The validator checks the proposal; it also compares the reducer's checkpoint with its own
/// aggregate (a wrong one is counted and logged) and fetches deltas from the reducer first.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttestRequest {
    pub proposal: Signed<Proposal>,
    pub reduction: Option<Signed<Proposal>>,
}

/// Request-response answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    Experiment(Box<ExperimentInfo>),
    Head(Box<HeadInfo>),
    Lease(Box<LeaseGrant>),
    Attestation(Box<Signed<Attestation>>),
    /// A reducer's aggregate of the inputs it was sent.
    Proposal(Box<Signed<Proposal>>),
    Peers(Vec<DirectoryEntry>),
    Registered,
    #[serde(with = "serde_bytes_vec")]
    Blob(Vec<u8>),
    Error(String),
}

/// Blobs as CBOR byte strings rather than arrays of integers (4× smaller on the wire).
mod serde_bytes_vec {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        crate::signing::b64::deserialize(d)
    }
}

/// The gossip topic of an experiment's promoted heads.
pub fn heads_topic(experiment: &str) -> String {
    format!("bonfire/{experiment}/heads")
}

/// The gossip topic of an experiment's signed updates.
pub fn updates_topic(experiment: &str) -> String {
    format!("bonfire/{experiment}/updates")
}
