//! Drift of live windows from a model's reference: counts each replica adds, and the checks
//! that measure them.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Result, Store};

/// A drift check's measurement.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct NewDriftCheck {
    pub model_id: i64,
    /// The live windows counted were scored after this.
    pub since: DateTime<Utc>,
    /// How many live windows.
    pub windows: i64,
    /// Population stability index of the failure probability.
    pub score_psi: Option<f64>,
    /// The largest of any feature.
    pub max_feature_psi: Option<f64>,
    /// The features that moved most: `[name, psi]`, largest first.
    pub top_features: Value,
    /// Whether it was over `drift.psi_threshold` (with enough windows).
    pub over_threshold: bool,
}

/// A recorded drift check.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct DriftCheck {
    /// What it measured.
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub measured: NewDriftCheck,
    /// When it was measured.
    pub checked_at: DateTime<Utc>,
    /// The training run it started, if any.
    pub job_run_id: Option<i64>,
}

impl Store {
    /// Adds what a replica scored with `model_id` (`asset_class`: the class bundle that
    /// answered, `""` for the fleet-wide one): `windows` windows, `counts` per bin.
    pub async fn add_drift_counts(
        &self,
        model_id: i64,
        asset_class: &str,
        windows: u64,
        counts: &Value,
    ) -> Result<()> {
        sqlx::query(
            "insert into model_drift_counts (model_id, asset_class, windows, counts) \
             values ($1, $2, $3, $4)",
        )
        .bind(model_id)
        .bind(asset_class)
        .bind(windows as i64)
        .bind(counts)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The counts added for `model_id` after `since`: (asset class, counts) per row.
    pub async fn drift_counts(
        &self,
        model_id: i64,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, Value)>> {
        let rows = sqlx::query_as(
            "select asset_class, counts from model_drift_counts \
             where model_id = $1 and period_end > $2",
        )
        .bind(model_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Deletes counts added before `before`; returns how many rows.
    pub async fn prune_drift_counts(&self, before: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query("delete from model_drift_counts where period_end < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Records a drift check; returns its id.
    pub async fn record_drift(&self, check: &NewDriftCheck) -> Result<i64> {
        let id = sqlx::query_scalar(
            "insert into model_drift (model_id, since, windows, score_psi, max_feature_psi, \
             top_features, over_threshold) values ($1, $2, $3, $4, $5, $6, $7) \
             returning model_drift_id",
        )
        .bind(check.model_id)
        .bind(check.since)
        .bind(check.windows)
        .bind(check.score_psi)
        .bind(check.max_feature_psi)
        .bind(&check.top_features)
        .bind(check.over_threshold)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Links a drift check to the training run it started.
    pub async fn link_drift_run(&self, model_drift_id: i64, job_run_id: i64) -> Result<()> {
        sqlx::query("update model_drift set job_run_id = $2 where model_drift_id = $1")
            .bind(model_drift_id)
            .bind(job_run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The latest drift check of `model_id`.
    pub async fn latest_drift(&self, model_id: i64) -> Result<Option<DriftCheck>> {
        let row = sqlx::query_as(
            "select model_id, checked_at, since, windows, score_psi, max_feature_psi, \
             top_features, over_threshold, job_run_id from model_drift \
             where model_id = $1 order by checked_at desc, model_drift_id desc limit 1",
        )
        .bind(model_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }
}
