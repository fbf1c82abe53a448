//! The Python workload: a [`Workload`] whose calls are requests to a Python worker process
//! (`python -m bonfire_worker --entry module:factory`, from `python/`). Tensors go through
//! safetensors files in a private exchange directory; the protocol is `docs/PYTHON_BRIDGE.md`.
//!
//! The peer owns the process: it starts it and checks the version handshake, restarts it when
//! it has crashed, timed out or sent garbage (before the next request, with a new handshake),
//! and stops it when the workload is dropped.

pub mod process;
#[cfg(test)]
mod tests;
pub mod wire;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use protocol::dataset::RecordLayout;
use protocol::experiment::ModelSpec;
use protocol::head::Metrics;
use protocol::update::Runtime;
use workload::checkpoint;
use workload::WindowConfig;

pub use process::{BridgeError, WorkerCommand};
use process::WorkerProcess;
use wire::{EvaluateReply, HelloReply, LayoutWire, ModelWire, Op, TrainReply, PROTOCOL};

use super::{first_non_finite, Window, Workload};

/// The workload entry point used when none is given: the NumPy reference MLP.
pub const DEFAULT_ENTRY: &str = "bonfire_worker.mlp_numpy:create";

/// How to run the Python worker.
#[derive(Clone, Debug)]
pub struct PythonSettings {
    pub command: WorkerCommand,
    /// Deadline for the start-up handshake (imports such as torch can take a while).
    pub start_timeout: Duration,
    /// Deadline for every other request (a whole training window).
    pub timeout: Duration,
}

impl PythonSettings {
    /// `python -m bonfire_worker --entry <entry>`.
    pub fn worker(python: impl Into<OsString>, entry: &str, start_timeout: Duration, timeout: Duration) -> Self {
        let args = ["-m", "bonfire_worker", "--entry", entry].map(OsString::from).to_vec();
        Self { command: WorkerCommand { program: python.into(), args }, start_timeout, timeout }
    }
}

/// A Python worker behind the [`Workload`] trait.
pub struct PythonWorkload {
    spec: ModelSpec,
    settings: PythonSettings,
    exchange: PathBuf,
    name: String,
    process: Option<WorkerProcess>,
    hello: HelloReply,
    /// Times the worker was started again after it failed.
    restarts: u32,
    /// No request may run past this (the lease's expiry), whatever `settings.timeout` says.
    deadline: Option<std::time::Instant>,
}

impl PythonWorkload {
    /// Starts the worker and completes the handshake. `exchange` is created if missing and
    /// holds the files passed to and from the worker.
    pub fn start(spec: ModelSpec, settings: PythonSettings, exchange: &Path, name: &str) -> Result<Self> {
        fs::create_dir_all(exchange).with_context(|| format!("creating {}", exchange.display()))?;
        let (process, hello) = Self::launch(&spec, &settings, name)?;
        tracing::info!(
            "{name}: python worker ready: {} running {} ({})",
            hello.worker,
            hello.workload,
            hello.framework
        );
        Ok(Self { spec, settings, exchange: exchange.to_path_buf(), name: name.into(), process: Some(process), hello, restarts: 0, deadline: None })
    }

    fn launch(spec: &ModelSpec, settings: &PythonSettings, name: &str) -> Result<(WorkerProcess, HelloReply), BridgeError> {
        let mut process = WorkerProcess::spawn(&settings.command, name)?;
        let hello: HelloReply =
            process.request(Op::Hello { protocol: PROTOCOL, model: ModelWire::from(spec) }, settings.start_timeout)?;
        if hello.protocol != PROTOCOL {
            return Err(BridgeError::Version { worker: hello.protocol, peer: PROTOCOL });
        }
        Ok((process, hello))
    }

    /// How many times the worker has been restarted.
    #[cfg(test)]
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// One request, restarting the worker first if the last one failed. A process failure
    /// drops the process, so the next call starts a fresh one.
    fn call<T: serde::de::DeserializeOwned>(&mut self, op: Op<'_>) -> Result<T, BridgeError> {
        let alive = self.process.as_mut().is_some_and(|p| !p.exited());
        let mut process = match self.process.take() {
            Some(p) if alive => p,
            _ => {
                self.restarts += 1;
                tracing::warn!("{}: restarting the python worker (restart {})", self.name, self.restarts);
                let (process, hello) = Self::launch(&self.spec, &self.settings, &self.name)?;
                self.hello = hello;
                process
            }
        };
        let timeout = match self.deadline {
            Some(deadline) => self.settings.timeout.min(deadline.saturating_duration_since(std::time::Instant::now())),
            None => self.settings.timeout,
        };
        let result = process.request(op, timeout.max(Duration::from_millis(100)));
        match &result {
            Err(e) if e.process_failed() => {} // dropped (and killed) here
            _ => self.process = Some(process),
        }
        result
    }

