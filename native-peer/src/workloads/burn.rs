//! The burn workload: the `workload` crate's MLP on the CPU (Flex), in process.

use anyhow::{bail, Result};
use burn::prelude::Device;
use futures::executor::block_on;
use protocol::dataset::RecordLayout;
use protocol::experiment::ModelSpec;
use protocol::head::Metrics;
use protocol::update::Runtime;
use std::time::Instant;
use workload::data::Examples;
use workload::WindowConfig;

use super::{first_non_finite, Window, Workload};

/// burn on the CPU. Parameters live on the host between calls; each call builds the model.
pub struct BurnWorkload {
    spec: ModelSpec,
    device: Device,
    params: Option<Vec<f32>>,
}

impl BurnWorkload {
    pub fn new(spec: ModelSpec) -> Self {
        Self { spec, device: Device::flex(), params: None }
    }

    fn params(&self) -> Result<&[f32]> {
        match &self.params {
            Some(p) => Ok(p),
            None => bail!("no checkpoint loaded yet"),
        }
    }
}

impl Workload for BurnWorkload {
    fn runtime(&self) -> Runtime {
        Runtime::NativeBurn
    }

    fn describe(&self) -> String {
        "burn (flex, CPU)".into()
    }

    fn load(&mut self, params: &[f32]) -> Result<()> {
        let expected = self.spec.parameter_count();
        if params.len() != expected {
            bail!("the checkpoint has {} parameters, the model {expected}", params.len());
        }
        self.params = Some(params.to_vec());
        Ok(())
    }

    fn train(&mut self, records: &[u8], layout: &RecordLayout, config: WindowConfig) -> Result<Window> {
        let examples = Examples::decode(records, layout)?;
        let base = self.params()?.to_vec();
        let started = Instant::now();
        let result = block_on(workload::train_window(&self.device, &self.spec, &base, &examples, config, |_| {}))?;
        let compute_seconds = started.elapsed().as_secs_f64();
        if let Some((tensor, index, value)) = first_non_finite(&self.spec, &result.delta) {
            bail!("training diverged: the delta has {value} at {tensor}[{index}]");
        }
        self.params = Some(base.iter().zip(&result.delta).map(|(b, d)| b + d).collect());
        Ok(Window {
            delta: result.delta,
            mean_loss: result.mean_loss,
            steps: result.steps,
            examples: result.examples_processed,
            compute_seconds,
        })
    }

    fn evaluate(&mut self, records: &[u8], layout: &RecordLayout) -> Result<Metrics> {
        let examples = Examples::decode(records, layout)?;
        Ok(block_on(workload::evaluate(&self.device, &self.spec, self.params()?, &examples))?)
    }

    fn export(&mut self) -> Result<Vec<f32>> {
        Ok(self.params()?.to_vec())
    }
}
