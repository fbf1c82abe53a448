//! `/api/experiments/{id}`: manifest, head, dashboard.

use axum::extract::{Path, State};
use axum::Json;
use protocol::api::{DashboardSnapshot, ExperimentInfo, HeadInfo};

use super::Node;
use crate::EdgeError;

pub async fn manifest(State(node): State<Node>, Path(id): Path<String>) -> Result<Json<ExperimentInfo>, EdgeError> {
    node.experiment(&id).map(Json)
}

pub async fn head(State(node): State<Node>, Path(id): Path<String>) -> Result<Json<HeadInfo>, EdgeError> {
    node.head(&id).map(Json)
}

pub async fn dashboard(State(node): State<Node>, Path(id): Path<String>) -> Result<Json<DashboardSnapshot>, EdgeError> {
    node.dashboard(&id).map(Json)
}
