//! Multi-process tests over loopback: the real `bonfire` binary prepares a dataset from IDX
//! files, runs the seed (validator + edge) with native trainers over libp2p, and a test client
//! plays a browser over HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::api::{DashboardSnapshot, ExperimentInfo, HeadInfo, LeaseGrant, LeaseRequest, UpdateSubmission};
use protocol::update::{DeltaEncoding, Runtime, Update};
use protocol::{merge, BlobId, Identity};

const BIN: &str = env!("CARGO_BIN_EXE_bonfire");

/// Writes learnable IDX files: digit k brightens a band of rows, plus deterministic noise.
fn write_idx(dir: &Path, n: u32) -> (PathBuf, PathBuf) {
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

fn prepare(dir: &Path) -> PathBuf {
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
struct Network {
    child: Child,
    base: String,
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn up(data: &Path, dataset: &Path, trainers: usize, extra: &[&str]) -> Network {
    let mut child = Command::new(BIN)
        .args(["up", "--http", "127.0.0.1:0", "--trainers", &trainers.to_string(), "--data-dir"])
        .arg(data)
        .arg("--dataset")
        .arg(dataset)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
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

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

fn dashboard(net: &Network) -> DashboardSnapshot {
    client().get(format!("{}/api/experiments/mnist-mlp/dashboard", net.base)).send().unwrap().json().unwrap()
}

fn wait_for_round(net: &Network, round: u64) -> DashboardSnapshot {
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

#[test]
fn native_trainers_over_libp2p_raise_accuracy_and_every_head_is_certified() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = prepare(dir.path());
    let net = up(&dir.path().join("node"), &dataset, 2, &[]);
    let snapshot = wait_for_round(&net, 5);
    let genesis = snapshot.heads.last().unwrap();
    let newest = snapshot.heads.first().unwrap();
    assert_eq!(genesis.round, 0);
    assert!(
        newest.metrics.val_accuracy > genesis.metrics.val_accuracy + 0.3,
        "accuracy {} → {}",
        genesis.metrics.val_accuracy,
        newest.metrics.val_accuracy
    );
    let info: ExperimentInfo = client().get(format!("{}/api/experiments/mnist-mlp", net.base)).send().unwrap().json().unwrap();
    info.manifest.verify().unwrap();
    assert_eq!((info.manifest.body.validators.len(), info.manifest.body.quorum), (2, 2), "2-of-2 validators by default");
    let head: HeadInfo = client().get(format!("{}/api/experiments/mnist-mlp/head", net.base)).send().unwrap().json().unwrap();
    head.head.verify_for(&info.manifest).unwrap();
    assert_eq!(head.head.certificate.len(), 2, "the seed's and the validator process's attestations");
    assert!(snapshot.heads.iter().filter(|h| h.round > 0).all(|h| h.attestations == 2));
    assert_eq!(head.id, head.head.id());
    let trainers: std::collections::HashSet<_> =
        snapshot.heads.iter().flat_map(|h| h.contributors.iter().map(|c| (c.peer_id.clone(), c.runtime))).collect();
    assert_eq!(trainers.len(), 2, "both native trainers contributed: {trainers:?}");
    assert!(trainers.iter().all(|(_, r)| *r == Runtime::NativeBurn));
    // The checkpoint blob is served and matches its id.
    let bytes = client().get(format!("{}/api/blobs/{}", net.base, head.head.checkpoint)).send().unwrap().bytes().unwrap();
    assert_eq!(BlobId::of(&bytes), head.head.checkpoint);
}

#[test]
fn an_http_peer_leases_trains_and_gets_merged_and_bad_updates_are_refused_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = prepare(dir.path());
    let data = dir.path().join("node");
    let net = up(&data, &dataset, 1, &["--min-updates", "1"]);
    wait_for_round(&net, 1);
    let http = client();
    let me = Identity::generate();
    let request = LeaseRequest { holder: me.peer_id().to_string(), runtime: Runtime::Browser };
    // 409 means the round is being merged right now: ask again, as the browser does.
    let grant: LeaseGrant = loop {
        let response = http.post(format!("{}/api/experiments/mnist-mlp/leases", net.base)).json(&request).send().unwrap();
        if response.status() != 409 {
            break response.json().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let lease = grant.lease.verify().unwrap().clone();

    // The slice is served, chunk-verifiable; another lease id is 404.
    let records = http.get(format!("{}/api/leases/{}/data", net.base, grant.lease_id)).send().unwrap().bytes().unwrap();
    let info: ExperimentInfo = http.get(format!("{}/api/experiments/mnist-mlp", net.base)).send().unwrap().json().unwrap();
    let shard = &info.dataset.train[lease.slice.shard as usize];
    shard.verify_slice(lease.slice.shard, lease.slice.first_record, lease.slice.count, 785, &records).unwrap();
    let missing = http.get(format!("{}/api/leases/{}/data", net.base, BlobId::of(b"x"))).send().unwrap();
    assert_eq!(missing.status(), 404);

    let params = info.manifest.body.model.parameter_count();
    let submit = |update: &protocol::Signed<Update>, delta: Vec<u8>| {
        http.post(format!("{}/api/leases/{}/update", net.base, grant.lease_id))
            .json(&UpdateSubmission { update: update.clone(), delta })
            .send()
            .unwrap()
    };
    let signed = |signer: &Identity, values: &[f32]| {
        let bytes = merge::encode_f32le(values);
        let update = signer.sign(Update {
            experiment: "mnist-mlp".into(),
            lease: grant.lease_id,
            base_head: lease.base_head,
            delta: BlobId::of(&bytes),
            encoding: DeltaEncoding::F32Le,
            holder: me.peer_id().to_string(),
            runtime: Runtime::Browser,
            train_loss: 1.0,
            steps: 1,
        });
        (update, bytes)
    };
    let reason = |response: reqwest::blocking::Response| -> (u16, String) {
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().unwrap();
        (status, body["error"].as_str().unwrap_or_default().to_string())
    };

    // Signed by someone else while naming us as holder.
    let (forged, bytes) = signed(&Identity::generate(), &vec![0.0; params]);
    let (status, why) = reason(submit(&forged, bytes));
    assert_eq!(status, 422);
    assert!(why.contains("signature"), "{why}");
    // Not finite.
    let (nan, bytes) = signed(&me, &vec![f32::NAN; params]);
    let (status, why) = reason(submit(&nan, bytes));
    assert!(status == 422 && why.contains("not finite"), "{why}");
    // Wrong shape.
    let (short, bytes) = signed(&me, &[0.0; 10]);
    assert!(reason(submit(&short, bytes)).1.contains("shape"));
    // Malformed JSON body is a 400 with a message.
    let bad = http.post(format!("{}/api/leases/{}/update", net.base, grant.lease_id)).body("{").header("content-type", "application/json").send().unwrap();
    assert_eq!(bad.status(), 400);

    // A real (small) delta is accepted and merged into the next head, weighted by the lease.
    let (good, bytes) = signed(&me, &vec![1e-4; params]);
    let accepted = submit(&good, bytes);
    assert_eq!(accepted.status(), 200);
    // A second update on the same lease is refused: as a duplicate, or because our update
    // just filled the round (min 1) and it is closing.
    let (dup, bytes) = signed(&me, &vec![2e-4; params]);
    let (status, why) = reason(submit(&dup, bytes));
    assert!(status >= 400 && (why.contains("already") || why.contains("closed")), "{status} {why}");
    let snapshot = wait_for_round(&net, lease.round);
    let head = snapshot.heads.iter().find(|h| h.round == lease.round).unwrap();
    let mine = head.contributors.iter().find(|c| c.peer_id == me.peer_id().to_string()).expect("our update was merged");
    assert_eq!(mine.runtime, Runtime::Browser);
    assert_eq!(mine.examples, lease.slice.count, "weight comes from the lease");
    assert!(snapshot.recent_events.iter().any(|e| matches!(e, protocol::api::NetworkEvent::UpdateRejected { .. })));

    // Restart from the data directory: no promoted head is lost.
    let before = snapshot.heads.first().unwrap().round;
    drop(net);
    let net = up(&data, &dataset, 0, &[]);
    let after = dashboard(&net);
    assert!(after.heads.first().unwrap().round >= before);
    assert_eq!(after.heads.last().unwrap().round, 0);
}

/// The interpreter with the `bonfire_worker` package (`cargo xtask setup` installs it).
fn worker_python() -> PathBuf {
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
fn python_workers(root: u32) -> Vec<u32> {
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

#[test]
fn a_python_trainer_and_a_burn_trainer_merge_into_the_same_heads() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = prepare(dir.path());
    let python = worker_python();
    let python = python.to_str().unwrap();
    let net = up(&dir.path().join("node"), &dataset, 1, &["--python-trainers", "1", "--python", python]);
    let snapshot = wait_for_round(&net, 6);
    let genesis = snapshot.heads.last().unwrap();
    let newest = snapshot.heads.first().unwrap();
    assert!(
        newest.metrics.val_accuracy > genesis.metrics.val_accuracy + 0.3,
        "accuracy {} → {}",
        genesis.metrics.val_accuracy,
        newest.metrics.val_accuracy
    );
    let runtimes = |h: &protocol::api::HeadSummary| h.contributors.iter().map(|c| c.runtime).collect::<Vec<_>>();
    let python_heads = snapshot.heads.iter().filter(|h| runtimes(h).contains(&Runtime::NativePython)).count();
    let burn_heads = snapshot.heads.iter().filter(|h| runtimes(h).contains(&Runtime::NativeBurn)).count();
    let mixed = snapshot
        .heads
        .iter()
        .filter(|h| runtimes(h).contains(&Runtime::NativePython) && runtimes(h).contains(&Runtime::NativeBurn))
        .count();
    assert!(python_heads >= 1 && burn_heads >= 1, "python in {python_heads} heads, burn in {burn_heads}");
    assert!(mixed >= 1, "no head merged both runtimes: {:?}", snapshot.heads.iter().map(runtimes).collect::<Vec<_>>());

    // Kill the Python worker: the trainer starts a new one and keeps contributing.
    let workers = python_workers(net.child.id());
    assert_eq!(workers.len(), 1, "one python worker: {workers:?}");
    let status = Command::new("kill").args(["-9", &workers[0].to_string()]).status().unwrap();
    assert!(status.success());
    let killed_at = dashboard(&net).heads.first().unwrap().round;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let snapshot = dashboard(&net);
        let later_python =
            snapshot.heads.iter().any(|h| h.round > killed_at + 1 && runtimes(h).contains(&Runtime::NativePython));
        if later_python {
            break;
        }
        assert!(Instant::now() < deadline, "no python update merged after the worker was killed at round {killed_at}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let again = python_workers(net.child.id());
    assert!(again.len() == 1 && again != workers, "a new worker replaced the killed one: {workers:?} → {again:?}");
}

/// Pids of `bonfire up`'s direct children started for `role` (e.g. "validator").
fn role_children(parent: u32, role: &str) -> Vec<u32> {
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
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_validator_killed_and_restarted_resumes_and_no_head_is_lost_or_forked() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = prepare(dir.path());
    let node = dir.path().join("node");
    let net = up(&node, &dataset, 2, &[]);
    wait_for_round(&net, 3);

    let validators = role_children(net.child.id(), "validator");
    assert_eq!(validators.len(), 1, "one validator process besides the seed: {validators:?}");
    assert!(Command::new("kill").args(["-9", &validators[0].to_string()]).status().unwrap().success());
    let at_kill = dashboard(&net).heads.first().unwrap().round;
    // Two of two: without the second validator no head can be promoted (one already attested
    // may still land).
    std::thread::sleep(Duration::from_secs(4));
    let stalled = dashboard(&net).heads.first().unwrap().round;
    assert!(stalled <= at_kill + 1, "heads went on without the validator: {at_kill} → {stalled}");

    // Restart it by hand from its data directory: it catches up and the rounds go on.
    let info: protocol::api::NetworkInfo = client().get(format!("{}/api/network", net.base)).send().unwrap().json().unwrap();
    let validator = Killed(
        Command::new(BIN)
            .args(["validator", "--data-dir"])
            .arg(node.join("validator-2"))
            .args(["--bootstrap", &info.listen_addrs[0], "--name", "validator-2"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_round(&net, stalled + 3);
    drop(net);
    drop(validator);

    // Every head on the seed's disk: contiguous, each extending the last, each certified by both.
    let out = Command::new(BIN).args(["heads", "verify", "--data-dir"]).arg(node.join("seed")).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report:#}");
    assert_eq!(report["problems"].as_array().unwrap().len(), 0, "{report:#}");
    assert!(report["heads"].as_u64().unwrap() >= stalled + 4, "{report:#}");
    assert_eq!(report["heads"], report["heads_with_valid_certificate"]);
    assert_eq!(report["quorum"], 2);
}

/// Leases over HTTP for a fresh peer, retrying while the round is being merged (409).
fn lease_for(net: &Network, who: &Identity) -> LeaseGrant {
    let request = LeaseRequest { holder: who.peer_id().to_string(), runtime: Runtime::Browser };
    loop {
        let response = client().post(format!("{}/api/experiments/mnist-mlp/leases", net.base)).json(&request).send().unwrap();
        if response.status() != 409 {
            assert!(response.status().is_success(), "lease refused: {}", response.status());
            return response.json().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_lease_whose_holder_vanished_expires_and_its_slice_is_leased_again() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = prepare(dir.path());
    // Rounds need 3 updates: the two native trainers and one HTTP peer.
    let net = up(&dir.path().join("node"), &dataset, 2, &["--min-updates", "3", "--lease-ttl-secs", "3", "--round-deadline-secs", "120"]);
    // A peer takes a lease and dies without an update (a trainer killed mid-lease).
    let vanished = lease_for(&net, &Identity::generate());
    let round = vanished.lease.body.round;
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(dashboard(&net).heads.first().unwrap().round, round - 1, "the round waits for a third update");

    // The next peer gets the orphaned slice, trains (a small real delta) and the round closes.
    let me = Identity::generate();
    let grant = lease_for(&net, &me);
    assert_eq!(grant.lease.body.slice, vanished.lease.body.slice, "the expired lease's slice is leased again");
    assert_eq!(grant.lease.body.round, round);
    let info: ExperimentInfo = client().get(format!("{}/api/experiments/mnist-mlp", net.base)).send().unwrap().json().unwrap();
    let bytes = merge::encode_f32le(&vec![1e-4; info.manifest.body.model.parameter_count()]);
    let update = me.sign(Update {
        experiment: "mnist-mlp".into(),
        lease: grant.lease_id,
        base_head: grant.lease.body.base_head,
        delta: BlobId::of(&bytes),
        encoding: DeltaEncoding::F32Le,
        holder: me.peer_id().to_string(),
        runtime: Runtime::Browser,
        train_loss: 1.0,
        steps: 1,
    });
    let response = client()
        .post(format!("{}/api/leases/{}/update", net.base, grant.lease_id))
        .json(&UpdateSubmission { update, delta: bytes })
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let snapshot = wait_for_round(&net, round);
    let head = snapshot.heads.iter().find(|h| h.round == round).unwrap();
    assert_eq!(head.contributors.len(), 3, "both trainers and the peer that took over the slice");
    assert!(head.contributors.iter().any(|c| c.peer_id == me.peer_id().to_string()));
}
