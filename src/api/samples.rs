//! Samples over HTTP: `POST /v1/samples` (scope `ingest`) stores a batch whole or not at all,
//! and `GET /v1/assets/{name}/samples` reads an asset's history, downsampled when `step` is
//! given.
//!
//! A batch has columnar items (`series`: one asset and metric, parallel `timestamps` and
//! `values`) and/or row items (`rows`: one sample each). Timestamps are Unix seconds
//! (integer or fractional) or RFC 3339 strings. Re-sending a batch stores nothing twice.

use std::collections::BTreeMap;
use std::fmt;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::input::{
    ApiPath, ApiQuery, Budgeted, Timestamp, json_body, parse_json_within, parse_time_param,
};
use crate::features::derive::rates_at;
use crate::ingest::{self, IngestReport, Limits, NamedBatch};
use crate::store::samples::{Aggregate, SampleQuery};
use crate::vocab::{SeriesKey, canonical_series_key};

/// Body of `POST /v1/samples`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SamplesBody {
    /// Columnar items.
    #[serde(default)]
    series: Budgeted<SeriesItem>,
    /// Row items.
    #[serde(default)]
    rows: Budgeted<RowItem>,
}

/// One asset's metric with parallel timestamps and values.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeriesItem {
    asset: String,
    /// A metric name, or a series key `name{label="value",...}`.
    metric: String,
    /// Labels that tell this series apart from others of the metric (added to the key).
    #[serde(default)]
    labels: BTreeMap<String, String>,
    timestamps: Budgeted<Timestamp>,
    values: Budgeted<Number>,
}

/// One sample.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RowItem {
    asset: String,
    /// A metric name, or a series key `name{label="value",...}`.
    metric: String,
    /// Labels that tell this series apart from others of the metric (added to the key).
    #[serde(default)]
    labels: BTreeMap<String, String>,
    ts: Timestamp,
    value: Number,
}

