//! Prometheus remote-write 1.0: the `WriteRequest` messages (prost derives, no protoc), the
//! snappy block decoding, and the mapping of time series to Vigil's samples.
//!
//! `__name__` is the metric, the configured label (default `instance`) names the asset, and
//! the other labels are kept on the asset. Samples Prometheus sends that Vigil cannot store
//! are skipped and counted rather than failing the request (a 4xx makes Prometheus drop the
//! whole batch, good series included): staleness markers and other NaN or infinite values,
//! and series without a metric name or an asset label.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{IngestError, NamedBatch};

/// `WriteRequest` of remote-write 1.0 (`prompb/remote.proto`). Metadata (field 3) is skipped.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// One series: its labels (including `__name__`) and its samples.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels, sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// A label pair.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// A sample: value and time in milliseconds since the Unix epoch.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// Value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Why a remote-write body is refused (all 400: Prometheus must not retry them).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body is not a snappy block.
    #[error("body is not valid snappy (block format): {0}")]
    Snappy(#[from] snap::Error),
    /// The decompressed body would exceed the limit.
    #[error("decompressed body of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Declared decompressed size.
        size: usize,
        limit: usize,
    },
    /// The decompressed body is not a `WriteRequest`.
    #[error("body is not a protobuf WriteRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// Decompresses and decodes a request body, refusing one that inflates beyond `limit`.
pub fn decode(body: &[u8], limit: usize) -> Result<WriteRequest, DecodeError> {
    let size = snap::raw::decompress_len(body)?;
    if size > limit {
        return Err(DecodeError::TooLarge { size, limit });
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body)?;
    Ok(<WriteRequest as prost::Message>::decode(raw.as_slice())?)
}

/// Samples skipped from a request, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// NaN (including Prometheus staleness markers) or infinite values.
    pub non_finite: u64,
    /// Samples of series without `__name__` or without the asset label.
    pub unnamed: u64,
}

/// Labels to keep on each asset: all but `__name__` and the asset label, first value wins.
pub type AssetLabels = BTreeMap<String, BTreeMap<String, String>>;

/// Adds a request's series to `batch`; returns what was skipped and the labels per asset.
/// A malformed name or an out-of-range timestamp refuses the request.
pub fn add_to_batch(
    request: &WriteRequest,
    asset_label: &str,
    batch: &mut NamedBatch,
) -> Result<(Skipped, AssetLabels), IngestError> {
    let mut skipped = Skipped::default();
    let mut labels_by_asset = AssetLabels::new();
    let total: usize = request.timeseries.iter().map(|s| s.samples.len()).sum();
    batch.reserve(total);
    for (series_idx, series) in request.timeseries.iter().enumerate() {
        let label = |name: &str| {
            series
                .labels
                .iter()
                .find(|l| l.name == name)
                .map(|l| l.value.as_str())
        };
        let (Some(metric), Some(asset)) = (label("__name__"), label(asset_label)) else {
            skipped.unnamed += series.samples.len() as u64;
            continue;
        };
        let at = || format!("timeseries[{series_idx}]");
        let asset_idx = batch.asset(asset, at)?;
        let metric_idx = batch.metric(metric, at)?;
        let kept = labels_by_asset.entry(asset.to_owned()).or_default();
        for l in &series.labels {
            if l.name != "__name__" && l.name != asset_label {
                kept.entry(l.name.clone())
                    .or_insert_with(|| l.value.clone());
            }
        }
        for (sample_idx, sample) in series.samples.iter().enumerate() {
            if !sample.value.is_finite() {
                skipped.non_finite += 1;
                continue;
            }
            let ts_micros = sample.timestamp.saturating_mul(1000);
            batch.push(asset_idx, metric_idx, ts_micros, sample.value, || {
                format!("timeseries[{series_idx}].samples[{sample_idx}]")
            })?;
        }
    }
    Ok((skipped, labels_by_asset))
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::config::IngestSettings;
    use crate::ingest::Limits;

    fn label(name: &str, value: &str) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    fn request() -> WriteRequest {
        WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![
                        label("__name__", "up"),
                        label("instance", "web-1:9100"),
                        label("job", "node"),
                    ],
                    samples: vec![
                        Sample {
                            value: 1.0,
                            timestamp: 1_700_000_000_000,
                        },
                        // Prometheus' staleness marker.
                        Sample {
                            value: f64::from_bits(0x7ff0_0000_0000_0002),
                            timestamp: 1_700_000_015_000,
                        },
                    ],
                },
                TimeSeries {
                    labels: vec![label("__name__", "scrape_duration_seconds")],
                    samples: vec![Sample {
                        value: 0.1,
                        timestamp: 1_700_000_000_000,
                    }],
                },
            ],
        }
    }

    fn batch() -> NamedBatch {
        let now = chrono::DateTime::from_timestamp(1_700_000_100, 0).unwrap();
        NamedBatch::new(Limits::new(&IngestSettings::default(), now))
    }

    #[test]
    fn a_snappy_protobuf_body_round_trips() {
        let body = snap::raw::Encoder::new()
            .compress_vec(&request().encode_to_vec())
            .unwrap();
        // Compared as bytes: the staleness marker is a NaN, which is not equal to itself.
        assert_eq!(
            decode(&body, 1 << 20).unwrap().encode_to_vec(),
            request().encode_to_vec()
        );
    }

    #[test]
    fn corrupt_and_oversized_bodies_are_refused() {
        assert!(matches!(
            decode(b"\xff\xff\xff\xff\xff", 1 << 20),
            Err(DecodeError::Snappy(_))
        ));
        let body = snap::raw::Encoder::new()
            .compress_vec(&request().encode_to_vec())
            .unwrap();
        assert!(matches!(
            decode(&body, 10),
            Err(DecodeError::TooLarge { .. })
        ));
        let raw = request().encode_to_vec();
        let truncated = snap::raw::Encoder::new()
            .compress_vec(&raw[..raw.len() - 3])
            .unwrap();
        assert!(matches!(
            decode(&truncated, 1 << 20),
            Err(DecodeError::Protobuf(_))
        ));
    }

    #[test]
    fn stale_markers_and_unnamed_series_are_skipped_and_labels_kept() {
        let mut batch = batch();
        let (skipped, labels) = add_to_batch(&request(), "instance", &mut batch).unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(
            skipped,
            Skipped {
                non_finite: 1,
                unnamed: 1
            }
        );
        assert_eq!(labels["web-1:9100"]["job"], "node");
        assert_eq!(batch.metric_names(), ["up"]);
    }

    #[test]
    fn the_asset_label_is_configurable() {
        let mut batch = batch();
        let (skipped, _) = add_to_batch(&request(), "job", &mut batch).unwrap();
        assert_eq!(batch.asset_names(), ["node"]);
        assert_eq!(skipped.unnamed, 1);
    }
}
