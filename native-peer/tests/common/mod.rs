//! Helpers shared by the multi-process tests: a learnable IDX dataset, a `bonfire up` that is
//! killed on drop, the edge's JSON, and finding role processes.
#![allow(dead_code)] // each test binary uses a subset

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::api::{DashboardSnapshot, LeaseGrant, LeaseRequest};
use protocol::update::{DeltaEncoding, Runtime, Update};
use protocol::{merge, BlobId, Identity, Signed};

pub const BIN: &str = env!("CARGO_BIN_EXE_bonfire");

/// Writes learnable IDX files: digit k brightens a band of rows, plus deterministic noise.
pub fn write_idx(dir: &Path, n: u32) -> (PathBuf, PathBuf) {
    let mut images = Vec::new();
    for v in [0x0803u32, n, 28, 28] {
        images.extend(v.to_be_bytes());
    }
    let mut labels = Vec::new();
    for v in [0x0801u32, n] {
        labels.extend(v.to_be_bytes());
    }
    for i in 0..n {
        let label = (i * 7 % 10) as u8;
        for p in 0..784u32 {
            let band = (p / 28) / 3 == label as u32;
            let noise = (i.wrapping_mul(2654435761).wrapping_add(p * 40503) >> 13) % 90;
            images.push(if band { 160 + (noise as u8 % 90) } else { noise as u8 });
        }
        labels.push(label);
    }
    let (img, lab) = (dir.join("images.idx"), dir.join("labels.idx"));
    std::fs::write(&img, images).unwrap();
    std::fs::write(&lab, labels).unwrap();
    (img, lab)
}

pub fn prepare(dir: &Path) -> PathBuf {
    let (img, lab) = write_idx(dir, 3000);
    let out = dir.join("dataset");
    let status = Command::new(BIN)
        .args(["dataset", "prepare", "--validation", "500", "--shard-records", "500", "--out"])
        .arg(&out)
        .arg("--idx-images")
        .arg(&img)
        .arg("--idx-labels")
        .arg(&lab)
        .status()
        .unwrap();
    assert!(status.success());
    out
}

