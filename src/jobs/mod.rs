//! Jobs that `serve` runs in the background and the CLI runs on demand: retention,
//! training and the alert push to Alertmanager. Each job exposes `run_once`, so that tests
//! and `vigil <job>` never wait for a schedule; [`spawn`] starts their schedules for `serve`.

pub mod alert_push;
pub mod drift;
pub mod retention;
pub mod shadow;
pub mod train;

use std::sync::Arc;

use crate::config::Settings;
use crate::store::Store;

/// Which process runs a job, as `host:pid` (recorded with training runs, so that an
/// operator of several replicas sees which one ran each).
pub fn runner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned());
    format!("{}:{}", host.trim(), std::process::id())
}

/// The scheduled jobs of a serving process.
#[derive(Debug)]
pub struct Jobs {
    retention: tokio::task::JoinHandle<()>,
    training: Option<tokio::task::JoinHandle<()>>,
    drift: Option<tokio::task::JoinHandle<()>>,
    shadow: tokio::task::JoinHandle<()>,
    alert_push: Option<tokio::task::JoinHandle<()>>,
    metrics_upkeep: tokio::task::JoinHandle<()>,
}

impl Jobs {
    /// Stops both schedules (a run under way is cancelled; its lock is released with its
    /// connection).
    pub fn abort(&self) {
        self.retention.abort();
        if let Some(training) = &self.training {
            training.abort();
        }
        if let Some(push) = &self.alert_push {
            push.abort();
        }
        if let Some(drift) = &self.drift {
            drift.abort();
        }
        self.shadow.abort();
        self.metrics_upkeep.abort();
    }
}

/// Starts retention (`retention.interval_secs`, off when `retention.samples_days` is 0),
/// retraining on `training.schedule` (off when empty), the drift check (`drift.enabled`),
/// the decision of ended shadow periods (`training.shadow_check_secs`) and the alert push
/// (`alertmanager.push_urls`, off when none), each in a task of its own; and every 5 s the
/// metrics recorder's upkeep (latency samples into buckets, so memory stays bounded when
/// nobody scrapes).
pub fn spawn(
    store: Store,
    settings: Arc<Settings>,
    counters: Arc<crate::counters::Counters>,
) -> Jobs {
    let upkept = counters.clone();
    let metrics_upkeep = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkept.run_upkeep();
        }
    });
    Jobs {
        retention: retention::spawn(store.clone(), settings.retention.clone()),
        alert_push: alert_push::spawn(store.clone(), settings.alertmanager.clone(), counters),
        drift: drift::spawn(store.clone(), (*settings).clone()),
        shadow: shadow::spawn(
            store.clone(),
            std::time::Duration::from_secs(settings.training.shadow_check_secs),
            settings.training.horizon_secs,
        ),
        training: train::spawn_schedule(store, (*settings).clone()),
        metrics_upkeep,
    }
}