/// A sample value: a JSON number, or the strings `NaN`, `Inf`, `+Inf`, `-Inf`, `Infinity`,
/// `-Infinity` (which are then refused as non-finite, with their position).
#[derive(Debug, Clone, Copy, schemars::JsonSchema)]
pub struct Number(f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumVisitor;
        impl Visitor<'_> for NumVisitor {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
                Ok(Number(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Number, E> {
                match v {
                    "NaN" | "nan" => Ok(Number(f64::NAN)),
                    "Inf" | "+Inf" | "Infinity" | "inf" => Ok(Number(f64::INFINITY)),
                    "-Inf" | "-Infinity" | "-inf" => Ok(Number(f64::NEG_INFINITY)),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
        }
        deserializer.deserialize_any(NumVisitor)
    }
}

/// How many array elements a body may hold while it is parsed: each sample has a timestamp
/// and a value (or is one row), and each series item counts once, so that a body of
/// `max_batch_samples` samples parses and a larger one stops early.
fn budget(limits: Limits) -> usize {
    limits
        .max_batch_samples
        .saturating_mul(2)
        .saturating_add(limits.max_batch_samples)
}

/// Builds a validated batch from a request body.
pub fn build_batch(body: &SamplesBody, limits: Limits) -> Result<NamedBatch, ApiError> {
    let mut batch = NamedBatch::new(limits);
    let total = body.series.iter().map(|s| s.values.len()).sum::<usize>() + body.rows.len();
    if total > limits.max_batch_samples {
        return Err(ingest::IngestError::TooLarge {
            max: limits.max_batch_samples,
        }
        .into());
    }
    batch.reserve(total);
    for (i, item) in body.series.iter().enumerate() {
        if item.timestamps.len() != item.values.len() {
            return Err(ingest::IngestError::LengthMismatch {
                at: format!("series[{i}]"),
                timestamps: item.timestamps.len(),
                values: item.values.len(),
            }
            .into());
        }
        let asset = batch.asset(&item.asset, || format!("series[{i}].asset"))?;
        let metric = series(&mut batch, &item.metric, &item.labels, || {
            format!("series[{i}]")
        })?;
        for (j, (ts, value)) in item.timestamps.iter().zip(item.values.iter()).enumerate() {
            let ts =
                ts.0.ok_or_else(|| bad_timestamp(format!("series[{i}].timestamps[{j}]")))?;
            batch.push(asset, metric, ts, value.0, || {
                format!("series[{i}].values[{j}]")
            })?;
        }
    }
    for (i, row) in body.rows.iter().enumerate() {
        let asset = batch.asset(&row.asset, || format!("rows[{i}].asset"))?;
        let metric = series(&mut batch, &row.metric, &row.labels, || {
            format!("rows[{i}]")
        })?;
        let ts = row
            .ts
            .0
            .ok_or_else(|| bad_timestamp(format!("rows[{i}].ts")))?;
        batch.push(asset, metric, ts, row.value.0, || format!("rows[{i}]"))?;
    }
    Ok(batch)
}

/// Interns a metric with its labels, if any, as one series key.
fn series(
    batch: &mut NamedBatch,
    metric: &str,
    labels: &BTreeMap<String, String>,
    at: impl Fn() -> String,
) -> Result<u32, ingest::IngestError> {
    if labels.is_empty() {
        return batch.metric(metric, || format!("{}.metric", at()));
    }
    let invalid = |reason: String| ingest::IngestError::Invalid {
        at: format!("{}.labels", at()),
        reason,
    };
    let mut key = SeriesKey::parse(metric).map_err(invalid)?;
    for (name, value) in labels {
        key.insert(name, value.clone()).map_err(invalid)?;
    }
    let key = key.checked().map_err(invalid)?;
    batch.series(&key, || format!("{}.metric", at()))
}

fn bad_timestamp(at: String) -> ingest::IngestError {
    ingest::IngestError::BadTimestamp {
        at,
        reason: "not a timestamp (Unix seconds or RFC 3339 expected)".to_owned(),
    }
}

/// `POST /v1/samples`: 200 with counts once the whole batch is durable.
pub async fn post(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Json<IngestReport>, ApiError> {
    let limits = Limits::new(&state.settings.ingest, Utc::now());
    let bytes = json_body(request, &state).await?;
    let body: SamplesBody = parse_json_within(&bytes, budget(limits), || {
        ingest::IngestError::TooLarge {
            max: limits.max_batch_samples,
        }
        .into()
    })?;
    drop(bytes);
    let batch = build_batch(&body, limits)?;
    drop(body);
    let report = state.ingest.store(batch).await?;
    Ok(Json(report))
}

/// Query of `GET /v1/assets/{name}/samples`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// One series: a metric name or series key (labels in any order).
    metric: Option<String>,
    /// Every series of this metric family.
    family: Option<String>,
    /// Per-second rates (counters, resets handled as PromQL's `rate()`) over this range
    /// (`30s`, `5m`, ...), evaluated every `step` from `from` to `to`.
    rate: Option<String>,
    from: Option<String>,
    to: Option<String>,
    step: Option<String>,
    agg: Option<Aggregate>,
}

/// One metric's points in the answer.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SeriesOut {
    metric: String,
    /// Unix seconds.
    timestamps: Vec<f64>,
    values: Vec<f64>,
}

/// Answer of `GET /v1/assets/{name}/samples`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ReadAnswer {
    asset: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step_secs: Option<i64>,
    series: Vec<SeriesOut>,
}

/// Most points one read returns.
const MAX_POINTS: i64 = 200_000;

