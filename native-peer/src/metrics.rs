//! Prometheus metrics of this process: counters and gauges with labels, kept in one registry
//! and rendered in the text exposition format (0.0.4) at `/metrics`. Every role records into
//! the same registry; each role runs in its own process, so the numbers are that role's.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{LazyLock, Mutex};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
}

struct Family {
    help: &'static str,
    kind: Kind,
    /// Label sets (sorted name=value pairs) → value.
    values: BTreeMap<Vec<(&'static str, String)>, f64>,
}

static REGISTRY: LazyLock<Mutex<BTreeMap<&'static str, Family>>> = LazyLock::new(|| Mutex::new(BTreeMap::new()));

fn update(name: &'static str, help: &'static str, kind: Kind, labels: &[(&'static str, &str)], f: impl FnOnce(&mut f64)) {
    let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let family = registry.entry(name).or_insert_with(|| Family { help, kind, values: BTreeMap::new() });
    let mut key: Vec<(&'static str, String)> = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
    key.sort();
    f(family.values.entry(key).or_insert(0.0));
}

/// Adds `by` to a counter (`name` should end in `_total`).
pub fn add(name: &'static str, help: &'static str, labels: &[(&'static str, &str)], by: f64) {
    update(name, help, Kind::Counter, labels, |v| *v += by);
}

/// Adds one to a counter.
pub fn inc(name: &'static str, help: &'static str, labels: &[(&'static str, &str)]) {
    add(name, help, labels, 1.0);
}

/// Sets a gauge.
pub fn set(name: &'static str, help: &'static str, labels: &[(&'static str, &str)], value: f64) {
    update(name, help, Kind::Gauge, labels, |v| *v = value);
}

/// Bytes of blobs received from peers (checkpoints, shards, deltas).
pub fn bytes_in(transport: &str, n: usize) {
    add("bonfire_blob_bytes_in_total", "Blob bytes received from peers", &[("transport", transport)], n as f64);
}

/// Bytes of blobs sent to peers.
pub fn bytes_out(transport: &str, n: usize) {
    add("bonfire_blob_bytes_out_total", "Blob bytes sent to peers", &[("transport", transport)], n as f64);
}

/// The registry in Prometheus' text format.
pub fn render() -> String {
    let registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let mut out = String::new();
    for (name, family) in registry.iter() {
        let kind = if family.kind == Kind::Counter { "counter" } else { "gauge" };
        let _ = writeln!(out, "# HELP {name} {}", family.help);
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in &family.values {
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
                let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
            }
        }
    }
    out
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Serves `/metrics` on `addr` (for roles without an edge); returns the bound address.
pub async fn serve(addr: std::net::SocketAddr) -> anyhow::Result<std::net::SocketAddr> {
    use anyhow::Context;
    let app = axum::Router::new().route("/metrics", axum::routing::get(|| async { text_response() }));
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding the metrics endpoint to {addr}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("the metrics endpoint stopped: {e}");
        }
    });
    Ok(bound)
}

/// `/metrics` as an HTTP response.
pub fn text_response() -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_render_in_the_text_format() {
        inc("test_things_total", "Things", &[("kind", "a\"b")]);
        add("test_things_total", "Things", &[("kind", "a\"b")], 2.0);
        set("test_height", "Height", &[], 7.0);
        let text = render();
        assert!(text.contains("# TYPE test_things_total counter\ntest_things_total{kind=\"a\\\"b\"} 3\n"), "{text}");
        assert!(text.contains("# TYPE test_height gauge\ntest_height 7\n"), "{text}");
    }
}
