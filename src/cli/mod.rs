//! The command line (clap): `vigil serve | migrate | config | token`. Each subcommand loads
//! the layered [`Settings`] and calls into the library; this is one of the few places that
//! use `anyhow`, adding the context a person needs to act on an error.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

mod training;
mod transfer;

use crate::api::App;
use crate::config::{Overrides, Scope, Settings, new_token};
use crate::ingest::files::Layout;
use crate::jobs;
#[cfg(feature = "sim")]
use crate::sim::{demo, detect, replay_command as replay, simulate};
use crate::store::Database;

const AFTER_HELP: &str = "\
Configuration, lowest precedence first: built-in defaults, the TOML file given by --config
(or VIGIL_CONFIG), environment variables (VIGIL_LISTEN, VIGIL_DATA_DIR, DATABASE_URL, and
nested keys such as VIGIL_DATABASE__MAX_CONNECTIONS), then command-line flags. Unknown keys
are errors. `vigil config` prints the effective result.

Database: with no DATABASE_URL, Vigil runs its own PostgreSQL cluster in <data-dir>/pg,
created with the system's initdb on first start and stopped on exit.

Examples:
  vigil serve                                  # embedded PostgreSQL, http://127.0.0.1:8080
  DATABASE_URL=postgres://u:p@db/vigil vigil serve --listen 0.0.0.0:8080 --config vigil.toml
  vigil token new --name prometheus --scopes ingest
  vigil detect --input series.csv --output scored.csv
  vigil eval nab --corpus ../shared/datasets/nab
  vigil config";

/// Vigil: predictive maintenance and self-healing for fleets.
///
/// Stores metric histories and incidents in PostgreSQL, trains failure models, serves
/// failure-probability scores over REST, and runs guarded corrective actions.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// TOML config file.
    #[arg(long, global = true, env = "VIGIL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the embedded PostgreSQL cluster and model files [default: ./data].
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL to use instead of the embedded cluster (also DATABASE_URL).
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Log format.
    #[arg(long, global = true, env = "VIGIL_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// See the whole loop in one command: simulated fleet, training, live stream, actions.
    ///
    /// Starts PostgreSQL (the embedded cluster in <data-dir>/pg, or DATABASE_URL's server)
    /// with a scratch database vigil_demo (recreated each run), stores a month of simulated
    /// history for 24 assets, trains, serves on the configured `listen` address (default
    /// 127.0.0.1:8080; VIGIL_LISTEN or `listen` in --config sets it), and streams a live
    /// day in accelerated time with injected faults: alerts, diagnoses, guarded actions sent
    /// to a webhook receiver that heals an asset only when the action fits its fault,
    /// verification, and feedback from the simulator's truth. Ends with a summary table,
    /// then keeps serving (Ctrl-C stops) unless --exit.
    #[cfg(feature = "sim")]
    Demo(demo::DemoArgs),
    /// Run the HTTP service (starts the embedded PostgreSQL unless DATABASE_URL is set).
    Serve(ServeArgs),
    /// Apply pending database migrations and print the schema version.
    Migrate,
    /// Print the effective configuration as TOML, secrets masked.
    Config,
    /// Load samples (and incidents) from CSV or Parquet files, through COPY.
    ///
    /// Samples in long form have columns asset,metric,ts,value; in wide form asset,ts and
    /// one numeric column per metric. Timestamps are Unix seconds, RFC 3339 or Parquet
    /// datetimes. Each file is stored in one transaction: by default a file with any bad
    /// row stores nothing and the bad rows are listed. Re-importing a file stores nothing
    /// twice. Incident files have columns asset,kind,started_at and optionally
    /// severity,detected_at,resolved_at,root_cause.
    Import(ImportArgs),
    /// Write stored samples to a Parquet file (long form, readable by `vigil import`).
    Export(ExportArgs),
    /// Drop day partitions of samples older than retention.samples_days and of scores older
    /// than retention.scores_days (alerting scores kept) now; serve does it hourly.
    Retention(RetentionArgs),
    /// Train the anomaly and failure models once and print their validation measures.
    ///
    /// Reads the last training.history_days of samples and incidents from the database (or,
    /// with --input and --incidents, from files and no database), cuts windows of
    /// training.window points every training.stride steps, labels a window 1 when a failure
    /// starts within training.horizon_secs after it, splits by time at training.train_frac,
    /// and fits the isolation forest, the calibrated failure model, the diagnosis tree
    /// (failure kind from the windows before failures) and the time-to-failure regression
    /// (capped at training.ttf_cap_secs). From the database, the
    /// run becomes a new registry version, activated only if at least as good as the active
    /// one on the same validation windows. From files, the bundle is written to --output.
    Train(TrainArgs),
    /// List, inspect, activate or roll back registered models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Score a timestamp,value CSV series with the cold-start detector (no database).
    ///
    /// Each row is scored from the rows before it only, as the service scores a live
    /// series; the output has columns timestamp,value,anomaly_score (in [0, 1]). The score is
    /// ln q / ln 1e-10 of how unlikely the recent surprise is for this series (q): above 0.3
    /// is q below 1e-3, an alarm (later alarms within 200 rows stay at exactly 0.3, so a
    /// threshold just above 0.3 reports each anomaly once), 0.5 is 1e-5, and 1 a value
    /// beyond the range seen so far. The day-long context is sized from the median
    /// step between timestamps. `vigil eval nab` scores the detector on NAB.
    #[cfg(feature = "sim")]
    Detect(detect::DetectArgs),
    /// Generate a simulated fleet's history with planted faults (default: 30 days, 24
    /// assets) into the database, or as CSV files with --out; or stream it live to a
    /// running Vigil with --live URL.
    ///
    /// Assets of classes web, db and worker report cpu, mem, disk, latency_ms, errors and
    /// temp every minute, with daily and weekly seasonality, noise, benign spikes and nightly
    /// backups, and faults (memory_leak, disk_filling, latency_creep, error_burst,
    /// thermal_drift, bad_deploy) whose precursors end in a failure (an incident). Train on
    /// it with `vigil train` (database) or `vigil train --input samples.csv --incidents
    /// incidents.csv`. With --live URL, streams the fleet to a running Vigil instead, in
    /// accelerated time, healing assets through a webhook receiver (see --live).
    #[cfg(feature = "sim")]
    Simulate(simulate::SimulateArgs),
    /// Replay the learning loop on a generated stream and report how action choice and
    /// thresholds learn (no database).
    ///
    /// Prints, per 100 incidents, how often the chosen action was the right one and the
    /// cumulative regret against always choosing right, and the false alarms and caught
    /// failures before and after feedback-tuned thresholds on the same stream.
    #[cfg(feature = "sim")]
    Replay(replay::ReplayArgs),
    /// Evaluate detectors on public benchmarks (no database).
    #[command(subcommand)]
    #[cfg(feature = "sim")]
    Eval(detect::EvalCommand),
    /// Manage bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// Flags of `vigil serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]. Without tokens, loopback only.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

