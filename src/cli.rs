//! The command line (clap): `vigil serve | migrate | config | token`. Each subcommand loads
//! the layered [`Settings`] and calls into the library; this is one of the few places that
//! use `anyhow`, adding the context a person needs to act on an error.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::api::App;
use crate::config::{Overrides, Scope, Settings, new_token};
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
    /// Run the HTTP service (starts the embedded PostgreSQL unless DATABASE_URL is set).
    Serve(ServeArgs),
    /// Apply pending database migrations and print the schema version.
    Migrate,
    /// Print the effective configuration as TOML, secrets masked.
    Config,
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
    let served = app.serve(shutdown_signal()).await;
    database.close().await.context("closing the database")?;
    served.context("serving HTTP")
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
