//! Alert thresholds per asset class (`*` is the global fallback) and their change history.
//! Every change, by the adapter or an admin, is one transaction that updates the threshold
//! and records old value, new value, reason, evidence and actor.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{Error, Result, Store};

/// The class that every class without its own threshold falls back to.
pub const GLOBAL_CLASS: &str = "*";

/// A threshold in force.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct Threshold {
    /// Asset class, or `*`.
    pub asset_class: String,
    /// Fire at this score.
    pub fire_at: f64,
    /// Clear below this one.
    pub clear_at: f64,
    /// Pinned thresholds are not adapted.
    pub pinned: bool,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct ThresholdChange {
    pub threshold_change_id: i64,
    /// Asset class.
    pub asset_class: String,
    /// Before (`None`: the configured default was in force).
    pub old_fire_at: Option<f64>,
    /// After.
    pub new_fire_at: f64,
    /// Before.
    pub old_clear_at: Option<f64>,
    /// After.
    pub new_clear_at: f64,
    pub reason: String,
    /// Labelled counts and costs behind it.
    pub evidence: Value,
    /// Who: `adapter` or the admin token's name.
    pub actor: String,
    pub created_at: DateTime<Utc>,
}

/// A change to make.
#[derive(Debug, Clone, PartialEq)]
pub struct NewThreshold<'a> {
    /// Asset class.
    pub asset_class: &'a str,
    /// Fire at.
    pub fire_at: f64,
    /// Clear below.
    pub clear_at: f64,
    /// Pin it (`None`: keep as is).
    pub pinned: Option<bool>,
    pub reason: &'a str,
    pub evidence: Value,
    /// Who.
    pub actor: &'a str,
}

impl Store {
    /// All thresholds in force.
    pub async fn thresholds(&self) -> Result<Vec<Threshold>> {
        Ok(sqlx::query_as::<_, Threshold>(
            "select asset_class, fire_at, clear_at, pinned, updated_at from threshold \
             order by asset_class",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Recent changes, newest first (of one class, or all).
    pub async fn threshold_changes(
        &self,
        class: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ThresholdChange>> {
        Ok(sqlx::query_as::<_, ThresholdChange>(
            "select * from threshold_change where ($1::text is null or asset_class = $1) \
             order by threshold_change_id desc limit $2",
        )
        .bind(class)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Sets a class's threshold and records the change, in one transaction. With
    /// `only_unpinned`, a pinned threshold is left alone (`Ok(None)`).
    pub async fn set_threshold(
        &self,
        new: &NewThreshold<'_>,
        only_unpinned: bool,
    ) -> Result<Option<Threshold>> {
        let mut tx = self.pool.begin().await?;
        let old: Option<(f64, f64, bool)> = sqlx::query_as(
            "select fire_at, clear_at, pinned from threshold where asset_class = $1 for update",
        )
        .bind(new.asset_class)
        .fetch_optional(&mut *tx)
        .await?;
        if only_unpinned && old.is_some_and(|o| o.2) {
            return Ok(None);
        }
        let row = sqlx::query_as::<_, Threshold>(
            "insert into threshold (asset_class, fire_at, clear_at, pinned) \
             values ($1, $2, $3, coalesce($4, false)) \
             on conflict (asset_class) do update set fire_at = excluded.fire_at, \
             clear_at = excluded.clear_at, pinned = coalesce($4, threshold.pinned) \
             returning asset_class, fire_at, clear_at, pinned, updated_at",
        )
        .bind(new.asset_class)
        .bind(new.fire_at)
        .bind(new.clear_at)
        .bind(new.pinned)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "insert into threshold_change (asset_class, old_fire_at, new_fire_at, old_clear_at, \
             new_clear_at, reason, evidence, actor) values ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(new.asset_class)
        .bind(old.map(|o| o.0))
        .bind(new.fire_at)
        .bind(old.map(|o| o.1))
        .bind(new.clear_at)
        .bind(new.reason)
        .bind(&new.evidence)
        .bind(new.actor)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(row))
    }

    /// Undoes a class's latest change: back to its old values, or to the configured default
    /// (the row is removed) when it had none. Recorded as a change too.
    pub async fn revert_threshold(&self, class: &str, actor: &str) -> Result<Option<Threshold>> {
        let last = self
            .threshold_changes(Some(class), 1)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::NotFound(format!("a change of the threshold of {class}")))?;
        match (last.old_fire_at, last.old_clear_at) {
            (Some(fire_at), Some(clear_at)) => {
                self.set_threshold(
                    &NewThreshold {
                        asset_class: class,
                        fire_at,
                        clear_at,
                        pinned: None,
                        reason: "reverted by an admin",
                        evidence: serde_json::json!({ "reverted": last.threshold_change_id }),
                        actor,
                    },
                    false,
                )
                .await
            }
            _ => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("delete from threshold where asset_class = $1")
                    .bind(class)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "insert into threshold_change (asset_class, old_fire_at, new_fire_at, \
                     old_clear_at, new_clear_at, reason, evidence, actor) \
                     values ($1, $2, $2, $3, $3, 'reverted by an admin to the configured default', $4, $5)",
                )
                .bind(class)
                .bind(last.new_fire_at)
                .bind(last.new_clear_at)
                .bind(serde_json::json!({ "reverted": last.threshold_change_id }))
                .bind(actor)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(None)
            }
        }
    }

    /// Asset classes in use.
    pub async fn asset_classes(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "select distinct class from asset where class is not null order by class",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
