//! The narrow handle between the page and the `web-peer` training worker. The page only starts,
//! stops and listens: commands go out and events come back as JSON strings of the
//! `protocol::worker` types, so the page never links burn or libp2p. The one exception is the
//! worker's WebRTC connections, whose peer connections the page holds ([`crate::rtc_bridge`]).

use std::cell::Cell;
use std::rc::Rc;

use futures::channel::mpsc::UnboundedSender;
use protocol::worker::{WorkerCommand, WorkerEvent};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{ErrorEvent, Event, MessageEvent, Worker};

/// The script Trunk generates for the `web-peer` worker binary (its loader shim).
pub const WORKER_SCRIPT: &str = "/web-peer_loader.js";

/// Something heard from the worker.
#[derive(Clone, Debug, PartialEq)]
pub enum FromWorker {
    /// A well-formed event.
    Event(WorkerEvent),
    /// A message that is not a `WorkerEvent`; shown as an error line, never fatal.
    Garbled(String),
    /// The worker script failed (did not load, or threw at top level).
    Crashed(String),
}

/// A running worker. Dropping it terminates the worker.
pub struct WorkerLink {
    worker: Worker,
    /// Set once the worker has said anything: from then on it is listening.
    heard: Rc<Cell<bool>>,
    // Held so the JS callbacks stay alive as long as the worker.
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(Event)>,
}

impl WorkerLink {
    /// Starts the worker as a classic Web Worker; everything it says is sent to `events`.
    pub fn spawn(events: UnboundedSender<FromWorker>) -> Result<Self, String> {
        let worker = Worker::new(WORKER_SCRIPT).map_err(|e| format!("cannot start the training worker: {e:?}"))?;

        let heard = Rc::new(Cell::new(false));
        let (tx, heard_by_handler, bridged) = (events.clone(), heard.clone(), worker.clone());
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |message: MessageEvent| {
            heard_by_handler.set(true);
            let data = message.data();
            if crate::rtc_bridge::is_bridge_message(&data) {
                crate::rtc_bridge::handle(&bridged, &data);
                return;
            }
            let _ = tx.unbounded_send(decode(&data));
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));

        let on_error = Closure::<dyn FnMut(Event)>::new(move |event: Event| {
            // The browser cancels the default console report when we handle it; we show it.
            let why = match event.dyn_ref::<ErrorEvent>() {
                Some(error) if !error.message().is_empty() => error.message(),
                _ => format!("the worker script {WORKER_SCRIPT} failed to load or crashed"),
            };
            let _ = events.unbounded_send(FromWorker::Crashed(why));
        });
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));

        Ok(Self { worker, heard, _on_message: on_message, _on_error: on_error })
    }

    /// Whether the worker has answered yet. Until it has, it may still be instantiating its
    /// wasm, and a worker drops messages that arrive before it installs its handler, so the
    /// page re-sends `Start` until this turns true (the worker ignores a repeated `Start`).
    pub fn heard_from(&self) -> bool {
        self.heard.get()
    }

    /// Posts one command as a JSON string.
    pub fn send(&self, command: &WorkerCommand) -> Result<(), String> {
        let json = serde_json::to_string(command).map_err(|e| format!("cannot encode {command:?}: {e}"))?;
        self.worker
            .post_message(&JsValue::from_str(&json))
            .map_err(|e| format!("cannot reach the training worker: {e:?}"))
    }
}

impl Drop for WorkerLink {
    fn drop(&mut self) {
        self.worker.set_onmessage(None);
        self.worker.set_onerror(None);
        self.worker.terminate();
    }
}

/// Reads one message's data: a JSON string of a [`WorkerEvent`], or else something to report.
fn decode(data: &JsValue) -> FromWorker {
    let Some(text) = data.as_string() else {
        return FromWorker::Garbled(format!("non-text message from the worker: {data:?}"));
    };
    serde_json::from_str(&text).map(FromWorker::Event).unwrap_or_else(|e| {
        let shown: String = text.chars().take(200).collect();
        FromWorker::Garbled(format!("unreadable message from the worker ({e}): {shown}"))
    })
}
