//! `POST /api/v1/write` (scope `ingest`): the Prometheus remote-write 1.0 receiver, so that a
//! stock Prometheus with a `remote_write` block feeds Vigil unchanged.
//!
//! Retry semantics of the protocol: 204 only once the samples are durable; 400 for a body
//! that cannot be decoded or holds bad data (Prometheus drops it, never retries); 503 when
//! the database is unavailable and 500 on other failures (Prometheus retries, and the
//! retried samples are stored once).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::AppState;
use super::error::ApiError;
use super::input::read_body;
use crate::ingest::{Limits, NamedBatch, remote_write};

/// Largest decompressed body, as a multiple of the body limit (snappy rarely exceeds 5x).
const INFLATE_FACTOR: usize = 8;

/// `POST /api/v1/write`.
pub async fn write(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if let Some(kind) = content_type
        && !kind.starts_with("application/x-protobuf")
    {
        return Err(ApiError::UnsupportedMediaType(format!(
            "{kind}: remote-write sends application/x-protobuf"
        )));
    }
    let body = read_body(req, &state).await?;
    let settings = &state.settings.remote_write;
    let limits = remote_write::DecodeLimits {
        max_bytes: settings.max_decompressed_bytes.min(
            state
                .settings
                .http
                .body_limit_bytes
                .saturating_mul(INFLATE_FACTOR),
        ),
        max_series: settings.max_series,
        max_labels: settings.max_labels,
        max_samples: settings.max_samples,
    };
    let request = remote_write::decode(&body, &limits)?;
    drop(body);
    let mut batch = NamedBatch::new(Limits::new(&state.settings.ingest, Utc::now()));
    let (mut skipped, labels) =
        remote_write::add_to_batch(&request, &state.remote_write, &mut batch)?;
    let families = remote_write::metadata_types(&request, &mut skipped);
    drop(request);
    let report = state.ingest.store(batch).await?;
    state.store.merge_asset_labels(&labels).await?;
    state.store.record_metric_families(&families).await?;
    let counters = &state.counters;
    crate::counters::add(&counters.samples_skipped_non_finite, skipped.non_finite);
    crate::counters::add(&counters.samples_skipped_unnamed, skipped.unnamed);
    crate::counters::add(
        &counters.samples_skipped_invalid_series,
        skipped.invalid_series,
    );
    crate::counters::add(&counters.exemplars_skipped, skipped.exemplars);
    crate::counters::add(&counters.histograms_skipped, skipped.histograms);
    crate::counters::add(&counters.metadata_skipped, skipped.unknown_metadata);
    if skipped != remote_write::Skipped::default() {
        tracing::debug!(?skipped, "remote-write parts skipped");
    }
    let mut headers = HeaderMap::new();
    headers.insert("x-vigil-samples-stored", HeaderValue::from(report.stored));
    headers.insert(
        "x-vigil-samples-skipped",
        HeaderValue::from(skipped.samples()),
    );
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}
