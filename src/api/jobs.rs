//! Background work made visible: `GET /v1/jobs` lists job runs (training and retention:
//! trigger, start, end, outcome, figures), `GET /v1/jobs/{id}` shows one, and
//! `POST /v1/models/train` (scope `admin`) starts a training run on this replica.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::input::{ApiPath, ApiQuery, page_limit};
use crate::jobs::train::{self, TrainError, Trigger};
use crate::store::jobs::JobRun;

/// Query of `GET /v1/jobs`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only runs of this job: `train` or `retention`.
    job: Option<String>,
    /// How many, newest first: 1 to 1000 (default 50).
    limit: Option<i64>,
}

/// Answer of `GET /v1/jobs`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct JobList {
    runs: Vec<JobRun>,
}

/// `GET /v1/jobs`.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<JobList>, ApiError> {
    let limit = page_limit(query.limit, 50)?;
    if let Some(job) = &query.job
        && job != train::JOB
        && job != crate::jobs::retention::JOB
    {
        return Err(ApiError::BadQuery(
            "job must be train or retention".to_owned(),
        ));
    }
    Ok(Json(JobList {
        runs: state.store.job_runs(query.job.as_deref(), limit).await?,
    }))
}

/// `GET /v1/jobs/{id}`.
pub async fn get(
    State(state): State<AppState>,
    ApiPath(job_run_id): ApiPath<i64>,
) -> Result<Json<JobRun>, ApiError> {
    Ok(Json(state.store.job_run(job_run_id).await?))
}

/// Answer of `POST /v1/models/train`: the run, recorded and under way.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct TrainingStarted {
    /// Follow it with `GET /v1/jobs/{id}`.
    job_run_id: i64,
    /// Always `running`.
    status: &'static str,
}

/// `POST /v1/models/train`: records a manual training run and runs it in a task of its own
/// on this replica (a client hanging up does not stop it); 202 with the run's id, 409
/// `conflict` while another run (on any replica) holds the training lock.
pub async fn start(
    State(state): State<AppState>,
) -> Result<(StatusCode, Json<TrainingStarted>), ApiError> {
    let (sender, mut started) = tokio::sync::mpsc::channel::<Result<i64, TrainError>>(2);
    let store = state.store.clone();
    let settings = state.settings.clone();
    let recorded = sender.clone();
    tokio::spawn(async move {
        let outcome = train::start(
            &store,
            &settings,
            Trigger::Manual,
            move |id| {
                let _ = recorded.try_send(Ok(id));
            },
            |_| {},
        )
        .await;
        match outcome {
            Ok(run) => tracing::info!(
                model_id = run.registration.model.model_id,
                activated = run.registration.activated,
                "training started over the API done"
            ),
            Err(e) => {
                tracing::warn!("training started over the API failed: {e}");
                // Only read when the run failed before it was recorded.
                let _ = sender.try_send(Err(e));
            }
        }
    });
    match started.recv().await {
        Some(Ok(job_run_id)) => Ok((
            StatusCode::ACCEPTED,
            Json(TrainingStarted {
                job_run_id,
                status: "running",
            }),
        )),
        Some(Err(TrainError::Busy)) => Err(ApiError::Conflict(
            "another training run is under way (GET /v1/jobs?job=train shows it)".to_owned(),
        )),
        Some(Err(TrainError::Store(e))) => Err(e.into()),
        Some(Err(e)) => Err(ApiError::Internal(e.to_string())),
        None => Err(ApiError::Internal(
            "the training task ended before it was recorded".to_owned(),
        )),
    }
}
