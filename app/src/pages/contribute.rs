//! `/`: lend this tab to the network. Shows what the browser offers (WebGPU or CPU), starts and
//! stops the training worker, and shows what it is doing and what the network made of its
//! updates, next to the network's current head.

use dioxus::prelude::*;
use gloo_timers::future::TimeoutFuture;
use protocol::api::HeadInfo;
use protocol::worker::{BackendChoice, TransportChoice, WorkerCommand};

use crate::api::{self, ExperimentPicker};
use crate::browser;
use crate::components::{Banner, Sparkline, Stat};
use crate::format::{percent, NONE};
use crate::gpu;
use crate::identity::{self, TabKey};
use crate::trainer::{use_trainer, RunState};

/// How often the network head is polled.
const HEAD_POLL_MS: u32 = 2_000;

/// What the URL asks for.
#[derive(Clone, Debug, PartialEq)]
struct Request {
    backend: BackendChoice,
    /// Set when `?backend=` held something unknown.
    backend_note: Option<String>,
    experiment: Option<String>,
    transport: TransportChoice,
}

impl Request {
    fn from_url() -> Self {
        let raw = browser::query_param("backend");
        let parsed = raw.as_deref().map(BackendChoice::parse);
        let backend_note = match (&raw, parsed) {
            (Some(raw), Some(None)) => Some(format!("unknown ?backend={raw}; use auto, webgpu or cpu. Using auto.")),
            _ => None,
        };
        Self {
            backend: parsed.flatten().unwrap_or(BackendChoice::Auto),
            backend_note,
            experiment: browser::query_param("experiment"),
            transport: browser::query_param("transport").as_deref().and_then(TransportChoice::parse).unwrap_or_default(),
        }
    }
}

fn backend_name(choice: BackendChoice) -> &'static str {
    match choice {
        BackendChoice::Auto => "auto",
        BackendChoice::WebGpu => "webgpu",
        BackendChoice::Cpu => "cpu",
    }
}

