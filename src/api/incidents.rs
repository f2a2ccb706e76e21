//! Incidents over HTTP: `POST /v1/incidents` and `POST /v1/incidents/{id}/resolve` (scope
//! `ingest`), `GET /v1/incidents` with filters (any token), and the Alertmanager webhook
//! receiver `POST /v1/alertmanager` (scope `ingest`): a firing alert opens an incident, a
//! resolved one resolves it, idempotent by fingerprint and start time.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use super::input::{ApiJson, ApiPath, ApiQuery, Timestamp, check_name, parse_time_param};
use crate::ingest::files::SEVERITIES;
use crate::store::incidents::{
    ExternalEvent, ExternalReport, Incident, IncidentFilter, NewIncident,
};
use crate::store::{self};

/// Body of `POST /v1/incidents`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentBody {
    asset: String,
    kind: String,
    severity: Option<String>,
    started_at: Timestamp,
    detected_at: Option<Timestamp>,
    resolved_at: Option<Timestamp>,
    root_cause: Option<String>,
    fingerprint: Option<String>,
    labels: Option<BTreeMap<String, String>>,
}

fn check_severity(severity: &str) -> Result<(), ApiError> {
    if SEVERITIES.contains(&severity) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "severity",
            format!("must be one of {SEVERITIES:?}"),
        ))
    }
}

async fn asset_id(state: &AppState, name: &str) -> Result<i64, ApiError> {
    let ids = state.store.resolve_asset_ids(&[name.to_owned()]).await?;
    ids.get(name)
        .copied()
        .ok_or_else(|| ApiError::Internal(format!("asset {name} was not resolved")))
}

/// `POST /v1/incidents`: 201 with the incident, or 200 with the known one when the same
/// fingerprint and start were reported before.
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<IncidentBody>,
) -> Result<(StatusCode, Json<Incident>), ApiError> {
    check_name("asset", &body.asset)?;
    check_name("kind", &body.kind)?;
    let severity = body.severity.unwrap_or_else(|| "major".to_owned());
    check_severity(&severity)?;
    let ingest = &state.settings.ingest;
    let started_at = body.started_at.in_range("started_at", ingest)?;
    let detected_at = body
        .detected_at
        .map(|t| t.in_range("detected_at", ingest))
        .transpose()?;
    let resolved_at = body
        .resolved_at
        .map(|t| t.in_range("resolved_at", ingest))
        .transpose()?;
    if resolved_at.is_some_and(|r| r < started_at) {
        return Err(ApiError::invalid(
            "resolved_at",
            "must not be before started_at",
        ));
    }
    check_fingerprint("fingerprint", body.fingerprint.as_deref())?;
    let incident = NewIncident {
        asset_id: asset_id(&state, &body.asset).await?,
        kind: body.kind,
        severity,
        started_at,
        detected_at,
        resolved_at,
        root_cause: body.root_cause,
        source: "api".to_owned(),
        fingerprint: body.fingerprint,
        labels: serde_json::to_value(body.labels.unwrap_or_default()).unwrap_or_default(),
    };
    match state.store.create_incident(&incident).await {
        Ok(created) => Ok((StatusCode::CREATED, Json(created))),
        Err(store::Error::Duplicate { .. }) => {
            let fingerprint = incident.fingerprint.as_deref().unwrap_or_default();
            let known = state
                .store
                .incident_by_fingerprint("api", fingerprint, started_at)
                .await?
                .ok_or_else(|| ApiError::Internal("duplicate incident vanished".to_owned()))?;
            Ok((StatusCode::OK, Json(known)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Query of `GET /v1/incidents`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    asset: Option<String>,
    kind: Option<String>,
    state: Option<String>,
    from: Option<String>,
    to: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
}

/// A page of incidents; `next` is the `before` value of the following page.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct IncidentPage {
    incidents: Vec<Incident>,
    next: Option<i64>,
}

/// `GET /v1/incidents?asset=&kind=&state=open|resolved&from=&to=&before=&limit=`, newest
/// first.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<IncidentPage>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let open = match query.state.as_deref() {
        None => None,
        Some("open") => Some(true),
        Some("resolved") => Some(false),
        Some(other) => {
            return Err(ApiError::invalid(
                "state",
                format!("{other:?} is not open or resolved"),
            ));
        }
    };
    let asset_id = match &query.asset {
        None => None,
        Some(name) => match state.store.asset_by_name(name).await {
            Ok(asset) => Some(asset.asset_id),
            Err(store::Error::NotFound(_)) => {
                return Err(ApiError::NotFound(format!("asset {name}")));
            }
            Err(e) => return Err(e.into()),
        },
    };
    let filter = IncidentFilter {
        asset_id,
        kind: query.kind,
        open,
        from: query
            .from
            .as_deref()
            .map(|t| parse_time_param("from", t))
            .transpose()?,
        to: query
            .to
            .as_deref()
            .map(|t| parse_time_param("to", t))
            .transpose()?,
        before_id: query.before,
        limit,
    };
    let incidents = state.store.list_incidents(&filter).await?;
    let next = (incidents.len() as i64 == limit)
        .then(|| incidents.last().map(|i| i.incident_id))
        .flatten();
    Ok(Json(IncidentPage { incidents, next }))
}

/// Body of `POST /v1/incidents/{id}/resolve`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    resolved_at: Option<Timestamp>,
    root_cause: Option<String>,
}

