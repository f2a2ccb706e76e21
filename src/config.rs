//! Settings: the one typed configuration of a Vigil process.
//!
//! Layers, lowest first: built-in defaults < TOML config file (`--config`, `VIGIL_CONFIG`) <
//! environment (`VIGIL_*`, nested keys joined by `__`, plus the conventional `DATABASE_URL`) <
//! command-line flags. Unknown keys in any layer are rejected, so a typo never silently falls
//! back to a default. Bearer tokens are stored as SHA-256 hashes, never in clear.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Environment variables with the `VIGIL_` prefix that are not settings.
const NON_SETTING_ENV: [&str; 3] = ["config", "log", "log_format"];

/// Errors from loading or checking the configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A layer could not be read or did not match the settings' shape (unknown key, bad type).
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The config file named on the command line or in `VIGIL_CONFIG` does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    /// Auth is off (no tokens) but the listen address is reachable from other machines.
    #[error(
        "refusing to listen on {0} with auth off: no bearer tokens are configured. Listen on a \
         loopback address (e.g. 127.0.0.1:8080) for a local try-out, or configure tokens \
         (`vigil token new --name NAME --scopes ingest,score` prints one) to expose the server"
    )]
    ExposedWithoutAuth(SocketAddr),
    /// A configured token is malformed.
    #[error("token {name:?}: {reason}")]
    BadToken {
        /// The token's configured name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A permission that a bearer token grants. `admin` implies all the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Push samples, incidents and asset metadata.
    Ingest,
    /// Request scores.
    Score,
    /// Submit feedback on alerts and incident outcomes.
    Feedback,
    /// Everything, including approving actions and changing policy.
    Admin,
}

impl Scope {
    /// All scopes, in the order they are documented.
    pub const ALL: [Scope; 4] = [Scope::Ingest, Scope::Score, Scope::Feedback, Scope::Admin];

    /// The scope's name as written in config and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Score => "score",
            Scope::Feedback => "feedback",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                format!("unknown scope {s:?} (expected one of ingest, score, feedback, admin)")
            })
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address the HTTP service binds. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Directory for the embedded PostgreSQL cluster and model files. Default `./data`.
    pub data_dir: PathBuf,
    /// PostgreSQL to use instead of the embedded cluster. Default: none (embedded).
    pub database_url: Option<String>,
    /// Connection pool and embedded-cluster settings.
    pub database: DatabaseSettings,
    /// HTTP limits and timeouts.
    pub http: HttpSettings,
    /// Bearer tokens.
    pub auth: AuthSettings,
    /// How long samples are kept.
    pub retention: RetentionSettings,
    /// Limits on ingested samples.
    pub ingest: IngestSettings,
    /// Prometheus remote-write receiver.
    pub remote_write: RemoteWriteSettings,
    /// Alertmanager webhook receiver.
    pub alertmanager: AlertmanagerSettings,
    /// Windows, labels and model hyperparameters of training.
    pub training: TrainingSettings,
    /// What the models see of stored series: derived metrics (`[[features.metrics]]`),
    /// passthrough, rate range.
    pub features: crate::vocab::ModelInputs,
    /// Real-time scoring.
    pub scoring: ScoringSettings,
    /// Drift of live windows from the active model's reference windows.
    pub drift: DriftSettings,
    /// Feedback-tuned thresholds.
    pub policy: PolicySettings,
    /// The safety guard's limits and verification.
    pub guard: GuardSettings,
    /// The action catalog: what Vigil may do about an alert, and how.
    pub actions: Vec<ActionSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            database_url: None,
            database: DatabaseSettings::default(),
            http: HttpSettings::default(),
            auth: AuthSettings::default(),
            retention: RetentionSettings::default(),
            ingest: IngestSettings::default(),
            remote_write: RemoteWriteSettings::default(),
            alertmanager: AlertmanagerSettings::default(),
            training: TrainingSettings::default(),
            features: crate::vocab::ModelInputs::default(),
            policy: PolicySettings::default(),
            guard: GuardSettings::default(),
            actions: Vec::new(),
            scoring: ScoringSettings::default(),
            drift: DriftSettings::default(),
        }
    }
}

/// Drift: how far live windows moved from the windows the active model was built on
/// (population stability index per feature and of the probability).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftSettings {
    /// Measure drift (count live windows, check). Default true.
    pub enabled: bool,
    /// A population stability index above this, of the probability or of any feature, is
    /// drift. Default 0.25 (the usual "large shift").
    pub psi_threshold: f64,
    /// Fewest live windows a check needs to judge. Default 1000.
    pub min_windows: u64,
    /// Live windows of the last this many seconds are measured. Default 21600 (6 hours).
    pub window_secs: i64,
    /// How often a replica measures. Default 300.
    pub check_every_secs: u64,
    /// How often a replica adds its counts to the database. Default 30.
    pub flush_secs: u64,
    /// Start a training run (trigger `drift`) when drift is found. Default true.
    pub retrain: bool,
    /// No drift run within this many seconds of any training run's start (one drift run per
    /// period of this length, whichever replica finds it). Default 21600.
    pub cooldown_secs: i64,
}

