//! The bridge's messages (protocol 1, `docs/PYTHON_BRIDGE.md`): one JSON object per line.

use protocol::dataset::RecordLayout;
use protocol::experiment::ModelSpec;
use serde::{Deserialize, Serialize};

/// The bridge protocol version this peer speaks.
pub const PROTOCOL: u32 = 1;

/// A request: `{"id": n, "op": "...", ...fields}`.
#[derive(Serialize, Debug)]
pub struct Request<'a> {
    pub id: u64,
    #[serde(flatten)]
    pub op: Op<'a>,
}

#[derive(Serialize, Debug)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op<'a> {
    Hello { protocol: u32, model: ModelWire },
    Load { checkpoint: &'a str },
    Train { records: &'a str, layout: LayoutWire, batch_size: u32, local_steps: u32, learning_rate: f64, delta: &'a str },
    Evaluate { records: &'a str, layout: LayoutWire },
    Export { checkpoint: &'a str },
    // Measures the bridge's own round trip (the bench).
    #[cfg_attr(not(test), allow(dead_code))]
    Ping,
    Shutdown,
}

impl Op<'_> {
    /// The op's name, for errors.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Hello { .. } => "hello",
            Op::Load { .. } => "load",
            Op::Train { .. } => "train",
            Op::Evaluate { .. } => "evaluate",
            Op::Export { .. } => "export",
            Op::Ping => "ping",
            Op::Shutdown => "shutdown",
        }
    }
}

/// The model spec as the worker sees it: kind, sizes and the tensors every file must hold.
#[derive(Serialize, Debug)]
pub struct ModelWire {
    pub kind: &'static str,
    pub inputs: u32,
    pub hidden: u32,
    pub classes: u32,
    pub tensors: Vec<TensorWire>,
}

#[derive(Serialize, Debug)]
pub struct TensorWire {
    pub name: String,
    pub shape: Vec<usize>,
}

impl From<&ModelSpec> for ModelWire {
    fn from(spec: &ModelSpec) -> Self {
        let ModelSpec::Mlp { inputs, hidden, classes } = *spec;
        let tensors = spec.parameters().into_iter().map(|(name, shape)| TensorWire { name, shape }).collect();
        Self { kind: "mlp", inputs, hidden, classes, tensors }
    }
}

#[derive(Serialize, Debug, Clone, Copy)]
pub struct LayoutWire {
    pub features: u32,
    pub record_bytes: u32,
    pub classes: u32,
}

impl From<&RecordLayout> for LayoutWire {
    fn from(l: &RecordLayout) -> Self {
        Self { features: l.features, record_bytes: l.record_bytes, classes: l.classes }
    }
}

/// Every reply's envelope; the op-specific fields are parsed from `rest`.
#[derive(Deserialize, Debug)]
pub struct Reply {
    pub id: Option<u64>,
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct HelloReply {
    pub protocol: u32,
    pub worker: String,
    pub workload: String,
    pub framework: String,
}

#[derive(Deserialize, Debug)]
pub struct TrainReply {
    /// `null` when the loss was not finite (JSON has no NaN).
    pub mean_loss: Option<f32>,
    pub steps: u32,
    pub examples: u64,
    pub seconds: f64,
}

#[derive(Deserialize, Debug)]
pub struct EvaluateReply {
    pub val_loss: Option<f32>,
    pub val_accuracy: f32,
    pub val_examples: u32,
}
