//! One lease's training window: start from the head's parameters, take `local_steps` Adam
//! steps over the leased examples, return θ_local − θ_head.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use protocol::experiment::ModelSpec;
use protocol::merge;

use crate::data::Examples;
use crate::model::{read, Mlp};
use crate::WorkloadError;

/// Hyper-parameters of a window, taken from the lease's experiment.
#[derive(Clone, Copy, Debug)]
pub struct WindowConfig {
    pub batch_size: u32,
    pub local_steps: u32,
    pub learning_rate: f64,
}

/// What a window produced.
#[derive(Clone, Debug)]
pub struct WindowResult {
    /// θ_local − θ_head in canonical parameter order.
    pub delta: Vec<f32>,
    /// Mean training loss over the window's steps (self-reported: never used to merge).
    pub mean_loss: f32,
    pub steps: u32,
    /// Examples processed (steps × batch size).
    pub examples_processed: u64,
}

/// Trains one window on `device` (autodiff is enabled here). `on_step` is told after each
/// step, so callers can show progress.
pub async fn train_window(
    device: &Device,
    spec: &ModelSpec,
    base: &[f32],
    examples: &Examples,
    config: WindowConfig,
    mut on_step: impl FnMut(u32),
) -> Result<WindowResult, WorkloadError> {
    if examples.is_empty() {
        return Err(WorkloadError::NoRecords);
    }
    let device = device.clone().autodiff();
    let mut model = Mlp::from_flat(spec, base, &device)?;
    let mut optimizer = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let batch = config.batch_size.max(1) as usize;
    let steps = config.local_steps.max(1);
    // Losses stay on the device and are read once at the end: a per-step readback would
    // stall a GPU pipeline.
    let mut loss_sum: Option<Tensor<1>> = None;
    for step in 0..steps {
        let (inputs, labels) = examples.batch(step as usize * batch, batch);
        let x = Tensor::<2>::from_data(TensorData::new(inputs, [batch, examples.features]), &device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &device);
        let loss = loss_fn.forward(model.forward(x), y);
        let detached = loss.clone().detach();
        loss_sum = Some(match loss_sum {
            Some(sum) => sum + detached,
            None => detached,
        });
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(config.learning_rate, model, grads);
        on_step(step + 1);
    }
    let local = model.to_flat().await?;
    let total = match loss_sum {
        Some(sum) => read(sum).await?.first().copied().unwrap_or(f32::NAN),
        None => f32::NAN,
    };
    Ok(WindowResult {
        delta: merge::delta(&local, base),
        mean_loss: total / steps as f32,
        steps,
        examples_processed: steps as u64 * batch as u64,
    })
}

/// Steps of a throughput measurement ([`measure_window`]); the first is not timed.
pub const MEASURE_STEPS: u32 = 4;

/// Examples per second of `device` on a short window over `examples` ([`MEASURE_STEPS`] steps
/// of `batch_size`), timed from the end of the first step (WebGPU compiles its shaders there) to
/// the end of the window, which reads the delta back, so queued GPU work counts. `now_ms` is the
/// caller's clock (`Date.now()` in a browser, `Instant` natively): the browser's backend choice
/// and `bonfire bench-window` measure the same way.
pub async fn measure_window(
    device: &Device,
    spec: &ModelSpec,
    base: &[f32],
    examples: &Examples,
    batch_size: u32,
    now_ms: impl Fn() -> f64,
) -> Result<f64, WorkloadError> {
    let config = WindowConfig { batch_size, local_steps: MEASURE_STEPS, learning_rate: 1e-3 };
    let first_step_done = std::cell::Cell::new(0.0);
    train_window(device, spec, base, examples, config, |step| {
        if step == 1 {
            first_step_done.set(now_ms());
        }
    })
    .await?;
    let seconds = ((now_ms() - first_step_done.get()) / 1000.0).max(1e-6);
    Ok(f64::from((MEASURE_STEPS - 1) * batch_size) / seconds)
}
