//! Actions and the action policy: `GET /v1/actions`, `GET /v1/actions/{id}`,
//! `POST /v1/actions/{id}/approve|reject` (admin), `GET /v1/policy/actions` (posteriors),
//! `GET|PUT /v1/policy/kill-switch`.

use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Principal;
use super::error::ApiError;
use super::input::{ApiJson, ApiPath, ApiQuery, page_limit};
use crate::policy::bandit::Arm;
use crate::store::actions::ActionRow;

/// Query of `GET /v1/actions`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this asset.
    asset: Option<String>,
    /// Only this state (e.g. `awaiting_approval`, `blocked`).
    state: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<i64>,
}

/// A list of actions.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ActionList {
    actions: Vec<ActionRow>,
}

/// `GET /v1/actions`.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<ActionList>, ApiError> {
    let limit = page_limit(query.limit, 100)?;
    let actions = state
        .store
        .list_actions(query.asset.as_deref(), query.state.as_deref(), limit)
        .await?;
    Ok(Json(ActionList { actions }))
}

/// `GET /v1/actions/{id}`.
pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ActionRow>, ApiError> {
    state.store.action(id).await.map(Json).map_err(|e| match e {
        crate::store::Error::NotFound(what) => ApiError::NotFound(what),
        e => e.into(),
    })
}

/// `POST /v1/actions/{id}/approve`: the guard checks again now; if it permits, the action
/// runs. 409 `conflict` when it is not awaiting approval (or expired), 409 `guard_refused`
/// when the guard refuses.
pub async fn approve(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ActionRow>, ApiError> {
    // In a task of its own: a client that hangs up must not stop an approved action between
    // its start and the record of its result.
    let actions = state.actions.clone();
    let decided = tokio::spawn(async move { actions.decide(id, true, &principal.name).await })
        .await
        .map_err(|e| ApiError::Internal(format!("approving action {id}: {e}")))??;
    Ok(Json(decided))
}

/// `POST /v1/actions/{id}/reject`.
pub async fn reject(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ActionRow>, ApiError> {
    Ok(Json(
        state.actions.decide(id, false, &principal.name).await?,
    ))
}

/// One (failure kind, asset class, action) posterior.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Posterior {
    failure_kind: String,
    asset_class: String,
    action: String,
    /// Times it healed / did not.
    healed: u64,
    not_healed: u64,
    /// Beta posterior parameters (prior plus counts).
    alpha: f64,
    beta: f64,
    /// Posterior mean probability that it heals.
    mean: f64,
}

/// A catalog entry as shown (no secrets).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CatalogEntry {
    name: String,
    executor: String,
    mode: crate::policy::guard::Mode,
    kinds: Vec<String>,
    classes: Vec<String>,
    prior: (f64, f64),
}

/// Answer of `GET /v1/policy/actions`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ActionPolicy {
    catalog: Vec<CatalogEntry>,
    /// Posteriors of every (kind, class, action) with outcomes.
    posteriors: Vec<Posterior>,
    kill_switch: bool,
}

/// `GET /v1/policy/actions`.
pub async fn policy(State(state): State<AppState>) -> Result<Json<ActionPolicy>, ApiError> {
    let stats = state.store.action_stats().await?;
    let catalog = &state.settings.actions;
    let posteriors = stats
        .into_iter()
        .map(|s| {
            let prior = catalog
                .iter()
                .find(|a| a.name == s.action_name)
                .map_or((1.0, 1.0), |a| a.prior);
            let arm = Arm {
                action: s.action_name.clone(),
                prior,
                healed: s.healed.max(0) as u64,
                not_healed: s.not_healed.max(0) as u64,
            };
            let (alpha, beta) = arm.posterior();
            Posterior {
                failure_kind: s.failure_kind,
                asset_class: s.asset_class,
                action: s.action_name,
                healed: arm.healed,
                not_healed: arm.not_healed,
                alpha,
                beta,
                mean: arm.mean(),
            }
        })
        .collect();
    Ok(Json(ActionPolicy {
        catalog: catalog
            .iter()
            .map(|a| CatalogEntry {
                name: a.name.clone(),
                executor: a.executor.as_str().to_owned(),
                mode: a.mode,
                kinds: a.kinds.clone(),
                classes: a.classes.clone(),
                prior: a.prior,
            })
            .collect(),
        posteriors,
        kill_switch: state
            .store
            .kill_switch(state.settings.guard.kill_switch)
            .await?,
    }))
}

/// The kill switch.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KillSwitch {
    /// On: no action runs anywhere (recommendations are still recorded).
    on: bool,
}

/// `GET /v1/policy/kill-switch`.
pub async fn kill_switch(State(state): State<AppState>) -> Result<Json<KillSwitch>, ApiError> {
    let on = state
        .store
        .kill_switch(state.settings.guard.kill_switch)
        .await?;
    Ok(Json(KillSwitch { on }))
}

/// `PUT /v1/policy/kill-switch` (admin): takes effect on every replica at once (the guard
/// reads it in each decision).
pub async fn set_kill_switch(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<KillSwitch>,
) -> Result<Json<KillSwitch>, ApiError> {
    state
        .store
        .set_kill_switch(body.on, &principal.name)
        .await?;
    Ok(Json(body))
}
