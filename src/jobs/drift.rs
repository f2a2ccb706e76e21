//! The drift check: every `drift.check_every_secs` a replica sums the live windows every
//! replica counted for the active model over the last `drift.window_secs`, measures the
//! population stability index of the probability and of each feature against the model's
//! reference windows ([`crate::model::drift`]), and records it (`model_drift`). Above
//! `drift.psi_threshold`, with enough windows, it starts a training run with trigger
//! `drift` under the training lock, one per `drift.cooldown_secs` period across replicas,
//! and none within that long of any training run's start.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::train::{self, Bundle, TrainError, Trigger};
use crate::config::Settings;
use crate::model::drift::{Measured, measure};
use crate::store::Store;
use crate::store::drift::NewDriftCheck;

/// What one check found and did.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The model measured.
    pub model_id: i64,
    /// The drift (the bundle, or class bundle, that moved most).
    pub measured: Measured,
    /// Over the threshold, with enough windows.
    pub over_threshold: bool,
    /// The training run it started.
    pub job_run_id: Option<i64>,
}

/// Sums the stored counts per asset class.
fn sum_counts(rows: Vec<(String, serde_json::Value)>) -> BTreeMap<String, Vec<Vec<u64>>> {
    let mut sums: BTreeMap<String, Vec<Vec<u64>>> = BTreeMap::new();
    for (class, value) in rows {
        let Ok(counts) = serde_json::from_value::<Vec<Vec<u64>>>(value) else {
            continue;
        };
        let sum = sums
            .entry(class)
            .or_insert_with(|| counts.iter().map(|c| vec![0; c.len()]).collect());
        for (s, c) in sum.iter_mut().zip(&counts) {
            for (s, c) in s.iter_mut().zip(c) {
                *s += c;
            }
        }
    }
    sums
}

/// Measures the live windows of `bundle` (model `model_id`) since `since`: per bundle that
/// answered (fleet-wide or a class's), the one that moved most, with every window counted.
pub async fn measure_model(
    store: &Store,
    model_id: i64,
    bundle: &Bundle,
    since: DateTime<Utc>,
) -> Result<Option<Measured>, TrainError> {
    let sums = sum_counts(store.drift_counts(model_id, since).await?);
    let mut worst: Option<Measured> = None;
    let mut windows = 0;
    for (class, counts) in &sums {
        let answered = if class.is_empty() {
            Some(bundle)
        } else {
            bundle.classes.get(class)
        };
        let Some(answered) = answered else { continue };
        let Some(reference) = &answered.drift else {
            continue;
        };
        let measured = measure(reference, counts, &answered.schema.names());
        windows += measured.windows;
        if worst
            .as_ref()
            .is_none_or(|w| measured.largest() > w.largest())
        {
            worst = Some(measured);
        }
    }
    Ok(worst.map(|w| Measured { windows, ..w }))
}

/// One check of the active model: measure, record, and start a drift run when due.
pub async fn check_once(
    store: &Store,
    settings: &Settings,
    cached: &mut Option<(i64, Bundle)>,
) -> Result<Option<Checked>, TrainError> {
    let drift = &settings.drift;
    let Some(active) = store.active_model(train::BUNDLE_KIND, None).await? else {
        return Ok(None);
    };
    if cached.as_ref().is_none_or(|(id, _)| *id != active.model_id) {
        *cached = Some((active.model_id, train::load_bundle(store, &active).await?));
    }
    let Some((model_id, bundle)) = cached.as_ref() else {
        return Ok(None);
    };
    let now = Utc::now();
    let since = now - chrono::Duration::seconds(drift.window_secs.max(1));
    store
        .prune_drift_counts(now - chrono::Duration::seconds(2 * drift.window_secs.max(1)))
        .await?;
    let Some(measured) = measure_model(store, *model_id, bundle, since).await? else {
        return Ok(None);
    };
    let over_threshold =
        measured.windows >= drift.min_windows && measured.largest() > drift.psi_threshold;
    let check_id = store
        .record_drift(&NewDriftCheck {
            model_id: *model_id,
            since,
            windows: measured.windows as i64,
            score_psi: measured.score_psi,
            max_feature_psi: measured.max_feature_psi,
            top_features: serde_json::to_value(&measured.top_features).unwrap_or_default(),
            over_threshold,
        })
        .await?;
    let mut job_run_id = None;
    if over_threshold && drift.retrain {
        let cooldown = chrono::Duration::seconds(drift.cooldown_secs.max(1));
        let recent = store
            .job_runs(Some(train::JOB), 1)
            .await?
            .first()
            .is_some_and(|run| now - run.started_at < cooldown);
        if !recent {
            // The period this run belongs to: the same on every replica.
            let period =
                now.timestamp().div_euclid(cooldown.num_seconds()) * cooldown.num_seconds();
            let period = DateTime::from_timestamp(period, 0).unwrap_or(now);
            let outcome = train::start(
                store,
                settings,
                Trigger::Drift(period),
                |id| job_run_id = Some(id),
                |_| {},
            )
            .await;
            if let Some(id) = job_run_id {
                store.link_drift_run(check_id, id).await?;
            }
            match outcome {
                Ok(run) => tracing::info!(
                    model_id = run.registration.model.model_id,
                    activated = run.registration.activated,
                    "drift training done"
                ),
                Err(TrainError::Busy | TrainError::TickTaken) => {
                    tracing::info!("drift training skipped: another replica trains or trained")
                }
                Err(e) => tracing::warn!("drift training failed: {e}"),
            }
        }
    }
    Ok(Some(Checked {
        model_id: *model_id,
        measured,
        over_threshold,
        job_run_id,
    }))
}

/// Checks every `drift.check_every_secs` until aborted; `None` when drift is off.
pub fn spawn(store: Store, settings: Settings) -> Option<tokio::task::JoinHandle<()>> {
    if !settings.drift.enabled {
        return None;
    }
    Some(tokio::spawn(async move {
        let every = Duration::from_secs(settings.drift.check_every_secs.max(1));
        let mut cached = None;
        loop {
            tokio::time::sleep(every).await;
            match check_once(&store, &settings, &mut cached).await {
                Ok(Some(checked)) if checked.over_threshold => tracing::warn!(
                    model_id = checked.model_id,
                    windows = checked.measured.windows,
                    score_psi = checked.measured.score_psi,
                    max_feature_psi = checked.measured.max_feature_psi,
                    "live windows drifted from the model's reference windows"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!("drift check failed, will retry: {e}"),
            }
        }
    }))
}
