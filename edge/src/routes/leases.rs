//! Leases: grant one, read its slice, submit its update.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use protocol::api::{LeaseGrant, LeaseRequest, UpdateReceipt, UpdateSubmission};
use protocol::LeaseId;

use super::{json_body, parse_id, Node};
use crate::EdgeError;

pub async fn grant(
    State(node): State<Node>,
    Path(id): Path<String>,
    body: Result<Json<LeaseRequest>, JsonRejection>,
) -> Result<Json<LeaseGrant>, EdgeError> {
    let request = json_body(body)?;
    node.grant_lease(&id, request).map(Json)
}

pub async fn data(State(node): State<Node>, Path(lease): Path<String>) -> Result<impl IntoResponse, EdgeError> {
    let lease: LeaseId = parse_id(&lease)?;
    let bytes = node.lease_data(&lease)?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream"), (header::CACHE_CONTROL, "no-store")], bytes))
}

pub async fn submit_update(
    State(node): State<Node>,
    Path(lease): Path<String>,
    body: Result<Json<UpdateSubmission>, JsonRejection>,
) -> Result<Json<UpdateReceipt>, EdgeError> {
    let lease: LeaseId = parse_id(&lease)?;
    let submission = json_body(body)?;
    node.submit_update(&lease, submission).map(Json)
}
