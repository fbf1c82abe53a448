//! The edge's JSON API, as the pages need it. Paths are relative to the page's origin: the edge
//! serves the app, and `trunk serve` proxies `/api` to a running edge.

use std::fmt;

use gloo_net::http::Request;
use protocol::api::{ApiError, DashboardSnapshot, HeadInfo, NetworkInfo};
use serde::de::DeserializeOwned;

/// Why a request to the edge gave no answer the page can use.
#[derive(Clone, Debug, PartialEq)]
pub enum EdgeError {
    /// The request never got an HTTP answer (edge down, network gone).
    Unreachable(String),
    /// The edge answered with an error status.
    Status { status: u16, message: String },
    /// The edge answered 2xx with a body that is not the expected JSON.
    Garbled(String),
    /// The edge knows no experiment to show.
    NoExperiment,
}

impl fmt::Display for EdgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EdgeError::Unreachable(why) => write!(f, "edge unreachable: {why}"),
            EdgeError::Status { status, message } => write!(f, "edge unreachable: HTTP {status}: {message}"),
            EdgeError::Garbled(why) => write!(f, "edge sent an unreadable answer: {why}"),
            EdgeError::NoExperiment => f.write_str("the edge serves no experiment yet; waiting for one"),
        }
    }
}

/// `GET path` and decode the JSON answer; error bodies are read as [`ApiError`].
async fn get_json<T: DeserializeOwned>(path: &str) -> Result<T, EdgeError> {
    let response = Request::get(path).send().await.map_err(|e| EdgeError::Unreachable(e.to_string()))?;
    if !response.ok() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ApiError>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| if body.trim().is_empty() { response.status_text() } else { body });
        return Err(EdgeError::Status { status, message });
    }
    response.json::<T>().await.map_err(|e| EdgeError::Garbled(e.to_string()))
}

/// Percent-encodes one path segment.
fn segment(value: &str) -> String {
    String::from(js_sys::encode_uri_component(value))
}

/// `GET /api/network`.
pub async fn network() -> Result<NetworkInfo, EdgeError> {
    get_json("/api/network").await
}

/// `GET /api/experiments/{id}/head`.
pub async fn head(experiment: &str) -> Result<HeadInfo, EdgeError> {
    get_json(&format!("/api/experiments/{}/head", segment(experiment))).await
}

/// `GET /api/experiments/{id}/dashboard`.
pub async fn dashboard(experiment: &str) -> Result<DashboardSnapshot, EdgeError> {
    get_json(&format!("/api/experiments/{}/dashboard", segment(experiment))).await
}

/// The experiment a page shows: the one named by `?experiment=`, else the edge's first.
async fn experiment_id(requested: Option<&str>) -> Result<String, EdgeError> {
    if let Some(id) = requested {
        return Ok(id.to_string());
    }
    network().await?.experiments.into_iter().next().ok_or(EdgeError::NoExperiment)
}

/// Remembers which experiment a page shows once the edge has named one, so polling loops ask
/// `/api/network` only until they have an answer.
#[derive(Clone, Debug, Default)]
pub struct ExperimentPicker {
    requested: Option<String>,
    chosen: Option<String>,
}

impl ExperimentPicker {
    /// Picks `requested` (from `?experiment=`) when given, else the edge's first experiment.
    pub fn new(requested: Option<String>) -> Self {
        Self { chosen: requested.clone(), requested }
    }

    /// The experiment id, asking the edge if none is chosen yet.
    pub async fn id(&mut self) -> Result<String, EdgeError> {
        if let Some(id) = &self.chosen {
            return Ok(id.clone());
        }
        let id = experiment_id(self.requested.as_deref()).await?;
        self.chosen = Some(id.clone());
        Ok(id)
    }
}
