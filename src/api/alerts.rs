//! Alerts and the feedback on them: `GET /v1/alerts` (the queue awaiting feedback with
//! `feedback=none`), `GET /v1/alerts/{id}`, `POST /v1/alerts/{id}/feedback` (scope
//! `feedback`, idempotent by the client's key; adapts the thresholds).

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Principal;
use super::error::ApiError;
use super::input::{ApiJson, ApiPath, ApiQuery, check_name, page_limit};
use super::policy::{Adaptation, adapt};
use crate::store::alerts::{AlertFilter, AlertRow, Feedback, NewFeedback};

/// Query of `GET /v1/alerts`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this asset.
    asset: Option<String>,
    /// `open` or `cleared`.
    state: Option<String>,
    /// `none` (awaiting feedback) or `given`.
    feedback: Option<String>,
    /// Only alerts with a smaller id (the `next` of the previous page).
    before: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<i64>,
}

/// A page of alerts.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AlertPage {
    alerts: Vec<AlertRow>,
    /// `before` of the next page, when there may be one.
    next: Option<i64>,
}

/// `GET /v1/alerts`.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<AlertPage>, ApiError> {
    let limit = page_limit(query.limit, 100)?;
    if let Some(s) = &query.state
        && s != "open"
        && s != "cleared"
    {
        return Err(ApiError::BadQuery(
            "state must be open or cleared".to_owned(),
        ));
    }
    let has_feedback = match query.feedback.as_deref() {
        None => None,
        Some("none") => Some(false),
        Some("given") => Some(true),
        Some(_) => {
            return Err(ApiError::BadQuery(
                "feedback must be none or given".to_owned(),
            ));
        }
    };
    let alerts = state
        .store
        .list_alerts(&AlertFilter {
            asset: query.asset,
            state: query.state,
            has_feedback,
            before_id: query.before,
            open_or_cleared_since: None,
            limit,
        })
        .await?;
    let next = (alerts.len() as i64 == limit)
        .then(|| alerts.last().map(|a| a.alert_id))
        .flatten();
    Ok(Json(AlertPage { alerts, next }))
}

/// `GET /v1/alerts/{id}`.
pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<AlertRow>, ApiError> {
    Ok(Json(state.store.alert(id).await?))
}

/// Body of `POST /v1/alerts/{id}/feedback`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackBody {
    /// `true_alarm` or `false_alarm`.
    label: String,
    /// The client's idempotency key (1 to 200 characters): sending the same feedback again
    /// with it stores nothing new.
    client_key: String,
    /// The failure kind the operator saw.
    #[serde(default)]
    failure_kind: Option<String>,
    /// Free text.
    #[serde(default)]
    note: Option<String>,
}

/// Answer of `POST /v1/alerts/{id}/feedback`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct FeedbackAnswer {
    feedback: Feedback,
    /// The key was used before: this is the earlier feedback, nothing was stored.
    duplicate: bool,
    /// What the threshold adapter did with it (empty for a duplicate).
    thresholds: Vec<Adaptation>,
}

/// `POST /v1/alerts/{id}/feedback`: 201 when stored, 200 when the key was seen before with
/// the same content, 409 `conflict` when it was used for other feedback.
pub async fn feedback(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<FeedbackBody>,
) -> Result<(StatusCode, Json<FeedbackAnswer>), ApiError> {
    if body.label != "true_alarm" && body.label != "false_alarm" {
        return Err(ApiError::invalid(
            "label",
            "must be true_alarm or false_alarm",
        ));
    }
    if body.client_key.is_empty() || body.client_key.chars().count() > 200 {
        return Err(ApiError::invalid(
            "client_key",
            "must be 1 to 200 characters",
        ));
    }
    if let Some(kind) = &body.failure_kind {
        check_name("failure_kind", kind)?;
    }
    let alert = state.store.alert(id).await.map_err(|e| match e {
        crate::store::Error::NotFound(what) => ApiError::NotFound(what),
        e => e.into(),
    })?;
    let (feedback, stored) = state
        .store
        .insert_feedback(&NewFeedback {
            alert_id: id,
            label: body.label.clone(),
            failure_kind: body.failure_kind.clone(),
            note: body.note.clone(),
            client_key: body.client_key.clone(),
            author: principal.name,
        })
        .await?;
    if !stored {
        let earlier = &feedback.content;
        // The same key repeats the same feedback (200); with other content it is a
        // mistake the client must see (409), not a silent success.
        if earlier.alert_id != id
            || earlier.label != body.label
            || earlier.failure_kind != body.failure_kind
            || earlier.note != body.note
        {
            return Err(ApiError::Conflict(format!(
                "client_key {:?} was used for other feedback (alert {}, {})",
                body.client_key, earlier.alert_id, earlier.label
            )));
        }
        return Ok((
            StatusCode::OK,
            Json(FeedbackAnswer {
                feedback,
                duplicate: true,
                thresholds: Vec::new(),
            }),
        ));
    }
    // The feedback is stored: a failing adaptation is logged, not reported as a failure.
    let thresholds = match adapt(&state, Some(&alert.asset_class)).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("threshold adaptation after feedback failed: {e}");
            Vec::new()
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(FeedbackAnswer {
            feedback,
            duplicate: false,
            thresholds,
        }),
    ))
}
