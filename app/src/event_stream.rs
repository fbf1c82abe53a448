//! The edge's live feed (`GET /api/events`, server-sent events). Each message's data is a JSON
//! `NetworkEvent`; the dashboard uses them both as a live log and as the cue to refetch its
//! snapshot. `EventSource` reconnects by itself, so an interruption is reported, not fatal.

use futures::channel::mpsc::UnboundedSender;
use protocol::api::NetworkEvent;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{Event, EventSource, MessageEvent};

/// The stream's URL on the edge.
pub const EVENTS_URL: &str = "/api/events";

/// Event names the edge may tag its messages with (the kinds of `NetworkEvent`); unnamed
/// messages arrive as `message`. Listening to all keeps the page independent of that choice.
const EVENT_NAMES: [&str; 5] = ["message", "lease-granted", "update-accepted", "update-rejected", "head-promoted"];

/// Something heard on the stream.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamItem {
    Event(NetworkEvent),
    /// A message whose data is not a `NetworkEvent`.
    Garbled(String),
    /// The connection dropped; the browser is reconnecting.
    Interrupted,
}

/// An open stream. Dropping it closes the connection.
pub struct EventStream {
    source: EventSource,
    on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(Event)>,
}

impl EventStream {
    /// Connects to [`EVENTS_URL`]; everything heard is sent to `items`.
    pub fn open(items: UnboundedSender<StreamItem>) -> Result<Self, String> {
        let source = EventSource::new(EVENTS_URL).map_err(|e| format!("cannot open {EVENTS_URL}: {e:?}"))?;

        let tx = items.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |message: MessageEvent| {
            let item = match message.data().as_string() {
                Some(text) => serde_json::from_str(&text).map(StreamItem::Event).unwrap_or_else(|e| {
                    StreamItem::Garbled(format!("unreadable event ({e}): {}", text.chars().take(200).collect::<String>()))
                }),
                None => StreamItem::Garbled("an event without text data".into()),
            };
            let _ = tx.unbounded_send(item);
        });
        for name in EVENT_NAMES {
            source
                .add_event_listener_with_callback(name, on_message.as_ref().unchecked_ref())
                .map_err(|e| format!("cannot listen for {name} events: {e:?}"))?;
        }

        let on_error = Closure::<dyn FnMut(Event)>::new(move |_event: Event| {
            let _ = items.unbounded_send(StreamItem::Interrupted);
        });
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));

        Ok(Self { source, on_message, _on_error: on_error })
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        for name in EVENT_NAMES {
            let _ = self.source.remove_event_listener_with_callback(name, self.on_message.as_ref().unchecked_ref());
        }
        self.source.set_onerror(None);
        self.source.close();
    }
}