/// `POST /v1/incidents/{id}/resolve`: resolved now unless `resolved_at` is given; resolving
/// again keeps the first time.
pub async fn resolve(
    State(state): State<AppState>,
    ApiPath(incident_id): ApiPath<i64>,
    ApiJson(body): ApiJson<ResolveBody>,
) -> Result<Json<Incident>, ApiError> {
    let at = body
        .resolved_at
        .map(|t| t.in_range("resolved_at", &state.settings.ingest))
        .transpose()?
        .unwrap_or_else(Utc::now);
    match state
        .store
        .resolve_incident(incident_id, at, body.root_cause.as_deref())
        .await
    {
        Ok(incident) => Ok(Json(incident)),
        Err(store::Error::NotFound(_)) => {
            Err(ApiError::NotFound(format!("incident {incident_id}")))
        }
        Err(e) => Err(e.into()),
    }
}

/// The webhook payload Alertmanager sends (version 4); unknown fields are ignored.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AlertmanagerPayload {
    alerts: Vec<AlertmanagerAlert>,
}

/// One alert of the payload.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerAlert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    starts_at: DateTime<Utc>,
    ends_at: Option<DateTime<Utc>>,
    fingerprint: Option<String>,
}

/// Answer of the webhook receiver.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AlertmanagerAnswer {
    #[serde(flatten)]
    report: ExternalReport,
    /// Alerts without the asset label.
    skipped: u64,
}

/// An alert's `endsAt`, unless it is Go's zero time (`0001-01-01T00:00:00Z`), which
/// Alertmanager sends for "not set".
fn ends_at(alert: &AlertmanagerAlert) -> Option<DateTime<Utc>> {
    alert.ends_at.filter(|t| t.year() > 1)
}

fn severity_of(labels: &BTreeMap<String, String>) -> String {
    match labels
        .get("severity")
        .map(|s| s.to_ascii_lowercase())
        .as_deref()
    {
        Some(s) if SEVERITIES.contains(&s) => s.to_owned(),
        Some("page" | "error" | "high") => "critical".to_owned(),
        Some("low") => "minor".to_owned(),
        _ => "major".to_owned(),
    }
}

/// Longest accepted fingerprint, in bytes: it is indexed, and an index row has a size limit.
pub const MAX_FINGERPRINT_LEN: usize = 500;

/// Refuses a fingerprint longer than [`MAX_FINGERPRINT_LEN`] (422 `invalid_value`) before
/// anything is stored.
fn check_fingerprint(field: &str, fingerprint: Option<&str>) -> Result<(), ApiError> {
    match fingerprint {
        Some(f) if f.len() > MAX_FINGERPRINT_LEN => Err(ApiError::invalid(
            field,
            format!("at most {MAX_FINGERPRINT_LEN} bytes"),
        )),
        _ => Ok(()),
    }
}

