//! bonfire's browser trainer, built by Trunk as the Web Worker `web-peer` (loaded through
//! `/web-peer_loader.js`). The page sends [`protocol::worker::WorkerCommand`]s as JSON strings
//! and receives [`protocol::worker::WorkerEvent`]s the same way; all training happens here, off
//! the page's thread. Modules: [`peer`] (the worker's libp2p node), [`edge`] (the HTTP client:
//! bootstrap and fallback), [`webrtc`] (WebRTC-direct through the page), [`backend`] (WebGPU or CPU, measured), [`store`] (IndexedDB),
//! [`contribute`] (the lease → train → deliver loop).

#[cfg(target_arch = "wasm32")]
mod backend;
#[cfg(target_arch = "wasm32")]
mod contribute;
#[cfg(target_arch = "wasm32")]
mod edge;
#[cfg(target_arch = "wasm32")]
mod peer;
#[cfg(target_arch = "wasm32")]
mod store;
#[cfg(target_arch = "wasm32")]
mod webrtc;
#[cfg(target_arch = "wasm32")]
mod worker;

#[cfg(target_arch = "wasm32")]
fn main() {
    worker::install();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("web-peer is the browser's training worker: build it for wasm32 with Trunk (cargo xtask build).");
    std::process::exit(2);
}
