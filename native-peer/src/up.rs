//! `bonfire up`, `bonfire seed`, `bonfire trainer`, `bonfire validator` and `bonfire reducer`:
//! wiring roles, the edge and the data directory together. `bonfire up` runs the seed (and edge)
//! itself and starts every other role as a child process of the same binary, each with its own
//! data directory and key; `bonfire seed` runs the seed alone, for the others to join.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use libp2p::Multiaddr;

use crate::dataset::bundle::Bundle;
use crate::roles::reducer::{Misbehaviour, Reducer};
use crate::roles::seed::{Listen, Seed, EXPERIMENT_ID};
use crate::roles::trainer::Trainer;
use crate::roles::validator::Validator;
use crate::workloads::python::DEFAULT_ENTRY;
use crate::workloads::{PythonSettings, WorkloadKind};
use crate::Settings;

/// What the seed (and its edge) takes, in `bonfire up` and `bonfire seed` alike.
#[derive(Args)]
pub struct SeedArgs {
    /// The prepared dataset bundle (see `bonfire dataset prepare`).
    #[arg(long, default_value = ".bonfire/dataset")]
    dataset: PathBuf,
    /// Address the edge (web app and /api) listens on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// The built web app (Trunk's dist/) served at `/`.
    #[arg(long)]
    app_dir: Option<PathBuf>,
    /// libp2p listen address of the seed (TCP).
    #[arg(long, default_value = "/ip4/127.0.0.1/tcp/0")]
    listen: Multiaddr,
    /// libp2p QUIC listen address of the seed ("none" to not listen on QUIC).
    #[arg(long, default_value = "/ip4/127.0.0.1/udp/0/quic-v1")]
    listen_quic: String,
    /// libp2p WebRTC-direct listen address of the seed (UDP; "none" to not listen), with the
    /// certificate kept in the seed's data directory, so its certhash survives restarts. Listed
    /// in GET /api/network's listen_addrs; browser workers cannot dial it yet (no WebRTC in
    /// Chromium's Web Workers).
    #[arg(long, default_value = "/ip4/127.0.0.1/udp/0/webrtc-direct")]
    listen_webrtc: String,
    /// libp2p WebSocket listen address of the seed, which browser workers dial ("none" to take
    /// browsers over HTTP only). Handed to browsers by GET /api/network.
    #[arg(long, default_value = "/ip4/127.0.0.1/tcp/0/ws")]
    listen_ws: String,
    /// Refuse updates on the edge's HTTP route: browsers must announce them over libp2p.
    #[arg(long)]
    no_http_updates: bool,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Args)]
pub struct UpArgs {
    /// Where heads, blobs, leases and keys persist (one sub-directory per node).
    #[arg(long, default_value = ".bonfire/node")]
    data_dir: PathBuf,
    /// Native (burn) trainers to start alongside the seed.
    #[arg(long, default_value_t = 3)]
    trainers: usize,
    /// Validators of a new experiment, the seed included; each other one runs as its own
    /// process (`bonfire validator`). Heads need all of them unless --quorum says otherwise.
    #[arg(long, default_value_t = 2)]
    validators: usize,
    /// Reducers to start (`bonfire reducer`): each aggregates every closed round and proposes
    /// it; the seed and the validators check the proposal against their own aggregate.
    #[arg(long, default_value_t = 1)]
    reducers: usize,
    /// Trainers whose training runs in a Python worker (see the --python flags).
    #[arg(long, default_value_t = 0)]
    python_trainers: usize,
    #[command(flatten)]
    python: PythonArgs,
    #[command(flatten)]
    seed: SeedArgs,
}

#[derive(Args)]
pub struct SeedOnlyArgs {
    /// Where the seed keeps its key, the experiment, heads, leases and blobs.
    #[arg(long, default_value = ".bonfire/seed")]
    data_dir: PathBuf,
    #[command(flatten)]
    seed: SeedArgs,
}

/// Which implementation trains.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum WorkloadName {
    /// burn on the CPU, in this process.
    Burn,
    /// A Python worker process (`python -m bonfire_worker`), e.g. NumPy or PyTorch.
    Python,
}

/// How Python trainers start their worker.
#[derive(Args, Clone, Debug)]
pub struct PythonArgs {
    /// The Python interpreter that has the `bonfire_worker` package (`pip install ./python`).
    #[arg(long, env = "BONFIRE_PYTHON", default_value = "python3")]
    python: PathBuf,
    /// The workload factory, as module:function (it receives the model spec).
    #[arg(long, default_value = DEFAULT_ENTRY)]
    python_entry: String,
    /// Seconds the worker may take to start and answer the handshake.
    #[arg(long, default_value_t = 60)]
    python_start_timeout_secs: u64,
    /// Seconds the worker may take for one request (a whole training window).
    #[arg(long, default_value_t = 300)]
    python_timeout_secs: u64,
}