/// The alert's fingerprint, or a hash of its labels when Alertmanager sent none.
fn fingerprint_of(alert: &AlertmanagerAlert) -> String {
    alert.fingerprint.clone().unwrap_or_else(|| {
        let mut hasher = Sha256::new();
        for (k, v) in &alert.labels {
            hasher.update(k.as_bytes());
            hasher.update([0]);
            hasher.update(v.as_bytes());
            hasher.update([0]);
        }
        hex::encode(&hasher.finalize()[..8])
    })
}

/// `POST /v1/alertmanager`: applies all alerts of a delivery in one transaction.
pub async fn alertmanager(
    State(state): State<AppState>,
    ApiJson(payload): ApiJson<AlertmanagerPayload>,
) -> Result<Json<AlertmanagerAnswer>, ApiError> {
    let settings = &state.settings.alertmanager;
    let limits = crate::ingest::Limits::new(&state.settings.ingest, Utc::now());
    let mut skipped = 0;
    let mut named = Vec::new();
    for (i, alert) in payload.alerts.iter().enumerate() {
        let Some(asset) = alert.labels.get(&settings.asset_label) else {
            skipped += 1;
            continue;
        };
        check_name(
            &format!("alerts[{i}].labels.{}", settings.asset_label),
            asset,
        )?;
        check_fingerprint(
            &format!("alerts[{i}].fingerprint"),
            alert.fingerprint.as_deref(),
        )?;
        if alert.status != "firing" && alert.status != "resolved" {
            return Err(ApiError::invalid(
                format!("alerts[{i}].status"),
                "must be firing or resolved",
            ));
        }
        // Held to the range samples and incidents are (an `endsAt` of Go's zero time means
        // none: the alert resolves now).
        limits.check_time(alert.starts_at.timestamp_micros(), || {
            format!("alerts[{i}].startsAt")
        })?;
        if let (true, Some(ends_at)) = (alert.status == "resolved", ends_at(alert)) {
            limits.check_time(ends_at.timestamp_micros(), || format!("alerts[{i}].endsAt"))?;
        }
        named.push((asset.clone(), alert));
    }
    let names: Vec<String> = named.iter().map(|(name, _)| name.clone()).collect();
    let ids = state.store.resolve_asset_ids(&names).await?;
    let events: Vec<ExternalEvent> = named
        .into_iter()
        .map(|(asset, alert)| {
            let incident = NewIncident {
                asset_id: ids[&asset],
                kind: alert
                    .labels
                    .get(&settings.kind_label)
                    .cloned()
                    .unwrap_or_else(|| "unknown".to_owned()),
                severity: severity_of(&alert.labels),
                started_at: alert.starts_at,
                detected_at: Some(alert.starts_at),
                resolved_at: None,
                root_cause: None,
                source: "alertmanager".to_owned(),
                fingerprint: Some(fingerprint_of(alert)),
                labels: serde_json::to_value(&alert.labels).unwrap_or(Value::Null),
            };
            match (alert.status.as_str(), ends_at(alert)) {
                ("resolved", Some(ends_at)) => ExternalEvent::Resolved(incident, ends_at),
                ("resolved", None) => ExternalEvent::Resolved(incident, Utc::now()),
                _ => ExternalEvent::Firing(incident),
            }
        })
        .collect();
    let report = state.store.record_external(&events).await?;
    Ok(Json(AlertmanagerAnswer { report, skipped }))
}

/// Body of `POST /v1/incidents/{id}/outcome`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeBody {
    /// The client's idempotency key (1 to 200 characters).
    client_key: String,
    /// Root cause, if known.
    #[serde(default)]
    root_cause: Option<String>,
    /// The actions tried, in order (catalog names, or others people ran); at most 100.
    #[serde(default)]
    actions_tried: Vec<String>,
    /// The one that healed the asset, one of `actions_tried` (none: nothing healed it).
    #[serde(default)]
    healed_by: Option<String>,
    /// Seconds from the start of the incident to recovery.
    #[serde(default)]
    time_to_recover_secs: Option<f64>,
}

