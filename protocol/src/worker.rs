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

/// Page → worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WorkerCommand {
    /// Start contributing. `secret_key` is the tab's persisted ed25519 secret (32 bytes).
    Start { edge_url: String, experiment: Option<String>, backend: BackendChoice, secret_key: Vec<u8> },
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
    /// What the worker is doing now ("fetching checkpoint", "training 12/32", …).
    Phase { round: u64, text: String },
    /// A training window finished.
    WindowTrained { round: u64, loss: f32, examples: u32, seconds: f64, examples_per_sec: f64 },
    /// The edge accepted the update into the open round.
    UpdateAccepted { round: u64, update_id: String },
    /// The update was refused, with the reason.
    UpdateRejected { round: u64, reason: String },
    /// Something went wrong; the worker retries after a pause unless stopped.
    Error { message: String },
    Stopped,
}
