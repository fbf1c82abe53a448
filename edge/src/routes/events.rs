//! `/api/events`: network events as server-sent events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use super::Node;

pub async fn stream(State(node): State<Node>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // A slow client that lags behind the broadcast buffer skips the missed events; the
    // dashboard refetches its snapshot on every event, so it catches up on the next one.
    let events = BroadcastStream::new(node.subscribe()).filter_map(|event| {
        let event = event.ok()?;
        let json = serde_json::to_string(&event).ok()?;
        Some(Ok(Event::default().data(json)))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
