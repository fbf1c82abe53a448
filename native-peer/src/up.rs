//! `bonfire up` and `bonfire trainer`: wiring roles, the edge and the data directory together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use libp2p::Multiaddr;

use crate::dataset::bundle::Bundle;
use crate::roles::seed::{Seed, EXPERIMENT_ID};
use crate::roles::trainer::Trainer;
use crate::workloads::python::DEFAULT_ENTRY;
use crate::workloads::{PythonSettings, WorkloadKind};
use crate::Settings;

#[derive(Args)]
pub struct UpArgs {
    /// Where heads, blobs, leases and keys persist (one sub-directory per node).
    #[arg(long, default_value = ".bonfire/node")]
    data_dir: PathBuf,
    /// The prepared dataset bundle (see `bonfire dataset prepare`).
    #[arg(long, default_value = ".bonfire/dataset")]
    dataset: PathBuf,
    /// Address the edge (web app and /api) listens on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// The built web app (Trunk's dist/) served at `/`.
    #[arg(long)]
    app_dir: Option<PathBuf>,
    /// libp2p listen address of the seed.
    #[arg(long, default_value = "/ip4/127.0.0.1/tcp/0")]
    listen: Multiaddr,
    /// Native (burn) trainers to start alongside the seed.
    #[arg(long, default_value_t = 2)]
    trainers: usize,
    /// Trainers whose training runs in a Python worker (see the --python flags).
    #[arg(long, default_value_t = 0)]
    python_trainers: usize,
    #[command(flatten)]
    python: PythonArgs,
    #[command(flatten)]
    settings: Settings,
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
    fn kind(&self) -> WorkloadKind {
        WorkloadKind::Python(PythonSettings::worker(
            &self.python,
            &self.python_entry,
            Duration::from_secs(self.python_start_timeout_secs),
            Duration::from_secs(self.python_timeout_secs),
        ))
    }
}

#[derive(Args)]
pub struct TrainerArgs {
    /// Where this trainer keeps its key and blobs.
    #[arg(long)]
    data_dir: PathBuf,
    /// The seed's libp2p address, ending in /p2p/<peer id> (see GET /api/network).
    #[arg(long)]
    bootstrap: Multiaddr,
    /// Experiment to join.
    #[arg(long, default_value = EXPERIMENT_ID)]
    experiment: String,
    /// What trains: burn in this process, or a Python worker.
    #[arg(long, value_enum, default_value_t = WorkloadName::Burn)]
    workload: WorkloadName,
    #[command(flatten)]
    python: PythonArgs,
}

pub async fn up(args: UpArgs) -> Result<()> {
    let bundle = Bundle::open(&args.dataset)
        .with_context(|| format!("opening the dataset at {} (run `bonfire dataset prepare --out {0}`)", args.dataset.display()))?;
    let seed = Seed::start(&args.data_dir.join("seed"), &bundle, &args.settings, args.listen.clone()).await?;
    let bootstrap = seed.bootstrap_addr()?;
    let burn = (0..args.trainers).map(|i| (format!("trainer-{}", i + 1), WorkloadKind::Burn));
    let python = (0..args.python_trainers).map(|i| (format!("python-trainer-{}", i + 1), args.python.kind()));
    for (name, kind) in burn.chain(python) {
        let trainer = Trainer::start(&args.data_dir.join(&name), &name, bootstrap.clone(), EXPERIMENT_ID, &kind)
            .await
            .with_context(|| format!("starting {name}"))?;
        tokio::spawn(trainer.run());
    }
    if let Some(dir) = &args.app_dir {
        if !dir.join("index.html").exists() {
            tracing::warn!("{} has no index.html: build the web app with `cargo xtask build`", dir.display());
        }
    }
    let app = edge::router(seed.clone() as Arc<dyn edge::EdgeNode>, args.app_dir.clone());
    let listener = tokio::net::TcpListener::bind(args.http).await.with_context(|| format!("binding the edge to {}", args.http))?;
    let addr = listener.local_addr()?;
    println!("bonfire seed {} at {bootstrap}", seed_peer(&bootstrap));
    println!("edge listening on http://{addr}");
    println!("open http://{addr}/ and press Contribute; the dashboard is at http://{addr}/dashboard");
    let server = axum::serve(listener, app);
    tokio::select! {
        result = server => result.context("the edge stopped")?,
        _ = seed.finished() => println!("stopped after {} rounds", args.settings.stop_after_rounds.unwrap_or_default()),
        _ = tokio::signal::ctrl_c() => println!("interrupted; state is saved in {}", args.data_dir.display()),
    }
    Ok(())
}

fn seed_peer(addr: &Multiaddr) -> String {
    crate::net::split_peer_addr(addr).map(|p| p.to_string()).unwrap_or_default()
}

pub async fn trainer(args: TrainerArgs) -> Result<()> {
    let kind = match args.workload {
        WorkloadName::Burn => WorkloadKind::Burn,
        WorkloadName::Python => args.python.kind(),
    };
    let trainer = Trainer::start(&args.data_dir, "trainer", args.bootstrap, &args.experiment, &kind).await?;
    tokio::select! {
        _ = trainer.run() => {}
        _ = tokio::signal::ctrl_c() => println!("interrupted"),
    }
    Ok(())
}
