//! Incidents: failures of assets with their kind, severity, times, root cause and source.
//! External reports carry a fingerprint, and one (source, fingerprint, start) is one
//! incident, which makes webhook deliveries and file imports idempotent.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{Error, Result, Store};

/// A stored incident.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct Incident {
    pub incident_id: i64,
    /// The failed asset's name.
    pub asset: String,
    /// Failure kind, e.g. `memory_leak`.
    pub kind: String,
    /// One of info, warning, minor, major, critical.
    pub severity: String,
    /// When the failure started.
    pub started_at: DateTime<Utc>,
    /// When it was detected.
    pub detected_at: Option<DateTime<Utc>>,
    /// When it was resolved; `None` while open.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Root cause, once known.
    pub root_cause: Option<String>,
    /// Where the report came from: api, alertmanager, import, simulator, vigil.
    pub source: String,
    /// External identity, such as an Alertmanager fingerprint.
    pub fingerprint: Option<String>,
    /// Labels of the report, a JSON object.
    pub labels: Value,
}

/// An incident to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewIncident {
    /// The failed asset's id.
    pub asset_id: i64,
    /// Failure kind.
    pub kind: String,
    pub severity: String,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// Detection time, if known.
    pub detected_at: Option<DateTime<Utc>>,
    /// Resolution time, if already resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Root cause, if known.
    pub root_cause: Option<String>,
    pub source: String,
    /// External identity.
    pub fingerprint: Option<String>,
    /// Labels, a JSON object.
    pub labels: Value,
}

/// Which incidents to list, newest start first.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// Only this asset.
    pub asset_id: Option<i64>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only open (`true`) or resolved (`false`) ones.
    pub open: Option<bool>,
    /// Started at or after.
    pub from: Option<DateTime<Utc>>,
    /// Started before.
    pub to: Option<DateTime<Utc>>,
    /// Only ids below this one (keyset pagination).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// What an external report says happened to one incident.
#[derive(Debug, Clone, PartialEq)]
pub enum ExternalEvent {
    /// The failure is going on: open the incident unless it is known.
    Firing(NewIncident),
    /// The failure is over: resolve the incident, recording it first if it was never seen.
    Resolved(NewIncident, DateTime<Utc>),
}

/// What recording a set of external events changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ExternalReport {
    /// Incidents opened.
    pub opened: u64,
    /// Incidents resolved (including ones recorded already resolved).
    pub resolved: u64,
    /// Events about incidents already in that state.
    pub unchanged: u64,
}

const SELECT_INCIDENT: &str = "select i.incident_id, a.name as asset, i.kind, i.severity, i.started_at, \
     i.detected_at, i.resolved_at, i.root_cause, i.source, i.fingerprint, i.labels \
     from incident i join asset a using (asset_id)";

const INSERT_INCIDENT: &str = "insert into incident (asset_id, kind, severity, started_at, detected_at, \
     resolved_at, root_cause, source, fingerprint, labels) \
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

fn bind_new<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    incident: &'q NewIncident,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(incident.asset_id)
        .bind(&incident.kind)
        .bind(&incident.severity)
        .bind(incident.started_at)
        .bind(incident.detected_at)
        .bind(incident.resolved_at)
        .bind(&incident.root_cause)
        .bind(&incident.source)
        .bind(&incident.fingerprint)
        .bind(&incident.labels)
}

impl Store {
    /// Records an incident; [`Error::Duplicate`] when its source, fingerprint and start are
    /// known.
    pub async fn create_incident(&self, incident: &NewIncident) -> Result<Incident> {
        let sql = format!("{INSERT_INCIDENT} returning incident_id");
        let id: i64 = bind_new(sqlx::query(sqlx::AssertSqlSafe(sql)), incident)
            .fetch_one(&self.pool)
            .await
            .map(|row| sqlx::Row::get(&row, 0))?;
        self.incident(id).await
    }

