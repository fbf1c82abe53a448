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

/// Picks the backend for `choice`. `Auto` uses WebGPU when an adapter comes up, else the CPU;
/// `WebGpu` fails rather than silently training elsewhere.
pub async fn select(choice: BackendChoice) -> Result<Backend, String> {
    let cpu = || Backend { device: Device::flex(), name: "cpu", adapter: None };
    match choice {
        BackendChoice::Cpu => Ok(cpu()),
        BackendChoice::WebGpu => webgpu().await,
        BackendChoice::Auto => {
            if !has_webgpu() {
                return Ok(cpu());
            }
            Ok(webgpu().await.unwrap_or_else(|_| cpu()))
        }
    }
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
