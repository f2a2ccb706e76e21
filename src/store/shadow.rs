//! Shadow challengers: their period beside the champion, the live windows they scored, and
//! the decision.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::models::{MODEL_COLUMNS, ModelRecord, announce, make_active};
use super::{Error, Result, Store};

/// A challenger's shadow period.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct Shadow {
    pub model_id: i64,
    /// The model active when it started.
    pub champion_id: Option<i64>,
    pub started_at: DateTime<Utc>,
    /// When it is decided, unless an admin decides first.
    pub ends_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    /// `promoted` or `dropped`.
    pub decision: Option<String>,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
    /// Both models' figures on the live windows and on validation.
    pub figures: Value,
}

/// One live window a shadow challenger scored.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowScore {
    pub model_id: i64,
    pub champion_id: Option<i64>,
    pub asset: String,
    pub window_end: DateTime<Utc>,
    pub probability: f64,
    pub champion_probability: Option<f64>,
    pub threshold: f64,
}

impl Store {
    /// Puts `model_id` in shadow beside `champion_id` until `ends_at`, and announces it.
    pub async fn start_shadow(
        &self,
        model_id: i64,
        champion_id: i64,
        ends_at: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("update model set status = 'shadow' where model_id = $1")
            .bind(model_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "insert into model_shadow (model_id, champion_id, ends_at) values ($1, $2, $3)",
        )
        .bind(model_id)
        .bind(champion_id)
        .bind(ends_at)
        .execute(&mut *tx)
        .await?;
        announce(&mut tx, model_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The model in shadow now (the latest, when several), with its artifact.
    pub async fn shadow_model_artifact(
        &self,
        kind: &str,
    ) -> Result<Option<(ModelRecord, Vec<u8>)>> {
        let sql = format!(
            "select {MODEL_COLUMNS} from model where kind = $1 and asset_class is null \
             and status = 'shadow' order by model_id desc limit 1"
        );
        let record = sqlx::query_as::<_, ModelRecord>(sqlx::AssertSqlSafe(sql))
            .bind(kind)
            .fetch_optional(&self.pool)
            .await?;
        self.with_artifact(record).await
    }

    /// Stores live windows scored in shadow.
    pub async fn insert_shadow_scores(&self, rows: &[ShadowScore]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "insert into shadow_score (model_id, champion_id, asset, window_end, probability, \
             champion_probability, threshold) \
             select * from unnest($1::bigint[], $2::bigint[], $3::text[], $4::timestamptz[], \
             $5::float8[], $6::float8[], $7::float8[])",
        )
        .bind(rows.iter().map(|r| r.model_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.champion_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.asset.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.window_end).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.probability).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.champion_probability)
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.threshold).collect::<Vec<_>>())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The live windows `model_id` scored in shadow: (its probability, the champion's, the
    /// threshold, whether a failure of the asset started within `horizon_secs` after).
    pub async fn shadow_outcomes(
        &self,
        model_id: i64,
        horizon_secs: i64,
    ) -> Result<Vec<(f64, Option<f64>, f64, bool)>> {
        let rows = sqlx::query_as(
            "select sc.probability, sc.champion_probability, sc.threshold, exists ( \
                 select 1 from incident i join asset s using (asset_id) \
                 where s.name = sc.asset and i.started_at > sc.window_end \
                 and i.started_at <= sc.window_end + make_interval(secs => $2)) \
             from shadow_score sc where sc.model_id = $1",
        )
        .bind(model_id)
        .bind(horizon_secs as f64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// The shadow period of `model_id`, if it had one.
    pub async fn shadow(&self, model_id: i64) -> Result<Option<Shadow>> {
        let row = sqlx::query_as("select * from model_shadow where model_id = $1")
            .bind(model_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row)
    }

    /// Shadow periods that have ended undecided.
    pub async fn due_shadows(&self) -> Result<Vec<Shadow>> {
        let rows = sqlx::query_as(
            "select ms.* from model_shadow ms join model m using (model_id) \
             where ms.decided_at is null and ms.ends_at <= now() and m.status = 'shadow' \
             order by model_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Records the decision on a model in shadow: `promoted` makes it active (the champion
    /// retires), `dropped` leaves it a candidate. Refused (`Constraint`) when it is not in
    /// shadow any more.
    pub async fn decide_shadow(
        &self,
        model_id: i64,
        promoted: bool,
        decided_by: &str,
        reason: &str,
        figures: &Value,
    ) -> Result<Shadow> {
        let mut tx = self.pool.begin().await?;
        let status: Option<String> =
            sqlx::query_scalar("select status from model where model_id = $1 for update")
                .bind(model_id)
                .fetch_optional(&mut *tx)
                .await?;
        match status.as_deref() {
            None => return Err(Error::NotFound(format!("model {model_id}"))),
            Some("shadow") => {}
            Some(other) => {
                return Err(Error::Constraint {
                    constraint: format!("model {model_id} is {other}, not in shadow"),
                });
            }
        }
        let shadow = sqlx::query_as::<_, Shadow>(
            "update model_shadow set decided_at = now(), decision = $2, decided_by = $3, \
             reason = $4, figures = $5 where model_id = $1 returning *",
        )
        .bind(model_id)
        .bind(if promoted { "promoted" } else { "dropped" })
        .bind(decided_by)
        .bind(reason)
        .bind(figures)
        .fetch_one(&mut *tx)
        .await?;
        if promoted {
            make_active(&mut tx, model_id).await?;
        } else {
            sqlx::query("update model set status = 'candidate' where model_id = $1")
                .bind(model_id)
                .execute(&mut *tx)
                .await?;
        }
        announce(&mut tx, model_id).await?;
        tx.commit().await?;
        Ok(shadow)
    }
}