impl Default for DriftSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            psi_threshold: 0.25,
            min_windows: 1000,
            window_secs: 21_600,
            check_every_secs: 300,
            flush_secs: 30,
            retrain: true,
            cooldown_secs: 21_600,
        }
    }
}

/// Connection pool and embedded-cluster settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// Most connections in the pool. Default 16.
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before failing with 503. Default 5.
    pub acquire_timeout_secs: u64,
    /// Directory of the embedded cluster. Default: `<data_dir>/pg`.
    pub embedded_dir: Option<PathBuf>,
    /// Unprivileged OS user that runs the embedded cluster when Vigil runs as root.
    /// Default `postgres`.
    pub embedded_os_user: String,
    /// `GET /healthz` answers 503 `database_down` once the database has not answered for
    /// this many seconds, so that an orchestrator restarts Vigil. Default 60.
    pub unhealthy_after_secs: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout_secs: 5,
            embedded_dir: None,
            embedded_os_user: "postgres".to_owned(),
            unhealthy_after_secs: 60,
        }
    }
}

/// HTTP limits and timeouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Largest accepted body of a bulk route (`POST /v1/samples`, `/api/v1/write`,
    /// `/v1/score/batch`), in bytes. Default 64 MiB.
    pub body_limit_bytes: usize,
    /// Largest accepted body of every other route, in bytes (at most `body_limit_bytes`).
    /// Default 1 MiB.
    pub small_body_limit_bytes: usize,
    /// Bulk requests handled at once: the memory they may take is bounded by this times the
    /// worst case of one (see the README's "Limits"). Further ones wait their turn for up to
    /// `bulk_wait_secs`, without their body being read, then get 503 `busy` with
    /// `Retry-After`. Default 4.
    pub max_bulk_requests: usize,
    /// How long a bulk request waits for its turn. Default 10.
    pub bulk_wait_secs: u64,
    /// A request that takes longer is answered 503 `timeout`. Default 30.
    pub request_timeout_secs: u64,
    /// After SIGTERM/SIGINT, in-flight requests get this long to finish. Default 30.
    pub shutdown_timeout_secs: u64,
    /// A connection must send a request's whole header within this many seconds of opening,
    /// or of its previous response (an idle keep-alive connection is closed then). Default 20.
    pub header_read_timeout_secs: u64,
    /// Most connections served at once. Beyond them, a few more (`max_connections / 16`, at
    /// least 16) are served one request each with a 1-second header timeout, so that health
    /// probes still answer; any further connection is closed at once. Default 4096.
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit_bytes: 64 * 1024 * 1024,
            small_body_limit_bytes: 1024 * 1024,
            max_bulk_requests: 4,
            bulk_wait_secs: 10,
            request_timeout_secs: 30,
            shutdown_timeout_secs: 30,
            header_read_timeout_secs: 20,
            max_connections: 4096,
        }
    }
}

/// Bearer tokens. With none, auth is off and only loopback addresses may be served.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// The accepted tokens. Default: none.
    pub tokens: Vec<TokenSettings>,
}

/// One accepted bearer token, stored as the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// Who holds it; recorded as the author of what it submits.
    pub name: String,
    /// Lowercase hex SHA-256 of the token (`vigil token new` prints it).
    pub sha256: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
}

/// How long samples are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Samples older than this many days are dropped, a whole day partition at a time.
    /// 0 keeps everything. Default 90.
    pub samples_days: u32,
    /// Scores whose window ended more than this many days ago are dropped, a whole day
    /// partition at a time; the alerting ones move to `score_alerting` first. 0 keeps
    /// everything. Default 30.
    pub scores_days: u32,
    /// How often `serve` applies retention, in seconds. Default 3600.
    pub interval_secs: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            samples_days: 90,
            scores_days: 30,
            interval_secs: 3600,
        }
    }
}

/// Limits on ingested samples, the same for every source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Most samples in one REST or remote-write request. Default 1,000,000.
    pub max_batch_samples: usize,
    /// Earliest accepted timestamp. Default 1990-01-01T00:00:00Z.
    pub min_timestamp: chrono::DateTime<chrono::Utc>,
    /// How far past the server's clock a timestamp may be, in seconds. Default 86400.
    pub max_future_secs: i64,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            max_batch_samples: 1_000_000,
            min_timestamp: chrono::DateTime::from_timestamp(631_152_000, 0)
                .expect("1990-01-01 is a valid time"),
            max_future_secs: 86_400,
        }
    }
}

