//! The `/api` routes, one module per resource.

mod blobs;
mod events;
mod experiments;
mod leases;

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{Json, Router};
use protocol::api::NetworkInfo;

use crate::{EdgeError, EdgeNode, BODY_LIMIT};

/// Shared handler state: the node.
pub type Node = Arc<dyn EdgeNode>;

/// The API router (mounted under `/api`).
pub fn api(node: Node) -> Router {
    Router::new()
        .route("/network", get(network))
        .route("/experiments/{id}", get(experiments::manifest))
        .route("/experiments/{id}/head", get(experiments::head))
        .route("/experiments/{id}/dashboard", get(experiments::dashboard))
        .route("/experiments/{id}/leases", post(leases::grant))
        .route("/leases/{lease}/data", get(leases::data))
        .route("/leases/{lease}/update", post(leases::submit_update))
        .route("/blobs/{id}", get(blobs::get))
        .route("/events", get(events::stream))
        .fallback(|| async { EdgeError::NotFound("no such API route".into()) })
        .method_not_allowed_fallback(|| async { EdgeError::MethodNotAllowed("this route does not take that method".into()) })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(node)
}

async fn network(axum::extract::State(node): axum::extract::State<Node>) -> Json<NetworkInfo> {
    Json(node.network())
}

/// Turns a JSON body rejection into our error shape.
fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, EdgeError> {
    body.map(|Json(v)| v).map_err(|e| match e.status() {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => EdgeError::TooLarge(format!("request body over {BODY_LIMIT} bytes")),
        _ => EdgeError::BadRequest(format!("invalid request body: {}", e.body_text())),
    })
}

/// Parses a content id from a path segment.
fn parse_id<T: std::str::FromStr<Err = protocol::ids::ParseIdError>>(raw: &str) -> Result<T, EdgeError> {
    raw.parse().map_err(|e: protocol::ids::ParseIdError| EdgeError::BadRequest(e.to_string()))
}
