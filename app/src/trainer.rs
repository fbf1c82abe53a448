//! The state of this tab's training, shared by every page: the worker handle, and a view of what
//! the worker last said. It lives at the app's root so training continues (and the header shows
//! it) while the user browses the dashboard.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use dioxus::prelude::*;
use futures::channel::mpsc::{self, UnboundedReceiver, UnboundedSender};
use futures::StreamExt;
use gloo_timers::future::TimeoutFuture;
use protocol::worker::{LinkPeer, PendingUpdate, WorkerCommand, WorkerEvent};

use crate::browser;
use crate::worker_link::{FromWorker, WorkerLink};

/// How many log lines the Contribute page keeps.
pub const LOG_LINES: usize = 20;
/// How many training windows the loss sparkline keeps.
pub const LOSS_POINTS: usize = 120;

/// Where the worker is in its life, as far as the page knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunState {
    #[default]
    Idle,
    /// `Start` posted; nothing heard back yet.
    Starting,
    Running,
    /// `Stop` posted; waiting for `Stopped`.
    Stopping,
}

/// How a log line should look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Info,
    Good,
    Bad,
}

impl Tone {
    /// The CSS class of the line.
    pub fn class(self) -> &'static str {
        match self {
            Tone::Info => "info",
            Tone::Good => "good",
            Tone::Bad => "bad",
        }
    }
}

/// One line of the worker log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    /// Local time, `HH:MM:SS`.
    pub at: String,
    pub text: String,
    pub tone: Tone,
    /// Phase lines replace each other instead of flooding the log.
    pub is_phase: bool,
}

/// Everything the page shows about the worker, folded from its events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainerView {
    pub run: RunState,
    pub peer_id: Option<String>,
    pub backend: Option<String>,
    /// The adapter the worker itself trains on, when it uses WebGPU.
    pub worker_adapter: Option<String>,
    /// The latest phase text or error.
    pub status: String,
    pub status_is_error: bool,
    pub round: Option<u64>,
    pub loss: Option<f32>,
    pub examples_per_sec: Option<f64>,
    pub accepted: u32,
    pub rejected: u32,
    pub last_rejection: Option<String>,
    /// Training loss per window, oldest first.
    pub losses: VecDeque<f32>,
    /// `websocket` or `http-fallback`, and the peers the worker's swarm is connected to.
    pub link_path: Option<String>,
    pub link_peers: Vec<LinkPeer>,
    pub link_detail: Option<String>,
    pub connect_ms: Option<f64>,
    /// Examples/s of both backends on the calibration window, and the one kept.
    pub calibration: Option<(f64, f64, String)>,
    /// The newest head the worker knows: round, how it learned of it, ms after promotion.
    pub head_heard: Option<(u64, String, f64)>,
    /// The update trained but not yet accepted (kept in IndexedDB).
    pub pending: Option<PendingUpdate>,
    /// Updates accepted in earlier sessions of this tab (from IndexedDB).
    pub history: u32,
    /// How the last accepted update travelled.
    pub last_via: Option<String>,
    /// The last checkpoint fetch: bytes, milliseconds, path.
    pub last_fetch: Option<(u64, f64, String)>,
    /// Newest first.
    pub log: VecDeque<LogLine>,
}

impl TrainerView {
    /// True from pressing Contribute until the worker says it stopped.
    pub fn is_active(&self) -> bool {
        self.run != RunState::Idle
    }

    /// Folds in one thing heard from the worker; `at` is the local time.
    pub fn apply(&mut self, message: FromWorker, at: String) {
        match message {
            FromWorker::Event(event) => self.apply_event(event, at),
            FromWorker::Garbled(why) => self.error(why, at),
            FromWorker::Crashed(why) => {
                self.run = RunState::Idle;
                self.error(format!("training worker failed: {why}"), at);
            }
        }
    }