/// Prometheus remote-write receiver (`POST /api/v1/write`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteWriteSettings {
    /// Label whose value names the asset. Default `instance`.
    pub asset_label: String,
    /// Cut the port off the asset label's value (`host:9100` -> `host`), so that the
    /// exporters of one host are one asset. Default false: two exporters on one host that
    /// expose the same metric would otherwise share its series.
    pub drop_port: bool,
    /// A template for the asset's name instead of `asset_label`, such as `{job}/{instance}`:
    /// each `{label}` is that label's value. Default none.
    pub asset_template: Option<String>,
    /// Labels that describe the asset rather than a series: kept on the asset (first value
    /// wins) and left out of series keys. Default `job`, `namespace`.
    pub asset_labels: Vec<String>,
    /// Most bytes one request may decompress to (also at most 8x `http.body_limit_bytes`).
    /// Default 32 MiB; Prometheus sends far less (2,000 samples a request by default).
    pub max_decompressed_bytes: usize,
    /// Most series in one request. Default 100,000.
    pub max_series: usize,
    /// Most labels in one request, over all its series. Default 1,000,000.
    pub max_labels: usize,
    /// Most samples in one request, over all its series. Default 1,000,000.
    pub max_samples: usize,
}

impl Default for RemoteWriteSettings {
    fn default() -> Self {
        Self {
            asset_label: "instance".to_owned(),
            drop_port: false,
            asset_template: None,
            asset_labels: vec!["job".to_owned(), "namespace".to_owned()],
            max_decompressed_bytes: 32 << 20,
            max_series: 100_000,
            max_labels: 1_000_000,
            max_samples: 1_000_000,
        }
    }
}

/// Alertmanager webhook receiver (`POST /v1/alertmanager`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertmanagerSettings {
    /// Label whose value names the asset. Default `instance`.
    pub asset_label: String,
    /// Label whose value is the incident kind. Default `alertname`.
    pub kind_label: String,
    /// Alertmanagers that Vigil pushes its own alerts to (`http://host:9093`; Vigil posts to
    /// `<url>/api/v2/alerts`). Default none.
    pub push_urls: Vec<String>,
    /// How often open alerts are re-sent (and cleared ones resolved). Default 30.
    pub push_interval_secs: u64,
    /// How long after clearing an alert is still sent, resolved, so that an Alertmanager
    /// that missed a push still resolves it. Default 900.
    pub push_resolved_secs: u64,
}

impl Default for AlertmanagerSettings {
    fn default() -> Self {
        Self {
            asset_label: "instance".to_owned(),
            kind_label: "alertname".to_owned(),
            push_urls: Vec::new(),
            push_interval_secs: 30,
            push_resolved_secs: 900,
        }
    }
}

/// Real-time scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringSettings {
    /// Failure probability at or above which a score is an alert, where no threshold is
    /// stored for the asset's class (feedback-tuned or set by an admin) and the model
    /// proposes none (see `model_threshold`). Default 0.5.
    pub alert_threshold: f64,
    /// Use the threshold the active model chose on its validation windows (the one whose
    /// alerts, under `fire_windows` and the clear rule, cost least by
    /// `policy.false_alarm_cost` and `missed_failure_cost`, else the best F1; within
    /// `policy.min_threshold` and `policy.max_threshold`; it clears where
    /// `policy.clear_gap` says) where no threshold is stored for
    /// the class. A trained model's probabilities are calibrated to the fleet's failure
    /// rate, which on a rare failure seldom reaches 0.5. Default true.
    pub model_threshold: bool,
    /// How many drivers an explanation lists. Default 5.
    pub top_drivers: usize,
    /// An alert opens after this many consecutive windows at or above the threshold.
    /// Default 3.
    pub fire_windows: u32,
    /// An open alert clears at the first window below this probability. Default 0.3.
    pub clear_threshold: f64,
    /// Keep scored windows in the `score` table (alerts are always kept). Default true.
    pub store_scores: bool,
    /// Store every score. When false, a score is not stored when its window ends in the same
    /// grid step (`training.step_secs`) as the last stored score of its asset with the same
    /// alert state, so scoring one asset again and again adds no rows: the table grows with
    /// the fleet and time, not with the request rate (an opened alert keeps its own copy of
    /// the score in `alert`). Default false.
    pub every_score: bool,
    /// Score an asset's latest window whenever ingested samples (REST or remote-write)
    /// complete a new grid point for it, so metrics alone raise alerts. Default true.
    pub on_ingest: bool,
    /// Cold-start anomaly score at or above which a window counts toward an alert, when no
    /// trained model answers. Default 0.5 (a tail probability of 1e-5, or a value beyond the
    /// range seen: see `model::streaming`).
    pub cold_start_threshold: f64,
    /// A cold-start alert clears at the first window below this anomaly score. Default 0.3
    /// (a tail probability of 1e-3).
    pub cold_start_clear_threshold: f64,
    /// Grid points of stored history the cold-start detector learns from when it scores a
    /// stored asset (on ingest, `GET /v1/assets/{name}/score`). Default 1440.
    pub cold_start_history: usize,
}