    /// Round trip of a request that does no work (measures the bridge itself).
    #[cfg(test)]
    pub fn ping(&mut self) -> Result<(), BridgeError> {
        self.call::<serde_json::Value>(Op::Ping).map(|_| ())
    }

    fn file(&self, name: &str) -> PathBuf {
        self.exchange.join(name)
    }

    /// Writes records for the worker; the path as the worker should see it.
    fn write_records(&self, records: &[u8]) -> Result<String> {
        let path = self.file("records.bin");
        fs::write(&path, records).with_context(|| format!("writing {}", path.display()))?;
        path_text(&path)
    }

    /// Reads parameters the worker wrote, checking names, shapes and finiteness.
    fn read_tensors(&self, path: &Path, what: &str) -> Result<Vec<f32>> {
        let bytes = fs::read(path).with_context(|| format!("the python worker did not write its {what} to {}", path.display()))?;
        let values = checkpoint::from_safetensors(&self.spec, &bytes).with_context(|| format!("the python worker's {what}"))?;
        if let Some((tensor, index, value)) = first_non_finite(&self.spec, &values) {
            bail!("the python worker's {what} has a non-finite value ({value}) at {tensor}[{index}]");
        }
        Ok(values)
    }
}

impl Workload for PythonWorkload {
    fn runtime(&self) -> Runtime {
        Runtime::NativePython
    }

    fn describe(&self) -> String {
        format!("python {} ({})", self.hello.workload, self.hello.framework)
    }

    fn load(&mut self, params: &[f32]) -> Result<()> {
        let path = self.file("checkpoint.safetensors");
        fs::write(&path, checkpoint::to_safetensors(&self.spec, params)?).with_context(|| format!("writing {}", path.display()))?;
        let path = path_text(&path)?;
        self.call::<serde_json::Value>(Op::Load { checkpoint: &path })?;
        Ok(())
    }

    fn train(&mut self, records: &[u8], layout: &RecordLayout, config: WindowConfig) -> Result<Window> {
        let records = self.write_records(records)?;
        let delta_path = self.file("delta.safetensors");
        // A stale delta from an earlier window must never be read as this one's.
        match fs::remove_file(&delta_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(anyhow!(e).context(format!("removing {}", delta_path.display())))
            }
            _ => {}
        }
        let delta = path_text(&delta_path)?;
        let reply: TrainReply = self.call(Op::Train {
            records: &records,
            layout: LayoutWire::from(layout),
            batch_size: config.batch_size,
            local_steps: config.local_steps,
            learning_rate: config.learning_rate,
            delta: &delta,
        })?;
        let delta = self.read_tensors(&delta_path, "delta")?;
        Ok(Window {
            delta,
            mean_loss: reply.mean_loss.unwrap_or(f32::NAN),
            steps: reply.steps,
            examples: reply.examples,
            compute_seconds: reply.seconds,
        })
    }

    fn evaluate(&mut self, records: &[u8], layout: &RecordLayout) -> Result<Metrics> {
        let records = self.write_records(records)?;
        let reply: EvaluateReply = self.call(Op::Evaluate { records: &records, layout: LayoutWire::from(layout) })?;
        Ok(Metrics {
            val_loss: reply.val_loss.unwrap_or(f32::NAN),
            val_accuracy: reply.val_accuracy,
            val_examples: reply.val_examples,
        })
    }

    fn export(&mut self) -> Result<Vec<f32>> {
        let path = self.file("export.safetensors");
        let _ = fs::remove_file(&path);
        let text = path_text(&path)?;
        self.call::<serde_json::Value>(Op::Export { checkpoint: &text })?;
        self.read_tensors(&path, "exported parameters")
    }

    fn set_deadline(&mut self, deadline: Option<std::time::Instant>) {
        self.deadline = deadline;
    }

    fn retryable(&self, error: &anyhow::Error) -> bool {
        error.downcast_ref::<BridgeError>().is_some_and(BridgeError::process_failed)
    }
}

impl Drop for PythonWorkload {
    fn drop(&mut self) {
        if let Some(process) = self.process.take() {
            process.shutdown(Duration::from_secs(5));
        }
    }
}

fn path_text(path: &Path) -> Result<String> {
    let absolute = std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?;
    absolute.to_str().map(str::to_string).ok_or_else(|| anyhow!("{} is not valid UTF-8", absolute.display()))
}
