//! Scores and alerts: scored windows are written in batches, off the request path, into day
//! partitions of `score` that retention drops whole (alerting rows moved to
//! `score_alerting`); an alert opens when an asset's score stays above the threshold and
//! clears when it falls below the clear threshold. At most one alert per asset is open (a
//! unique index). The hysteresis is counted in the database (`alert_streak`, changed by
//! `vigil_alert_window` under the row's lock), so replicas alert exactly as one would.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgPoolCopyExt;

use super::copy::{self, Tuple};
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

/// What one scored window did to its asset's alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changes.
    Stay,
    /// Enough consecutive windows at or above the threshold and no alert open: open one.
    Fire,
    /// Below the clear threshold while an alert is open: clear it.
    Clear,
}

impl Transition {
    /// From `vigil_alert_window`'s answer.
    fn parse(decision: &str) -> Self {
        match decision {
            "fire" => Transition::Fire,
            "clear" => Transition::Clear,
            _ => Transition::Stay,
        }
    }
}

impl Store {
    /// Counts scored windows in the shared alert hysteresis, in one statement, in the order
    /// given (of each asset's windows; rows are locked in asset order): `(asset, above,
    /// calm, fire_windows)` each. At or above the threshold (`above`) a window extends its
    /// asset's streak, else it ends it; `calm` (below the clear threshold) asks whether an
    /// open alert should clear. A window says [`Transition::Fire`] once the streak reaches
    /// `fire_windows` while no alert is open. Whichever replica scores each window, the
    /// streak is the same: each row is changed under its lock.
    pub async fn alert_windows(
        &self,
        windows: &[(String, bool, bool, u32)],
    ) -> Result<Vec<Transition>> {
        let assets: Vec<&str> = windows.iter().map(|w| w.0.as_str()).collect();
        let above: Vec<bool> = windows.iter().map(|w| w.1).collect();
        let calm: Vec<bool> = windows.iter().map(|w| w.2).collect();
        let fire: Vec<i32> = windows
            .iter()
            .map(|w| i32::try_from(w.3).unwrap_or(i32::MAX))
            .collect();
        let decisions: Vec<String> =
            sqlx::query_scalar("select vigil_alert_windows($1, $2, $3, $4)")
                .bind(&assets)
                .bind(&above)
                .bind(&calm)
                .bind(&fire)
                .fetch_one(&self.pool)
                .await?;
        Ok(decisions.iter().map(|d| Transition::parse(d)).collect())
    }

    /// Stores scores in one binary `COPY` (all or none); returns how many.
    pub async fn insert_scores(&self, scores: &[NewScore]) -> Result<u64> {
        if scores.is_empty() {
            return Ok(0);
        }
        let names: Vec<String> = scores.iter().map(|s| s.asset.clone()).collect();
        let ids = self.resolve_asset_ids(&names).await?;
        // The day partitions the batch needs (a round trip that finds them all there in
        // the usual case).
        let mut days: Vec<chrono::NaiveDate> =
            scores.iter().map(|s| s.window_end.date_naive()).collect();
        days.sort_unstable();
        days.dedup();
        sqlx::query("select vigil_ensure_day_partitions('score', $1)")
            .bind(&days)
            .execute(&self.pool)
            .await?;
        let mut buf = Vec::with_capacity(copy::HEADER.len() + scores.len() * 160);
        buf.extend_from_slice(copy::HEADER);
        for s in scores {
            Tuple::start(&mut buf, 11)
                .int8(ids[&s.asset])
                .or_null(s.model_id, Tuple::int8)
                .text(&s.model_version)
                .timestamptz(s.window_end.timestamp_micros())
                .or_null(s.probability, Tuple::float8)
                .float8(s.anomaly_score)
                .float8(s.threshold)
                .bool(s.is_alert)
                .or_null(s.failure_kind.as_deref(), Tuple::text)
                .or_null(s.kind_confidence, Tuple::float8)
                .jsonb(&s.explanation);
        }
        buf.extend_from_slice(&copy::TRAILER);
        let copy = self
            .pool
            .copy_in_raw(
                "copy score (asset_id, model_id, model_version, window_end, probability, \
                 anomaly_score, threshold, is_alert, failure_kind, kind_confidence, explanation) \
                 from stdin with (format binary)",
            )
            .await?;
        Ok(copy::send(copy, buf).await?.finish().await?)
    }

    /// Drops every day partition of `score` that ends at or before `cutoff`, after moving
    /// its alerting scores to `score_alerting`; returns the dropped partitions' names.
    pub async fn drop_score_partitions_before(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>> {
        let dropped = sqlx::query_scalar("select vigil_drop_score_partitions($1)")
            .bind(cutoff)
            .fetch_all(&self.pool)
            .await?;
        Ok(dropped)
    }

    /// The end of the newest stored score's window, if any.
    pub async fn latest_score_end(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        let newest = sqlx::query_scalar("select max(window_end) from score")
            .fetch_one(&self.pool)
            .await?;
        Ok(newest)
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

    /// Clears the asset's open alert, if any, at the end of the window that cleared it
    /// (`window_end`; at the latest now, at the earliest when it opened), as alerts open;
    /// returns its id.
    pub async fn clear_alert(&self, asset: &str, window_end: DateTime<Utc>) -> Result<Option<i64>> {
        let id = sqlx::query_scalar(
            "update alert set state = 'cleared', \
             cleared_at = greatest(least($2::timestamptz, now()), opened_at) \
             where state = 'open' and asset_id = (select asset_id from asset where name = $1) \
             returning alert_id",
        )
        .bind(asset)
        .bind(window_end)
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
