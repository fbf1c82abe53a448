//! Fault drills, each against a real local network of `bonfire` processes on loopback with real
//! tensors. They run as tests in `cargo xtask test`; `cargo xtask drills --out DIR` runs them one
//! by one and writes what each observed to `DIR/drills.json`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use protocol::api::{ExperimentInfo, HeadInfo, UpdateSubmission};
use protocol::head::{Head, Metrics};
use protocol::{BlobId, Identity, Signed};
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
    let validator = spawn_role("validator", &node.join("validator-2"), &info.listen_addrs[0], "validator-2", &[]);
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
/// Its shard comes chunk by chunk from several peers at once (the trainers that hold it and the
/// seed), every chunk checked against the dataset manifest.
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
    let _trainer = spawn_role("trainer", &late, &info.listen_addrs[0], "late-trainer", &["--metrics", "127.0.0.1:0"]);
    let late_metrics = metrics_url(&late);
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
    let chunks = metric(&late_metrics, "bonfire_chunks_synced_total", "");
    let sync_peers = metric(&late_metrics, "bonfire_shard_sync_peers", "");
    observe(
        "late_joiner",
        json!({
            "joined_at_round": joined_at_round,
            "first_contribution_round": head.as_ref().map(|h| h.round),
            "seconds_to_first_contribution": head.as_ref().map(|_| started.elapsed().as_secs_f64()),
            "blobs_synced": synced_shards,
            "shard_chunks_synced": chunks,
            "peers_the_last_shard_came_from": sync_peers,
        }),
    );
    let head = head.expect("the late trainer contributed within 120 s");
    assert!(head.round > joined_at_round);
    assert!(chunks >= 10.0, "a whole shard (10 chunks) was synced chunk by chunk: {chunks}");
    assert!(sync_peers >= 2.0, "the shard came from the seed and at least one trainer that held it: {sync_peers}");
}

/// Heads forged by a peer outside the validator set and gossiped into the network never count:
/// the seed and a trainer refuse each (by reason, in their metrics), the rounds go on, and every
/// head on the seed's disk carries a valid certificate.
#[test]
fn forged_heads_never_count() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = prepare(dir.path());
    let node = dir.path().join("node");
    let net = up(&node, &dataset, 2, &[]);
    wait_for_round(&net, 2);

    // A trainer of our own whose metrics we can read: it shows what a non-seed role does.
    let info: protocol::api::NetworkInfo = client().get(format!("{}/api/network", net.base)).send().unwrap().json().unwrap();
    let observer = node.join("observer");
    let _trainer = spawn_role("trainer", &observer, &info.listen_addrs[0], "observer", &["--metrics", "127.0.0.1:0"]);
    let trainer_metrics = metrics_url(&observer);
    // It hears heads by gossip once a certified one has reached it.
    let deadline = Instant::now() + Duration::from_secs(120);
    while gossiped_heads(&trainer_metrics, "outcome=\"certified\"") < 1.0 {
        assert!(Instant::now() < deadline, "the observer trainer never heard a certified head");
        std::thread::sleep(Duration::from_millis(200));
    }

    let current: HeadInfo = client().get(format!("{}/api/experiments/mnist-mlp/head", net.base)).send().unwrap().json().unwrap();
    let forged = forged_heads(&current.head);
    let tcp = info.listen_addrs.iter().find(|a| a.contains("/tcp/") && !a.contains("/ws")).expect("a TCP listen address");
    let rogue = gossip_heads(tcp, forged.iter().map(|(_, head)| head));
    let before = current.head.round;
    let snapshot = wait_for_round(&net, before + 2);
    // The head actually promoted for the round the forgeries claimed.
    let promoted = snapshot.heads.iter().find(|h| h.round == before + 1).expect("the forged round's real head").clone();

    let seed_metrics = format!("{}/metrics", net.base);
    let mut refused = serde_json::Map::new();
    for (reason, _) in &forged {
        let label = format!("outcome=\"refused\",reason=\"{reason}\"");
        refused.insert(
            reason.to_string(),
            json!({ "seed": gossiped_heads(&seed_metrics, &label), "trainer": gossiped_heads(&trainer_metrics, &label) }),
        );
    }
    drop(net);
    let out = Command::new(BIN).args(["heads", "verify", "--data-dir"]).arg(node.join("seed")).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let promoted_forgery = forged.iter().any(|(_, h)| h.checkpoint == promoted.checkpoint || h.id() == promoted.id);
    observe(
        "forged_heads_never_count",
        json!({
            "rogue_peer": rogue,
            "forged_round": before + 1,
            "refused_by_reason": refused,
            "heads_on_disk": report["heads"],
            "heads_with_valid_certificate": report["heads_with_valid_certificate"],
            "promoted_head_of_that_round": promoted.id.to_string(),
            "its_attestations": promoted.attestations,
            "a_forgery_was_promoted": promoted_forgery,
        }),
    );
    for (reason, counts) in &refused {
        assert!(counts["seed"].as_f64().unwrap() >= 1.0, "the seed did not refuse the {reason} forgery: {refused:?}");
        assert!(counts["trainer"].as_f64().unwrap() >= 1.0, "the trainer did not refuse the {reason} forgery: {refused:?}");
    }
    assert!(out.status.success(), "{report:#}");
    assert_eq!(report["heads"], report["heads_with_valid_certificate"], "{report:#}");
    assert!(report["heads"].as_u64().unwrap() >= before + 3, "{report:#}");
    assert!(!promoted_forgery, "a forged head was promoted: {promoted:?}");
    assert_eq!(promoted.parent, Some(current.id), "the round after the forgeries extends the real head");
}

