//! Scores and alerts: every scored window is kept (written in batches, off the request
//! path); an alert opens when an asset's score stays above the threshold and clears when it
//! falls below the clear threshold. At most one alert per asset is open (a unique index).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Result, Store};

/// One scored window to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewScore {
    /// The asset's name (created if unknown).
    pub asset: String,
    /// The model that answered, if a registered one.
    pub model_id: Option<i64>,
    /// Its version label, e.g. `bundle/v3`.
    pub model_version: String,
    /// End of the scored window.
    pub window_end: DateTime<Utc>,
    /// Failure probability (`None` from the cold-start detector).
    pub probability: Option<f64>,
    /// Anomaly score.
    pub anomaly_score: f64,
    /// Threshold in force.
    pub threshold: f64,
    /// Whether it alerted.
    pub is_alert: bool,
    /// Diagnosed kind.
    pub failure_kind: Option<String>,
    /// Diagnosis confidence.
    pub kind_confidence: Option<f64>,
    /// Drivers and diagnosis, as answered.
    pub explanation: Value,
}

impl Store {
    /// Stores scores in one statement; returns how many.
    pub async fn insert_scores(&self, scores: &[NewScore]) -> Result<u64> {
        if scores.is_empty() {
            return Ok(0);
        }
        let names: Vec<String> = scores.iter().map(|s| s.asset.clone()).collect();
        let ids = self.resolve_asset_ids(&names).await?;
        let asset_ids: Vec<i64> = scores.iter().map(|s| ids[&s.asset]).collect();
        let inserted = sqlx::query(
            "insert into score (asset_id, model_id, model_version, window_end, probability, anomaly_score, \
             threshold, is_alert, failure_kind, kind_confidence, explanation) \
             select * from unnest($1::bigint[], $2::bigint[], $3::text[], $4::timestamptz[], $5::float8[], \
             $6::float8[], $7::float8[], $8::bool[], $9::text[], $10::float8[], $11::jsonb[])",
        )
        .bind(&asset_ids)
        .bind(scores.iter().map(|s| s.model_id).collect::<Vec<_>>())
        .bind(scores.iter().map(|s| s.model_version.clone()).collect::<Vec<_>>())
        .bind(scores.iter().map(|s| s.window_end).collect::<Vec<_>>())
        .bind(scores.iter().map(|s| s.probability).collect::<Vec<_>>())
        .bind(scores.iter().map(|s| s.anomaly_score).collect::<Vec<_>>())
        .bind(scores.iter().map(|s| s.threshold).collect::<Vec<_>>())
        .bind(scores.iter().map(|s| s.is_alert).collect::<Vec<_>>())
        .bind(scores.iter().map(|s| s.failure_kind.clone()).collect::<Vec<_>>())
        .bind(scores.iter().map(|s| s.kind_confidence).collect::<Vec<_>>())
        .bind(scores.iter().map(|s| s.explanation.clone()).collect::<Vec<_>>())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted)
    }

    /// Opens an alert for the score's asset unless one is open; returns the new alert's id. It
    /// opens at the end of the window that fired it (at the latest now), so alerts on
    /// backfilled or replayed data line up with the incidents they precede.
    pub async fn open_alert(&self, score: &NewScore) -> Result<Option<i64>> {
        let ids = self
            .resolve_asset_ids(std::slice::from_ref(&score.asset))
            .await?;
        let id = sqlx::query_scalar(
            "insert into alert (asset_id, model_id, model_version, probability, anomaly_score, threshold, \
             failure_kind, explanation, opened_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, least($9::timestamptz, now())) \
             on conflict (asset_id) where state = 'open' do nothing returning alert_id",
        )
        .bind(ids[&score.asset])
        .bind(score.model_id)
        .bind(&score.model_version)
        .bind(score.probability)
        .bind(score.anomaly_score)
        .bind(score.threshold)
        .bind(&score.failure_kind)
        .bind(&score.explanation)
        .bind(score.window_end)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id)
    }

    /// Clears the asset's open alert, if any; returns its id.
    pub async fn clear_alert(&self, asset: &str) -> Result<Option<i64>> {
        let id = sqlx::query_scalar(
            "update alert set state = 'cleared', cleared_at = greatest(now(), opened_at) \
             where state = 'open' and asset_id = (select asset_id from asset where name = $1) \
             returning alert_id",
        )
        .bind(asset)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id)
    }

    /// The asset's open alert, if any.
    pub async fn open_alert_id(&self, asset: &str) -> Result<Option<i64>> {
        let id = sqlx::query_scalar(
            "select alert_id from alert join asset using (asset_id) where name = $1 and state = 'open'",
        )
        .bind(asset)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id)
    }
}
