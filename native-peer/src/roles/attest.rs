//! What every validator does with a proposal, whoever made it: re-check the inputs against
//! their signed leases, screen the real deltas, recompute the aggregate and the checkpoint,
//! evaluate it on the held-out shard, and only then sign an attestation.

use anyhow::Result;
use burn::prelude::Device;
use protocol::dataset::DatasetManifest;
use protocol::experiment::{ExperimentManifest, ModelSpec};
use protocol::head::{inputs_root, Attestation, Contribution, Metrics};
use protocol::proposal::{Proposal, ProposalInput, ReduceRequest};
use protocol::{merge, BlobId, Signed};

use crate::metrics;
use workload::data::Examples;

/// A proposal that checked out: the recomputed parameters and what the attestation says.
#[derive(Clone, Debug)]
pub struct Checked {
    pub params: Vec<f32>,
    pub contributions: Vec<Contribution>,
    pub attestation: Attestation,
}

/// Merges screened deltas (weighted by their leases' examples) onto `base`.
pub fn aggregate(manifest: &ExperimentManifest, base: &[f32], deltas: &[(Vec<f32>, u32)]) -> Result<Vec<f32>> {
    let weighted: Vec<(&[f32], u32)> = deltas.iter().map(|(d, w)| (d.as_slice(), *w)).collect();
    let mean = merge::weighted_mean(&weighted)?;
    Ok(merge::apply_delta(base, &mean, manifest.merge.outer_learning_rate)?)
}

/// Screens a round's deltas (given as bytes, in input order) on their real tensors: each must
/// hash to the id its update announced, have the model's size, be finite and stay under the
/// norm limit. Returns each decoded delta with its lease's weight.
pub fn screen_deltas(
    manifest: &ExperimentManifest,
    inputs: &[ProposalInput],
    contributions: &[Contribution],
    delta_bytes: &[Vec<u8>],
) -> Result<Vec<(Vec<f32>, u32)>, String> {
    if delta_bytes.len() != inputs.len() {
        return Err(format!("{} deltas for {} inputs", delta_bytes.len(), inputs.len()));
    }
    let mut deltas = Vec::with_capacity(delta_bytes.len());
    for (i, ((input, bytes), contribution)) in inputs.iter().zip(delta_bytes).zip(contributions).enumerate() {
        let announced = input.update.body.delta;
        if BlobId::of(bytes) != announced {
            return Err(format!("input {i}: delta bytes do not hash to {}", announced.short()));
        }
        let delta = merge::decode_f32le(bytes, manifest.model.parameter_count()).map_err(|e| format!("input {i}: delta shape: {e}"))?;
        merge::screen(&delta, manifest.merge.max_delta_norm).map_err(|e| format!("input {i}: delta screening: {e}"))?;
        deltas.push((delta, contribution.examples));
    }
    Ok(deltas)
}

/// Checks `proposal` on top of `base` (the parameters of its base head), given the delta bytes
/// of its inputs in order. The error is the reason the proposal is refused.
pub async fn check(
    manifest: &ExperimentManifest,
    dataset: &DatasetManifest,
    proposal: &Proposal,
    base: &[f32],
    delta_bytes: &[Vec<u8>],
    device: &Device,
    validation: &Examples,
) -> Result<Checked, String> {
    let contributions = proposal.check_inputs(manifest, dataset)?;
    let deltas = screen_deltas(manifest, &proposal.inputs, &contributions, delta_bytes)?;
    let params = aggregate(manifest, base, &deltas).map_err(|e| format!("aggregating: {e:#}"))?;
    let checkpoint = BlobId::of(&merge::encode_f32le(&params));
    if checkpoint != proposal.checkpoint {
        return Err(format!(
            "the recomputed checkpoint is {}, the proposal claims {}",
            checkpoint.short(),
            proposal.checkpoint.short()
        ));
    }
    let metrics = evaluate(device, &manifest.model, &params, validation).await.map_err(|e| format!("evaluating: {e:#}"))?;
    let attestation = Attestation {
        experiment: manifest.id.clone(),
        round: proposal.round,
        base_head: Some(proposal.base_head),
        checkpoint,
        inputs_root: inputs_root(&contributions),
        metrics,
    };
    Ok(Checked { params, contributions, attestation })
}

/// What a reducer's proposal is worth next to our own aggregate `ours` of `request`'s inputs:
/// `agreed`, `wrong` (another checkpoint), `other-inputs` (not an answer to this round's
/// inputs) or `bad-signature`. Recorded in `bonfire_reductions_total` by whoever checks it.
pub fn reduction_verdict(request: &ReduceRequest, ours: BlobId, reduction: &Signed<Proposal>) -> &'static str {
    if reduction.verify().is_err() {
        "bad-signature"
    } else if !request.is_answered_by(&reduction.body) {
        "other-inputs"
    } else if reduction.body.checkpoint != ours {
        "wrong"
    } else {
        "agreed"
    }
}

/// Counts a reducer's proposal by verdict, and logs one that is not right.
pub fn record_reduction(who: &str, round: u64, reducer: &str, verdict: &str) {
    metrics::inc("bonfire_reductions_total", "Reducers' proposals checked against our own aggregate, by verdict", &[("verdict", verdict)]);
    match verdict {
        "agreed" => tracing::debug!("{who}: reducer {reducer}'s proposal for round {round} agrees with ours"),
        _ => tracing::warn!("{who}: reducer {reducer}'s proposal for round {round} is {verdict}; our own aggregate stands"),
    }
}

/// Loss and accuracy of `params` on the validation examples, off the async runtime.
pub async fn evaluate(device: &Device, spec: &ModelSpec, params: &[f32], validation: &Examples) -> Result<Metrics> {
    let (device, spec, params, validation) = (device.clone(), spec.clone(), params.to_vec(), validation.clone());
    let metrics = tokio::task::spawn_blocking(move || {
        futures::executor::block_on(workload::evaluate(&device, &spec, &params, &validation))
    })
    .await??;
    Ok(metrics)
}
