//! Multi-process tests over loopback: the real `bonfire` binary prepares a dataset from IDX
//! files, runs the seed (validator + edge) with native trainers over libp2p, and a test client
//! plays a browser over HTTP.


mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use protocol::api::{ExperimentInfo, HeadInfo, LeaseGrant, LeaseRequest, UpdateSubmission};
use protocol::update::{Runtime, Update};
use protocol::{BlobId, Identity};

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
    // Both native transports carry traffic: the validator came over QUIC, the trainers over TCP.
    let transport = |role: &str| snapshot.peers.iter().filter(|p| p.role == role).map(|p| p.transport.clone()).collect::<Vec<_>>();
    assert_eq!(transport("validator"), ["quic"], "{:?}", snapshot.peers);
    assert_eq!(transport("trainer"), ["tcp", "tcp"], "{:?}", snapshot.peers);
    assert_eq!(head.id, head.head.id());
    let trainers: std::collections::HashSet<_> =
        snapshot.heads.iter().flat_map(|h| h.contributors.iter().map(|c| (c.peer_id.clone(), c.runtime))).collect();
    assert_eq!(trainers.len(), 2, "both native trainers contributed: {trainers:?}");
    assert!(trainers.iter().all(|(_, r)| *r == Runtime::NativeBurn));
    // Both validators issue leases, each over its own share of the slices; the seed registers
    // the validator process's, and their updates are merged like its own.
    let validator = metrics_url(&dir.path().join("node/validator-2"));
    let issued_by_validator = metric(&validator, "bonfire_leases_granted_total", "");
    let registered = metric(&format!("{}/metrics", net.base), "bonfire_leases_registered_total", "");
    assert!(issued_by_validator >= 2.0 && registered >= issued_by_validator - 1.0, "{issued_by_validator} issued, {registered} registered");
    // The checkpoint blob is served and matches its id.
    let bytes = client().get(format!("{}/api/blobs/{}", net.base, head.head.checkpoint)).send().unwrap().bytes().unwrap();
    assert_eq!(BlobId::of(&bytes), head.head.checkpoint);
    // Whole dataset shards are not served over HTTP (peers sync them over libp2p).
    let info: ExperimentInfo = client().get(format!("{}/api/experiments/mnist-mlp", net.base)).send().unwrap().json().unwrap();
    let shard = client().get(format!("{}/api/blobs/{}", net.base, info.dataset.validation.blob)).send().unwrap();
    assert_eq!(shard.status(), 403, "{}", shard.text().unwrap_or_default());
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
    // Asking in another peer's name: without a proof, or with a proof signed by someone else.
    let leases = format!("{}/api/experiments/mnist-mlp/leases", net.base);
    let unproven = LeaseRequest { holder: me.peer_id().to_string(), runtime: Runtime::Browser, proof: None };
    let refused = http.post(&leases).json(&unproven).send().unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().unwrap().contains("needs `proof`"));
    let stranger = Identity::generate();
    let mut forged = LeaseRequest::signed(&stranger, "mnist-mlp", Runtime::Browser, now_ms());
    forged.holder = me.peer_id().to_string();
    let refused = http.post(&leases).json(&forged).send().unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().unwrap().contains("not signed by its holder"));
    // 409 means the round is being merged right now: ask again, as the browser does.
    let grant: LeaseGrant = loop {
        let request = LeaseRequest::signed(&me, "mnist-mlp", Runtime::Browser, now_ms());
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
    let signed = |signer: &Identity, values: &[f32]| signed_update(signer, &me, &grant, values);
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

#[test]
fn every_role_serves_prometheus_metrics_that_follow_the_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = prepare(dir.path());
    let net = up(&dir.path().join("node"), &dataset, 2, &[]);
    let snapshot = wait_for_round(&net, 3);
    let text = client().get(format!("{}/metrics", net.base)).send().unwrap().text().unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert!(text.contains("# TYPE bonfire_rounds_promoted_total counter"), "{text}");
    assert!(value("bonfire_head_round") >= 3.0 && value("bonfire_rounds_promoted_total") >= 3.0, "{text}");
    assert!(value("bonfire_updates_accepted_total") >= 2.0 * 3.0 - 1.0, "{text}");
    assert!(value("bonfire_attestation_requests_total") >= 3.0, "{text}");
    assert!(value("bonfire_blob_bytes_in_total") > 0.0 && value("bonfire_blob_bytes_out_total") > 0.0, "{text}");

    // The reducer `up` starts: it proposes every closed round, and the seed and the validator
    // process each find its aggregate equal to their own.
    let node = dir.path().join("node");
    let reducer = metrics_url(&node.join("reducer-1"));
    let validator = metrics_url(&node.join("validator-2"));
    let round = snapshot.heads.first().unwrap().round;
    let deadline = Instant::now() + Duration::from_secs(120);
    let agreed = |url: &str| metric(url, "bonfire_reductions_total", "verdict=\"agreed\"");
    while agreed(&format!("{}/metrics", net.base)) < 2.0 || agreed(&validator) < 2.0 {
        assert!(Instant::now() < deadline, "the reducer's proposals were not agreed twice by the seed and the validator");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(metric(&reducer, "bonfire_reductions_made_total", "outcome=\"proposed\"") >= 2.0);
    assert_eq!(metric(&format!("{}/metrics", net.base), "bonfire_reductions_total", "verdict=\"wrong\""), 0.0);
    // The reducer holds the promoted checkpoints it proposed (it serves them by blob id).
    let newest = wait_for_round(&net, round + 1);
    let head = newest.heads.first().unwrap();
    let full: HeadInfo = client().get(format!("{}/api/experiments/mnist-mlp/head", net.base)).send().unwrap().json().unwrap();
    assert!(full.head.round >= head.round);
    assert!(node.join("reducer-1/blobs").join(full.head.checkpoint.to_hex()).exists(), "the reducer proposed the promoted checkpoint");
    assert!(newest.peers.iter().any(|p| p.role == "reducer"), "{:?}", newest.peers);
}

/// Every role as its own command, the way an operator spreads them over machines: `bonfire
/// seed` names a second validator by peer id, then a validator, a reducer and two trainers join
/// it by its address. Heads are promoted with both attestations and the reducer's proposals.
#[test]
fn separately_started_roles_form_a_network() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = prepare(dir.path());
    let validator_dir = dir.path().join("validator");
    let validator_id = peer_id_of(&validator_dir);
    let (net, printed) = seed_process(&dir.path().join("seed"), &dataset, &["--validator", &validator_id]);
    assert!(printed.iter().any(|l| l.contains(&validator_id) && l.contains("bonfire validator --bootstrap")), "{printed:?}");

    let info = network_info(&net);
    let quic = info.listen_addrs.iter().find(|a| a.contains("/quic-v1/")).expect("a QUIC address");
    let tcp = &info.listen_addrs[0];
    let _roles = [
        spawn_role("validator", &validator_dir, quic, "validator", &[]),
        spawn_role("reducer", &dir.path().join("reducer"), tcp, "reducer", &[]),
        spawn_role("trainer", &dir.path().join("trainer-a"), tcp, "trainer-a", &[]),
        spawn_role("trainer", &dir.path().join("trainer-b"), tcp, "trainer-b", &[]),
    ];
    let snapshot = wait_for_round(&net, 4);
    assert_eq!(snapshot.validators.len(), 2);
    assert!(snapshot.validators.contains(&validator_id));
    assert!(snapshot.heads.iter().filter(|h| h.round > 0).all(|h| h.attestations == 2), "{:?}", snapshot.heads);
    let mut roles: Vec<&str> = snapshot.peers.iter().map(|p| p.role.as_str()).collect();
    roles.sort();
    assert_eq!(roles, ["reducer", "trainer", "trainer", "validator"], "{:?}", snapshot.peers);
    let agreed = metric(&format!("{}/metrics", net.base), "bonfire_reductions_total", "verdict=\"agreed\"");
    assert!(agreed >= 1.0, "the reducer's proposals were checked and agreed: {agreed}");
    drop(net);
    let (ok, report) = verify_heads(&dir.path().join("seed"));
    assert!(ok, "{report:#}");
    assert_eq!(report["heads"], report["heads_with_valid_certificate"], "{report:#}");
}
