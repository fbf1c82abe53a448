//! `/api/blobs/{id}`: immutable content-addressed bytes, with single-range requests.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use protocol::BlobId;

use super::{parse_id, Node};
use crate::EdgeError;

pub async fn get(State(node): State<Node>, Path(id): Path<String>, headers: HeaderMap) -> Result<Response, EdgeError> {
    let id: BlobId = parse_id(&id)?;
    let bytes = node.blob(&id)?.ok_or_else(|| EdgeError::NotFound(format!("no blob {id}")))?;
    let common = [
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (header::CACHE_CONTROL, "public, max-age=31536000, immutable".to_string()),
        (header::ACCEPT_RANGES, "bytes".to_string()),
        (header::ETAG, format!("\"{id}\"")),
    ];
    match headers.get(header::RANGE).map(|v| v.to_str().unwrap_or("")) {
        None => Ok((common, bytes).into_response()),
        Some(range) => {
            let (start, end) = parse_range(range, bytes.len())?;
            let content_range = format!("bytes {start}-{end}/{}", bytes.len());
            let part = bytes[start..=end].to_vec();
            Ok((StatusCode::PARTIAL_CONTENT, common, [(header::CONTENT_RANGE, content_range)], part).into_response())
        }
    }
}

/// Parses one `bytes=a-b`, `bytes=a-` or `bytes=-n` range into inclusive bounds.
fn parse_range(range: &str, len: usize) -> Result<(usize, usize), EdgeError> {
    let bad = || EdgeError::RangeNotSatisfiable(format!("`{range}` for a {len}-byte blob"));
    let spec = range.strip_prefix("bytes=").ok_or_else(bad)?;
    if spec.contains(',') || len == 0 {
        return Err(bad());
    }
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: usize = n.parse().map_err(|_| bad())?;
            (len.saturating_sub(n), len - 1)
        }
        (a, "") => (a.parse().map_err(|_| bad())?, len - 1),
        (a, b) => (a.parse().map_err(|_| bad())?, b.parse::<usize>().map_err(|_| bad())?.min(len - 1)),
    };
    if start > end || start >= len {
        return Err(bad());
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_parse_like_http_says() {
        assert_eq!(parse_range("bytes=0-9", 100).unwrap(), (0, 9));
        assert_eq!(parse_range("bytes=90-", 100).unwrap(), (90, 99));
        assert_eq!(parse_range("bytes=-10", 100).unwrap(), (90, 99));
        assert_eq!(parse_range("bytes=95-200", 100).unwrap(), (95, 99));
        assert!(parse_range("bytes=100-", 100).is_err());
        assert!(parse_range("bytes=5-1", 100).is_err());
        assert!(parse_range("items=0-1", 100).is_err());
        assert!(parse_range("bytes=0-1,4-5", 100).is_err());
    }
}