/// `bonfire_gossiped_heads_total` series at `url` whose labels contain `labels`.
fn gossiped_heads(url: &str, labels: &str) -> f64 {
    metric(url, "bonfire_gossiped_heads_total", labels)
}

/// Heads for the round after `current`, each forged a different way, with the certificate fault
/// a verifier must find (the `reason` label of `bonfire_gossiped_heads_total`).
fn forged_heads(current: &Head) -> Vec<(&'static str, Head)> {
    let next = |checkpoint: &[u8]| Head {
        experiment: current.experiment.clone(),
        round: current.round + 1,
        parent: Some(current.id()),
        checkpoint: BlobId::of(checkpoint),
        metrics: Metrics { val_accuracy: 0.99, ..current.metrics },
        contributions: Vec::new(),
        certificate: Vec::new(),
        promoted_at: current.promoted_at + 1,
    };
    // Attested by two keys that are not the experiment's validators.
    let mut outsiders = next(b"forged by outsiders");
    let body = outsiders.expected_attestation();
    outsiders.certificate = vec![Identity::generate().sign(body.clone()), Identity::generate().sign(body)];
    // The validators' real attestations of the current head, rewritten to say this one.
    let mut tampered = next(b"tampered attestations");
    let body = tampered.expected_attestation();
    tampered.certificate = current.certificate.iter().map(|a| Signed { body: body.clone(), ..a.clone() }).collect();
    // The validators' real, untouched attestations of the current head, replayed for this one.
    let mut replayed = next(b"replayed attestations");
    replayed.certificate = current.certificate.clone();
    vec![("not-a-validator", outsiders), ("bad-signature", tampered), ("mismatch", replayed)]
}

