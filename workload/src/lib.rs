//! bonfire's workload: the models peers train and the code that trains and evaluates them.
//!
//! Everything here is generic over the burn [`Device`](burn::tensor::Device) chosen at run time
//! (Flex on native CPUs, WebGPU or Flex in the browser): [`model`] builds the network from a
//! [`ModelSpec`](protocol::experiment::ModelSpec) and flat parameters, [`data`] turns shard
//! records into batches, [`train`] runs one lease's training window and returns its delta,
//! [`eval`] measures loss and accuracy, and [`checkpoint`] converts parameters to and from
//! safetensors and raw f32 bytes.

pub mod checkpoint;
pub mod data;
pub mod eval;
pub mod model;
pub mod train;

pub use eval::evaluate;
pub use train::{measure_window, train_window, WindowConfig, WindowResult, MEASURE_STEPS};

/// Why workload code cannot proceed.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("the model expects {expected} parameters, got {actual}")]
    ParameterCount { expected: usize, actual: usize },
    #[error("record bytes ({bytes}) are not a whole number of {record_bytes}-byte records")]
    RaggedRecords { bytes: usize, record_bytes: usize },
    #[error("no records to train or evaluate on")]
    NoRecords,
    #[error("label {label} of record {record} is out of range (classes: {classes})")]
    LabelOutOfRange { record: usize, label: u8, classes: u32 },
    #[error("reading tensor values back from the device failed: {0}")]
    Readback(String),
    #[error("safetensors: {0}")]
    Safetensors(String),
}