impl Default for ScoringSettings {
    fn default() -> Self {
        Self {
            alert_threshold: 0.5,
            model_threshold: true,
            top_drivers: 5,
            fire_windows: 3,
            clear_threshold: 0.3,
            store_scores: true,
            every_score: false,
            on_ingest: true,
            cold_start_threshold: 0.5,
            cold_start_clear_threshold: 0.3,
            cold_start_history: 1440,
        }
    }
}

/// The safety guard, enforced before every action, and the verification after one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardSettings {
    /// Seconds after an action on an asset before another may act on it. Default 600.
    pub cooldown_secs: i64,
    /// Most runs of one action per hour, fleet-wide. Default 20.
    pub rate_limit_per_hour: u32,
    /// Most assets with an action in flight (running or awaiting verification) at once: the
    /// blast radius. Default 3.
    pub budget: u32,
    /// Actions in a row that did not heal an asset before its breaker opens (no more
    /// automatic actions; `page_human` if the catalog has it). Default 3.
    pub breaker_after: u32,
    /// Seconds after which failed actions no longer count toward the breaker (it closes
    /// again). Default 3600.
    pub breaker_reset_secs: i64,
    /// An action awaiting approval expires after this. Default 900.
    pub approval_timeout_secs: i64,
    /// Seconds after an action before verification looks at the asset. Default 300.
    pub settle_secs: i64,
    /// Seconds after settling during which the score must stay below the clear threshold and
    /// no incident may open, for the action to count as healing. Default 600.
    pub verify_window_secs: i64,
    /// The kill switch's value until an admin sets it (`PUT /v1/policy/kill-switch`).
    /// Default false.
    pub kill_switch: bool,
    /// How often due verifications and expired approvals are looked for. Default 15.
    pub sweep_every_secs: u64,
    /// Seed of the action sampling (none: random each start). Default none.
    pub sample_seed: Option<u64>,
}

impl Default for GuardSettings {
    fn default() -> Self {
        Self {
            cooldown_secs: 600,
            rate_limit_per_hour: 20,
            budget: 3,
            breaker_after: 3,
            breaker_reset_secs: 3600,
            approval_timeout_secs: 900,
            settle_secs: 300,
            verify_window_secs: 600,
            kill_switch: false,
            sweep_every_secs: 15,
            sample_seed: None,
        }
    }
}

/// How an action runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    /// POST a signed JSON description to `url`.
    Webhook,
    /// Run `argv` (a template from config, never a shell string).
    Command,
    /// Record what would have run.
    DryRun,
}

impl ExecutorKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Command => "command",
            Self::DryRun => "dry_run",
        }
    }
}

/// One catalog action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSettings {
    /// Catalog name, e.g. `restart`, `rollback`, `page_human` (the breaker's escalation).
    pub name: String,
    /// How it runs.
    pub executor: ExecutorKind,
    /// How far it may go alone. Default observe.
    #[serde(default = "default_mode")]
    pub mode: crate::vocab::Mode,
    /// Failure kinds it applies to (empty: all).
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Asset classes it applies to (empty: all).
    #[serde(default)]
    pub classes: Vec<String>,
    /// Prior pseudo-counts (healed, not healed) of its Beta posterior. Default [1, 1].
    #[serde(default = "default_prior")]
    pub prior: (f64, f64),
    /// Webhook: the URL (http).
    #[serde(default)]
    pub url: Option<String>,
    /// Webhook: the HMAC-SHA256 key; the signature goes in `X-Vigil-Signature`.
    #[serde(default)]
    pub secret: Option<String>,
    /// Command: the argv template; `{asset}`, `{class}`, `{kind}`, `{action_id}` are filled
    /// with validated values, each placeholder a whole argument or part of one.
    #[serde(default)]
    pub argv: Vec<String>,
    /// Seconds one attempt may take. Default 10.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Extra attempts after a failed one (webhook). Default 2.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_mode() -> crate::vocab::Mode {
    crate::vocab::Mode::Observe
}

fn default_prior() -> (f64, f64) {
    (1.0, 1.0)
}

