//! The edge's error type: each variant is a status code, every answer a JSON body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::api::ApiError;

/// Why a request failed, in words the caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but refused (a rejected update).
    #[error("{0}")]
    Unprocessable(String),
    #[error("range not satisfiable: {0}")]
    RangeNotSatisfiable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl EdgeError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            EdgeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            EdgeError::Forbidden(_) => StatusCode::FORBIDDEN,
            EdgeError::NotFound(_) => StatusCode::NOT_FOUND,
            EdgeError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            EdgeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            EdgeError::Conflict(_) => StatusCode::CONFLICT,
            EdgeError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            EdgeError::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            EdgeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for EdgeError {
    fn into_response(self) -> Response {
        if matches!(self, EdgeError::Internal(_)) {
            tracing::error!("{self}");
        }
        (self.status(), Json(ApiError { error: self.to_string() })).into_response()
    }
}