impl PythonArgs {
    /// The same settings as `bonfire trainer` flags (for a child process).
    fn to_args(&self) -> Vec<String> {
        vec![
            "--workload".into(),
            "python".into(),
            "--python".into(),
            self.python.display().to_string(),
            "--python-entry".into(),
            self.python_entry.clone(),
            "--python-start-timeout-secs".into(),
            self.python_start_timeout_secs.to_string(),
            "--python-timeout-secs".into(),
            self.python_timeout_secs.to_string(),
        ]
    }

    fn kind(&self) -> WorkloadKind {
        WorkloadKind::Python(PythonSettings::worker(
            &self.python,
            &self.python_entry,
            Duration::from_secs(self.python_start_timeout_secs),
            Duration::from_secs(self.python_timeout_secs),
        ))
    }
}

/// What every role that joins through a seed takes.
#[derive(Args)]
pub struct JoinArgs {
    /// Where this node keeps its key, heads, checkpoints and blobs.
    #[arg(long)]
    data_dir: PathBuf,
    /// The seed's libp2p address, ending in /p2p/<peer id> (see GET /api/network).
    #[arg(long)]
    bootstrap: Multiaddr,
    /// Experiment to join (a validator's peer id must be in its validator set: see `bonfire id`).
    #[arg(long, default_value = EXPERIMENT_ID)]
    experiment: String,
    /// Serve Prometheus metrics at http://ADDR/metrics (port 0: any free port; the URL is
    /// logged and written to <data-dir>/metrics.url).
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Exit when stdin closes (set by `bonfire up` for its children, so none outlives it).
    #[arg(long, hide = true)]
    exit_with_parent: bool,
}

impl JoinArgs {
    /// What a role does before it starts: follow its parent, serve its metrics.
    async fn prepare(&self, name: &str) -> Result<()> {
        if self.exit_with_parent {
            exit_when_stdin_closes();
        }
        if let Some(addr) = self.metrics {
            let bound = crate::metrics::serve(addr).await?;
            let url = format!("http://{bound}/metrics");
            tracing::info!("{name}: Prometheus metrics at {url}");
            // Where scrapers (and the drills) find a port that was picked at random.
            std::fs::create_dir_all(&self.data_dir).with_context(|| format!("creating {}", self.data_dir.display()))?;
            let file = self.data_dir.join("metrics.url");
            std::fs::write(&file, &url).with_context(|| format!("writing {}", file.display()))?;
        }
        Ok(())
    }
}

#[derive(Args)]
pub struct TrainerArgs {
    #[command(flatten)]
    join: JoinArgs,
    /// Name used in logs.
    #[arg(long, default_value = "trainer")]
    name: String,
    /// What trains: burn in this process, or a Python worker.
    #[arg(long, value_enum, default_value_t = WorkloadName::Burn)]
    workload: WorkloadName,
    #[command(flatten)]
    python: PythonArgs,
}

#[derive(Args)]
pub struct ValidatorArgs {
    #[command(flatten)]
    join: JoinArgs,
    /// Name used in logs.
    #[arg(long, default_value = "validator")]
    name: String,
}

#[derive(Args)]
pub struct ReducerArgs {
    #[command(flatten)]
    join: JoinArgs,
    /// Name used in logs.
    #[arg(long, default_value = "reducer")]
    name: String,
    /// Fail on purpose, for the fault drills (`cargo xtask drills`).
    #[arg(long, value_enum, hide = true)]
    misbehave: Option<Misbehaviour>,
}

