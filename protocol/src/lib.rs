//! bonfire's protocol: the pure types and rules every peer agrees on.
//!
//! Content ids ([`ids`]), canonical encoding and signatures ([`signing`]), the dataset and
//! experiment manifests ([`dataset`], [`experiment`]), leases over shard slices ([`lease`]),
//! signed updates ([`update`]), reducers' proposals ([`proposal`]), attestations and heads ([`head`]), the merge arithmetic on flat
//! `f32` slices ([`merge`]), the JSON shapes of the edge's HTTP API ([`api`]), what peers say over libp2p ([`wire`]) and the messages
//! between the web app and its training worker ([`worker`]). No IO, no burn, no async runtime:
//! this crate compiles for wasm32 and native alike.

pub mod api;
pub mod dataset;
pub mod experiment;
pub mod head;
pub mod ids;
pub mod lease;
pub mod merge;
pub mod proposal;
pub mod signing;
pub mod update;
pub mod wire;
pub mod worker;

pub use ids::{BlobId, HeadId, LeaseId, UpdateId};
pub use signing::{Identity, Signed, VerifyError};

/// Milliseconds since the Unix epoch; the protocol's only clock unit.
pub type UnixMillis = u64;
