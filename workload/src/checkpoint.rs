//! Checkpoint bytes: raw little-endian f32 (what blobs hold) and safetensors (what other
//! frameworks read), both in the model spec's canonical parameter order and shapes.

use std::collections::HashMap;

use protocol::experiment::ModelSpec;
use protocol::merge;
use safetensors::tensor::{Dtype, TensorView};

use crate::WorkloadError;

/// Raw checkpoint bytes → parameters, checking the count.
pub fn from_f32le(spec: &ModelSpec, bytes: &[u8]) -> Result<Vec<f32>, WorkloadError> {
    merge::decode_f32le(bytes, spec.parameter_count()).map_err(|e| match e {
        merge::MergeError::WrongLength { expected, actual } => WorkloadError::ParameterCount { expected, actual },
        other => WorkloadError::Safetensors(other.to_string()),
    })
}

/// Parameters → safetensors bytes, one named tensor per parameter.
pub fn to_safetensors(spec: &ModelSpec, flat: &[f32]) -> Result<Vec<u8>, WorkloadError> {
    let expected = spec.parameter_count();
    if flat.len() != expected {
        return Err(WorkloadError::ParameterCount { expected, actual: flat.len() });
    }
    let bytes = merge::encode_f32le(flat);
    let mut offset = 0;
    let mut views = Vec::new();
    for (name, shape) in spec.parameters() {
        let len = shape.iter().product::<usize>() * 4;
        let view = TensorView::new(Dtype::F32, shape, &bytes[offset..offset + len])
            .map_err(|e| WorkloadError::Safetensors(e.to_string()))?;
        views.push((name, view));
        offset += len;
    }
    safetensors::serialize(views, None).map_err(|e| WorkloadError::Safetensors(e.to_string()))
}

/// Safetensors bytes → parameters, checking every name, dtype and shape against the spec.
pub fn from_safetensors(spec: &ModelSpec, bytes: &[u8]) -> Result<Vec<f32>, WorkloadError> {
    let tensors = safetensors::SafeTensors::deserialize(bytes).map_err(|e| WorkloadError::Safetensors(e.to_string()))?;
    let mut by_name: HashMap<String, _> = tensors.tensors().into_iter().collect();
    let mut out = Vec::with_capacity(spec.parameter_count());
    for (name, shape) in spec.parameters() {
        let view = by_name
            .remove(&name)
            .ok_or_else(|| WorkloadError::Safetensors(format!("missing tensor `{name}`")))?;
        if view.dtype() != Dtype::F32 || view.shape() != shape.as_slice() {
            return Err(WorkloadError::Safetensors(format!(
                "tensor `{name}` is {:?} {:?}, expected F32 {shape:?}",
                view.dtype(),
                view.shape()
            )));
        }
        out.extend(view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
    }
    if let Some(extra) = by_name.keys().min() {
        return Err(WorkloadError::Safetensors(format!("unexpected tensor `{extra}` (the model spec has no such parameter)")));
    }
    Ok(out)
}