/// Joins the seed's gossip at `bootstrap` as a fresh peer (outside the validator set) and
/// publishes `heads` on the experiment's heads topic; returns the rogue's peer id.
fn gossip_heads<'a>(bootstrap: &str, heads: impl Iterator<Item = &'a Head>) -> String {
    use futures::StreamExt;
    use libp2p::swarm::SwarmEvent;
    use libp2p::{gossipsub, noise, tcp, yamux, Multiaddr};
    use protocol::wire::{self, Announcement};

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|key| {
                let config = gossipsub::ConfigBuilder::default()
                    .heartbeat_interval(Duration::from_millis(wire::GOSSIP_HEARTBEAT_MS))
                    .max_transmit_size(wire::MAX_GOSSIP_BYTES)
                    .build()
                    .unwrap();
                let behaviour: gossipsub::Behaviour = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config).unwrap();
                behaviour
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
            .build();
        let rogue = swarm.local_peer_id().to_string();
        let topic = gossipsub::IdentTopic::new(wire::heads_topic("mnist-mlp"));
        swarm.behaviour_mut().subscribe(&topic).unwrap();
        swarm.dial(bootstrap.parse::<Multiaddr>().unwrap()).unwrap();
        // Publishing needs a peer known to be on the topic: wait for the seed's subscription.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let event = tokio::time::timeout_at(deadline, swarm.select_next_some()).await.expect("the seed never showed its subscription");
            if let SwarmEvent::Behaviour(gossipsub::Event::Subscribed { topic: t, .. }) = event {
                if t == topic.hash() {
                    break;
                }
            }
        }
        for head in heads {
            let data = postcard::to_allocvec(&Announcement::Head(Box::new(head.clone()))).unwrap();
            swarm.behaviour_mut().publish(topic.clone(), data).unwrap();
        }
        // Keep polling a little so the messages leave and the seed forwards them.
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        while tokio::time::timeout_at(until, swarm.select_next_some()).await.is_ok() {}
        rogue
    })
}

/// A local network whose only reducer is started by the drill, misbehaving on purpose.
struct ReducerDrill {
    _dir: tempfile::TempDir,
    node: std::path::PathBuf,
    net: Network,
    reducer: Killed,
    /// The newest round when the seed first listed the reducer among its peers.
    joined_at_round: u64,
    seed_metrics: String,
    validator_metrics: String,
}

impl ReducerDrill {
    fn start(misbehave: &str, up_extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let dataset = prepare(dir.path());
        let node = dir.path().join("node");
        let args: Vec<&str> = ["--reducers", "0"].iter().copied().chain(up_extra.iter().copied()).collect();
        let net = up(&node, &dataset, 2, &args);
        wait_for_round(&net, 1);
        let info = network_info(&net);
        let reducer_dir = node.join("drill-reducer");
        let reducer = spawn_role("reducer", &reducer_dir, &info.listen_addrs[0], "drill-reducer", &["--misbehave", misbehave]);
        let deadline = Instant::now() + Duration::from_secs(60);
        let joined_at_round = loop {
            let snapshot = dashboard(&net);
            if snapshot.peers.iter().any(|p| p.role == "reducer") {
                break snapshot.heads.first().map_or(0, |h| h.round);
            }
            assert!(Instant::now() < deadline, "the reducer never showed among the seed's peers");
            std::thread::sleep(Duration::from_millis(100));
        };
        let seed_metrics = format!("{}/metrics", net.base);
        let validator_metrics = metrics_url(&node.join("validator-2"));
        ReducerDrill { _dir: dir, node, net, reducer, joined_at_round, seed_metrics, validator_metrics }
    }

    /// `bonfire_reductions_total` by verdict on the seed and on the validator process.
    fn verdicts(&self, verdict: &str) -> (f64, f64) {
        let label = format!("verdict=\"{verdict}\"");
        (metric(&self.seed_metrics, "bonfire_reductions_total", &label), metric(&self.validator_metrics, "bonfire_reductions_total", &label))
    }