    /// The incident with this id; [`Error::NotFound`] if none.
    pub async fn incident(&self, incident_id: i64) -> Result<Incident> {
        let sql = format!("{SELECT_INCIDENT} where i.incident_id = $1");
        sqlx::query_as::<_, Incident>(sqlx::AssertSqlSafe(sql))
            .bind(incident_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("incident {incident_id}")))
    }

    /// The incident reported by `source` with this fingerprint and start, if any.
    pub async fn incident_by_fingerprint(
        &self,
        source: &str,
        fingerprint: &str,
        started_at: DateTime<Utc>,
    ) -> Result<Option<Incident>> {
        let sql = format!(
            "{SELECT_INCIDENT} where i.source = $1 and i.fingerprint = $2 and i.started_at = $3"
        );
        let incident = sqlx::query_as::<_, Incident>(sqlx::AssertSqlSafe(sql))
            .bind(source)
            .bind(fingerprint)
            .bind(started_at)
            .fetch_optional(&self.pool)
            .await?;
        Ok(incident)
    }

    /// Incidents matching the filter, newest start first.
    pub async fn list_incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>> {
        let sql = format!(
            "{SELECT_INCIDENT} where ($1::bigint is null or i.asset_id = $1) \
             and ($2::text is null or i.kind = $2) \
             and ($3::bool is null or (i.resolved_at is null) = $3) \
             and ($4::timestamptz is null or i.started_at >= $4) \
             and ($5::timestamptz is null or i.started_at < $5) \
             and ($6::bigint is null or i.incident_id < $6) \
             order by i.incident_id desc limit $7"
        );
        let incidents = sqlx::query_as::<_, Incident>(sqlx::AssertSqlSafe(sql))
            .bind(filter.asset_id)
            .bind(&filter.kind)
            .bind(filter.open)
            .bind(filter.from)
            .bind(filter.to)
            .bind(filter.before_id)
            .bind(filter.limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(incidents)
    }

    /// Marks the incident resolved at `at` (keeping an earlier resolution time) and sets the
    /// root cause when given.
    pub async fn resolve_incident(
        &self,
        incident_id: i64,
        at: DateTime<Utc>,
        root_cause: Option<&str>,
    ) -> Result<Incident> {
        let updated = sqlx::query(
            "update incident set resolved_at = coalesce(resolved_at, greatest($2, started_at)), \
             root_cause = coalesce($3, root_cause) where incident_id = $1",
        )
        .bind(incident_id)
        .bind(at)
        .bind(root_cause)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(Error::NotFound(format!("incident {incident_id}")));
        }
        self.incident(incident_id).await
    }

    /// Incident ids by fingerprint, of the incidents recorded from `source`.
    pub async fn incident_ids_by_fingerprint(
        &self,
        source: &str,
    ) -> Result<std::collections::HashMap<String, i64>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "select fingerprint, incident_id from incident \
             where source = $1 and fingerprint is not null",
        )
        .bind(source)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Applies external events (webhook deliveries, file rows) in one transaction: all of
    /// them or none. Each event carries a fingerprint; repeated events change nothing.
    pub async fn record_external(&self, events: &[ExternalEvent]) -> Result<ExternalReport> {
        let mut report = ExternalReport::default();
        let mut tx = self.pool.begin().await?;
        let insert = format!(
            "{INSERT_INCIDENT} on conflict (source, fingerprint, started_at) \
             where fingerprint is not null do nothing"
        );
        for event in events {
            match event {
                ExternalEvent::Firing(incident) => {
                    let inserted =
                        bind_new(sqlx::query(sqlx::AssertSqlSafe(insert.clone())), incident)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                    if inserted == 1 {
                        report.opened += 1;
                    } else {
                        report.unchanged += 1;
                    }
                }
                ExternalEvent::Resolved(incident, resolved_at) => {
                    let resolved = sqlx::query(
                        "update incident set resolved_at = greatest($4, started_at) \
                         where source = $1 and fingerprint = $2 and started_at = $3 and resolved_at is null",
                    )
                    .bind(&incident.source)
                    .bind(&incident.fingerprint)
                    .bind(incident.started_at)
                    .bind(resolved_at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if resolved == 1 {
                        report.resolved += 1;
                        continue;
                    }
                    let mut closed = incident.clone();
                    closed.resolved_at = Some((*resolved_at).max(incident.started_at));
                    let inserted =
                        bind_new(sqlx::query(sqlx::AssertSqlSafe(insert.clone())), &closed)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                    if inserted == 1 {
                        report.resolved += 1;
                    } else {
                        report.unchanged += 1;
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(report)
    }
}
