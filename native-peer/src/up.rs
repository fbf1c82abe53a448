//! `bonfire up` and `bonfire trainer`: wiring roles, the edge and the data directory together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use libp2p::Multiaddr;

use crate::dataset::bundle::Bundle;
use crate::roles::seed::{Seed, EXPERIMENT_ID};
use crate::roles::trainer::Trainer;
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
    /// Native trainers to start alongside the seed.
    #[arg(long, default_value_t = 2)]
    trainers: usize,
    #[command(flatten)]
    settings: Settings,
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
}

pub async fn up(args: UpArgs) -> Result<()> {
    let bundle = Bundle::open(&args.dataset)
        .with_context(|| format!("opening the dataset at {} (run `bonfire dataset prepare --out {0}`)", args.dataset.display()))?;
    let seed = Seed::start(&args.data_dir.join("seed"), &bundle, &args.settings, args.listen.clone()).await?;
    let bootstrap = seed.bootstrap_addr()?;
    for i in 0..args.trainers {
        let name = format!("trainer-{}", i + 1);
        let trainer = Trainer::start(&args.data_dir.join(&name), &name, bootstrap.clone(), EXPERIMENT_ID).await?;
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
    let trainer = Trainer::start(&args.data_dir, "trainer", args.bootstrap, &args.experiment).await?;
    tokio::select! {
        _ = trainer.run() => {}
        _ = tokio::signal::ctrl_c() => println!("interrupted"),
    }
    Ok(())
}