    /// Waits (up to 180 s) until `done` holds, polling once a second.
    fn until(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(180);
        while !done(self) {
            assert!(Instant::now() < deadline, "{what} did not happen within 180 s");
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Stops the network; the heads on the seed's disk, re-verified.
    fn finish(self) -> (bool, serde_json::Value, u64) {
        let newest = dashboard(&self.net).heads.first().map_or(0, |h| h.round);
        drop(self.reducer);
        drop(self.net);
        let (ok, report) = verify_heads(&self.node.join("seed"));
        (ok, report, newest)
    }
}

/// A reducer that proposes a wrong aggregate: the seed and the validator each find that its
/// checkpoint is not the aggregate of the inputs, propose and attest their own, and the heads
/// go on, every one certified.
#[test]
fn reducer_wrong_aggregate() {
    let drill = ReducerDrill::start("wrong-aggregate", &[]);
    let joined = drill.joined_at_round;
    drill.until("three wrong proposals caught by the seed and the validator", |d| {
        let (seed, validator) = d.verdicts("wrong");
        seed >= 3.0 && validator >= 3.0
    });
    let (wrong_seed, wrong_validator) = drill.verdicts("wrong");
    let (agreed_seed, agreed_validator) = drill.verdicts("agreed");
    let (verified, report, newest) = drill.finish();
    observe(
        "reducer_wrong_aggregate",
        json!({
            "reducer_joined_at_round": joined,
            "newest_round": newest,
            "wrong_proposals_caught": { "seed": wrong_seed, "validator": wrong_validator },
            "agreeing_proposals": { "seed": agreed_seed, "validator": agreed_validator },
            "heads_on_disk": report["heads"],
            "heads_with_valid_certificate": report["heads_with_valid_certificate"],
        }),
    );
    assert_eq!((agreed_seed, agreed_validator), (0.0, 0.0), "a wrong aggregate was taken for a right one");
    assert!(newest >= joined + 3, "rounds went on: joined at {joined}, newest {newest}");
    assert!(verified, "{report:#}");
    assert_eq!(report["heads"], report["heads_with_valid_certificate"], "{report:#}");
}

/// A reducer that never answers: each closing round waits for it only as long as the seed's
/// reduce timeout, counts it missing and merges on its own.
#[test]
fn reducer_silent() {
    let drill = ReducerDrill::start("silent", &["--reduce-timeout-ms", "1000"]);
    let joined = drill.joined_at_round;
    let started = Instant::now();
    drill.until("three rounds without the reducer's answer", |d| metric(&d.seed_metrics, "bonfire_reductions_total", "verdict=\"missing\"") >= 3.0);
    let missing = metric(&drill.seed_metrics, "bonfire_reductions_total", "verdict=\"missing\"");
    let seconds = started.elapsed().as_secs_f64();
    let (verified, report, newest) = drill.finish();
    observe(
        "reducer_silent",
        json!({
            "reducer_joined_at_round": joined,
            "newest_round": newest,
            "rounds_the_reducer_missed": missing,
            "reduce_timeout_ms": 1000,
            "seconds_for_those_rounds": seconds,
            "heads_on_disk": report["heads"],
            "heads_with_valid_certificate": report["heads_with_valid_certificate"],
        }),
    );
    assert!(newest >= joined + 3, "rounds went on: joined at {joined}, newest {newest}");
    assert!(verified, "{report:#}");
    assert_eq!(report["heads"], report["heads_with_valid_certificate"], "{report:#}");
}

/// A peer that serves corrupt blobs (a reducer whose delta copies have a flipped byte): the
/// validator, which asks the reducer first, rejects each by hash and fetches the delta from
/// the seed instead; the rounds go on with the reducer's (right) aggregates agreed.
#[test]
fn corrupt_blob_from_a_peer() {
    let drill = ReducerDrill::start("corrupt-blobs", &[]);
    let joined = drill.joined_at_round;
    drill.until("corrupt deltas rejected over three rounds", |d| {
        metric(&d.validator_metrics, "bonfire_blobs_rejected_total", "reason=\"hash\"") >= 3.0 && d.verdicts("agreed").1 >= 3.0
    });
    let rejected = metric(&drill.validator_metrics, "bonfire_blobs_rejected_total", "reason=\"hash\"");
    let (agreed_seed, agreed_validator) = drill.verdicts("agreed");
    let (verified, report, newest) = drill.finish();
    observe(
        "corrupt_blob_from_a_peer",
        json!({
            "reducer_joined_at_round": joined,
            "newest_round": newest,
            "corrupt_blobs_rejected_by_the_validator": rejected,
            "agreeing_proposals": { "seed": agreed_seed, "validator": agreed_validator },
            "heads_on_disk": report["heads"],
            "heads_with_valid_certificate": report["heads_with_valid_certificate"],
        }),
    );
    assert!(newest >= joined + 3, "rounds went on: joined at {joined}, newest {newest}");
    assert!(verified, "{report:#}");
    assert_eq!(report["heads"], report["heads_with_valid_certificate"], "{report:#}");
}

/// The seed killed (mid-round, as it happens) and restarted on the same addresses: the validator,
/// the reducer and the trainers that joined it redial by themselves, the updates it had accepted
/// come back from its data directory, and the rounds go on; no head is lost or forked.
#[test]
fn seed_restart() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = prepare(dir.path());
    let validator_dir = dir.path().join("validator");
    let validator_id = peer_id_of(&validator_dir);
    let (tcp, udp) = (free_port(), free_udp_port());
    let (tcp_addr, quic_addr) = (format!("/ip4/127.0.0.1/tcp/{tcp}"), format!("/ip4/127.0.0.1/udp/{udp}/quic-v1"));
    let seed_dir = dir.path().join("seed");
    let args = ["--validator", &validator_id, "--listen", &tcp_addr, "--listen-quic", &quic_addr];
    let (net, _) = seed_process(&seed_dir, &dataset, &args);
    let info = network_info(&net);
    let peer = info.peer_id.clone();
    let (tcp_boot, quic_boot) = (format!("{tcp_addr}/p2p/{peer}"), format!("{quic_addr}/p2p/{peer}"));
    let _roles = [
        spawn_role("validator", &validator_dir, &quic_boot, "validator", &[]),
        spawn_role("reducer", &dir.path().join("reducer"), &tcp_boot, "reducer", &[]),
        spawn_role("trainer", &dir.path().join("trainer-a"), &tcp_boot, "trainer-a", &[]),
        spawn_role("trainer", &dir.path().join("trainer-b"), &tcp_boot, "trainer-b", &[]),
    ];
    wait_for_round(&net, 3);
    let before_kill = dashboard(&net).heads.first().unwrap().round;
    drop(net); // SIGKILL
    std::thread::sleep(Duration::from_secs(1));

    let (net, _) = seed_process(&seed_dir, &dataset, &args);
    let restarted = Instant::now();
    let resumed_at = dashboard(&net).heads.first().unwrap().round;
    let snapshot = wait_for_round(&net, resumed_at + 3);
    let seconds_to_three_more_rounds = restarted.elapsed().as_secs_f64();
    let mut roles: Vec<String> = snapshot.peers.iter().map(|p| p.role.clone()).collect();
    roles.sort();
    drop(net);
    let (verified, report) = verify_heads(&seed_dir);
    observe(
        "seed_restart",
        json!({
            "round_at_kill": before_kill,
            "round_on_restart": resumed_at,
            "seconds_from_restart_to_3_more_rounds": seconds_to_three_more_rounds,
            "peers_back": roles,
            "heads_on_disk": report["heads"],
            "heads_with_valid_certificate": report["heads_with_valid_certificate"],
        }),
    );
    assert!(resumed_at >= before_kill, "no promoted head was lost: {before_kill} before, {resumed_at} after");
    assert_eq!(roles, ["reducer", "trainer", "trainer", "validator"], "every role came back by itself");
    assert!(verified, "{report:#}");
    assert_eq!(report["heads"], report["heads_with_valid_certificate"], "{report:#}");
}

/// A UDP port that was free a moment ago (for a QUIC listener).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