/// Flags of `vigil import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Sample files (.csv or .parquet).
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Layout of the sample files.
    #[arg(long, value_enum, default_value = "auto")]
    pub layout: Layout,
    /// Incident files (.csv or .parquet), imported after the samples.
    #[arg(long, value_name = "FILE")]
    pub incidents: Vec<PathBuf>,
    /// Store the good rows of a file that has bad ones (listed) instead of nothing.
    #[arg(long)]
    pub skip_bad_rows: bool,
}

/// Flags of `vigil export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Parquet file to write.
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// Only this asset.
    #[arg(long)]
    pub asset: Option<String>,
    /// Only this metric.
    #[arg(long)]
    pub metric: Option<String>,
    /// Start (RFC 3339 or Unix seconds) [default: the beginning].
    #[arg(long)]
    pub from: Option<String>,
    /// End, exclusive (RFC 3339 or Unix seconds) [default: now + 1 day].
    #[arg(long)]
    pub to: Option<String>,
}

/// Flags of `vigil train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Samples file (.csv or .parquet, long or wide form): train from files, no database.
    #[arg(long, value_name = "FILE", requires = "incidents")]
    pub input: Option<PathBuf>,
    /// Incidents file (.csv or .parquet): asset,kind,started_at[,resolved_at].
    #[arg(long, value_name = "FILE", requires = "input")]
    pub incidents: Option<PathBuf>,
    /// Also print the diagnosis tree as rules.
    #[arg(long)]
    pub rules: bool,
    /// With --input: where to write the bundle [default: <data-dir>/models/bundle-<time>.json].
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `vigil models ...`.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Registered models, newest first.
    List,
    /// One model's params, feature schema, training range and validation metrics (JSON).
    Show {
        /// Model id.
        id: i64,
    },
    /// Make a model the active one of its kind (the previous one is retired).
    Activate {
        /// Model id.
        id: i64,
    },
    /// Re-activate the model that was active before the current one.
    Rollback,
    /// Import a bundle (trained offline with `vigil train --input ... -o FILE`, or written
    /// by `vigil models export`) as a new version, stored in the database; it becomes active
    /// if it is the first or at least as good by its report.
    #[command(name = "import", visible_alias = "register")]
    Register {
        /// The bundle JSON.
        file: PathBuf,
    },
    /// Write a model's artifact (the bundle JSON, from the database) to a file: a copy to
    /// keep, inspect or import elsewhere.
    Export {
        /// Model id.
        id: i64,
        /// Where to write it.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: PathBuf,
    },
}

/// Flags of `vigil retention`.
#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// Only list the partitions that would be dropped.
    #[arg(long)]
    pub dry_run: bool,
}

/// `vigil token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new random token and the config entry that accepts it (only its hash is stored).
    New {
        /// Who will hold the token (recorded as the author of what it submits).
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: ingest, score, feedback, admin (admin implies all).
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<Scope>,
    },
}

