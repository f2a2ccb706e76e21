//! `GET /v1/config` (admin): the effective configuration, with secrets masked, as
//! `vigil config` prints it.

use axum::Json;
use axum::extract::State;

use super::AppState;
use crate::config::Settings;

/// `GET /v1/config`.
pub async fn show(State(state): State<AppState>) -> Json<Settings> {
    Json(state.settings.masked())
}