/// Most actions one outcome may list: an incident that saw more is not a record people keep.
pub const MAX_ACTIONS_TRIED: usize = 100;

/// Answer of `POST /v1/incidents/{id}/outcome`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct OutcomeAnswer {
    outcome: crate::store::actions::Outcome,
    /// The key was used before: this is the earlier outcome, nothing was stored.
    duplicate: bool,
    /// What the threshold adapter did (a missed detection can lower a threshold).
    thresholds: Vec<super::policy::Adaptation>,
}

/// `POST /v1/incidents/{id}/outcome` (scope `feedback`): how the incident ended. Counts for
/// action choice (overriding automatic verification), marks a missed detection when no
/// alert opened in the horizon before it, and adapts thresholds. 201 stored, 200 repeated.
pub async fn outcome(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<super::auth::Principal>,
    ApiPath(incident_id): ApiPath<i64>,
    ApiJson(body): ApiJson<OutcomeBody>,
) -> Result<(StatusCode, Json<OutcomeAnswer>), ApiError> {
    if body.client_key.is_empty() || body.client_key.chars().count() > 200 {
        return Err(ApiError::invalid(
            "client_key",
            "must be 1 to 200 characters",
        ));
    }
    if body.actions_tried.len() > MAX_ACTIONS_TRIED {
        return Err(ApiError::invalid(
            "actions_tried",
            format!("at most {MAX_ACTIONS_TRIED} actions"),
        ));
    }
    for name in &body.actions_tried {
        check_name("actions_tried", name)?;
    }
    if let Some(h) = &body.healed_by
        && !body.actions_tried.contains(h)
    {
        return Err(ApiError::invalid(
            "healed_by",
            "must be one of actions_tried",
        ));
    }
    if body
        .time_to_recover_secs
        .is_some_and(|t| !t.is_finite() || t < 0.0)
    {
        return Err(ApiError::invalid(
            "time_to_recover_secs",
            "must be 0 or more",
        ));
    }
    let new = crate::store::actions::NewOutcome {
        incident_id,
        root_cause: body.root_cause,
        actions_tried: body.actions_tried,
        healed_by: body.healed_by,
        time_to_recover_secs: body.time_to_recover_secs,
        client_key: body.client_key,
        author: principal.name,
        horizon_secs: state.settings.training.horizon_secs,
    };
    let recorded = match state.store.record_outcome(&new).await {
        // A concurrent request with the same key won: answer with its row.
        Err(store::Error::Duplicate { .. }) => state.store.record_outcome(&new).await,
        other => other,
    };
    let (outcome, stored) = match recorded {
        Ok(r) => r,
        Err(store::Error::NotFound(what)) => return Err(ApiError::NotFound(what)),
        Err(e) => return Err(e.into()),
    };
    if !stored {
        // The same key repeats the same outcome (200); with other content it is a mistake
        // the client must see (409), not a silent success.
        let same = outcome.incident_id == incident_id
            && outcome.root_cause == new.root_cause
            && outcome.actions_tried == serde_json::json!(new.actions_tried)
            && outcome.healed_by == new.healed_by
            && outcome.time_to_recover_secs == new.time_to_recover_secs;
        if !same {
            return Err(ApiError::Conflict(format!(
                "client_key {:?} was used for another outcome (incident {})",
                new.client_key, outcome.incident_id
            )));
        }
        return Ok((
            StatusCode::OK,
            Json(OutcomeAnswer {
                outcome,
                duplicate: true,
                thresholds: Vec::new(),
            }),
        ));
    }
    let class = state
        .store
        .incident(incident_id)
        .await
        .ok()
        .map(|i| i.asset);
    let class = match class {
        Some(asset) => state
            .store
            .asset_by_name(&asset)
            .await
            .ok()
            .map(|a| a.class),
        None => None,
    };
    let thresholds = match super::policy::adapt(&state, class.as_deref()).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("threshold adaptation after an outcome failed: {e}");
            Vec::new()
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(OutcomeAnswer {
            outcome,
            duplicate: false,
            thresholds,
        }),
    ))
}
