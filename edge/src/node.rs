//! The narrow interface between the edge and the node behind it.

use protocol::api::{
    DashboardSnapshot, ExperimentInfo, HeadInfo, LeaseGrant, LeaseRequest, NetworkEvent, NetworkInfo, UpdateReceipt,
    UpdateSubmission,
};
use protocol::{BlobId, LeaseId};
use tokio::sync::broadcast;

use crate::EdgeError;

/// What the edge needs from a node. Calls are quick and synchronous (state lookups, signature
/// checks); anything slow happens in the node's own tasks.
pub trait EdgeNode: Send + Sync + 'static {
    /// Who the node is and what it runs.
    fn network(&self) -> NetworkInfo;
    /// An experiment's signed manifest and dataset.
    fn experiment(&self, experiment: &str) -> Result<ExperimentInfo, EdgeError>;
    /// The experiment's current head.
    fn head(&self, experiment: &str) -> Result<HeadInfo, EdgeError>;
    /// Grants a lease in the open round.
    fn grant_lease(&self, experiment: &str, request: LeaseRequest) -> Result<LeaseGrant, EdgeError>;
    /// The record bytes of a live lease's slice.
    fn lease_data(&self, lease: &LeaseId) -> Result<Vec<u8>, EdgeError>;
    /// Screens an update for `lease` and enters it into the open round.
    fn submit_update(&self, lease: &LeaseId, submission: UpdateSubmission) -> Result<UpdateReceipt, EdgeError>;
    /// A blob's bytes, if the node has it.
    fn blob(&self, id: &BlobId) -> Result<Option<Vec<u8>>, EdgeError>;
    /// Everything the dashboard shows.
    fn dashboard(&self, experiment: &str) -> Result<DashboardSnapshot, EdgeError>;
    /// Live network events.
    fn subscribe(&self) -> broadcast::Receiver<NetworkEvent>;
}