/// `GET /v1/assets/{name}/samples?metric=&from=&to=&step=&agg=`: default range the last 24
/// hours; `step` (seconds, or `30s`, `5m`, `1h`, `1d`) downsamples with `agg` (avg, min,
/// max, last; default avg).
pub async fn read(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<ReadQuery>,
) -> Result<Json<ReadAnswer>, ApiError> {
    let asset = super::assets::named(&state, &name).await?;
    let now = Utc::now();
    let to = query
        .to
        .as_deref()
        .map(|t| parse_time_param("to", t))
        .transpose()?
        .unwrap_or(now);
    let from = query
        .from
        .as_deref()
        .map(|t| parse_time_param("from", t))
        .transpose()?
        .unwrap_or(to - chrono::Duration::days(1));
    if from >= to {
        return Err(ApiError::invalid("from", "must be before to"));
    }
    let step_secs = query
        .step
        .as_deref()
        .map(|s| parse_step("step", s))
        .transpose()?;
    let metric = query
        .metric
        .as_deref()
        .map(|m| canonical_series_key(m).map_err(|e| ApiError::invalid("metric", e)))
        .transpose()?;
    if let Some(range) = query.rate.as_deref() {
        let range = parse_step("rate", range)?;
        let step = step_secs.ok_or_else(|| {
            ApiError::invalid(
                "step",
                "rate needs step: rates are evaluated every step from `from` to `to`",
            )
        })?;
        if query.agg.is_some() {
            return Err(ApiError::invalid("agg", "does not apply to rate"));
        }
        let points = (to - from).num_seconds() / step + 1;
        if points > MAX_POINTS {
            return Err(ApiError::invalid(
                "step",
                format!("more than {MAX_POINTS} points: narrow the time range or widen step"),
            ));
        }
        let raw = SampleQuery {
            asset_id: asset.asset_id,
            metric,
            family: query.family,
            from: from - chrono::Duration::seconds(range),
            to: to + chrono::Duration::microseconds(1),
            step_secs: None,
            aggregate: Aggregate::Last,
            max_points: MAX_POINTS,
        };
        let series = read_or_invalid(&state, &raw).await?;
        let (start, step_us) = (from.timestamp_micros(), step * 1_000_000);
        let series = series
            .into_iter()
            .map(|s| {
                let ends = (0..points).map(|k| start + k * step_us);
                let rates = rates_at(&s.ts_micros, &s.values, ends, range * 1_000_000, 1e6);
                let (mut timestamps, mut values) = (Vec::new(), Vec::new());
                for (k, rate) in rates.into_iter().enumerate() {
                    if let Some(rate) = rate {
                        timestamps.push((start + k as i64 * step_us) as f64 / 1e6);
                        values.push(rate);
                    }
                }
                SeriesOut {
                    metric: s.metric,
                    timestamps,
                    values,
                }
            })
            .collect();
        return Ok(Json(ReadAnswer {
            asset: name,
            from,
            to,
            step_secs: Some(step),
            series,
        }));
    }
    let sample_query = SampleQuery {
        asset_id: asset.asset_id,
        metric,
        family: query.family,
        from,
        to,
        step_secs,
        aggregate: query.agg.unwrap_or(Aggregate::Avg),
        max_points: MAX_POINTS,
    };
    let series = read_or_invalid(&state, &sample_query)
        .await?
        .into_iter()
        .map(|s| SeriesOut {
            metric: s.metric,
            timestamps: s.ts_micros.iter().map(|&t| t as f64 / 1e6).collect(),
            values: s.values,
        })
        .collect();
    Ok(Json(ReadAnswer {
        asset: name,
        from,
        to,
        step_secs,
        series,
    }))
}

/// Reads samples; too many points is the caller's to fix (400).
async fn read_or_invalid(
    state: &AppState,
    query: &SampleQuery,
) -> Result<Vec<crate::store::samples::SeriesPoints>, ApiError> {
    match state.store.read_samples(query).await {
        Ok(series) => Ok(series),
        Err(crate::store::Error::Constraint { constraint }) => {
            Err(ApiError::invalid("step", constraint))
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /v1/assets/{name}/series`: the asset's series, by key.
pub async fn series_list(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<SeriesList>, ApiError> {
    let asset = super::assets::named(&state, &name).await?;
    let series = state.store.list_series(asset.asset_id).await?;
    Ok(Json(SeriesList {
        asset: name,
        series,
    }))
}

/// Answer of `GET /v1/assets/{name}/series`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SeriesList {
    asset: String,
    series: Vec<crate::store::assets::SeriesInfo>,
}

/// Parses a duration parameter: plain seconds or a number with `s`, `m`, `h` or `d`.
fn parse_step(param: &str, text: &str) -> Result<i64, ApiError> {
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let multiplier = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => 0,
    };
    number
        .parse::<i64>()
        .ok()
        .map(|n| n * multiplier)
        .filter(|&secs| secs > 0)
        .ok_or_else(|| {
            ApiError::invalid(
                param,
                format!("{text:?} is not a duration such as 60, 30s, 5m, 1h or 1d"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_with_units() {
        assert_eq!(parse_step("step", "60").unwrap(), 60);
        assert_eq!(parse_step("step", "5m").unwrap(), 300);
        assert_eq!(parse_step("rate", "1d").unwrap(), 86_400);
        assert!(parse_step("step", "0").is_err());
        assert!(parse_step("step", "5w").is_err());
        assert!(parse_step("step", "soon").is_err());
    }

    #[test]
    fn timestamps_and_values_accept_every_documented_form() {
        let body: SamplesBody = serde_json::from_str(
            r#"{"series": [{"asset": "a", "metric": "m", "timestamps": [1700000000, 1700000000.5, "2023-11-14T22:13:20Z"], "values": [1, 2.5, "NaN"]}]}"#,
        )
        .unwrap();
        let ts: Vec<Option<i64>> = body.series[0].timestamps.iter().map(|t| t.0).collect();
        assert_eq!(
            ts,
            vec![
                Some(1_700_000_000_000_000),
                Some(1_700_000_000_500_000),
                Some(1_700_000_000_000_000)
            ]
        );
        assert!(body.series[0].values[2].0.is_nan());
    }
}