    fn apply_event(&mut self, event: WorkerEvent, at: String) {
        if self.run == RunState::Starting {
            self.run = RunState::Running;
        }
        match event {
            // The worker repeats these on every retry; log them only when they change.
            WorkerEvent::Identity { peer_id } => {
                if self.peer_id.as_deref() != Some(peer_id.as_str()) {
                    self.log(at, format!("identity {peer_id}"), Tone::Info);
                    self.peer_id = Some(peer_id);
                }
            }
            WorkerEvent::Backend { backend, adapter } => {
                if self.backend.as_deref() != Some(backend.as_str()) || self.worker_adapter != adapter {
                    let on = adapter.as_deref().map(|a| format!(" on {a}")).unwrap_or_default();
                    self.log(at, format!("training on {backend}{on}"), Tone::Info);
                    self.backend = Some(backend);
                    self.worker_adapter = adapter;
                }
            }
            WorkerEvent::Phase { round, text } => {
                self.round = Some(round);
                self.set_status(text.clone(), false);
                let line = LogLine { at, text: format!("round {round}: {text}"), tone: Tone::Info, is_phase: true };
                if self.log.front().is_some_and(|l| l.is_phase) {
                    self.log[0] = line;
                } else {
                    self.push(line);
                }
            }
            WorkerEvent::WindowTrained { round, loss, examples, seconds, examples_per_sec } => {
                self.round = Some(round);
                self.loss = Some(loss);
                self.examples_per_sec = Some(examples_per_sec);
                self.losses.push_back(loss);
                while self.losses.len() > LOSS_POINTS {
                    self.losses.pop_front();
                }
                let text = format!("round {round}: trained {examples} examples in {seconds:.1} s, loss {loss:.4}");
                self.log(at, text, Tone::Info);
            }
            WorkerEvent::UpdateAccepted { round, update_id, via } => {
                self.accepted += 1;
                let short: String = update_id.chars().take(8).collect();
                self.log(at, format!("round {round}: update {short} accepted (via {via})"), Tone::Good);
                self.last_via = Some(via);
            }
            WorkerEvent::Calibrated { cpu_examples_per_sec, webgpu_examples_per_sec, chosen } => {
                let text = format!(
                    "measured: CPU {cpu_examples_per_sec:.0} examples/s, WebGPU {webgpu_examples_per_sec:.0} examples/s; training on {chosen}"
                );
                self.log(at, text, Tone::Info);
                self.calibration = Some((cpu_examples_per_sec, webgpu_examples_per_sec, chosen));
            }
            WorkerEvent::Link { path, peers, detail, connect_ms } => {
                if self.link_path.as_deref() != Some(path.as_str()) || self.link_detail != detail {
                    let why = detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
                    let tone = if path == "http-fallback" { Tone::Bad } else { Tone::Good };
                    self.log(at, format!("network path {path}{why}"), tone);
                }
                self.link_path = Some(path);
                self.link_peers = peers;
                self.link_detail = detail;
                if connect_ms.is_some() {
                    self.connect_ms = connect_ms;
                }
            }
            WorkerEvent::Fetched { what, bytes, ms, via } => {
                if what == "checkpoint" {
                    self.last_fetch = Some((bytes, ms, via));
                }
            }
            WorkerEvent::HeadReceived { round, via, latency_ms } => {
                self.head_heard = Some((round, via, latency_ms));
            }
            WorkerEvent::Restored { pending, history } => {
                if let Some(p) = &pending {
                    let short: String = p.update_id.chars().take(8).collect();
                    self.log(at.clone(), format!("round {}: update {short} from before the reload is still pending", p.round), Tone::Info);
                }
                self.pending = pending;
                self.history = history;
            }
            WorkerEvent::Pending { update } => self.pending = update,
            WorkerEvent::UpdateRejected { round, reason } => {
                self.rejected += 1;
                self.log(at, format!("round {round}: update rejected: {reason}"), Tone::Bad);
                self.last_rejection = Some(reason);
            }
            WorkerEvent::Error { message } => self.error(message, at),
            WorkerEvent::Stopped => {
                self.run = RunState::Idle;
                self.set_status("stopped".into(), false);
                self.log(at, "stopped".into(), Tone::Info);
            }
        }
    }

    /// The page posted `Start`.
    pub fn starting(&mut self, at: String) {
        self.run = RunState::Starting;
        self.set_status("starting the training worker…".into(), false);
        self.log(at, "contribute pressed".into(), Tone::Info);
    }

    /// The page posted `Stop`.
    pub fn stopping(&mut self, at: String) {
        self.run = RunState::Stopping;
        self.set_status("stopping after the current step…".into(), false);
        self.log(at, "stop pressed".into(), Tone::Info);
    }

    /// The page terminated the worker without waiting for `Stopped`.
    pub fn terminated(&mut self, at: String) {
        self.run = RunState::Idle;
        self.set_status("stopped (worker terminated)".into(), false);
        self.log(at, "worker terminated".into(), Tone::Info);
    }

    /// A failure on the page's side (the worker could not be started or reached).
    pub fn failed(&mut self, why: String, at: String) {
        self.run = RunState::Idle;
        self.error(why, at);
    }

    fn error(&mut self, why: String, at: String) {
        self.set_status(why.clone(), true);
        self.log(at, why, Tone::Bad);
    }

    fn set_status(&mut self, text: String, is_error: bool) {
        self.status = text;
        self.status_is_error = is_error;
    }

    fn log(&mut self, at: String, text: String, tone: Tone) {
        self.push(LogLine { at, text, tone, is_phase: false });
    }

    fn push(&mut self, line: LogLine) {
        self.log.push_front(line);
        self.log.truncate(LOG_LINES);
    }
}

