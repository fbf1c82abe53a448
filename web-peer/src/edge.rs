//! The edge's HTTP API from inside the worker.

use gloo_net::http::{Request, Response};
use protocol::api::{ApiError, ExperimentInfo, HeadInfo, LeaseGrant, LeaseRequest, NetworkInfo, UpdateReceipt, UpdateSubmission};
use protocol::{BlobId, LeaseId};
use serde::de::DeserializeOwned;

/// An edge call's failure.
#[derive(Debug)]
pub enum EdgeFailure {
    /// The edge answered with an error status and reason.
    Refused { status: u16, reason: String },
    /// The request never got a usable answer.
    Transport(String),
}

impl std::fmt::Display for EdgeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EdgeFailure::Refused { status, reason } => write!(f, "edge refused ({status}): {reason}"),
            EdgeFailure::Transport(e) => write!(f, "edge unreachable: {e}"),
        }
    }
}

/// A client of one edge.
pub struct Edge {
    base: String,
}

impl Edge {
    pub fn new(base: &str) -> Self {
        Self { base: base.trim_end_matches('/').to_string() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api{path}", self.base)
    }

    async fn check(response: Response) -> Result<Response, EdgeFailure> {
        if response.ok() {
            return Ok(response);
        }
        let status = response.status();
        let reason = match response.json::<ApiError>().await {
            Ok(body) => body.error,
            Err(_) => response.status_text(),
        };
        Err(EdgeFailure::Refused { status, reason })
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, EdgeFailure> {
        let response = Request::get(&self.url(path)).send().await.map_err(|e| EdgeFailure::Transport(e.to_string()))?;
        Self::check(response).await?.json().await.map_err(|e| EdgeFailure::Transport(e.to_string()))
    }

    async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, EdgeFailure> {
        let response = Request::get(&self.url(path)).send().await.map_err(|e| EdgeFailure::Transport(e.to_string()))?;
        Self::check(response).await?.binary().await.map_err(|e| EdgeFailure::Transport(e.to_string()))
    }

    async fn post_json<B: serde::Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, EdgeFailure> {
        let request = Request::post(&self.url(path)).json(body).map_err(|e| EdgeFailure::Transport(e.to_string()))?;
        let response = request.send().await.map_err(|e| EdgeFailure::Transport(e.to_string()))?;
        Self::check(response).await?.json().await.map_err(|e| EdgeFailure::Transport(e.to_string()))
    }

    pub async fn network(&self) -> Result<NetworkInfo, EdgeFailure> {
        self.get_json("/network").await
    }

    pub async fn experiment(&self, id: &str) -> Result<ExperimentInfo, EdgeFailure> {
        self.get_json(&format!("/experiments/{id}")).await
    }

    pub async fn head(&self, id: &str) -> Result<HeadInfo, EdgeFailure> {
        self.get_json(&format!("/experiments/{id}/head")).await
    }

    pub async fn lease(&self, id: &str, request: &LeaseRequest) -> Result<LeaseGrant, EdgeFailure> {
        self.post_json(&format!("/experiments/{id}/leases"), request).await
    }

    pub async fn lease_data(&self, lease: &LeaseId) -> Result<Vec<u8>, EdgeFailure> {
        self.get_bytes(&format!("/leases/{lease}/data")).await
    }

    pub async fn blob(&self, id: &BlobId) -> Result<Vec<u8>, EdgeFailure> {
        self.get_bytes(&format!("/blobs/{id}")).await
    }

    pub async fn submit(&self, lease: &LeaseId, submission: &UpdateSubmission) -> Result<UpdateReceipt, EdgeFailure> {
        self.post_json(&format!("/leases/{lease}/update"), submission).await
    }
}
