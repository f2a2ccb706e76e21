//! Jobs that `serve` runs in the background and the CLI runs on demand: retention and
//! training. Each job exposes `run_once`, so that tests and `vigil <job>` never wait for a
//! schedule; [`spawn`] starts the schedules of both for `serve`.

pub mod retention;
pub mod train;

use std::sync::Arc;

use crate::config::Settings;
use crate::store::Store;

/// The scheduled jobs of a serving process.
#[derive(Debug)]
pub struct Jobs {
    retention: tokio::task::JoinHandle<()>,
    training: Option<tokio::task::JoinHandle<()>>,
}

impl Jobs {
    /// Stops both schedules (a run under way is cancelled; its lock is released with its
    /// connection).
    pub fn abort(&self) {
        self.retention.abort();
        if let Some(training) = &self.training {
            training.abort();
        }
    }
}

/// Starts retention (`retention.interval_secs`, off when `retention.samples_days` is 0) and
/// retraining on `training.schedule` (off when empty), each in a task of its own.
pub fn spawn(store: Store, settings: Arc<Settings>) -> Jobs {
    Jobs {
        retention: retention::spawn(store.clone(), settings.retention.clone()),
        training: train::spawn_schedule(store, (*settings).clone()),
    }
}