/// A running `bonfire up`, killed on drop.
pub struct Network {
    pub child: Child,
    pub base: String,
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn up(data: &Path, dataset: &Path, trainers: usize, extra: &[&str]) -> Network {
    let mut child = Command::new(BIN)
        .args(["up", "--http", "127.0.0.1:0", "--trainers", &trainers.to_string(), "--data-dir"])
        .arg(data)
        .arg("--dataset")
        .arg(dataset)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(log_to("up"))
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines.next().expect("bonfire up exited before the edge listened").unwrap();
        if let Some(url) = line.strip_prefix("edge listening on ") {
            break url.trim().to_string();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Network { child, base }
}

/// Where a child's stderr goes: `$BONFIRE_TEST_LOGS/<name>.log` when that is set (to read what
/// a failing multi-process test's processes said), nowhere otherwise.
pub fn log_to(name: &str) -> Stdio {
    match std::env::var_os("BONFIRE_TEST_LOGS") {
        Some(dir) => {
            let _ = std::fs::create_dir_all(&dir);
            let path = PathBuf::from(dir).join(format!("{name}-{}.log", std::process::id()));
            let file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
            Stdio::from(file)
        }
        None => Stdio::null(),
    }
}

/// A running `bonfire seed` (killed on drop) and what it printed up to the edge's address.
pub fn seed_process(data: &Path, dataset: &Path, extra: &[&str]) -> (Network, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(["seed", "--http", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .arg("--dataset")
        .arg(dataset)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(log_to("seed"))
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let base = loop {
        let line = lines.next().expect("bonfire seed exited before the edge listened").unwrap();
        printed.push(line.clone());
        if let Some(url) = line.strip_prefix("edge listening on ") {
            break url.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Network { child, base }, printed)
}

/// The peer id of the node whose key is in `dir` (created if missing).
pub fn peer_id_of(dir: &Path) -> String {
    let out = Command::new(BIN).args(["id", "--data-dir"]).arg(dir).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

pub fn dashboard(net: &Network) -> DashboardSnapshot {
    client().get(format!("{}/api/experiments/mnist-mlp/dashboard", net.base)).send().unwrap().json().unwrap()
}

pub fn wait_for_round(net: &Network, round: u64) -> DashboardSnapshot {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let snapshot = dashboard(net);
        if snapshot.heads.first().is_some_and(|h| h.round >= round) {
            return snapshot;
        }
        assert!(Instant::now() < deadline, "round {round} not reached; newest: {:?}", snapshot.heads.first().map(|h| h.round));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The interpreter with the `bonfire_worker` package (`cargo xtask setup` installs it).
pub fn worker_python() -> PathBuf {
    if let Some(p) = std::env::var_os("BONFIRE_PYTHON") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("BONFIRE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/bonfire")))
        .expect("HOME or BONFIRE_CACHE");
    let python = cache.join("python/bin/python");
    assert!(python.exists(), "{} is missing: run `cargo xtask setup` (it installs python/ there)", python.display());
    python
}

/// Pids of the Python workers below `bonfire up` (pid `root`): its trainer processes' children.
pub fn python_workers(root: u32) -> Vec<u32> {
    let mut parents = std::collections::HashMap::new();
    let mut workers = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // "pid (comm) state ppid …": the comm may hold spaces, so split after its ')'.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.insert(pid, ppid);
        }
        // `python -m bonfire_worker …` (its trainer's command line names the entry point too).
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmdline.split(|b| *b == 0).any(|arg| arg == b"bonfire_worker") {
            workers.push(pid);
        }
    }
    let below_root = |mut pid: u32| {
        for _ in 0..16 {
            match parents.get(&pid) {
                Some(&p) if p == root => return true,
                Some(&p) if p > 1 => pid = p,
                _ => return false,
            }
        }
        false
    };
    workers.into_iter().filter(|&w| below_root(w)).collect()
}

/// Pids of `bonfire up`'s direct children started for `role` (e.g. "validator").
pub fn role_children(parent: u32, role: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if ppid == Some(parent) && args.get(1) == Some(&role.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// A process killed on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// This machine's clock, as the edge reads it.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Leases over HTTP for a fresh peer, retrying while the round is being merged (409).
pub fn lease_for(net: &Network, who: &Identity) -> LeaseGrant {
    loop {
        let request = LeaseRequest::signed(who, "mnist-mlp", Runtime::Browser, now_ms());
        let response = client().post(format!("{}/api/experiments/mnist-mlp/leases", net.base)).json(&request).send().unwrap();
        if response.status() != 409 {
            assert!(response.status().is_success(), "lease refused: {}", response.status());
            return response.json().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Records what a drill observed: `$BONFIRE_DRILLS_OUT/<drill>.json` when `cargo xtask drills`
/// runs it (nothing otherwise). Written before the drill's final checks, so a failed drill
/// still reports what it saw.
pub fn observe(drill: &str, observed: serde_json::Value) {
    if let Some(dir) = std::env::var_os("BONFIRE_DRILLS_OUT") {
        let path = PathBuf::from(dir).join(format!("{drill}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&observed).unwrap()).unwrap();
    }
}

/// An update for `grant` whose delta is `values`, claiming `holder`, signed by `signer` (a
/// different signer makes a forgery), with the delta's bytes.
pub fn signed_update(signer: &Identity, holder: &Identity, grant: &LeaseGrant, values: &[f32]) -> (Signed<Update>, Vec<u8>) {
    let bytes = merge::encode_f32le(values);
    let update = signer.sign(Update {
        experiment: "mnist-mlp".into(),
        lease: grant.lease_id,
        base_head: grant.lease.body.base_head,
        delta: BlobId::of(&bytes),
        encoding: DeltaEncoding::F32Le,
        holder: holder.peer_id().to_string(),
        runtime: Runtime::Browser,
        train_loss: 1.0,
        steps: 1,
    });
    (update, bytes)
}

/// A port that was free a moment ago (for a child's `--metrics`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The sum of the `name` series whose labels contain `labels` (e.g. `verdict="wrong"`; empty:
/// all of them), scraped from the Prometheus endpoint at `url` (0 while it is not up yet).
pub fn metric(url: &str, name: &str, labels: &str) -> f64 {
    let Ok(response) = reqwest::blocking::Client::new().get(url).timeout(Duration::from_secs(5)).send() else { return 0.0 };
    let text = response.text().unwrap_or_default();
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |sum, v| sum + v)
}

/// The metrics URL a role started with `--metrics 127.0.0.1:0` wrote into its data directory.
pub fn metrics_url(data_dir: &Path) -> String {
    let file = data_dir.join("metrics.url");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(url) = std::fs::read_to_string(&file) {
            return url;
        }
        assert!(Instant::now() < deadline, "{} never appeared", file.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `bonfire <role> --data-dir DIR --bootstrap ADDR --name NAME …extra`, killed on drop.
pub fn spawn_role(role: &str, dir: &Path, bootstrap: &str, name: &str, extra: &[&str]) -> Killed {
    Killed(
        Command::new(BIN)
            .arg(role)
            .arg("--data-dir")
            .arg(dir)
            .args(["--bootstrap", bootstrap, "--name", name])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_to(name))
            .spawn()
            .unwrap(),
    )
}

/// The seed's libp2p addresses (`GET /api/network`).
pub fn network_info(net: &Network) -> protocol::api::NetworkInfo {
    client().get(format!("{}/api/network", net.base)).send().unwrap().json().unwrap()
}

/// Runs `bonfire heads verify` on a stopped node's data directory: (success, JSON report).
pub fn verify_heads(dir: &Path) -> (bool, serde_json::Value) {
    let out = Command::new(BIN).args(["heads", "verify", "--data-dir"]).arg(dir).output().unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.success(), report)
}