/// The Contribute page.
#[component]
pub fn Contribute() -> Element {
    let trainer = use_trainer();
    let request = use_hook(Request::from_url);
    let key: Result<TabKey, String> = use_hook(identity::tab_key);
    let probe = use_resource(gpu::probe);
    let mut head = use_signal(|| None::<HeadInfo>);
    let mut head_error = use_signal(|| None::<String>);

    let wanted = request.experiment.clone();
    use_future(move || {
        let mut picker = ExperimentPicker::new(wanted.clone());
        async move {
            loop {
                match picker.id().await {
                    Ok(id) => match api::head(&id).await {
                        Ok(info) => {
                            head.set(Some(info));
                            head_error.set(None);
                        }
                        Err(e) => head_error.set(Some(e.to_string())),
                    },
                    Err(e) => head_error.set(Some(e.to_string())),
                }
                TimeoutFuture::new(HEAD_POLL_MS).await;
            }
        }
    });

    let press = {
        let trainer = trainer.clone();
        let key = key.clone();
        let request = request.clone();
        move |_: MouseEvent| {
            let run = trainer.view.read().run;
            if run == RunState::Stopping {
                trainer.terminate();
            } else if run != RunState::Idle {
                trainer.stop();
            } else if let Ok(key) = &key {
                trainer.start(WorkerCommand::Start {
                    edge_url: browser::origin(),
                    experiment: request.experiment.clone(),
                    backend: request.backend,
                    transport: request.transport,
                    secret_key: key.secret.clone(),
                });
            }
        }
    };

    let view = trainer.view.read();
    let (button_label, button_class) = match view.run {
        RunState::Idle => ("Contribute", "big"),
        RunState::Starting | RunState::Running => ("Stop", "big running"),
        RunState::Stopping => ("Force stop", "big running"),
    };
    let (adapter_line, adapter_why) = match &*probe.read() {
        Some(found) => (found.line(), found.why_not().unwrap_or_default().to_string()),
        None => ("Looking for a WebGPU adapter…".to_string(), String::new()),
    };
    let backend = view.backend.clone().unwrap_or_default();
    let backend_detail = view.worker_adapter.clone().map(|a| format!("adapter: {a}"));
    let status_class = if view.status_is_error { "error" } else { "" };
    let status = if view.status.is_empty() { "idle".to_string() } else { view.status.clone() };
    let losses: Vec<f32> = view.losses.iter().copied().collect();
    let head_now = head.read().clone();
    let (head_round, head_accuracy, head_id) = match &head_now {
        Some(info) => (info.head.round.to_string(), percent(info.head.metrics.val_accuracy), info.id.short()),
        None => (NONE.to_string(), NONE.to_string(), String::new()),
    };
    let experiment_line = request.experiment.clone().or_else(|| head_now.as_ref().map(|h| h.head.experiment.clone()));
    let link_path = view.link_path.clone().unwrap_or_default();
    let pending_id = view.pending.as_ref().map(|p| p.update_id.clone()).unwrap_or_default();
    let pending_text = match &view.pending {
        Some(p) => format!("round {}: {}", p.round, p.update_id.chars().take(8).collect::<String>()),
        None => NONE.to_string(),
    };
    let (heard_round, heard_via, heard_latency) = match &view.head_heard {
        Some((round, via, ms)) => (round.to_string(), via.clone(), format!("{ms:.0}")),
        None => (String::new(), String::new(), String::new()),
    };
    let (fetch_bytes, fetch_ms, fetch_via, fetch_text) = match &view.last_fetch {
        Some((bytes, ms, via)) => {
            let mb = *bytes as f64 / 1e6;
            let rate = mb / (ms / 1000.0).max(1e-6);
            (bytes.to_string(), format!("{ms:.1}"), via.clone(), format!("{mb:.2} MB in {ms:.0} ms over {via} ({rate:.0} MB/s)"))
        }
        None => (String::new(), String::new(), String::new(), NONE.to_string()),
    };
    let (cal_cpu, cal_gpu, cal_chosen) = match &view.calibration {
        Some((cpu, gpu, chosen)) => (format!("{cpu:.0}"), format!("{gpu:.0}"), chosen.clone()),
        None => (String::new(), String::new(), String::new()),
    };

    rsx! {
        section { class: "hero",
            h1 { "Lend this tab to a shared model" }
            p { class: "lead",
                "Press Contribute and this tab trains the network's current model on a small slice of data, "
                "then sends its update. Validators decide which merged model becomes the next head."
            }
            button {
                id: "contribute",
                class: "{button_class}",
                disabled: key.is_err(),
                onclick: press,
                "{button_label}"
            }
            p { id: "adapter", class: "adapter", title: "{adapter_why}", "{adapter_line}" }
            p { class: "request",
                "backend requested: {backend_name(request.backend)}"
                if let Some(exp) = experiment_line {
                    " · experiment: {exp}"
                }
            }
            Banner { message: request.backend_note.clone(), tone: "warn" }
            match &key {
                Ok(k) if !k.persisted => rsx! {
                    Banner { message: Some("Storage is blocked: this tab gets a new identity on every visit.".to_string()), tone: "warn" }
                },
                Ok(_) => rsx! {},
                Err(why) => rsx! {
                    Banner { message: Some(format!("Cannot create an identity: {why}")), tone: "error" }
                },
            }
        }

        section { class: "panel",
            h2 { "This tab" }
            div { class: "stats",
                Stat { label: "peer id",
                    span { id: "peer-id", class: "mono wrap", {view.peer_id.clone().unwrap_or_else(|| NONE.to_string())} }
                }
                Stat { label: "backend",
                    span { id: "backend", "data-backend": "{backend}",
                        if backend.is_empty() { "{NONE}" } else { "{backend}" }
                    }
                    if let Some(detail) = backend_detail {
                        div { class: "sub", "{detail}" }
                    }
                }
                Stat { label: "status",
                    span { id: "status", class: "{status_class}", "{status}" }
                }
                Stat { label: "round",
                    span { id: "round", {view.round.map(|r| r.to_string()).unwrap_or_else(|| NONE.to_string())} }
                }
                Stat { label: "training loss",
                    span { id: "loss", {view.loss.map(|l| format!("{l:.4}")).unwrap_or_else(|| NONE.to_string())} }
                }
                Stat { label: "throughput",
                    span { id: "throughput", {view.examples_per_sec.map(|t| format!("{t:.0}")).unwrap_or_else(|| NONE.to_string())} }
                    span { class: "unit", " examples/s" }
                }
                Stat { label: "updates accepted",
                    span { id: "accepted", class: "good", "data-count": "{view.accepted}", "{view.accepted}" }
                }
                Stat { label: "updates rejected",
                    span { id: "rejected", class: "bad", "data-count": "{view.rejected}", "{view.rejected}" }
                }
            }
            p { class: "rejection",
                "last rejection: "
                span { id: "last-rejection", class: "bad", {view.last_rejection.clone().unwrap_or_else(|| NONE.to_string())} }
            }
            p { class: "rejection",
                "pending update: "
                span { id: "pending", class: "mono", "data-update-id": "{pending_id}", "{pending_text}" }
                " · accepted in earlier visits: "
                span { id: "history", "data-count": "{view.history}", "{view.history}" }
                " · last delivered via "
                span { id: "last-via", {view.last_via.clone().unwrap_or_else(|| NONE.to_string())} }
            }
            if !cal_chosen.is_empty() {
                p { id: "calibration", class: "rejection", "data-cpu": "{cal_cpu}", "data-webgpu": "{cal_gpu}", "data-chosen": "{cal_chosen}",
                    "measured on this tab: CPU {cal_cpu} examples/s, WebGPU {cal_gpu} examples/s → training on {cal_chosen}"
                }
            }
            div { class: "spark-row",
                span { class: "stat-label", "loss per window" }
                Sparkline { id: "loss-sparkline", values: losses, label: "training loss" }
            }
        }

        section { class: "panel",
            h2 { "Network link" }
            div { class: "stats",
                Stat { label: "path",
                    span { id: "link", "data-path": "{link_path}", if link_path.is_empty() { "{NONE}" } else { "{link_path}" } }
                    if let Some(detail) = view.link_detail.clone() {
                        div { id: "link-detail", class: "sub", "{detail}" }
                    }
                }
                Stat { label: "connection set-up",
                    span { id: "connect-ms", {view.connect_ms.map(|ms| format!("{ms:.0} ms")).unwrap_or_else(|| NONE.to_string())} }
                }
                Stat { label: "last checkpoint fetch",
                    span { id: "checkpoint-fetch", "data-bytes": "{fetch_bytes}", "data-ms": "{fetch_ms}", "data-via": "{fetch_via}", "{fetch_text}" }
                }
                Stat { label: "newest head heard",
                    span { id: "head-heard", "data-round": "{heard_round}", "data-via": "{heard_via}", "data-latency-ms": "{heard_latency}",
                        if heard_round.is_empty() { "{NONE}" } else { "round {heard_round} by {heard_via}, {heard_latency} ms after promotion" }
                    }
                }
            }
            ul { id: "link-peers", class: "log",
                for peer in view.link_peers.iter() {
                    li { key: "{peer.peer_id}", class: "link-peer", "data-peer-id": "{peer.peer_id}", "data-transport": "{peer.transport}", "data-role": "{peer.role}",
                        span { class: "text mono", "{peer.role} {peer.peer_id} over {peer.transport}" }
                    }
                }
            }
        }

        section { class: "panel",
            h2 { "Network head" }
            Banner { message: head_error.read().clone(), tone: "error" }
            div { class: "stats",
                Stat { label: "head round",
                    span { id: "head-round", "{head_round}" }
                }
                Stat { label: "validation accuracy",
                    span { id: "head-accuracy", "{head_accuracy}" }
                }
                Stat { label: "head id",
                    span { class: "mono", if head_id.is_empty() { "{NONE}" } else { "{head_id}" } }
                }
            }
        }

        section { class: "panel",
            h2 { "Worker log" }
            if view.log.is_empty() {
                p { class: "muted", "Nothing yet. Press Contribute to start." }
            }
            ul { id: "worker-log", class: "log",
                for (i, line) in view.log.iter().enumerate() {
                    li { key: "{i}-{line.at}", class: "{line.tone.class()}",
                        span { class: "time", "{line.at}" }
                        span { class: "text", "{line.text}" }
                    }
                }
            }
        }
    }
}
