//! Fault drills, each against a real local network of `bonfire` processes on loopback with real
//! tensors. They run as tests in `cargo xtask test`; `cargo xtask drills --out DIR` runs them one
//! by one and writes what each observed to `DIR/drills.json`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use protocol::api::{ExperimentInfo, UpdateSubmission};
use protocol::Identity;
use serde_json::json;

/// A validator killed and restarted resumes from its data directory; no promoted head is lost
/// or forked.
#[test]
fn validator_restart() {
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
    // What the seed saw of its proposals meanwhile (over QUIC a killed peer is noticed only
    // when its connection times out, so a request may still be pending).
    let metrics = client().get(format!("{}/metrics", net.base)).send().unwrap().text().unwrap();
    let unreachable = metrics.lines().any(|l| l.starts_with("bonfire_attestation_requests_total{outcome=\"unreachable\"}"));
    let stall_ok = stalled <= at_kill + 1;

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
    let restarted = Instant::now();
    wait_for_round(&net, stalled + 3);
    let three_rounds_after_restart_s = restarted.elapsed().as_secs_f64();
    drop(net);
    drop(validator);

    // Every head on the seed's disk: contiguous, each extending the last, each certified by both.
    let out = Command::new(BIN).args(["heads", "verify", "--data-dir"]).arg(node.join("seed")).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    observe(
        "validator_restart",
        json!({
            "round_at_kill": at_kill,
            "round_after_4_s_without_it": stalled,
            "seed_found_it_unreachable": unreachable,
            "seconds_from_restart_to_3_more_rounds": three_rounds_after_restart_s,
            "heads_on_disk": report["heads"],
            "heads_with_valid_certificate": report["heads_with_valid_certificate"],
            "problems": report["problems"],
        }),
    );
    assert!(stall_ok, "heads went on without the validator: {at_kill} → {stalled}");
    assert!(out.status.success(), "{report:#}");
    assert_eq!(report["problems"].as_array().unwrap().len(), 0, "{report:#}");
    assert!(report["heads"].as_u64().unwrap() >= stalled + 4, "{report:#}");
    assert_eq!(report["heads"], report["heads_with_valid_certificate"]);
    assert_eq!(report["quorum"], 2);
}

/// A trainer that dies holding a lease: the lease expires, its slice is leased again and the
/// round still closes.
#[test]
fn trainer_vanished_mid_lease() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = prepare(dir.path());
    // Rounds need 3 updates: the two native trainers and one HTTP peer.
    let net = up(&dir.path().join("node"), &dataset, 2, &["--min-updates", "3", "--lease-ttl-secs", "3", "--round-deadline-secs", "120"]);
    // Both native trainers hold their leases first, so the orphaned slice can only go to the
    // peer that asks next.
    let deadline = Instant::now() + Duration::from_secs(60);
    while dashboard(&net).leases.len() < 2 {
        assert!(Instant::now() < deadline, "the native trainers never took their leases");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A peer takes a lease and dies without an update (a trainer killed mid-lease).
    let vanished = lease_for(&net, &Identity::generate());
    let round = vanished.lease.body.round;
    let expires_in_ms = vanished.lease.body.expires_at - vanished.lease.body.issued_at;
    std::thread::sleep(Duration::from_millis(expires_in_ms + 500));
    let waiting = dashboard(&net).heads.first().unwrap().round;

    // The next peer gets the orphaned slice, trains (a small real delta) and the round closes.
    let me = Identity::generate();
    let grant = lease_for(&net, &me);
    let released_after_s = (grant.lease.body.issued_at - vanished.lease.body.issued_at) as f64 / 1000.0;
    observe(
        "trainer_vanished_mid_lease",
        json!({
            "lease_ttl_s": expires_in_ms as f64 / 1000.0,
            "slice": vanished.lease.body.slice,
            "seconds_until_the_slice_was_leased_again": released_after_s,
            "same_slice_leased_again": grant.lease.body.slice == vanished.lease.body.slice,
            "round_waited": waiting == round - 1,
        }),
    );
    assert_eq!(waiting, round - 1, "the round waits for a third update");
    assert_eq!(grant.lease.body.slice, vanished.lease.body.slice, "the expired lease's slice is leased again");
    assert_eq!(grant.lease.body.round, round);
    let info: ExperimentInfo = client().get(format!("{}/api/experiments/mnist-mlp", net.base)).send().unwrap().json().unwrap();
    let (update, bytes) = signed_update(&me, &me, &grant, &vec![1e-4; info.manifest.body.model.parameter_count()]);
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

/// A trainer that joins late syncs the current head and the shards it needs, and contributes.
#[test]
fn late_joiner() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = prepare(dir.path());
    let node = dir.path().join("node");
    let net = up(&node, &dataset, 2, &[]);
    wait_for_round(&net, 10);
    let joined_at_round = dashboard(&net).heads.first().unwrap().round;
    let late = node.join("late-trainer");
    let peer = String::from_utf8(Command::new(BIN).args(["id", "--data-dir"]).arg(&late).output().unwrap().stdout).unwrap();
    let peer = peer.trim().to_string();
    let info: protocol::api::NetworkInfo = client().get(format!("{}/api/network", net.base)).send().unwrap().json().unwrap();
    let started = Instant::now();
    let _trainer = Killed(
        Command::new(BIN)
            .args(["trainer", "--data-dir"])
            .arg(&late)
            .args(["--bootstrap", &info.listen_addrs[0], "--name", "late-trainer"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let head = loop {
        let snapshot = dashboard(&net);
        if let Some(head) = snapshot.heads.iter().find(|h| h.contributors.iter().any(|c| c.peer_id == peer)) {
            break Some(head.clone());
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let synced_shards = std::fs::read_dir(late.join("blobs")).map(|d| d.count()).unwrap_or(0);
    observe(
        "late_joiner",
        json!({
            "joined_at_round": joined_at_round,
            "first_contribution_round": head.as_ref().map(|h| h.round),
            "seconds_to_first_contribution": head.as_ref().map(|_| started.elapsed().as_secs_f64()),
            "blobs_synced": synced_shards,
        }),
    );
    let head = head.expect("the late trainer contributed within 120 s");
    assert!(head.round > joined_at_round);
}
