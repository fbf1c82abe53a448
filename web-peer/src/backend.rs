//! Choosing where burn runs in the browser: WebGPU through burn-wgpu when an adapter exists
//! (or is asked for), the pure-Rust Flex CPU backend otherwise.

use burn::prelude::Device;
use burn::tensor::wgpu::WgpuBackend;
use protocol::worker::BackendChoice;
use wasm_bindgen::JsCast;

/// The device to train on and how to describe it.
pub struct Backend {
    pub device: Device,
    /// `webgpu` or `cpu`.
    pub name: &'static str,
    pub adapter: Option<String>,
}

/// Whether this worker's navigator exposes WebGPU at all.
fn has_webgpu() -> bool {
    let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let navigator = scope.navigator();
    js_sys::Reflect::get(&navigator, &"gpu".into()).map(|gpu| !gpu.is_undefined() && !gpu.is_null()).unwrap_or(false)
}

/// What [`select`] decided.
pub enum Selection {
    /// Train here.
    Fixed(Backend),
    /// An adapter exists and nothing was forced: measure both on the first lease and keep the
    /// faster ([`calibrate`]). A software adapter (SwiftShader) is far slower than the CPU.
    Measure { cpu: Backend, webgpu: Backend },
}

fn cpu() -> Backend {
    Backend { device: Device::flex(), name: "cpu", adapter: None }
}

/// Picks the backend for `choice`. `WebGpu` fails rather than silently training elsewhere.
pub async fn select(choice: BackendChoice) -> Result<Selection, String> {
    match choice {
        BackendChoice::Cpu => Ok(Selection::Fixed(cpu())),
        BackendChoice::WebGpu => webgpu().await.map(Selection::Fixed),
        BackendChoice::Auto => {
            if !has_webgpu() {
                return Ok(Selection::Fixed(cpu()));
            }
            Ok(match webgpu().await {
                Ok(webgpu) => Selection::Measure { cpu: cpu(), webgpu },
                Err(_) => Selection::Fixed(cpu()),
            })
        }
    }
}

/// Examples per second of `backend` on a short window over the lease's own data
/// ([`workload::measure_window`]).
pub async fn calibrate(
    backend: &Backend,
    spec: &protocol::experiment::ModelSpec,
    base: &[f32],
    examples: &workload::data::Examples,
    batch_size: u32,
) -> Result<f64, String> {
    workload::measure_window(&backend.device, spec, base, examples, batch_size, js_sys::Date::now)
        .await
        .map_err(|e| format!("measuring {}: {e}", backend.name))
}

async fn webgpu() -> Result<Backend, String> {
    if !has_webgpu() {
        return Err("this browser exposes no WebGPU (navigator.gpu is missing)".into());
    }
    let (device, setup) = Device::wgpu_options()
        .graphics_api(WgpuBackend::WebGpu)
        .init_with_setup_async()
        .await
        .map_err(|e| format!("WebGPU initialisation failed: {e}"))?;
    let info = setup.adapter.get_info();
    let adapter = [info.name.as_str(), info.driver.as_str(), info.driver_info.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" / ");
    Ok(Backend { device, name: "webgpu", adapter: Some(if adapter.is_empty() { format!("{:?}", info.backend) } else { adapter }) })
}