pub async fn up(mut args: UpArgs) -> Result<()> {
    // The other validators' keys are made first: a new experiment's manifest names them.
    let validators: Vec<(String, PathBuf)> =
        (2..=args.validators).map(|k| (format!("validator-{k}"), args.data_dir.join(format!("validator-{k}")))).collect();
    let extra = &mut args.seed.settings.extra_validators;
    for (_, dir) in &validators {
        let peer = crate::store::load_or_create_identity(dir)?.peer_id().to_string();
        if !extra.contains(&peer) {
            extra.push(peer);
        }
    }
    let seed = start_seed(&args.data_dir.join("seed"), &args.seed).await?;
    let bootstrap = seed.bootstrap_addr()?;
    // A resumed experiment keeps the validator set it was created with.
    let manifest = edge::EdgeNode::experiment(seed.as_ref(), EXPERIMENT_ID).map_err(|e| anyhow::anyhow!("{e}"))?.manifest.body;
    let started: Vec<String> = std::iter::once(seed_peer(&bootstrap)).chain(args.seed.settings.extra_validators.iter().cloned()).collect();
    for missing in manifest.validators.iter().filter(|v| !started.contains(v)) {
        tracing::warn!(
            "validator {missing} of this experiment is not started here (quorum {} of {}): start it, or heads stall",
            manifest.quorum,
            manifest.validators.len()
        );
    }
    let mut children = Children::default();
    // Validators reach the seed over QUIC (when it listens on it), trainers over TCP: both
    // native transports carry real traffic in every local network.
    let validator_bootstrap = seed.quic_addr().unwrap_or_else(|| bootstrap.clone());
    for (name, dir) in &validators {
        children.spawn(name, "validator", dir, &validator_bootstrap, &[])?;
    }
    for i in 0..args.reducers {
        let name = format!("reducer-{}", i + 1);
        children.spawn(&name, "reducer", &args.data_dir.join(&name), &bootstrap, &[])?;
    }
    for i in 0..args.trainers {
        let name = format!("trainer-{}", i + 1);
        children.spawn(&name, "trainer", &args.data_dir.join(&name), &bootstrap, &[])?;
    }
    for i in 0..args.python_trainers {
        let name = format!("python-trainer-{}", i + 1);
        children.spawn(&name, "trainer", &args.data_dir.join(&name), &bootstrap, &args.python.to_args())?;
    }
    serve_edge(seed, &args.seed, &args.data_dir).await?;
    drop(children);
    Ok(())
}

/// `bonfire seed`: the seed and its edge alone. Every other role joins it from wherever it
/// runs (`bonfire validator|reducer|trainer --bootstrap <address printed here>`).
pub async fn seed(args: SeedOnlyArgs) -> Result<()> {
    let seed = start_seed(&args.data_dir, &args.seed).await?;
    let bootstrap = seed.bootstrap_addr()?;
    let manifest = edge::EdgeNode::experiment(seed.as_ref(), EXPERIMENT_ID).map_err(|e| anyhow::anyhow!("{e}"))?.manifest.body;
    let me = seed_peer(&bootstrap);
    let others: Vec<&String> = manifest.validators.iter().filter(|v| **v != me).collect();
    if !others.is_empty() {
        println!(
            "heads need {} of {} validators: start {} with `bonfire validator --bootstrap {}` (quic: {})",
            manifest.quorum,
            manifest.validators.len(),
            others.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
            bootstrap,
            seed.quic_addr().map_or_else(|| "off".into(), |a| a.to_string())
        );
    }
    serve_edge(seed, &args.seed, &args.data_dir).await
}

/// Opens (or creates) the seed in `dir` over the dataset bundle `args` names.
async fn start_seed(dir: &std::path::Path, args: &SeedArgs) -> Result<Arc<Seed>> {
    let bundle = Bundle::open(&args.dataset)
        .with_context(|| format!("opening the dataset at {} (run `bonfire dataset prepare --out {0}`)", args.dataset.display()))?;
    let listen = Listen {
        tcp: args.listen.clone(),
        quic: optional_addr("--listen-quic", &args.listen_quic)?,
        webrtc: optional_addr("--listen-webrtc", &args.listen_webrtc)?,
        websocket: optional_addr("--listen-ws", &args.listen_ws)?,
        http_updates: !args.no_http_updates,
    };
    Seed::start(dir, &bundle, &args.settings, listen).await
}

