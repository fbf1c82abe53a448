//! Merge arithmetic on flat `f32` parameter vectors: decoding, screening and weighted means.

/// Why deltas cannot be merged.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MergeError {
    #[error("delta has {actual} values, the model has {expected}")]
    WrongLength { expected: usize, actual: usize },
    #[error("delta blob is {0} bytes, not a whole number of f32 values")]
    RaggedBytes(usize),
    #[error("value {index} of the delta is not finite ({value})")]
    NotFinite { index: usize, value: f32 },
    #[error("delta L2 norm {norm:.3} exceeds the limit {limit:.3}")]
    TooLarge { norm: f32, limit: f32 },
    #[error("nothing to merge: no updates, or all weights are zero")]
    Empty,
}

/// Little-endian f32 bytes of `values`.
pub fn encode_f32le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Values of little-endian f32 bytes, checking the expected count.
pub fn decode_f32le(bytes: &[u8], expected: usize) -> Result<Vec<f32>, MergeError> {
    if bytes.len() % 4 != 0 {
        return Err(MergeError::RaggedBytes(bytes.len()));
    }
    if bytes.len() / 4 != expected {
        return Err(MergeError::WrongLength { expected, actual: bytes.len() / 4 });
    }
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// L2 norm, accumulated in f64.
pub fn l2_norm(values: &[f32]) -> f32 {
    values.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt() as f32
}

/// Screens a decoded delta: every value finite and the norm within `max_norm`.
pub fn screen(delta: &[f32], max_norm: f32) -> Result<(), MergeError> {
    if let Some((index, &value)) = delta.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(MergeError::NotFinite { index, value });
    }
    let norm = l2_norm(delta);
    if norm > max_norm {
        return Err(MergeError::TooLarge { norm, limit: max_norm });
    }
    Ok(())
}

/// The mean of `deltas` weighted by `weights` (examples granted by each lease).
pub fn weighted_mean(deltas: &[(&[f32], u32)]) -> Result<Vec<f32>, MergeError> {
    let total: f64 = deltas.iter().map(|&(_, w)| w as f64).sum();
    let Some(&(first, _)) = deltas.first() else { return Err(MergeError::Empty) };
    if total <= 0.0 {
        return Err(MergeError::Empty);
    }
    let mut acc = vec![0f64; first.len()];
    for &(delta, weight) in deltas {
        if delta.len() != acc.len() {
            return Err(MergeError::WrongLength { expected: acc.len(), actual: delta.len() });
        }
        let w = weight as f64 / total;
        for (a, &d) in acc.iter_mut().zip(delta) {
            *a += w * d as f64;
        }
    }
    Ok(acc.into_iter().map(|v| v as f32).collect())
}

/// θ_new = θ_base + lr · Δ.
pub fn apply_delta(base: &[f32], delta: &[f32], lr: f32) -> Result<Vec<f32>, MergeError> {
    if base.len() != delta.len() {
        return Err(MergeError::WrongLength { expected: base.len(), actual: delta.len() });
    }
    Ok(base.iter().zip(delta).map(|(b, d)| b + lr * d).collect())
}

/// Δ = θ_local − θ_base.
pub fn delta(local: &[f32], base: &[f32]) -> Vec<f32> {
    local.iter().zip(base).map(|(l, b)| l - b).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_is_weighted_by_granted_examples() {
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 4.0];
        let mean = weighted_mean(&[(&a, 300), (&b, 100)]).unwrap();
        assert_eq!(mean, vec![0.75, 1.0]);
    }

    #[test]
    fn merging_nothing_or_mismatched_shapes_fails() {
        assert_eq!(weighted_mean(&[]), Err(MergeError::Empty));
        assert_eq!(weighted_mean(&[(&[1.0], 0)]), Err(MergeError::Empty));
        assert!(matches!(weighted_mean(&[(&[1.0], 1), (&[1.0, 2.0], 1)]), Err(MergeError::WrongLength { .. })));
    }

    #[test]
    fn screening_rejects_non_finite_values_and_huge_norms() {
        assert_eq!(screen(&[0.0, f32::NAN], 10.0).unwrap_err().to_string().contains("value 1"), true);
        assert!(matches!(screen(&[f32::INFINITY], 10.0), Err(MergeError::NotFinite { index: 0, .. })));
        assert!(matches!(screen(&[3.0, 4.0], 4.9), Err(MergeError::TooLarge { .. })));
        screen(&[3.0, 4.0], 5.1).unwrap();
    }

    #[test]
    fn f32_bytes_round_trip_and_bad_lengths_are_named() {
        let v = vec![1.5f32, -2.0, 0.25];
        assert_eq!(decode_f32le(&encode_f32le(&v), 3).unwrap(), v);
        assert_eq!(decode_f32le(&[0; 7], 2), Err(MergeError::RaggedBytes(7)));
        assert!(matches!(decode_f32le(&[0; 8], 3), Err(MergeError::WrongLength { expected: 3, actual: 2 })));
    }

    #[test]
    fn applying_a_delta_moves_the_base() {
        let base = [1.0f32, 2.0];
        let d = delta(&[2.0, 1.0], &base);
        assert_eq!(apply_delta(&base, &d, 1.0).unwrap(), vec![2.0, 1.0]);
        assert_eq!(apply_delta(&base, &d, 0.5).unwrap(), vec![1.5, 1.5]);
    }
}
