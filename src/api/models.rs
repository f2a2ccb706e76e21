//! The model registry over HTTP: `GET /v1/models` (any token) lists registered models,
//! newest first; `GET /v1/models/{id}` shows one with its latest drift check;
//! `POST /v1/models/{id}/activate` (scope `admin`) makes one active, retiring the previous
//! one, and announces it to every replica.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;

use super::AppState;
use super::auth::Principal;
use super::error::ApiError;
use super::input::ApiPath;
use crate::jobs::train::TrainError;
use crate::store::{self, models::ModelRecord};

/// Answer of `GET /v1/models`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ModelList {
    models: Vec<ModelRecord>,
}

/// `GET /v1/models`.
pub async fn list(State(state): State<AppState>) -> Result<Json<ModelList>, ApiError> {
    Ok(Json(ModelList {
        models: state.store.list_models().await?,
    }))
}

/// Answer of `GET /v1/models/{id}`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ModelDetail {
    #[serde(flatten)]
    model: ModelRecord,
    /// Its latest drift check (live windows against its reference windows), if any.
    drift: Option<crate::store::drift::DriftCheck>,
    /// Its shadow period beside the champion, if it had one: when it ends, the decision
    /// and both models' figures.
    shadow: Option<crate::store::shadow::Shadow>,
}

/// `GET /v1/models/{id}`.
pub async fn get(
    State(state): State<AppState>,
    ApiPath(model_id): ApiPath<i64>,
) -> Result<Json<ModelDetail>, ApiError> {
    // The shadow period first: a decision it shows was committed with the model's new
    // status, which the read after it then sees too.
    let shadow = state.store.shadow(model_id).await?;
    let model = match state.store.model(model_id).await {
        Err(store::Error::NotFound(_)) => {
            return Err(ApiError::NotFound(format!("model {model_id}")));
        }
        other => other?,
    };
    Ok(Json(ModelDetail {
        drift: state.store.latest_drift(model_id).await?,
        shadow,
        model,
    }))
}

/// `POST /v1/models/{id}/promote`: ends a shadow period early, the challenger active.
pub async fn promote(
    state: State<AppState>,
    principal: Extension<Principal>,
    id: ApiPath<i64>,
) -> Result<Json<crate::store::shadow::Shadow>, ApiError> {
    decide(state, principal, id, true).await
}

/// `POST /v1/models/{id}/drop`: ends a shadow period early, the champion kept.
pub async fn drop_shadow(
    state: State<AppState>,
    principal: Extension<Principal>,
    id: ApiPath<i64>,
) -> Result<Json<crate::store::shadow::Shadow>, ApiError> {
    decide(state, principal, id, false).await
}

async fn decide(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(model_id): ApiPath<i64>,
    promote: bool,
) -> Result<Json<crate::store::shadow::Shadow>, ApiError> {
    let decided = crate::jobs::shadow::decide(
        &state.store,
        model_id,
        Some(promote),
        &principal.name,
        state.settings.training.horizon_secs,
    )
    .await;
    match decided {
        Ok(shadow) => Ok(Json(shadow)),
        Err(store::Error::NotFound(_)) => Err(ApiError::NotFound(format!("model {model_id}"))),
        Err(store::Error::Constraint { constraint }) => Err(ApiError::Conflict(constraint)),
        Err(e) => Err(e.into()),
    }
}

/// `POST /v1/models/{id}/activate`.
pub async fn activate(
    State(state): State<AppState>,
    ApiPath(model_id): ApiPath<i64>,
) -> Result<Json<ModelRecord>, ApiError> {
    match crate::jobs::train::activate(&state.store, model_id).await {
        Ok(model) => Ok(Json(model)),
        Err(TrainError::Store(store::Error::NotFound(_))) => {
            Err(ApiError::NotFound(format!("model {model_id}")))
        }
        Err(TrainError::Store(store::Error::Constraint { constraint })) => {
            Err(ApiError::invalid("id", constraint))
        }
        Err(TrainError::Store(e)) => Err(e.into()),
        Err(e @ TrainError::Unloadable { .. }) => Err(ApiError::Unloadable(e.to_string())),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}
