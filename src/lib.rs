//! Vigil: predictive maintenance and self-healing for fleets.
//!
//! See `ARCHITECTURE.md` for the map of modules and the invariants between them.

/// Actions: choose, guard, run and verify corrective actions.
pub mod actions;
/// HTTP service: router, middleware, handlers, the JSON error body.
pub mod api;
/// Command line: subcommands that load settings and call into the library.
pub mod cli;
/// Settings layered from defaults, a TOML file, the environment and flags.
pub mod config;
/// Counters of what the service did, for `/metrics`.
pub mod counters;
/// Features: the one definition of a window's feature vector (training and scoring).
pub mod features;
/// Ingestion: validating samples from REST, remote-write and files into atomic batches.
pub mod ingest;
/// Background jobs: retention and retraining, on demand (`run_once`) and on their schedules.
pub mod jobs;
/// Models: isolation forest, calibrated failure probability, diagnosis, time to failure and
/// the streaming detector; params -> check -> fit, no IO.
pub mod model;
/// Policy: adaptive thresholds, action choice (Thompson sampling), the safety guard rules.
pub mod policy;
/// Progress bars for the commands of `cli` and `sim`.
pub mod progress;
/// Scoring: the service that scores windows, keeps the active model, alerts and stores scores.
pub mod scoring;
/// Evaluation on top of the core, which never imports it: the fleet simulator, `vigil demo`,
/// `simulate`, `replay`, `detect` and NAB scoring (feature `sim`, on by default).
#[cfg(feature = "sim")]
pub mod sim;
/// PostgreSQL: pool, migrations, embedded cluster, repositories.
pub mod store;
/// The words every layer shares: name rules, a metric's time series, action modes.
pub mod vocab;
