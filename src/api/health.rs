//! Liveness and readiness: `GET /healthz` answers while the process runs and the database
//! has not been down longer than `database.unhealthy_after_secs` (then 503 `database_down`,
//! so that an orchestrator restarts Vigil); `GET /readyz`
//! answers 200 only when the database is reachable and every migration this binary embeds
//! is applied, so that a load balancer sends traffic only to replicas that can serve it.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;

/// `GET /healthz`: the process is alive and its database has not stayed down.
pub async fn healthz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if let Some(down) = state.store.down_for()
        && down.as_secs() >= state.settings.database.unhealthy_after_secs
    {
        return Err(ApiError::DatabaseDown(down.as_secs()));
    }
    Ok(Json(
        json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }),
    ))
}

/// `GET /readyz`: database reachable and migrations applied, else 503 `not_ready`.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let status = state
        .store
        .schema_status()
        .await
        .map_err(|e| ApiError::NotReady(format!("database unreachable: {e}")))?;
    if !status.is_current() {
        return Err(ApiError::NotReady(format!(
            "migrations pending: {:?} (run `vigil migrate`)",
            status.pending
        )));
    }
    Ok(Json(json!({
        "status": "ready",
        "schema_version": status.applied.last(),
    })))
}
