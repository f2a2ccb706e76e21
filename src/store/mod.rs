//! PostgreSQL persistence: the connection pool, migrations, the embedded cluster and one
//! repository module per part of the schema (`migrations/`).
//!
//! Every function returns [`Error`], whose variants callers match on: a unique violation is
//! [`Error::Duplicate`], a missing row [`Error::NotFound`], an unreachable database
//! [`Error::Unavailable`]. No caller inspects SQL error text.

pub mod actions;
pub mod alerts;
pub mod assets;
pub mod copy;
pub mod drift;
pub mod embedded;
pub mod incidents;
pub mod jobs;
pub mod models;
pub mod samples;
pub mod scores;
pub mod shadow;
pub mod thresholds;

use std::time::Duration;

use sqlx::error::ErrorKind;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::config::Settings;
pub use embedded::EmbeddedPostgres;

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Errors of the persistence layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A row with the same unique key exists.
    #[error("duplicate: {constraint} already exists")]
    Duplicate {
        /// The violated unique constraint or index.
        constraint: String,
    },
    /// A check or foreign-key constraint rejected the row.
    #[error("rejected by constraint {constraint}")]
    Constraint {
        /// The violated constraint.
        constraint: String,
    },
    /// The requested row does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A name given to the store (a database to create) is not usable.
    #[error("invalid name {0:?}: use letters, digits and _ only")]
    InvalidName(String),
    /// The database cannot be reached or has no free connection: retry later.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The embedded cluster could not be set up.
    #[error(transparent)]
    Embedded(#[from] embedded::Error),
    /// The database has not answered the health probe for a while: nothing is tried.
    #[error("database down: it has not answered for {0} s")]
    Down(u64),
    /// A model artifact file named by the registry cannot be read.
    #[error("model artifact {path}: {source}")]
    Artifact {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    /// The database could not be asked, for the reason given (retry later: 503).
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Error::Unavailable(sqlx::Error::Protocol(reason.into()))
    }

    /// The same failure again, for each of several callers that shared one query (the error
    /// itself cannot be cloned): still `Unavailable` when it was.
    pub fn repeat(&self) -> Self {
        match self {
            Error::Unavailable(_) | Error::Down(_) => Error::unavailable(self.to_string()),
            _ => Error::Database(sqlx::Error::Protocol(self.to_string())),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            // Class 08 (connection exception) and 57 (operator intervention: the server is
            // shutting down or starting) mean the same as a lost connection: retry later.
            sqlx::Error::Database(db)
                if db
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57")) =>
            {
                Error::Unavailable(err)
            }
            sqlx::Error::Database(db) => {
                let constraint = db.constraint().unwrap_or("unknown").to_owned();
                match db.kind() {
                    ErrorKind::UniqueViolation => Error::Duplicate { constraint },
                    ErrorKind::ForeignKeyViolation
                    | ErrorKind::CheckViolation
                    | ErrorKind::NotNullViolation => Error::Constraint { constraint },
                    _ => Error::Database(err),
                }
            }
            sqlx::Error::RowNotFound => Error::NotFound("row".to_owned()),
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Error::Unavailable(err),
            _ => Error::Database(err),
        }
    }
}

/// Result alias of this layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The wait before retry `k` (from 0) of [`retry_unavailable`]: 250 ms, then twice as long
/// each time up to 8 s.
fn retry_wait(k: u32) -> std::time::Duration {
    std::time::Duration::from_millis(250u64.saturating_mul(1 << k.min(6)))
        .min(std::time::Duration::from_secs(8))
}

/// The longest [`retry_unavailable`] with `retries` waits between the tries.
pub fn retry_unavailable_waits(retries: u32) -> std::time::Duration {
    (0..retries).map(retry_wait).sum()
}

