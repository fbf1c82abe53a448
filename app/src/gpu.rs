//! Does this browser offer WebGPU? The page asks on load so the contributor knows before
//! pressing the button whether their GPU or their CPU will train. Uses `js_sys::Reflect` rather
//! than web-sys's WebGPU bindings, which are unstable and large.

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// What the WebGPU probe found.
#[derive(Clone, Debug, PartialEq)]
pub enum GpuProbe {
    /// An adapter was granted; its best human-readable name.
    Available(String),
    /// No adapter; why.
    Unavailable(String),
}

impl GpuProbe {
    /// The line shown under the button.
    pub fn line(&self) -> String {
        match self {
            GpuProbe::Available(name) => format!("WebGPU available: {name}"),
            GpuProbe::Unavailable(_) => "No WebGPU adapter: training uses the CPU".to_string(),
        }
    }

    /// Why there is no adapter (shown as the line's tooltip), if there is none.
    pub fn why_not(&self) -> Option<&str> {
        match self {
            GpuProbe::Available(_) => None,
            GpuProbe::Unavailable(why) => Some(why),
        }
    }
}

/// Asks `navigator.gpu.requestAdapter()` and describes the adapter.
pub async fn probe() -> GpuProbe {
    match request_adapter().await {
        Ok(Some(adapter)) => GpuProbe::Available(describe(&adapter)),
        Ok(None) => GpuProbe::Unavailable("the browser offered no adapter".into()),
        Err(why) => GpuProbe::Unavailable(why),
    }
}

async fn request_adapter() -> Result<Option<JsValue>, String> {
    let navigator = web_sys::window().ok_or("no window")?.navigator();
    let gpu = Reflect::get(&navigator, &"gpu".into()).map_err(|_| "navigator.gpu unreadable")?;
    if gpu.is_undefined() || gpu.is_null() {
        return Err("this browser has no navigator.gpu".into());
    }
    let request: Function = Reflect::get(&gpu, &"requestAdapter".into())
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or("navigator.gpu.requestAdapter is missing")?;
    let promise: Promise = request
        .call0(&gpu)
        .map_err(|e| format!("requestAdapter threw: {}", js_text(&e)))?
        .dyn_into()
        .map_err(|_| "requestAdapter returned no promise")?;
    let adapter = JsFuture::from(promise).await.map_err(|e| format!("requestAdapter failed: {}", js_text(&e)))?;
    Ok((!adapter.is_null() && !adapter.is_undefined()).then_some(adapter))
}

/// `adapter.info` fields, most specific first; browsers often blank some of them for privacy.
fn describe(adapter: &JsValue) -> String {
    let info = Reflect::get(adapter, &"info".into()).unwrap_or(JsValue::UNDEFINED);
    let field = |name: &str| {
        if info.is_undefined() || info.is_null() {
            return None;
        }
        Reflect::get(&info, &name.into()).ok().and_then(|v| v.as_string()).filter(|s| !s.trim().is_empty())
    };
    let parts: Vec<String> = ["description", "vendor", "architecture", "device"].into_iter().filter_map(field).collect();
    if parts.is_empty() {
        "unnamed adapter".into()
    } else {
        parts.join(" · ")
    }
}

/// A JS exception as text.
pub fn js_text(value: &JsValue) -> String {
    value
        .as_string()
        .or_else(|| value.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())))
        .unwrap_or_else(|| format!("{value:?}"))
}
