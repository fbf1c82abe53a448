//! Held-out evaluation: cross-entropy loss and accuracy of a checkpoint.

use burn::prelude::*;
use protocol::experiment::ModelSpec;
use protocol::head::Metrics;

use crate::data::Examples;
use crate::model::{read, Mlp};
use crate::WorkloadError;

/// Evaluates `params` on every example, in batches of `batch` rows.
pub async fn evaluate(device: &Device, spec: &ModelSpec, params: &[f32], examples: &Examples) -> Result<Metrics, WorkloadError> {
    if examples.is_empty() {
        return Err(WorkloadError::NoRecords);
    }
    let model = Mlp::from_flat(spec, params, device)?;
    let classes = match spec {
        ModelSpec::Mlp { classes, .. } => *classes as usize,
    };
    let batch = 500;
    let (mut loss_sum, mut correct) = (0f64, 0u32);
    let n = examples.len();
    let mut start = 0;
    while start < n {
        let size = batch.min(n - start);
        let (inputs, labels) = examples.batch(start, size);
        let x = Tensor::<2>::from_data(TensorData::new(inputs, [size, examples.features]), device);
        let logits = read(model.forward(x).flatten::<1>(0, 1)).await?;
        for (row, &label) in logits.chunks_exact(classes).zip(&labels) {
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let log_sum = row.iter().map(|v| ((v - max) as f64).exp()).sum::<f64>().ln() + max as f64;
            loss_sum += log_sum - row[label as usize] as f64;
            let predicted = row.iter().enumerate().fold(0, |best, (i, v)| if *v > row[best] { i } else { best });
            correct += (predicted == label as usize) as u32;
        }
        start += size;
    }
    Ok(Metrics {
        val_loss: (loss_sum / n as f64) as f32,
        val_accuracy: correct as f32 / n as f32,
        val_examples: n as u32,
    })
}
