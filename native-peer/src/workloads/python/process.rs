//! One Python worker process: spawn it, send a request line, wait for its reply line with a
//! deadline, forward its stderr to the log, and kill it when it misbehaves. The reply pipe is
//! read by a thread so a silent worker can be timed out instead of blocking the peer.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::wire::{Op, Reply, Request};

/// Lines of the worker's stderr kept to explain a crash.
const STDERR_TAIL: usize = 12;

/// How to start a worker: a program and its arguments.
#[derive(Clone, Debug)]
pub struct WorkerCommand {
    pub program: OsString,
    pub args: Vec<OsString>,
}

/// Why a request to the worker failed.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("could not start the Python worker `{command}`: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("the Python worker exited ({status}) during `{op}`{}", tail_text(.stderr_tail))]
    Crashed { op: &'static str, status: String, stderr_tail: Vec<String> },
    #[error("the Python worker did not answer `{op}` within {seconds} s; it was stopped")]
    Timeout { op: &'static str, seconds: u64 },
    #[error("the Python worker sent a malformed reply to `{op}`: {reason} (reply: {excerpt})")]
    Malformed { op: &'static str, reason: String, excerpt: String },
    #[error("the Python worker failed `{op}`: {message}")]
    Failed { op: &'static str, message: String },
    #[error("the Python worker speaks bridge protocol {worker}, this peer speaks {peer}")]
    Version { worker: u32, peer: u32 },
}

impl BridgeError {
    /// Whether the process is gone or out of step (a fresh worker may succeed where this one
    /// failed), as opposed to the workload refusing the request.
    pub fn process_failed(&self) -> bool {
        matches!(self, BridgeError::Crashed { .. } | BridgeError::Timeout { .. } | BridgeError::Malformed { .. })
    }
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let mut text = format!("; its stderr ended with:\n  {}", tail.join("\n  "));
    if tail.iter().any(|l| l.contains("No module named") && l.contains("bonfire_worker")) {
        text.push_str("\n(install the worker package with `pip install ./python`, or pass --python <interpreter that has it>)");
    }
    text
}

/// A running worker.
pub struct WorkerProcess {
    child: Child,
    stdin: ChildStdin,
    replies: Receiver<String>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// The thread forwarding stderr; it ends when the worker's stderr closes.
    stderr_thread: std::thread::JoinHandle<()>,
    next_id: u64,
}

impl WorkerProcess {
    /// Starts `command` with piped stdio; `name` prefixes its forwarded stderr lines.
    pub fn spawn(command: &WorkerCommand, name: &str) -> Result<Self, BridgeError> {
        let mut child = Command::new(&command.program)
            .args(&command.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| BridgeError::Spawn { command: describe(command), source })?;
        let (stdin, stdout, stderr) = match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
            (Some(i), Some(o), Some(e)) => (i, o, e),
            _ => unreachable!("all three pipes were requested"),
        };
        let (tx, replies) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("{name}-stdout"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .map_err(|source| BridgeError::Spawn { command: describe(command), source })?;
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = stderr_tail.clone();
        let log_name = name.to_string();
        let stderr_thread = std::thread::Builder::new()
            .name(format!("{name}-stderr"))
            .spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    tracing::info!(target: "bonfire::python", "{log_name}: {line}");
                    let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                    if tail.len() == STDERR_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            })
            .map_err(|source| BridgeError::Spawn { command: describe(command), source })?;
        Ok(Self { child, stdin, replies, stderr_tail, stderr_thread, next_id: 0 })
    }

    /// Sends `op` and waits up to `timeout` for its reply, parsed as `T`. On a crash, a
    /// timeout or a malformed reply the process is killed: the caller drops it and starts anew.
    pub fn request<T: DeserializeOwned>(&mut self, op: Op<'_>, timeout: Duration) -> Result<T, BridgeError> {
        let name = op.name();
        let id = self.next_id;
        self.next_id += 1;
        let mut line = serde_json::to_string(&Request { id, op }).expect("requests always serialise");
        line.push('\n');
        if self.stdin.write_all(line.as_bytes()).and_then(|_| self.stdin.flush()).is_err() {
            return Err(self.crashed(name));
        }
        let text = match self.replies.recv_timeout(timeout) {
            Ok(text) => text,
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                return Err(BridgeError::Timeout { op: name, seconds: timeout.as_secs().max(1) });
            }
            Err(RecvTimeoutError::Disconnected) => return Err(self.crashed(name)),
        };
        let malformed = |reason: String| BridgeError::Malformed { op: name, reason, excerpt: excerpt(&text) };
        let reply: Reply = match serde_json::from_str(&text) {
            Ok(reply) => reply,
            Err(e) => {
                self.kill();
                return Err(malformed(format!("not a JSON reply ({e})")));
            }
        };
        if reply.id != Some(id) {
            self.kill();
            return Err(malformed(format!("it answers request {:?}, not {id}", reply.id)));
        }
        if !reply.ok {
            let message = reply.error.unwrap_or_else(|| "no reason given".into());
            return Err(BridgeError::Failed { op: name, message });
        }
        serde_json::from_value(serde_json::Value::Object(reply.rest)).map_err(|e| {
            self.kill();
            malformed(e.to_string())
        })
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Asks the worker to exit, then makes sure it has.
    pub fn shutdown(mut self, timeout: Duration) {
        if !self.exited() {
            let _ = self.request::<serde_json::Value>(Op::Shutdown, timeout);
        }
        for _ in 0..20 {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process is gone (or its pipes are): wait for its status and quote its stderr.
    fn crashed(&mut self, op: &'static str) -> BridgeError {
        // The pipe closed, so the process is exiting; give it a moment to be reaped.
        let mut status: Option<ExitStatus> = None;
        for _ in 0..40 {
            if let Ok(Some(s)) = self.child.try_wait() {
                status = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        if status.is_none() {
            self.kill();
        }
        // The stderr thread drains the last lines until the pipe closes (bounded: a grandchild
        // could hold the pipe open).
        for _ in 0..80 {
            if self.stderr_thread.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let stderr_tail = self.stderr_tail.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        let status = status.map(|s| s.to_string()).unwrap_or_else(|| "closed its pipes; killed".into());
        BridgeError::Crashed { op, status, stderr_tail }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if !self.exited() {
            self.kill();
        }
    }
}

fn describe(command: &WorkerCommand) -> String {
    std::iter::once(&command.program).chain(&command.args).map(|s| s.to_string_lossy()).collect::<Vec<_>>().join(" ")
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 160;
    if text.chars().count() <= MAX {
        format!("{text:?}")
    } else {
        format!("{:?}…", text.chars().take(MAX).collect::<String>())
    }
}
