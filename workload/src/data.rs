//! Shard records → model inputs and labels.

use protocol::dataset::RecordLayout;

use crate::WorkloadError;

/// Decoded records: inputs scaled to [0, 1], one row per record, and labels.
#[derive(Clone, Debug)]
pub struct Examples {
    pub features: usize,
    pub inputs: Vec<f32>,
    pub labels: Vec<u8>,
}

impl Examples {
    /// Decodes fixed-size records (feature bytes then a label byte).
    pub fn decode(bytes: &[u8], layout: &RecordLayout) -> Result<Self, WorkloadError> {
        let record_bytes = layout.record_bytes as usize;
        let features = layout.features as usize;
        if bytes.is_empty() {
            return Err(WorkloadError::NoRecords);
        }
        if bytes.len() % record_bytes != 0 {
            return Err(WorkloadError::RaggedRecords { bytes: bytes.len(), record_bytes });
        }
        let n = bytes.len() / record_bytes;
        let mut inputs = Vec::with_capacity(n * features);
        let mut labels = Vec::with_capacity(n);
        for (record, chunk) in bytes.chunks_exact(record_bytes).enumerate() {
            inputs.extend(chunk[..features].iter().map(|&p| p as f32 / 255.0));
            let label = chunk[features];
            if label as u32 >= layout.classes {
                return Err(WorkloadError::LabelOutOfRange { record, label, classes: layout.classes });
            }
            labels.push(label);
        }
        Ok(Self { features, inputs, labels })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The batch starting at example `start` (wrapping around), `size` long.
    pub fn batch(&self, start: usize, size: usize) -> (Vec<f32>, Vec<i64>) {
        let n = self.len();
        let mut inputs = Vec::with_capacity(size * self.features);
        let mut labels = Vec::with_capacity(size);
        for k in 0..size {
            let i = (start + k) % n;
            inputs.extend_from_slice(&self.inputs[i * self.features..(i + 1) * self.features]);
            labels.push(self.labels[i] as i64);
        }
        (inputs, labels)
    }
}
