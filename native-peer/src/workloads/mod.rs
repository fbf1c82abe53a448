//! The training side of a native peer, behind one small trait: load a checkpoint, train a
//! window on a leased slice, evaluate, export parameters. [`burn::BurnWorkload`] runs it in
//! process with burn on the CPU; [`python::PythonWorkload`] drives a Python worker process
//! (NumPy, PyTorch, …) through the bridge described in `docs/PYTHON_BRIDGE.md`.

pub mod burn;
pub mod python;

use std::path::Path;

use anyhow::Result;
use protocol::dataset::RecordLayout;
use protocol::experiment::ModelSpec;
use protocol::head::Metrics;
use protocol::update::Runtime;
use workload::WindowConfig;

pub use self::burn::BurnWorkload;
pub use self::python::{PythonSettings, PythonWorkload};

/// What a training window produced.
#[derive(Clone, Debug)]
pub struct Window {
    /// θ_local − θ_base in the model spec's canonical order (finite: checked by the workload).
    pub delta: Vec<f32>,
    /// Mean training loss over the window (self-reported: never used to merge).
    pub mean_loss: f32,
    pub steps: u32,
    /// Examples processed (steps × batch size).
    pub examples: u64,
    /// Seconds spent computing, as measured where the computation ran (for a Python worker:
    /// inside the worker, so the bridge's own overhead is the rest of the wall time).
    pub compute_seconds: f64,
}

/// The training side of a peer. Calls block (run them off the async runtime).
pub trait Workload: Send {
    /// The runtime that leases and updates name (shown on the dashboard).
    fn runtime(&self) -> Runtime;
    /// A short description for logs, e.g. "burn (flex)" or "python numpy-mlp (numpy 2.1.3)".
    fn describe(&self) -> String;
    /// Replaces the parameters with a checkpoint's; the next [`train`](Self::train) starts here.
    fn load(&mut self, params: &[f32]) -> Result<()>;
    /// Trains one window on `records` (whole records in `layout`) from the loaded parameters.
    fn train(&mut self, records: &[u8], layout: &RecordLayout, config: WindowConfig) -> Result<Window>;
    /// Loss and accuracy of the current parameters on `records`.
    // Part of the seam every workload implements (the bridge tests compare a Python worker's
    // evaluation with burn's); the validator still evaluates through `workload::evaluate`.
    #[allow(dead_code)]
    fn evaluate(&mut self, records: &[u8], layout: &RecordLayout) -> Result<Metrics>;
    /// The current parameters in canonical order.
    fn export(&mut self) -> Result<Vec<f32>>;
    /// Calls after this should give up at `deadline` (the lease's expiry): a workload that
    /// can be stopped (a Python worker) is stopped then. In-process workloads ignore it.
    fn set_deadline(&mut self, _deadline: Option<std::time::Instant>) {}
    /// Whether a failed call should be retried once on the same lease (a crashed or silent
    /// worker that will be restarted), rather than given up.
    fn retryable(&self, _error: &anyhow::Error) -> bool {
        false
    }
}

/// Which workload a trainer runs.
#[derive(Clone, Debug)]
pub enum WorkloadKind {
    /// burn on the CPU (Flex), in process.
    Burn,
    /// A Python worker process.
    Python(PythonSettings),
}

impl WorkloadKind {
    /// Builds the workload for `spec`; a Python worker is started (and handshaken) now, so a
    /// broken interpreter or entry point fails here, not at the first lease. `dir` is the
    /// peer's data directory (the Python worker exchanges files under it).
    pub fn start(&self, spec: &ModelSpec, dir: &Path, name: &str) -> Result<Box<dyn Workload>> {
        Ok(match self {
            WorkloadKind::Burn => Box::new(BurnWorkload::new(spec.clone())),
            WorkloadKind::Python(settings) => {
                Box::new(PythonWorkload::start(spec.clone(), settings.clone(), &dir.join("python-exchange"), name)?)
            }
        })
    }
}

/// The tensor name, index within it and value of the first non-finite value, if any.
pub fn first_non_finite(spec: &ModelSpec, values: &[f32]) -> Option<(String, usize, f32)> {
    let bad = values.iter().position(|v| !v.is_finite())?;
    let (name, index) = locate(spec, bad);
    Some((name, index, values[bad]))
}

/// The tensor name and the index within it of flat parameter `i`.
pub fn locate(spec: &ModelSpec, i: usize) -> (String, usize) {
    let mut start = 0;
    for (name, shape) in spec.parameters() {
        let len: usize = shape.iter().product();
        if i < start + len {
            return (name, i - start);
        }
        start += len;
    }
    ("?".into(), i)
}
