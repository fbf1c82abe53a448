//! bonfire's web UI: the page a contributor opens (`/`, Contribute) and the network's live view
//! (`/dashboard`). It trains nothing itself: it drives the `web-peer` Web Worker through the
//! serde messages in `protocol::worker`, and reads the edge's JSON API, so the wasm stays small
//! (no burn, no libp2p here).
//!
//! Modules: [`api`] (edge HTTP client), [`browser`] (URL, clock), [`identity`] (the tab's key),
//! [`gpu`] (WebGPU probe), [`worker_link`] (the worker handle), [`trainer`] (training state shared
//! by every page), [`event_stream`] (the edge's server-sent events), [`format`] (display helpers),
//! [`components`] (shared widgets) and [`pages`] (one file per route).

mod api;
mod browser;
mod components;
mod event_stream;
mod format;
mod gpu;
mod identity;
mod pages;
mod trainer;
mod rtc_bridge;
mod worker_link;

use dioxus::prelude::*;

use components::Shell;
use pages::{Contribute, Dashboard, NotFound};

/// The app's routes; every page sits inside the [`Shell`] (header and navigation).
#[derive(Clone, Debug, PartialEq, Routable)]
#[rustfmt::skip]
pub enum Route {
    #[layout(Shell)]
        #[route("/")]
        Contribute {},
        #[route("/dashboard")]
        Dashboard {},
        #[route("/:..segments")]
        NotFound { segments: Vec<String> },
}

fn main() {
    // The router may rewrite the URL once it owns it; keep the query the user arrived with.
    browser::remember_launch_query();
    dioxus::launch(App);
}

/// The root: owns the training worker's state so that training keeps going (and stays visible)
/// while the user looks at the dashboard.
#[component]
fn App() -> Element {
    trainer::use_trainer_provider();
    rsx! {
        Router::<Route> {}
    }
}
