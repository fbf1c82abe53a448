//! The worker's message plumbing: JSON strings in, JSON strings out (and the WebRTC bridge's
//! objects, see `webrtc.rs`).

use std::cell::Cell;
use std::rc::Rc;

use protocol::worker::{WorkerCommand, WorkerEvent};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use crate::contribute;

/// Sends events to the page.
#[derive(Clone)]
pub struct Outbox {
    scope: DedicatedWorkerGlobalScope,
}

impl Outbox {
    pub fn send(&self, event: WorkerEvent) {
        match serde_json::to_string(&event) {
            Ok(json) => {
                let _ = self.scope.post_message(&JsValue::from_str(&json));
            }
            Err(e) => web_sys::console::error_1(&format!("cannot encode a worker event: {e}").into()),
        }
    }
}

/// Installs the message handler. Training runs as one local task; `Stop` raises a flag the
/// loop checks between steps.
pub fn install() {
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let outbox = Outbox { scope: scope.clone() };
    let running = Rc::new(Cell::new(false));
    let stop = Rc::new(Cell::new(false));
    let handler = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        if crate::webrtc::is_bridge_message(&event.data()) {
            crate::webrtc::on_page_message(&event.data());
            return;
        }
        let Some(text) = event.data().as_string() else {
            outbox.send(WorkerEvent::Error { message: "the worker only understands JSON strings".into() });
            return;
        };
        match serde_json::from_str::<WorkerCommand>(&text) {
            Ok(WorkerCommand::Start { edge_url, experiment, backend, transport, secret_key }) => {
                stop.set(false);
                if running.replace(true) {
                    return;
                }
                let (outbox, running, stop) = (outbox.clone(), running.clone(), stop.clone());
                wasm_bindgen_futures::spawn_local(async move {
                    let options = contribute::Options { edge_url, experiment, backend, transport, secret_key };
                    contribute::run(options, outbox.clone(), stop).await;
                    running.set(false);
                    outbox.send(WorkerEvent::Stopped);
                });
            }
            Ok(WorkerCommand::Stop) => stop.set(true),
            Err(e) => outbox.send(WorkerEvent::Error { message: format!("unreadable command: {e}") }),
        }
    });
    scope.set_onmessage(Some(handler.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    handler.forget();
}