impl Cli {
    fn settings(&self, listen: Option<SocketAddr>) -> anyhow::Result<Settings> {
        let overrides = Overrides {
            listen,
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
        };
        Settings::load(self.config.as_deref(), &overrides).context("loading configuration")
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve(args) => serve(cli.settings(args.listen)?).await,
        Command::Migrate => migrate(cli.settings(None)?).await,
        Command::Import(args) => transfer::import(cli.settings(None)?, args).await,
        Command::Export(args) => transfer::export(cli.settings(None)?, args).await,
        Command::Retention(args) => retention(cli.settings(None)?, args).await,
        Command::Train(args) => training::train(cli.settings(None)?, args).await,
        Command::Models(command) => training::models(cli.settings(None)?, command).await,
        #[cfg(feature = "sim")]
        Command::Detect(args) => detect::detect(args),
        #[cfg(feature = "sim")]
        Command::Replay(args) => replay::replay(args),
        #[cfg(feature = "sim")]
        Command::Demo(args) => demo::demo(cli.settings(None)?, args).await,
        #[cfg(feature = "sim")]
        Command::Simulate(args) => simulate::simulate(cli.settings(None)?, args).await,
        #[cfg(feature = "sim")]
        Command::Eval(command) => detect::eval(command),
        Command::Config => {
            print!("{}", cli.settings(None)?.to_masked_toml());
            Ok(())
        }
        Command::Token(TokenCommand::New { name, scopes }) => {
            let (secret, hash) = new_token().context("generating a random token")?;
            let scopes: Vec<String> = scopes.iter().map(|s| format!("{:?}", s.as_str())).collect();
            println!("# Give this token to {name}; it is shown only once:\n#   {secret}");
            println!("# Add this to the config file:");
            println!(
                "[[auth.tokens]]\nname = {name:?}\nsha256 = \"{hash}\"\nscopes = [{}]",
                scopes.join(", ")
            );
            Ok(())
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    // Refuse an exposed address before starting a database for nothing.
    settings.check_exposure()?;
    raise_file_limit(settings.http.max_connections);
    let database = Database::open(&settings)
        .await
        .context("opening the database")?;
    let app = match App::build(settings, database.store.clone()).await {
        Ok(app) => app,
        Err(e) => {
            database.close().await.ok();
            return Err(e.into());
        }
    };
    tracing::info!(addr = %app.local_addr(), "vigil listening: try `curl http://{}/readyz`", app.local_addr());
    // The embedded cluster is restarted whenever it stops (killed, or stopped from outside).
    let supervisor = database.supervise();
    let served = app.serve(shutdown_signal()).await;
    if let Some(supervisor) = supervisor {
        supervisor.abort();
        let _ = supervisor.await;
    }
    database.close().await.context("closing the database")?;
    served.context("serving HTTP")
}

/// Raises the soft limit on open files to the hard one, so that `http.max_connections`
/// (plus the database pool and the overflow) fits; warns when it still does not.
fn raise_file_limit(max_connections: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    // The connections, their overflow (a sixteenth), the pool and some files.
    let needed = (max_connections + max_connections / 16 + 256) as u64;
    if soft < needed {
        tracing::warn!(
            open_files = soft,
            max_connections,
            "the open-file limit is below what http.max_connections needs; lower it or raise \
             the limit (ulimit -n)"
        );
    }
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let database = Database::open(&settings)
        .await
        .context("opening the database")?;
    let status = database.store.schema_status().await;
    database.close().await?;
    let status = status?;
    println!(
        "schema is current: {} migration(s) applied, latest {}",
        status.applied.len(),
        status
            .applied
            .last()
            .map_or("none".to_owned(), i64::to_string)
    );
    Ok(())
}

async fn retention(settings: Settings, args: &RetentionArgs) -> anyhow::Result<()> {
    let database = Database::open(&settings)
        .await
        .context("opening the database")?;
    let now = chrono::Utc::now();
    let result = if args.dry_run {
        jobs::retention::plan(&database.store, &settings.retention, now).await
    } else {
        jobs::retention::run_once(&database.store, &settings.retention, now, false).await
    };
    let scores = if args.dry_run {
        Ok(Vec::new())
    } else {
        jobs::retention::prune_scores(&database.store, &settings.retention, now).await
    };
    database.close().await?;
    let partitions = result?;
    if let Some(cutoff) = jobs::retention::scores_cutoff(&settings.retention, now)
        && !args.dry_run
    {
        println!(
            "dropped {} score partition(s) older than {cutoff} (alerting scores kept)",
            scores?.len()
        );
    }
    let verb = if args.dry_run {
        "would drop"
    } else {
        "dropped"
    };
    match jobs::retention::cutoff(&settings.retention, now) {
        None => println!("retention is off (retention.samples_days = 0): nothing dropped"),
        Some(cutoff) => {
            println!(
                "{verb} {} partition(s) older than {cutoff}",
                partitions.len()
            );
            for name in partitions {
                println!("  {name}");
            }
        }
    }
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("received SIGINT"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}
