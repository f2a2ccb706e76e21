//! Alerts as operators see them (with the feedback they got), alert feedback (idempotent by
//! the client's key), and the labelled cases the threshold adapter learns from.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{Error, Result, Store};
use crate::policy::threshold::Labelled;

/// An alert with its asset and latest feedback.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct AlertRow {
    pub alert_id: i64,
    /// The asset's name.
    pub asset: String,
    /// The asset's class.
    pub asset_class: String,
    /// `open` or `cleared`.
    pub state: String,
    /// When it opened (the end of the window that opened it).
    pub opened_at: DateTime<Utc>,
    /// When it cleared.
    pub cleared_at: Option<DateTime<Utc>>,
    /// Failure probability that opened it (`None`: the cold-start detector opened it).
    pub probability: Option<f64>,
    /// Anomaly score then.
    pub anomaly_score: Option<f64>,
    /// Threshold in force then.
    pub threshold: f64,
    /// Which model answered.
    pub model_version: String,
    /// Diagnosed failure kind.
    pub failure_kind: Option<String>,
    /// Drivers and diagnosis.
    pub explanation: Value,
    /// The incident it predicted, once linked.
    pub incident_id: Option<i64>,
    /// The latest feedback label (`true_alarm`, `false_alarm`), if any.
    pub feedback: Option<String>,
}

/// Which alerts to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// Only this asset.
    pub asset: Option<String>,
    /// Only `open` or `cleared` ones.
    pub state: Option<String>,
    /// Only alerts with (`true`) or without (`false`) feedback.
    pub has_feedback: Option<bool>,
    /// Only ids below this one (keyset pagination).
    pub before_id: Option<i64>,
    /// Only alerts open, or cleared at or after this time.
    pub open_or_cleared_since: Option<DateTime<Utc>>,
    /// At most this many.
    pub limit: i64,
}

/// Stored feedback on an alert.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct Feedback {
    pub alert_feedback_id: i64,
    /// What was said.
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub content: NewFeedback,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// Feedback to store.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct NewFeedback {
    pub alert_id: i64,
    /// `true_alarm` or `false_alarm`.
    pub label: String,
    /// The failure kind the operator saw, if given.
    pub failure_kind: Option<String>,
    /// Free text.
    pub note: Option<String>,
    /// The client's idempotency key.
    pub client_key: String,
    /// The token that sent it.
    pub author: String,
}

/// Alerts with asset and latest feedback, filtered by asset ($1), state ($2), whether they
/// have feedback ($3), below an id ($4), by id ($6), open or cleared since ($7); newest
/// first, at most $5.
const ALERT_QUERY: &str = "select * from (select a.alert_id, s.name as asset, \
     s.class as asset_class, a.state, a.opened_at, a.cleared_at, a.probability, a.anomaly_score, \
     a.threshold, a.model_version, a.failure_kind, a.explanation, a.incident_id, \
     (select label from alert_feedback f where f.alert_id = a.alert_id \
      order by created_at desc, alert_feedback_id desc limit 1) as feedback \
     from alert a join asset s using (asset_id)) x \
     where ($1::text is null or asset = $1) and ($2::text is null or state = $2) \
     and ($3::bool is null or (feedback is not null) = $3) \
     and ($4::bigint is null or alert_id < $4) and ($6::bigint is null or alert_id = $6) \
     and ($7::timestamptz is null or cleared_at is null or cleared_at >= $7) \
     order by alert_id desc limit $5";

