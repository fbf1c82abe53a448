//! What native peers say to each other over libp2p.

use protocol::api::{ExperimentInfo, HeadInfo, LeaseGrant, LeaseRequest};
use protocol::head::{Attestation, Head};
use protocol::proposal::Proposal;
use protocol::update::Update;
use protocol::{BlobId, Signed};
use serde::{Deserialize, Serialize};

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
    /// A reducer asks a validator to check a proposal and attest to it.
    Attest(Box<Signed<Proposal>>),
}

/// Request-response answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    Experiment(Box<ExperimentInfo>),
    Head(Box<HeadInfo>),
    Lease(Box<LeaseGrant>),
    Attestation(Box<Signed<Attestation>>),
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
        protocol::signing::b64::deserialize(d)
    }
}