fn default_timeout() -> u64 {
    10
}

fn default_retries() -> u32 {
    2
}

impl ActionSettings {
    /// Whether the action applies to this failure kind and asset class.
    pub fn applies_to(&self, kind: &str, class: &str) -> bool {
        (self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind))
            && (self.classes.is_empty() || self.classes.iter().any(|c| c == class))
    }
}

/// How alert thresholds adapt to feedback (per asset class, `*` the global fallback).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// Adapt thresholds as feedback and incident outcomes arrive. Default true.
    pub adapt_thresholds: bool,
    /// Cost of one false alarm. Default 1.
    pub false_alarm_cost: f64,
    /// Cost of one missed failure. Default 10.
    pub missed_failure_cost: f64,
    /// Thresholds whose precision on labelled history is below this are not chosen.
    /// Default 0 (no floor).
    pub min_precision: f64,
    /// Labelled alerts and failures of a class before its threshold moves. Default 20.
    pub min_labels: usize,
    /// Largest move of one adaptation. Default 0.05.
    pub max_step: f64,
    /// Smallest relative cost reduction worth a move. Default 0.02.
    pub min_gain: f64,
    /// An adapted threshold (or one set without a clear point) clears this far below where
    /// it fires, or at `scoring.clear_threshold / scoring.alert_threshold` of it (0.6),
    /// whichever is higher. Default 0.2.
    pub clear_gap: f64,
    /// Lowest threshold the adapter may choose. Default 0.05.
    pub min_threshold: f64,
    /// Highest threshold the adapter may choose. Default 0.95.
    pub max_threshold: f64,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            adapt_thresholds: true,
            false_alarm_cost: 1.0,
            missed_failure_cost: 10.0,
            min_precision: 0.0,
            min_labels: 20,
            max_step: 0.05,
            min_gain: 0.02,
            clear_gap: 0.2,
            min_threshold: 0.05,
            max_threshold: 0.95,
        }
    }
}

/// Windows, labels and model hyperparameters of training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingSettings {
    /// Points per window. Default 60.
    pub window: usize,
    /// Grid step in seconds. Default 60.
    pub step_secs: i64,
    /// Most grid points a value is carried over a gap. Default 10.
    pub max_fill: usize,
    /// Grid points between window ends. Default 1.
    pub stride: usize,
    /// A window is positive when a failure starts within this many seconds after it.
    /// Default 1800.
    pub horizon_secs: i64,
    /// Fraction of the time range used for training (the rest validates). Default 0.7.
    pub train_frac: f64,
    /// Isolation forest trees. Default 100.
    pub n_trees: usize,
    /// Isolation forest rows per tree. Default 256.
    pub sample_size: usize,
    /// Seed of every random choice. Default 0.
    pub seed: u64,
    /// Normal windows kept per pre-failure window to fit the failure model (class
    /// imbalance). Default 50.
    pub negatives_per_positive: usize,
    /// How many times each window that operators called a false alarm (alert feedback)
    /// enters the failure model's fit, besides the sampled negatives; 0 ignores them.
    /// Default 5.
    pub false_alarm_weight: usize,
    /// Latest fraction of the training windows held out of the failure model's fit to choose
    /// among its candidates and calibrate it. Default 0.3.
    pub calibration_frac: f64,
    /// Time to failure is predicted up to this many seconds (a window further from its
    /// asset's next failure counts as this far). Default 21600 (6 hours).
    pub ttf_cap_secs: i64,
    /// Most windows the time-to-failure model is fitted on (all those near a failure, then
    /// evenly spaced others). Default 20000.
    pub ttf_max_rows: usize,
    /// Days of history `vigil train` reads from the database. Default 30.
    pub history_days: u32,
    /// When `serve` retrains, as a cron expression with seconds, in UTC; empty disables.
    /// Default `0 0 2 * * *` (02:00 every night).
    pub schedule: String,
    /// Seconds a new model that beats the active one on validation first scores live
    /// windows beside it, in shadow (no alerts, no actions), before it is promoted or
    /// dropped on what happened meanwhile; 0 activates it at once. Default 0.
    pub shadow_secs: i64,
    /// How often a serving replica looks for shadow periods that have ended. Default 30.
    pub shadow_check_secs: u64,
    /// Whether absolute levels (each metric's window mean, std, min, max, last, slope) enter
    /// the models besides the comparisons with each asset's own past. Default false: a fleet
    /// whose assets run at different levels generalizes better without them.
    pub levels: bool,
    /// Whether the failure model, once validated, is fitted again on the training and
    /// validation windows together: it then learns from the whole training period (the first
    /// fit, from its first `1 - calibration_frac`) and is chosen and calibrated on the latest
    /// `calibration_frac` of all windows, about the validation period, which the first fit
    /// was only measured on. The validation figures, the alert threshold and
    /// the comparisons with the active model and per-class models still use the first fit.
    /// Default false: on data not chosen on it did not help average precision (fleet2
    /// seeds 2, 3, 7: -0.002 to -0.020; seed 8 +0.11; Azure PdM -0.13) and training takes
    /// about 1.6 times as long.
    pub refit: bool,
}

