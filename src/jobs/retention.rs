//! Retention: samples older than `retention.samples_days` and scores older than
//! `retention.scores_days` are dropped a whole day partition at a time (never row by row;
//! alerting scores move to `score_alerting` first), hourly in `serve` and on demand with
//! `vigil retention`. Each run is recorded in `job_run`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::config::RetentionSettings;
use crate::store::{self, Store};

/// Name of the job in `job_run`.
pub const JOB: &str = "retention";

/// The oldest time kept, or `None` when retention is off (`samples_days = 0`).
pub fn cutoff(settings: &RetentionSettings, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    (settings.samples_days > 0)
        .then(|| now - chrono::Duration::days(i64::from(settings.samples_days)))
}

/// The oldest score kept, or `None` when score retention is off (`scores_days = 0`).
pub fn scores_cutoff(settings: &RetentionSettings, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    (settings.scores_days > 0)
        .then(|| now - chrono::Duration::days(i64::from(settings.scores_days)))
}

/// Drops the score partitions older than the scores cutoff; returns their names.
pub async fn prune_scores(
    store: &Store,
    settings: &RetentionSettings,
    now: DateTime<Utc>,
) -> Result<Vec<String>, store::Error> {
    match scores_cutoff(settings, now) {
        Some(cutoff) => store.drop_score_partitions_before(cutoff).await,
        None => Ok(Vec::new()),
    }
}

/// Partitions that a run at `now` would drop, without dropping them.
pub async fn plan(
    store: &Store,
    settings: &RetentionSettings,
    now: DateTime<Utc>,
) -> Result<Vec<String>, store::Error> {
    let Some(cutoff) = cutoff(settings, now) else {
        return Ok(Vec::new());
    };
    let cutoff_day = cutoff.date_naive();
    let partitions = store.sample_partitions().await?;
    Ok(partitions
        .into_iter()
        .filter(|name| {
            chrono::NaiveDate::parse_from_str(name.trim_start_matches("sample_p"), "%Y%m%d")
                .is_ok_and(|day| day.succ_opt().is_some_and(|next| next <= cutoff_day))
        })
        .collect())
}

/// Drops the partitions older than the cutoff and records the run (`scheduled`: started by
/// the interval, else by a person); returns their names.
pub async fn run_once(
    store: &Store,
    settings: &RetentionSettings,
    now: DateTime<Utc>,
    scheduled: bool,
) -> Result<Vec<String>, store::Error> {
    let Some(cutoff) = cutoff(settings, now) else {
        return Ok(Vec::new());
    };
    let trigger = if scheduled { "schedule" } else { "manual" };
    let Some(run_id) = store.start_job_run(JOB, trigger, None).await? else {
        return Ok(Vec::new());
    };
    match store.drop_sample_partitions_before(cutoff).await {
        Ok(dropped) => {
            let detail = json!({ "cutoff": cutoff, "dropped": dropped });
            store.finish_job_run(run_id, true, &detail).await?;
            Ok(dropped)
        }
        Err(e) => {
            let detail = json!({ "cutoff": cutoff, "error": e.to_string() });
            store.finish_job_run(run_id, false, &detail).await.ok();
            Err(e)
        }
    }
}

/// Runs retention every `interval_secs` until the task is aborted.
pub fn spawn(store: Store, settings: RetentionSettings) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if settings.samples_days == 0 && settings.scores_days == 0 {
            return;
        }
        let mut ticker = tokio::time::interval(Duration::from_secs(settings.interval_secs.max(60)));
        loop {
            ticker.tick().await;
            match prune_scores(&store, &settings, Utc::now()).await {
                Ok(dropped) if !dropped.is_empty() => {
                    tracing::info!(?dropped, "retention dropped score partitions");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("score retention failed, will retry: {e}"),
            }
            match run_once(&store, &settings, Utc::now(), true).await {
                Ok(dropped) if !dropped.is_empty() => {
                    tracing::info!(
                        ?dropped,
                        days = settings.samples_days,
                        "retention dropped partitions"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("retention failed, will retry: {e}"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_days_keeps_everything() {
        let settings = RetentionSettings {
            samples_days: 0,
            scores_days: 0,
            interval_secs: 3600,
        };
        assert_eq!(cutoff(&settings, Utc::now()), None);
        assert_eq!(scores_cutoff(&settings, Utc::now()), None);
    }

    #[test]
    fn cutoff_is_days_before_now() {
        let settings = RetentionSettings {
            samples_days: 7,
            scores_days: 30,
            interval_secs: 3600,
        };
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(
            cutoff(&settings, now),
            Some(now - chrono::Duration::days(7))
        );
    }
}
