//! bonfire's edge: the HTTP face of a node for browsers (and anyone with `curl`).
//!
//! [`router`] builds the axum `Router` over an [`EdgeNode`], the narrow interface the native
//! peer implements. It serves the built web app at `/` (with a fallback to `index.html` for
//! the app's own routes) and JSON under `/api` (see [`protocol::api`] for the routes and
//! shapes). Each resource is one module of [`routes`]; errors are an [`EdgeError`] that
//! answers with a fitting status and `{ "error": … }`.

pub mod error;
pub mod node;
pub mod routes;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use tower_http::services::{ServeDir, ServeFile};

pub use error::EdgeError;
pub use node::EdgeNode;

/// Largest request body accepted (an update submission carries a base64 delta).
pub const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// The edge's router: `/api/...` over `node`, and the web app from `app_dir` when given.
pub fn router(node: Arc<dyn EdgeNode>, app_dir: Option<PathBuf>) -> Router {
    let api = routes::api(node);
    let router = Router::new().nest("/api", api);
    match app_dir {
        Some(dir) => {
            let index = dir.join("index.html");
            router.fallback_service(ServeDir::new(dir).fallback(ServeFile::new(index)))
        }
        None => router,
    }
}