impl Default for TrainingSettings {
    fn default() -> Self {
        Self {
            window: 60,
            step_secs: 60,
            max_fill: 10,
            stride: 1,
            horizon_secs: 1800,
            train_frac: 0.7,
            n_trees: 100,
            sample_size: 256,
            seed: 0,
            negatives_per_positive: 50,
            false_alarm_weight: 5,
            calibration_frac: 0.3,
            ttf_cap_secs: 21_600,
            ttf_max_rows: 20_000,
            history_days: 30,
            schedule: "0 0 2 * * *".to_owned(),
            shadow_secs: 0,
            shadow_check_secs: 30,
            levels: false,
            refit: false,
        }
    }
}

/// Values given as command-line flags: the top layer. `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--database-url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

impl Settings {
    /// Loads the layered configuration from the process environment.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, Error> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(Error::MissingFile(path.to_owned()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment
            .merge(Env::prefixed("VIGIL_").split("__").ignore(&NON_SETTING_ENV))
            .merge(Env::raw().only(&["database_url"]))
            .merge(Serialized::defaults(overrides));
        let settings: Settings = figment
            .extract()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        settings.check()?;
        Ok(settings)
    }

    /// Checks what serde cannot: token hashes are 64 hex digits, names unique, the training
    /// schedule parses, the training grid (step, window, stride, horizon) is positive.
    pub fn check(&self) -> Result<(), Error> {
        if !self.training.schedule.trim().is_empty() {
            self.training
                .schedule
                .parse::<cron::Schedule>()
                .map_err(|e| {
                    Error::Invalid(format!(
                        "training.schedule {:?}: {e}",
                        self.training.schedule
                    ))
                })?;
        }
        for url in &self.alertmanager.push_urls {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(Error::Invalid(format!(
                    "alertmanager.push_urls {url:?}: expected http://host:port"
                )));
            }
        }
        let training = &self.training;
        for (name, value) in [
            ("training.step_secs", training.step_secs),
            ("training.window", training.window as i64),
            ("training.stride", training.stride as i64),
            ("training.horizon_secs", training.horizon_secs),
        ] {
            if value <= 0 {
                return Err(Error::Invalid(format!(
                    "{name} must be positive, not {value}"
                )));
            }
        }
        let (scoring, policy) = (&self.scoring, &self.policy);
        for (name, value) in [
            ("scoring.alert_threshold", scoring.alert_threshold),
            ("scoring.clear_threshold", scoring.clear_threshold),
            ("policy.min_threshold", policy.min_threshold),
            ("policy.max_threshold", policy.max_threshold),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(Error::Invalid(format!(
                    "{name} must be in [0, 1], not {value}"
                )));
            }
        }
        if policy.min_threshold > policy.max_threshold {
            return Err(Error::Invalid(format!(
                "policy.min_threshold ({}) must not exceed policy.max_threshold ({})",
                policy.min_threshold, policy.max_threshold
            )));
        }
        if self.alertmanager.push_interval_secs == 0 {
            return Err(Error::Invalid(
                "alertmanager.push_interval_secs must be positive".to_owned(),
            ));
        }
        let mut inputs = std::collections::HashSet::new();
        for metric in &self.features.metrics {
            let bad = |reason: &str| {
                Error::Invalid(format!(
                    "features.metrics entry {:?}: {reason}",
                    metric.as_name
                ))
            };
            if !crate::vocab::is_valid_name(&metric.as_name) || !inputs.insert(&metric.as_name) {
                return Err(bad("`as` names must be valid and unique"));
            }
            let selections = std::iter::once(metric.selection()).chain(metric.divide_by.clone());
            for selection in selections {
                if !selection.name.split('|').all(crate::vocab::is_valid_name) {
                    return Err(bad("name must be a metric name or names as a|b"));
                }
                if !selection
                    .matchers
                    .keys()
                    .all(|l| crate::vocab::is_label_name(l))
                {
                    return Err(bad("match keys must be label names"));
                }
            }
        }
        if self.features.rate_range_secs < 0 {
            return Err(Error::Invalid(
                "features.rate_range_secs must be 0 (four steps) or positive".to_owned(),
            ));
        }
        let mut actions = std::collections::HashSet::new();
        for action in &self.actions {
            let bad =
                |reason: &str| Error::Invalid(format!("actions entry {:?}: {reason}", action.name));
            if !crate::vocab::is_valid_name(&action.name) || !actions.insert(action.name.as_str()) {
                return Err(bad("names must be valid and unique"));
            }
            match action.executor {
                ExecutorKind::Webhook
                    if action
                        .url
                        .as_deref()
                        .is_none_or(|u| !u.starts_with("http://")) =>
                {
                    return Err(bad("a webhook needs url = \"http://...\""));
                }
                ExecutorKind::Command if action.argv.is_empty() => {
                    return Err(bad("a command needs argv = [\"program\", ...]"));
                }
                _ => {}
            }
            if action.prior.0 <= 0.0 || action.prior.1 <= 0.0 {
                return Err(bad("prior counts must be positive"));
            }
        }
        let mut names = std::collections::HashSet::new();
        for token in &self.auth.tokens {
            let bad = |reason: &str| Error::BadToken {
                name: token.name.clone(),
                reason: reason.to_owned(),
            };
            if token.name.is_empty() || !names.insert(token.name.as_str()) {
                return Err(bad("names must be non-empty and unique"));
            }
            if token.sha256.len() != 64 || !token.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(
                    "sha256 must be 64 hex digits (the hash, not the token)",
                ));
            }
            if token.scopes.is_empty() {
                return Err(bad("needs at least one scope"));
            }
        }
        Ok(())
    }

    /// Refuses a non-loopback listen address while auth is off.
    pub fn check_exposure(&self) -> Result<(), Error> {
        if self.auth.tokens.is_empty() && !self.listen.ip().is_loopback() {
            return Err(Error::ExposedWithoutAuth(self.listen));
        }
        Ok(())
    }

    /// Directory of the embedded PostgreSQL cluster.
    pub fn embedded_dir(&self) -> PathBuf {
        self.database
            .embedded_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("pg"))
    }

    /// A copy safe to print or serve: the database password and token hashes are masked.
    pub fn masked(&self) -> Settings {
        let mut masked = self.clone();
        masked.database_url = masked.database_url.as_deref().map(mask_url_password);
        for action in &mut masked.actions {
            if action.secret.is_some() {
                action.secret = Some("***".to_owned());
            }
        }
        for token in &mut masked.auth.tokens {
            token.sha256 = format!("{}…", &token.sha256[..8.min(token.sha256.len())]);
        }
        masked
    }

    /// The effective configuration as TOML, masked.
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(&self.masked()).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// Replaces the password of a `scheme://user:password@host/...` URL with `****`.
fn mask_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:****{}",
            &url[..scheme_end + 3],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

