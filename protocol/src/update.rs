//! Updates: a trainer's signed claim "here is my delta for this lease".

use serde::{Deserialize, Serialize};

use crate::ids::{canonical_bytes, BlobId, HeadId, LeaseId, UpdateId};
use crate::signing::{Signable, Signed};

/// Which kind of peer trained an update (shown on the dashboard).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Runtime {
    Browser,
    NativeBurn,
    /// A native peer whose training runs in a Python worker (NumPy, PyTorch, …) behind the
    /// subprocess bridge.
    NativePython,
}

impl Runtime {
    /// The name people see.
    pub fn label(&self) -> &'static str {
        match self {
            Runtime::Browser => "browser",
            Runtime::NativeBurn => "native-burn",
            Runtime::NativePython => "native-python",
        }
    }
}

/// How a delta blob's bytes encode its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeltaEncoding {
    /// Little-endian f32 values in the model spec's canonical parameter order.
    F32Le,
}

/// An update's body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub experiment: String,
    pub lease: LeaseId,
    pub base_head: HeadId,
    /// The delta θ_local − θ_head, as a blob.
    pub delta: BlobId,
    pub encoding: DeltaEncoding,
    pub holder: String,
    pub runtime: Runtime,
    /// Self-reported; shown, never used to weigh or screen.
    pub train_loss: f32,
    pub steps: u32,
}

impl Signable for Update {
    const DOMAIN: &'static str = "update";
}

impl Update {
    /// The update id: the hash of the body.
    pub fn id(&self) -> UpdateId {
        UpdateId::of(&canonical_bytes(self))
    }
}

impl Signed<Update> {
    /// The id of the signed update's body.
    pub fn id(&self) -> UpdateId {
        self.body.id()
    }
}
