//! Incidents: failures of assets with their kind, severity, times, root cause and source.
//! External reports carry a fingerprint, and one (source, fingerprint, start) is one incident.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{Error, Result, Store};

/// A stored incident.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Incident {
    /// Id.
    pub incident_id: i64,
    /// The failed asset.
    pub asset_id: i64,
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
    /// Severity.
    pub severity: String,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// Detection time, if known.
    pub detected_at: Option<DateTime<Utc>>,
    /// Resolution time, if already resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Root cause, if known.
    pub root_cause: Option<String>,
    /// Source.
    pub source: String,
    /// External identity.
    pub fingerprint: Option<String>,
    /// Labels, a JSON object.
    pub labels: Value,
}

const INCIDENT_COLUMNS: &str = "incident_id, asset_id, kind, severity, started_at, detected_at, \
     resolved_at, root_cause, source, fingerprint, labels";

impl Store {
    /// Records an incident; [`Error::Duplicate`] when its fingerprint and start are known.
    pub async fn create_incident(&self, incident: &NewIncident) -> Result<Incident> {
        let sql = format!(
            "insert into incident (asset_id, kind, severity, started_at, detected_at, resolved_at, \
             root_cause, source, fingerprint, labels) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) returning {INCIDENT_COLUMNS}"
        );
        let row = sqlx::query_as::<_, Incident>(sqlx::AssertSqlSafe(sql))
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
            .fetch_one(&self.pool)
            .await?;
        Ok(row)
    }

    /// The incident with this id; [`Error::NotFound`] if none.
    pub async fn incident(&self, incident_id: i64) -> Result<Incident> {
        let sql = format!("select {INCIDENT_COLUMNS} from incident where incident_id = $1");
        sqlx::query_as::<_, Incident>(sqlx::AssertSqlSafe(sql))
            .bind(incident_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("incident {incident_id}")))
    }

    /// Marks the incident resolved at `at` (keeping an earlier resolution time) and sets the
    /// root cause when given.
    pub async fn resolve_incident(
        &self,
        incident_id: i64,
        at: DateTime<Utc>,
        root_cause: Option<&str>,
    ) -> Result<Incident> {
        let sql = format!(
            "update incident set resolved_at = coalesce(resolved_at, greatest($2, started_at)), \
             root_cause = coalesce($3, root_cause) where incident_id = $1 returning {INCIDENT_COLUMNS}"
        );
        sqlx::query_as::<_, Incident>(sqlx::AssertSqlSafe(sql))
            .bind(incident_id)
            .bind(at)
            .bind(root_cause)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("incident {incident_id}")))
    }
}