/// Lowercase hex SHA-256 of a token secret, as stored in config.
pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random token secret (`vgl_` and 64 hex digits) and its hash.
pub fn new_token() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let secret = format!("vgl_{}", hex::encode(bytes));
    let hash = hash_token(&secret);
    Ok((secret, hash))
}

#[cfg(test)]
// figment's Jail closures return figment's own (large) error type; not ours to shrink.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in_jail(file: Option<&str>, overrides: &Overrides) -> Result<Settings, Error> {
        Settings::load(file.map(Path::new), overrides)
    }

    #[test]
    fn defaults_apply_without_any_layer() {
        Jail::expect_with(|_jail| {
            let settings = load_in_jail(None, &Overrides::default()).unwrap();
            assert_eq!(settings, Settings::default());
            assert_eq!(settings.embedded_dir(), PathBuf::from("data/pg"));
            Ok(())
        });
    }

    #[test]
    fn layers_override_in_order_file_env_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "vigil.toml",
                r#"
                listen = "127.0.0.1:9000"
                data_dir = "/from/file"
                [database]
                max_connections = 3
                [retention]
                samples_days = 7
                "#,
            )?;
            jail.set_env("VIGIL_DATA_DIR", "/from/env");
            jail.set_env("VIGIL_DATABASE__MAX_CONNECTIONS", "5");
            jail.set_env("VIGIL_CONFIG", "ignored-here");
            let overrides = Overrides {
                data_dir: Some(PathBuf::from("/from/flag")),
                ..Overrides::default()
            };
            let settings = load_in_jail(Some("vigil.toml"), &overrides).unwrap();
            assert_eq!(settings.listen.port(), 9000, "file beats default");
            assert_eq!(settings.database.max_connections, 5, "env beats file");
            assert_eq!(
                settings.data_dir,
                PathBuf::from("/from/flag"),
                "flag beats env"
            );
            assert_eq!(settings.retention.samples_days, 7);
            Ok(())
        });
    }

    #[test]
    fn database_url_comes_from_the_conventional_variable() {
        Jail::expect_with(|jail| {
            jail.set_env("DATABASE_URL", "postgres://u:secret@db/vigil");
            let settings = load_in_jail(None, &Overrides::default()).unwrap();
            assert_eq!(
                settings.database_url.as_deref(),
                Some("postgres://u:secret@db/vigil")
            );
            assert_eq!(
                settings.masked().database_url.as_deref(),
                Some("postgres://u:****@db/vigil")
            );
            assert!(!settings.to_masked_toml().contains("secret"));
            Ok(())
        });
    }

    #[test]
    fn unknown_key_in_file_is_rejected() {
        Jail::expect_with(|jail| {
            jail.create_file("vigil.toml", "[http]\nbody_limit = 10\n")?;
            let err = load_in_jail(Some("vigil.toml"), &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("body_limit"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_env_key_is_rejected() {
        Jail::expect_with(|jail| {
            jail.set_env("VIGIL_LISTN", "127.0.0.1:1");
            let err = load_in_jail(None, &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("listn"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn missing_config_file_is_an_error() {
        Jail::expect_with(|_jail| {
            let err = load_in_jail(Some("nope.toml"), &Overrides::default()).unwrap_err();
            assert!(matches!(err, Error::MissingFile(_)));
            Ok(())
        });
    }

    #[test]
    fn token_with_clear_secret_instead_of_hash_is_rejected() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "vigil.toml",
                "[[auth.tokens]]\nname = \"ci\"\nsha256 = \"vgl_secret\"\nscopes = [\"admin\"]\n",
            )?;
            let err = load_in_jail(Some("vigil.toml"), &Overrides::default()).unwrap_err();
            assert!(matches!(err, Error::BadToken { .. }), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_bad_training_schedule_is_rejected() {
        Jail::expect_with(|jail| {
            jail.set_env("VIGIL_TRAINING__SCHEDULE", "every night");
            let err = load_in_jail(None, &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("training.schedule"), "{err}");
            jail.set_env("VIGIL_TRAINING__SCHEDULE", "0 30 3 * * *");
            assert!(load_in_jail(None, &Overrides::default()).is_ok());
            Ok(())
        });
    }

    #[test]
    fn a_training_grid_of_zero_is_rejected() {
        Jail::expect_with(|jail| {
            for key in ["STEP_SECS", "WINDOW", "STRIDE", "HORIZON_SECS"] {
                jail.set_env(format!("VIGIL_TRAINING__{key}"), "0");
                let err = load_in_jail(None, &Overrides::default()).unwrap_err();
                let name = format!("training.{}", key.to_lowercase());
                assert!(err.to_string().contains(&name), "{err}");
                jail.set_env(format!("VIGIL_TRAINING__{key}"), "60");
            }
            assert!(load_in_jail(None, &Overrides::default()).is_ok());
            Ok(())
        });
    }

    #[test]
    fn thresholds_outside_0_1_or_crossed_bounds_are_rejected() {
        Jail::expect_with(|jail| {
            jail.set_env("VIGIL_SCORING__ALERT_THRESHOLD", "1.5");
            let err = load_in_jail(None, &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("scoring.alert_threshold"), "{err}");
            jail.set_env("VIGIL_SCORING__ALERT_THRESHOLD", "0.4");
            jail.set_env("VIGIL_POLICY__MIN_THRESHOLD", "0.96");
            let err = load_in_jail(None, &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("policy.min_threshold"), "{err}");
            jail.set_env("VIGIL_POLICY__MIN_THRESHOLD", "0.1");
            assert!(load_in_jail(None, &Overrides::default()).is_ok());
            Ok(())
        });
    }

    #[test]
    fn exposed_listen_without_tokens_is_refused() {
        let mut settings = Settings {
            listen: "0.0.0.0:8080".parse().unwrap(),
            ..Settings::default()
        };
        assert!(matches!(
            settings.check_exposure(),
            Err(Error::ExposedWithoutAuth(_))
        ));
        let (_, hash) = new_token().unwrap();
        settings.auth.tokens.push(TokenSettings {
            name: "ops".into(),
            sha256: hash,
            scopes: vec![Scope::Admin],
        });
        assert!(settings.check_exposure().is_ok());
    }

    #[test]
    fn new_token_hashes_to_its_stored_form() {
        let (secret, hash) = new_token().unwrap();
        assert!(secret.starts_with("vgl_"));
        assert_eq!(hash_token(&secret), hash);
        assert_eq!(hash.len(), 64);
    }

    #[test]
    fn url_without_password_is_left_alone() {
        assert_eq!(mask_url_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            mask_url_password("postgres:///db?host=/tmp"),
            "postgres:///db?host=/tmp"
        );
    }
}