/// Serves the edge (web app, /api, /metrics) until the seed finishes its rounds or ctrl-c.
async fn serve_edge(seed: Arc<Seed>, args: &SeedArgs, data_dir: &std::path::Path) -> Result<()> {
    let bootstrap = seed.bootstrap_addr()?;
    if let Some(dir) = &args.app_dir {
        if !dir.join("index.html").exists() {
            tracing::warn!("{} has no index.html: build the web app with `cargo xtask build`", dir.display());
        }
    }
    let app = edge::router(seed.clone() as Arc<dyn edge::EdgeNode>, args.app_dir.clone())
        .route("/metrics", axum::routing::get(|| async { crate::metrics::text_response() }));
    let listener = tokio::net::TcpListener::bind(args.http).await.with_context(|| format!("binding the edge to {}", args.http))?;
    let addr = listener.local_addr()?;
    println!("bonfire seed {} at {bootstrap}", seed_peer(&bootstrap));
    println!("edge listening on http://{addr}");
    println!("Prometheus metrics at http://{addr}/metrics");
    println!("open http://{addr}/ and press Contribute; the dashboard is at http://{addr}/dashboard");
    let server = axum::serve(listener, app);
    tokio::select! {
        result = server => result.context("the edge stopped")?,
        _ = seed.finished() => println!("stopped after {} rounds", args.settings.stop_after_rounds.unwrap_or_default()),
        _ = tokio::signal::ctrl_c() => println!("interrupted; state is saved in {}", data_dir.display()),
    }
    Ok(())
}

/// The role processes `bonfire up` started: same binary, one per role instance. Each gets a
/// pipe as stdin and exits when it closes, so none outlives `up` however `up` ends; dropping
/// this kills them at once.
#[derive(Default)]
struct Children {
    watchers: Vec<tokio::task::JoinHandle<()>>,
}

impl Children {
    fn spawn(&mut self, name: &str, role: &str, dir: &std::path::Path, bootstrap: &Multiaddr, extra: &[String]) -> Result<()> {
        let exe = std::env::current_exe().context("locating the bonfire binary")?;
        let mut child = tokio::process::Command::new(&exe)
            .arg(role)
            .arg("--data-dir")
            .arg(dir)
            .arg("--bootstrap")
            .arg(bootstrap.to_string())
            .args(["--name", name, "--exit-with-parent", "--metrics", "127.0.0.1:0"])
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name} ({} {role})", exe.display()))?;
        tracing::info!("started {name} (pid {})", child.id().unwrap_or_default());
        // The watcher owns the child and its stdin pipe until it exits or `up` ends. (`wait`
        // would close a stdin it still held, so the pipe is taken out first.)
        let stdin = child.stdin.take();
        let name = name.to_string();
        self.watchers.push(tokio::spawn(async move {
            let _stdin = stdin;
            match child.wait().await {
                Ok(status) => tracing::error!("{name} exited ({status})"),
                Err(e) => tracing::error!("{name}: waiting for it failed: {e}"),
            }
        }));
        Ok(())
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for watcher in &self.watchers {
            watcher.abort();
        }
    }
}

fn seed_peer(addr: &Multiaddr) -> String {
    crate::net::split_peer_addr(addr).map(|p| p.to_string()).unwrap_or_default()
}

pub async fn trainer(args: TrainerArgs) -> Result<()> {
    args.join.prepare(&args.name).await?;
    let kind = match args.workload {
        WorkloadName::Burn => WorkloadKind::Burn,
        WorkloadName::Python => args.python.kind(),
    };
    let JoinArgs { data_dir, bootstrap, experiment, .. } = args.join;
    let trainer = Trainer::start(&data_dir, &args.name, bootstrap, &experiment, &kind).await?;
    tokio::select! {
        _ = trainer.run() => {}
        _ = tokio::signal::ctrl_c() => println!("interrupted"),
    }
    Ok(())
}

pub async fn validator(args: ValidatorArgs) -> Result<()> {
    args.join.prepare(&args.name).await?;
    let JoinArgs { data_dir, bootstrap, experiment, .. } = args.join;
    let _validator = Validator::start(&data_dir, &args.name, bootstrap, &experiment).await?;
    tokio::signal::ctrl_c().await.context("waiting for ctrl-c")?;
    println!("interrupted; state is saved in {}", data_dir.display());
    Ok(())
}

pub async fn reducer(args: ReducerArgs) -> Result<()> {
    args.join.prepare(&args.name).await?;
    let JoinArgs { data_dir, bootstrap, experiment, .. } = args.join;
    let _reducer = Reducer::start(&data_dir, &args.name, bootstrap, &experiment, args.misbehave).await?;
    tokio::signal::ctrl_c().await.context("waiting for ctrl-c")?;
    println!("interrupted");
    Ok(())
}

/// Exits the process once stdin reaches end-of-file: the parent (`bonfire up`) has gone.
fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        std::process::exit(0);
    });
}

/// A listen address flag that may be "none".
fn optional_addr(flag: &str, value: &str) -> Result<Option<Multiaddr>> {
    match value {
        "none" => Ok(None),
        addr => Ok(Some(addr.parse::<Multiaddr>().with_context(|| format!("{flag} {addr}"))?)),
    }
}