/// Runs `op` again while it fails with [`Error::Unavailable`] (a database restart), at most
/// `retries` more times, waiting 250 ms first, then twice as long each time up to 8 s;
/// returns the first other outcome, or the last error. `what` names the work in the log.
pub async fn retry_unavailable<T, F, Fut>(what: &str, retries: u32, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut tries = 0;
    loop {
        match op().await {
            Err(Error::Unavailable(e)) if tries < retries => {
                tracing::warn!("cannot {what} yet: {e}");
                tokio::time::sleep(retry_wait(tries)).await;
                tries += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Migration state of a database compared with the migrations this binary embeds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SchemaStatus {
    /// Versions applied successfully.
    pub applied: Vec<i64>,
    /// Embedded versions not applied yet.
    pub pending: Vec<i64>,
}

impl SchemaStatus {
    /// True when every embedded migration is applied.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Handle on the database: a cheap-to-clone connection pool and the repositories on it.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    ids: std::sync::Arc<assets::IdCache>,
    health: std::sync::Arc<Health>,
}

/// What the health probe knows of the database: since when it has not answered, in
/// milliseconds since the Unix epoch (0: it answered last time). An atomic, because every
/// score request reads it.
#[derive(Debug, Default)]
struct Health {
    down_since_ms: std::sync::atomic::AtomicU64,
}

/// Milliseconds since the Unix epoch, at least 1 (0 means "up").
fn now_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl Health {
    /// Records one probe's result.
    fn record(&self, answered: bool) {
        use std::sync::atomic::Ordering;
        if answered {
            if self.down_since_ms.swap(0, Ordering::Relaxed) != 0 {
                tracing::info!("the database answers again");
            }
        } else if self
            .down_since_ms
            .compare_exchange(0, now_ms(), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::warn!("the database does not answer");
        }
    }

    /// How long the database has not answered; `None` when it answered last time.
    fn down_for(&self) -> Option<Duration> {
        match self
            .down_since_ms
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            0 => None,
            since => Some(Duration::from_millis(now_ms().saturating_sub(since))),
        }
    }
}

impl Store {
    /// Wraps an existing pool (tests hand theirs in).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            ids: Default::default(),
            health: Default::default(),
        }
    }

    /// Opens a pool with the configured size and acquire timeout.
    pub async fn connect(options: PgConnectOptions, settings: &Settings) -> Result<Self> {
        let options =
            options.log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(2));
        let pool = PgPoolOptions::new()
            .max_connections(settings.database.max_connections)
            .acquire_timeout(Duration::from_secs(settings.database.acquire_timeout_secs))
            .connect_with(options)
            .await?;
        Ok(Self::new(pool))
    }

    /// How many connections the pool has open, and how many of them are idle.
    pub fn pool_stats(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// Runs `job` while this process holds the session advisory lock `key` on one pooled
    /// connection; `None` (and `job` not run) when another session holds it.
    pub async fn with_advisory_lock<F, Fut, T>(&self, key: i64, job: F) -> Result<Option<T>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let mut conn = self.pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
        if !locked {
            return Ok(None);
        }
        // A job cancelled mid-way (its task aborted) drops the connection without the unlock
        // below: closing it then, instead of pooling it, is what releases the lock.
        conn.close_on_drop();
        let result = job().await;
        sqlx::query("select pg_advisory_unlock($1)")
            .bind(key)
            .execute(&mut *conn)
            .await?;
        Ok(Some(result))
    }

    /// Ends every other session on this database (`pg_terminate_backend`): the demo's
    /// `--chaos` outage.
    pub async fn terminate_other_sessions(&self) -> Result<()> {
        sqlx::query(
            "select pg_terminate_backend(pid) from pg_stat_activity \
             where datname = current_database() and pid <> pg_backend_pid()",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Probes the database every `every` (a query, given `every` to answer) until the task is
    /// aborted, so that [`Store::down_for`] knows how long it has been unreachable.
    pub fn spawn_health_probe(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                let answered = tokio::time::timeout(every, store.answers())
                    .await
                    .unwrap_or(false);
                store.health.record(answered);
                tokio::time::sleep(every).await;
            }
        })
    }

    /// How long the database has not answered the health probe; `None` when it answered
    /// last time (or no probe runs).
    pub fn down_for(&self) -> Option<Duration> {
        self.health.down_for()
    }

    /// Whether the database answers a query now.
    pub async fn answers(&self) -> bool {
        sqlx::query("select 1").execute(&self.pool).await.is_ok()
    }

    /// Applies pending migrations; safe to run on every start and from several replicas
    /// at once (sqlx serialises them with an advisory lock).
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Which embedded migrations are applied and which are pending.
    pub async fn schema_status(&self) -> Result<SchemaStatus> {
        let table_exists: bool =
            sqlx::query_scalar("select to_regclass('_sqlx_migrations') is not null")
                .fetch_one(&self.pool)
                .await?;
        let applied: Vec<i64> = if table_exists {
            sqlx::query_scalar(
                "select version from _sqlx_migrations where success order by version",
            )
            .fetch_all(&self.pool)
            .await?
        } else {
            Vec::new()
        };
        let pending = MIGRATOR
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect();
        Ok(SchemaStatus { applied, pending })
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The database a process runs on: the store, and the embedded cluster when Vigil started one.
#[derive(Debug)]
pub struct Database {
    /// Repositories on the pool.
    pub store: Store,
    /// The embedded cluster, when no `database_url` is configured (shared with its
    /// supervisor, see [`Database::supervise`]).
    pub embedded: Option<std::sync::Arc<EmbeddedPostgres>>,
}

impl Database {
    /// Connects to `database_url`, or starts (creating on first use) the embedded cluster,
    /// then applies pending migrations.
    pub async fn open(settings: &Settings) -> Result<Self> {
        let (options, embedded) = Self::server(settings).await?;
        let store = Store::connect(options, settings).await?;
        store.migrate().await?;
        Ok(Self { store, embedded })
    }

    /// Like [`Database::open`], on a fresh database `name` of the same server (dropped first
    /// if it exists): a scratch database that leaves the main one alone (`vigil demo`).
    pub async fn open_scratch(settings: &Settings, name: &str) -> Result<Self> {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::InvalidName(name.to_owned()));
        }
        let (options, embedded) = Self::server(settings).await?;
        let admin = Store::connect(options.clone(), settings).await?;
        for sql in [
            format!("drop database if exists {name} with (force)"),
            format!("create database {name}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&admin.pool)
                .await?;
        }
        admin.close().await;
        let store = Store::connect(options.database(name), settings).await?;
        store.migrate().await?;
        Ok(Self { store, embedded })
    }

    /// Connection options of the configured server, starting the embedded cluster when no
    /// `database_url` is set.
    async fn server(
        settings: &Settings,
    ) -> Result<(PgConnectOptions, Option<std::sync::Arc<EmbeddedPostgres>>)> {
        Ok(match &settings.database_url {
            Some(url) => {
                let options: PgConnectOptions = url.parse().map_err(Error::Database)?;
                (options, None)
            }
            None => {
                let cluster = EmbeddedPostgres::start(
                    &settings.embedded_dir(),
                    &settings.database.embedded_os_user,
                )
                .await?;
                (
                    cluster.connect_options(),
                    Some(std::sync::Arc::new(cluster)),
                )
            }
        })
    }

    /// Restarts the embedded cluster whenever it stops (checked every 2 s), until the task is
    /// aborted; `None` with a configured `database_url` (that server has its own keeper).
    pub fn supervise(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.embedded
            .clone()
            .map(|cluster| cluster.supervise(Duration::from_secs(2)))
    }

    /// Closes the pool and stops the embedded cluster if this process started it. Abort the
    /// supervisor first: a cluster still shared with it is left running.
    pub async fn close(self) -> Result<()> {
        self.store.close().await;
        if let Some(cluster) = self.embedded {
            match std::sync::Arc::try_unwrap(cluster) {
                Ok(cluster) => cluster.stop().await?,
                Err(_) => tracing::warn!("the embedded cluster is still shared: left running"),
            }
        }
        Ok(())
    }
}
