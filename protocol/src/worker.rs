//! Messages between the web app (page) and its training worker (`web-peer`), so the page never
//! links burn: it starts, stops and listens.

use serde::{Deserialize, Serialize};

/// Which compute backend the worker trains on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendChoice {
    /// WebGPU when the browser offers an adapter, else the CPU.
    Auto,
    WebGpu,
    Cpu,
}

impl BackendChoice {
    /// Parses `?backend=` values.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "auto" => Some(Self::Auto),
            "webgpu" => Some(Self::WebGpu),
            "cpu" => Some(Self::Cpu),
            _ => None,
        }
    }
}

/// How the worker reaches the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransportChoice {
    /// As a libp2p peer over the first of the edge's browser addresses that connects
    /// (WebSocket, then WebRTC-direct), the edge's HTTP API while no peer connection exists.
    #[default]
    Auto,
    /// As `Auto`, dialling only WebRTC-direct addresses.
    Webrtc,
    /// As `Auto`, dialling only WebSocket addresses.
    Websocket,
    /// Only the edge's HTTP API.
    Http,
}

impl TransportChoice {
    /// Parses `?transport=` values.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "auto" => Some(Self::Auto),
            "webrtc" => Some(Self::Webrtc),
            "websocket" => Some(Self::Websocket),
            "http" => Some(Self::Http),
            _ => None,
        }
    }

    /// Whether the tab may dial the browser address `addr` (a multiaddr as text).
    pub fn admits(self, addr: &str) -> bool {
        let webrtc = addr.contains("/webrtc-direct");
        let websocket = addr.contains("/ws") || addr.contains("/wss");
        match self {
            Self::Auto => true,
            Self::Webrtc => webrtc,
            Self::Websocket => websocket && !webrtc,
            Self::Http => false,
        }
    }
}

/// A peer the worker is connected to, as the swarm reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkPeer {
    pub peer_id: String,
    /// `webrtc-direct` or `websocket` (the connection's own transport).
    pub transport: String,
    /// `seed`, or the role the peer names in identify.
    pub role: String,
}

/// Page → worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WorkerCommand {
    /// Start contributing. `secret_key` is the tab's persisted ed25519 secret (32 bytes).
    Start {
        edge_url: String,
        experiment: Option<String>,
        backend: BackendChoice,
        #[serde(default)]
        transport: TransportChoice,
        secret_key: Vec<u8>,
    },
    /// Finish the current step and stop.
    Stop,
}

/// Worker → page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WorkerEvent {
    /// Who this tab is on the network.
    Identity { peer_id: String },
    /// The backend chosen; `adapter` names the WebGPU adapter when there is one.
    Backend { backend: String, adapter: Option<String> },
    /// Both backends were measured on the same short window (`auto` with a WebGPU adapter);
    /// the faster one trains from now on.
    Calibrated { cpu_examples_per_sec: f64, webgpu_examples_per_sec: f64, chosen: String },
    /// How the worker reaches the network now: `path` is `websocket` (a libp2p connection) or
    /// `http-fallback`; `peers` come from the swarm's connection events; `detail` says why
    /// there is no peer connection; `connect_ms` is the last dial's set-up time.
    Link { path: String, peers: Vec<LinkPeer>, detail: Option<String>, connect_ms: Option<f64> },
    /// A blob arrived (`checkpoint` or `slice`): its size, how long the fetch took and over
    /// which path (`websocket` or `http`).
    Fetched { what: String, bytes: u64, ms: f64, via: String },
    /// A new head is known: `via` is `gossip`, `rpc` or `http`; `latency_ms` is from its
    /// promotion to now.
    HeadReceived { round: u64, via: String, latency_ms: f64 },
    /// What IndexedDB held at start: an undelivered update and earlier accepted updates.
    Restored { pending: Option<PendingUpdate>, history: u32 },
    /// A trained update is stored and awaits delivery (None: nothing is pending any more).
    Pending { update: Option<PendingUpdate> },
    /// What the worker is doing now ("fetching checkpoint", "training 12/32", …).
    Phase { round: u64, text: String },
    /// A training window finished.
    WindowTrained { round: u64, loss: f32, examples: u32, seconds: f64, examples_per_sec: f64 },
    /// The update was accepted: by the edge into the open round (`via` `http-fallback`), or
    /// merged into the round's head after a gossip announcement (`via` `websocket`).
    UpdateAccepted { round: u64, update_id: String, via: String },
    /// The update was refused, with the reason.
    UpdateRejected { round: u64, reason: String },
    /// Something went wrong; the worker retries after a pause unless stopped.
    Error { message: String },
    Stopped,
}

/// An update trained and signed but not yet accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUpdate {
    pub round: u64,
    pub update_id: String,
}

#[cfg(test)]
mod tests {
    use super::TransportChoice;

    #[test]
    fn a_transport_choice_admits_only_its_own_addresses() {
        let webrtc = "/ip4/127.0.0.1/udp/4001/webrtc-direct/certhash/uEiDikp5KVUgkLta1EjUN-IKbHk-dUBg8VzKgf5nXxLK46w/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
        let websocket = "/ip4/127.0.0.1/tcp/4002/ws/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
        assert!(TransportChoice::Auto.admits(webrtc) && TransportChoice::Auto.admits(websocket));
        assert!(TransportChoice::Webrtc.admits(webrtc) && !TransportChoice::Webrtc.admits(websocket));
        assert!(TransportChoice::Websocket.admits(websocket) && !TransportChoice::Websocket.admits(webrtc));
        assert!(!TransportChoice::Http.admits(webrtc) && !TransportChoice::Http.admits(websocket));
        assert_eq!(TransportChoice::parse("webrtc"), Some(TransportChoice::Webrtc));
        assert_eq!(TransportChoice::parse("carrier-pigeon"), None);
    }
}
