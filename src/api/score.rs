//! The scoring routes (scope `score`): `POST /v1/score`, `POST /v1/score/batch` and
//! `GET /v1/assets/{name}/score`. They parse the request, call [`crate::scoring::Scoring`]
//! and answer; the service owns the model and the score writer.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::input::{ApiPath, Budgeted, json_body, parse_json, parse_json_within};
use crate::scoring::{ScoreAnswer, Window};

mod fast;

/// Body of `POST /v1/score`, the same as the seed-baseline service takes.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    asset: String,
    /// Values per metric on the model's grid, oldest first.
    window: BTreeMap<String, Budgeted<f64>>,
    /// The window's timestamps; the last one dates the stored score (else: now). The window
    /// is taken as already on the grid.
    #[serde(default)]
    timestamps: Option<Vec<super::input::Timestamp>>,
    /// The asset's class: its threshold applies (else the global one), and its class model
    /// answers when the bundle has one (else the fleet-wide model). It must be the class of
    /// some stored asset.
    #[serde(default)]
    asset_class: Option<String>,
}

impl ScoreRequest {
    /// The window to score, dated by its last timestamp when given.
    fn into_window(self) -> Result<Window, ApiError> {
        let end = self
            .timestamps
            .as_ref()
            .and_then(|t| t.last())
            .map(|t| t.required("timestamps"))
            .transpose()?;
        Ok(Window {
            asset: self.asset,
            class: self.asset_class,
            values: self.window.into_iter().map(|(k, v)| (k, v.0)).collect(),
            end,
        })
    }

    /// Parses a body with the error mapping of [`ApiJson`](super::input::ApiJson); the usual
    /// shape takes a fast path that gives the same request.
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        parse_with(bytes, fast::parse)
    }
}

/// Parses `bytes` with `fast`, or where it gives `None`, with serde_json and the error mapping
/// of [`ApiJson`](super::input::ApiJson).
fn parse_with<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    fast: fn(&[u8]) -> Option<T>,
) -> Result<T, ApiError> {
    fast(bytes).map_or_else(|| parse_json(bytes), Ok)
}

/// The body of `POST /v1/score`, read as [`ApiJson`](super::input::ApiJson) reads it and parsed
/// by [`ScoreRequest::parse`].
#[derive(Debug)]
pub struct ScoreBody(pub ScoreRequest);

impl<S: Send + Sync> axum::extract::FromRequest<S> for ScoreBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        ScoreRequest::parse(&json_body(req, state).await?).map(Self)
    }
}

/// Most windows in one `POST /v1/score/batch`.
pub const MAX_BATCH_WINDOWS: usize = 1000;

/// Most values in all the windows of one `POST /v1/score/batch` (40 MB as `f64`): parsing
/// stops past them with 413 `batch_too_large`, so a batch's memory is bounded by this, not
/// by the body limit. A thousand windows of 6 metrics of 830 values fit.
pub const MAX_BATCH_VALUES: usize = 5_000_000;

/// Body of `POST /v1/score/batch`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    windows: Vec<ScoreRequest>,
}

/// One item of a batch answer: a score, or the error of that window alone.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum BatchItem {
    Scored(Box<ScoreAnswer>),
    /// Refused, with the same code and message a single request would get.
    Failed {
        error: super::error::ErrorBody,
    },
}

/// Answer of `POST /v1/score/batch`, in request order.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BatchAnswer {
    scores: Vec<BatchItem>,
}

/// The body of `POST /v1/score/batch`, read as [`ApiJson`](super::input::ApiJson) reads it,
/// with the fast path of [`ScoreRequest::parse`] for the usual shape.
#[derive(Debug)]
pub struct BatchBody(pub BatchRequest);

impl<S: Send + Sync> axum::extract::FromRequest<S> for BatchBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = json_body(req, state).await?;
        match fast::parse_batch(&bytes, MAX_BATCH_VALUES) {
            Some(request) => Ok(Self(request)),
            None => parse_json_within(&bytes, MAX_BATCH_VALUES, || {
                ApiError::TooManyValues(MAX_BATCH_VALUES)
            })
            .map(Self),
        }
    }
}

/// `POST /v1/score`.
pub async fn score(
    State(state): State<AppState>,
    ScoreBody(request): ScoreBody,
) -> Result<Json<ScoreAnswer>, ApiError> {
    let window = request.into_window()?;
    let window_end = window.end.unwrap_or_else(chrono::Utc::now);
    Ok(Json(state.scoring.score(&window, window_end).await?))
}

/// `POST /v1/score/batch`: many windows with one model version; a bad window fails alone.
pub async fn score_batch(
    State(state): State<AppState>,
    BatchBody(request): BatchBody,
) -> Result<Json<BatchAnswer>, ApiError> {
    if request.windows.len() > MAX_BATCH_WINDOWS {
        return Err(ApiError::invalid(
            "windows",
            format!("at most {MAX_BATCH_WINDOWS} windows per batch"),
        ));
    }
    // A window whose timestamps do not parse fails alone, as any other bad window.
    let mut items: Vec<Option<BatchItem>> = Vec::with_capacity(request.windows.len());
    let mut windows = Vec::with_capacity(request.windows.len());
    for window in request.windows {
        match window.into_window() {
            Ok(window) => {
                windows.push(window);
                items.push(None);
            }
            Err(e) => items.push(Some(BatchItem::Failed { error: e.body() })),
        }
    }
    let mut scored = state.scoring.score_many(&windows).await.into_iter();
    // score_many answers every window given, in order: each gap takes the next answer.
    let scores = items
        .into_iter()
        .filter_map(|item| {
            item.or_else(|| {
                scored.next().map(|answer| match answer {
                    Ok(answer) => BatchItem::Scored(Box::new(answer)),
                    Err(e) => BatchItem::Failed {
                        error: ApiError::from(e).body(),
                    },
                })
            })
        })
        .collect();
    Ok(Json(BatchAnswer { scores }))
}

/// `GET /v1/assets/{name}/score`: scores the asset's latest stored window.
pub async fn score_asset(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ScoreAnswer>, ApiError> {
    Ok(Json(state.scoring.score_stored(name).await?))
}
