//! The experiment manifest: what is trained, on which data, how leases and merges work, and
//! which validators decide.

use serde::{Deserialize, Serialize};

use crate::ids::{canonical_bytes, BlobId};
use crate::signing::Signable;

/// The model architecture, shared by every runtime (burn, browsers, later Python).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelSpec {
    /// A multi-layer perceptron: inputs → hidden (ReLU) → classes.
    Mlp { inputs: u32, hidden: u32, classes: u32 },
}

impl ModelSpec {
    /// Parameter tensors in their canonical order: (name, shape). Linear weights are
    /// `[inputs, outputs]`, as burn stores them.
    pub fn parameters(&self) -> Vec<(String, Vec<usize>)> {
        match *self {
            ModelSpec::Mlp { inputs, hidden, classes } => vec![
                ("hidden.weight".into(), vec![inputs as usize, hidden as usize]),
                ("hidden.bias".into(), vec![hidden as usize]),
                ("output.weight".into(), vec![hidden as usize, classes as usize]),
                ("output.bias".into(), vec![classes as usize]),
            ],
        }
    }

    /// Total number of scalar parameters.
    pub fn parameter_count(&self) -> usize {
        self.parameters().iter().map(|(_, s)| s.iter().product::<usize>()).sum()
    }
}

/// What one lease asks a trainer to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseSpec {
    /// Records per lease (rounded to whole chunks by the planner).
    pub examples: u32,
    pub batch_size: u32,
    /// Local optimiser steps per training window (cycling through the slice).
    pub local_steps: u32,
    /// Inner (Adam) learning rate.
    pub learning_rate: f64,
    /// How long a lease stays valid.
    pub ttl_ms: u64,
}

/// How a round is closed and merged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergeSpec {
    /// A round closes early once this many updates arrived and no granted lease is pending.
    pub min_updates: u32,
    /// A round closes as soon as this many updates arrived.
    pub max_updates: u32,
    /// After this long since the round opened, it closes with whatever arrived (≥ 1 update).
    pub round_deadline_ms: u64,
    /// Updates whose delta has a larger L2 norm are rejected.
    pub max_delta_norm: f32,
    /// Outer step size applied to the weighted mean delta (1.0 = plain averaging).
    pub outer_learning_rate: f32,
}

/// An experiment: the unit peers join.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentManifest {
    /// Short name used in URLs and topics, e.g. `mnist-mlp`.
    pub id: String,
    pub title: String,
    /// Id of the [`DatasetManifest`](crate::dataset::DatasetManifest) blob.
    pub dataset: BlobId,
    pub model: ModelSpec,
    pub lease: LeaseSpec,
    pub merge: MergeSpec,
    /// Peer ids of the validators whose attestations count.
    pub validators: Vec<String>,
    pub quorum: u32,
    /// The genesis checkpoint blob (f32 little-endian parameters in canonical order).
    pub genesis: BlobId,
}

impl Signable for ExperimentManifest {
    const DOMAIN: &'static str = "experiment";
}

impl ExperimentManifest {
    /// Content id of the manifest.
    pub fn content_id(&self) -> BlobId {
        BlobId::of(&canonical_bytes(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlp_parameter_count_matches_its_layout() {
        let spec = ModelSpec::Mlp { inputs: 784, hidden: 128, classes: 10 };
        assert_eq!(spec.parameter_count(), 784 * 128 + 128 + 128 * 10 + 10);
        assert_eq!(spec.parameters()[0].0, "hidden.weight");
    }
}