/// How often `Start` is re-sent to a worker that has not answered yet.
const START_RESEND_MS: u32 = 250;
/// How long a new worker may take to answer before the page gives up on it.
const START_TIMEOUT_MS: u32 = 120_000;

/// The app-wide training handle: cheap to clone, provided as context by the root.
#[derive(Clone)]
pub struct Trainer {
    pub view: Signal<TrainerView>,
    link: Rc<RefCell<Option<WorkerLink>>>,
    events: UnboundedSender<FromWorker>,
    /// Bumped by every start, stop and terminate, so a pending re-send loop knows it is stale.
    epoch: Rc<Cell<u64>>,
}

impl Trainer {
    /// Starts the worker if it is not running yet, then posts `command` (a `Start`).
    pub fn start(&self, command: WorkerCommand) {
        let mut view = self.view;
        let sent = self.with_link(|link| link.send(&command));
        match sent {
            Ok(()) => {
                view.write().starting(browser::clock());
                self.resend_until_heard(command);
            }
            Err(why) => view.write().failed(why, browser::clock()),
        }
    }

    /// A freshly spawned worker drops messages that arrive before its wasm has installed its
    /// handler; repeat `command` until the worker says something, or give up after a while.
    fn resend_until_heard(&self, command: WorkerCommand) {
        let epoch = self.epoch.get() + 1;
        self.epoch.set(epoch);
        let (link, current, events) = (self.link.clone(), self.epoch.clone(), self.events.clone());
        wasm_bindgen_futures::spawn_local(async move {
            let mut waited = 0;
            loop {
                if current.get() != epoch {
                    return;
                }
                match link.borrow().as_ref() {
                    Some(worker) if !worker.heard_from() => {}
                    _ => return,
                }
                if waited >= START_TIMEOUT_MS {
                    let why = format!("the training worker did not answer within {} s", START_TIMEOUT_MS / 1000);
                    let _ = events.unbounded_send(FromWorker::Crashed(why));
                    return;
                }
                TimeoutFuture::new(START_RESEND_MS).await;
                waited += START_RESEND_MS;
                if current.get() != epoch {
                    return;
                }
                if let Some(worker) = link.borrow().as_ref().filter(|w| !w.heard_from()) {
                    let _ = worker.send(&command);
                }
            }
        });
    }

    /// Asks the worker to finish its current step and stop.
    pub fn stop(&self) {
        let mut view = self.view;
        self.epoch.set(self.epoch.get() + 1);
        let sent = match self.link.borrow().as_ref() {
            Some(link) => link.send(&WorkerCommand::Stop),
            None => Ok(()),
        };
        match sent {
            Ok(()) if self.link.borrow().is_some() => view.write().stopping(browser::clock()),
            Ok(()) => view.write().run = RunState::Idle,
            Err(why) => view.write().failed(why, browser::clock()),
        }
    }

    /// Ends a worker that does not stop by itself: terminates it mid-step.
    pub fn terminate(&self) {
        let mut view = self.view;
        self.epoch.set(self.epoch.get() + 1);
        self.link.borrow_mut().take();
        view.write().terminated(browser::clock());
    }

    /// Runs `f` on the worker, spawning it first (once per tab, or again after a crash).
    fn with_link(&self, f: impl FnOnce(&WorkerLink) -> Result<(), String>) -> Result<(), String> {
        let mut slot = self.link.borrow_mut();
        if slot.is_none() {
            *slot = Some(WorkerLink::spawn(self.events.clone())?);
        }
        f(slot.as_ref().expect("spawned above"))
    }
}

/// Creates the [`Trainer`] at the root, provides it as context, and folds the worker's messages
/// into its view for as long as the app runs.
pub fn use_trainer_provider() -> Trainer {
    let view = use_signal(TrainerView::default);
    let (trainer, inbox) = use_hook(|| {
        let (events, inbox) = mpsc::unbounded();
        let trainer = Trainer { view, link: Rc::default(), events, epoch: Rc::default() };
        (trainer, Rc::new(RefCell::new(Some(inbox))))
    });
    use_context_provider(|| trainer.clone());

    let link = trainer.link.clone();
    use_future(move || {
        let inbox: Option<UnboundedReceiver<FromWorker>> = inbox.borrow_mut().take();
        let link = link.clone();
        let mut view = view;
        async move {
            let Some(mut inbox) = inbox else { return };
            while let Some(message) = inbox.next().await {
                if matches!(message, FromWorker::Crashed(_)) {
                    // A crashed worker is gone for good; the next Contribute spawns a fresh one.
                    link.borrow_mut().take();
                }
                view.write().apply(message, browser::clock());
            }
        }
    });
    trainer
}

/// The [`Trainer`] provided by the root.
pub fn use_trainer() -> Trainer {
    use_context::<Trainer>()
}