impl Store {
    /// Alerts matching `filter`, newest first.
    pub async fn list_alerts(&self, filter: &AlertFilter) -> Result<Vec<AlertRow>> {
        let rows = sqlx::query_as::<_, AlertRow>(ALERT_QUERY)
            .bind(&filter.asset)
            .bind(&filter.state)
            .bind(filter.has_feedback)
            .bind(filter.before_id)
            .bind(filter.limit)
            .bind(None::<i64>)
            .bind(filter.open_or_cleared_since)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    /// One alert.
    pub async fn alert(&self, alert_id: i64) -> Result<AlertRow> {
        sqlx::query_as::<_, AlertRow>(ALERT_QUERY)
            .bind(None::<String>)
            .bind(None::<String>)
            .bind(None::<bool>)
            .bind(None::<i64>)
            .bind(1_i64)
            .bind(alert_id)
            .bind(None::<DateTime<Utc>>)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("alert {alert_id}")))
    }

    /// Stores feedback once per client key: returns the stored row and whether this call
    /// stored it (`false`: the key was used before, and the earlier row is returned).
    pub async fn insert_feedback(&self, new: &NewFeedback) -> Result<(Feedback, bool)> {
        let inserted = sqlx::query_as::<_, Feedback>(
            "insert into alert_feedback (alert_id, label, failure_kind, note, client_key, author) \
             values ($1, $2, $3, $4, $5, $6) on conflict (client_key) do nothing returning *",
        )
        .bind(new.alert_id)
        .bind(&new.label)
        .bind(&new.failure_kind)
        .bind(&new.note)
        .bind(&new.client_key)
        .bind(&new.author)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = inserted {
            return Ok((row, true));
        }
        let earlier =
            sqlx::query_as::<_, Feedback>("select * from alert_feedback where client_key = $1")
                .bind(&new.client_key)
                .fetch_one(&self.pool)
                .await?;
        Ok((earlier, false))
    }

    /// Operators' latest word on each alert opened in `[from, to)`: (asset name, the end of
    /// the window that opened it, a true alarm, the failure kind given). Training turns them
    /// into labelled windows.
    pub async fn feedback_labels(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>, bool, Option<String>)>> {
        let rows = sqlx::query_as(
            "select s.name, a.opened_at, f.label = 'true_alarm', f.failure_kind \
             from alert a join asset s using (asset_id) \
             join lateral (select label, failure_kind from alert_feedback f \
                 where f.alert_id = a.alert_id \
                 order by created_at desc, alert_feedback_id desc limit 1) f on true \
             where a.opened_at >= $1 and a.opened_at < $2 order by a.opened_at",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// The labelled cases of an asset class (`None`: every asset): each alert with feedback
    /// (its probability; a failure when labelled a true alarm), each missed failure (an
    /// incident whose asset was being scored in the `horizon_secs` before it but got no
    /// alert then; the highest probability it had then), and the calm windows scored in
    /// `band` (just below the threshold in force) that did not alert and were followed by no
    /// incident within the horizon: the false alarms a lower threshold would raise (the
    /// newest 10 000).
    pub async fn labelled_cases(
        &self,
        class: Option<&str>,
        horizon_secs: i64,
        band: (f64, f64),
    ) -> Result<Vec<Labelled>> {
        let rows: Vec<(f64, bool)> = sqlx::query_as(
            "select a.probability, f.label = 'true_alarm' \
             from alert a join asset s using (asset_id) \
             join lateral (select label from alert_feedback f where f.alert_id = a.alert_id \
                 order by created_at desc, alert_feedback_id desc limit 1) f on true \
             where a.probability is not null and ($1::text is null or s.class = $1) \
             union all \
             select m.top, true from ( \
                 select (select max(probability) from score sc where sc.asset_id = i.asset_id \
                     and sc.window_end between i.started_at - make_interval(secs => $2) \
                     and i.started_at) as top \
                 from incident i join asset s using (asset_id) \
                 where ($1::text is null or s.class = $1) \
                 and not exists (select 1 from alert a where a.asset_id = i.asset_id \
                     and a.opened_at between i.started_at - make_interval(secs => $2) \
                     and i.started_at) \
             ) m where m.top is not null \
             union all \
             select * from (select sc.probability, false from score sc join asset s using (asset_id) \
                 where ($1::text is null or s.class = $1) and not sc.is_alert \
                 and sc.probability >= $3 and sc.probability < $4 \
                 and not exists (select 1 from incident i where i.asset_id = sc.asset_id \
                     and i.started_at between sc.window_end \
                     and sc.window_end + make_interval(secs => $2)) \
                 order by sc.window_end desc limit 10000) calm",
        )
        .bind(class)
        .bind(horizon_secs as f64)
        .bind(band.0)
        .bind(band.1)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(score, failure)| Labelled { score, failure })
            .collect())
    }
}
