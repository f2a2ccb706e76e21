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

/// Why a remote-write body is refused (all 4xx: Prometheus must not retry them).
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
        /// The most bytes a body may decompress to.
        limit: usize,
    },
    /// The request holds more series, labels or samples than one request may.
    #[error("the request holds more than {limit} {what} (remote_write.max_{what})")]
    TooMany {
        /// `series`, `labels` or `samples`.
        what: &'static str,
        /// The most one request may hold.
        limit: usize,
    },
    /// The decompressed body is not a `WriteRequest`.
    #[error("body is not a protobuf WriteRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// What one request may hold. Decoding allocates for every series, label and sample, and a
/// tiny encoded series becomes a struct of 48 bytes or more, so bytes alone do not bound
/// memory: the counts are checked on the wire before anything is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Most bytes the snappy block may decompress to.
    pub max_bytes: usize,
    /// Most series.
    pub max_series: usize,
    /// Most labels, over all series.
    pub max_labels: usize,
    /// Most samples, over all series.
    pub max_samples: usize,
}

/// Decompresses and decodes a request body, refusing one that inflates beyond
/// `limits.max_bytes` or holds more series, labels or samples than `limits` allow.
pub fn decode(body: &[u8], limits: &DecodeLimits) -> Result<WriteRequest, DecodeError> {
    let size = snap::raw::decompress_len(body)?;
    if size > limits.max_bytes {
        return Err(DecodeError::TooLarge {
            size,
            limit: limits.max_bytes,
        });
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body)?;
    check_counts(&raw, limits)?;
    Ok(<WriteRequest as prost::Message>::decode(raw.as_slice())?)
}

/// Counts the series of a `WriteRequest` and the labels and samples in them from the wire
/// format, without decoding, and refuses a request over `limits`. Malformed input is left
/// for the decoder to report.
fn check_counts(raw: &[u8], limits: &DecodeLimits) -> Result<(), DecodeError> {
    let (mut series, mut labels, mut samples) = (0usize, 0usize, 0usize);
    let too_many = |what, limit| Err(DecodeError::TooMany { what, limit });
    for (field, payload) in Fields(raw) {
        if field != 1 {
            continue;
        }
        series += 1;
        if series > limits.max_series {
            return too_many("series", limits.max_series);
        }
        for (field, _) in Fields(payload) {
            match field {
                1 => labels += 1,
                2 => samples += 1,
                _ => {}
            }
        }
        if labels > limits.max_labels {
            return too_many("labels", limits.max_labels);
        }
        if samples > limits.max_samples {
            return too_many("samples", limits.max_samples);
        }
    }
    Ok(())
}

/// The length-delimited fields of a protobuf message, as (field number, payload); other
/// wire types are stepped over. Iteration stops at the first malformed byte.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = (u64, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let key = varint(&mut self.0)?;
            let skip = match key & 7 {
                0 => {
                    varint(&mut self.0)?;
                    0
                }
                1 => 8,
                2 => {
                    let len = usize::try_from(varint(&mut self.0)?).ok()?;
                    let payload = self.0.get(..len)?;
                    self.0 = &self.0[len..];
                    return Some((key >> 3, payload));
                }
                5 => 4,
                _ => return None,
            };
            self.0 = self.0.get(skip..)?;
        }
    }
}

/// Reads one base-128 varint from the front of `buf`.
fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
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
            // PostgreSQL stores no NUL in jsonb: such a label is not kept (its samples are).
            let storable = !l.name.contains('\0') && !l.value.contains('\0');
            if storable && l.name != "__name__" && l.name != asset_label {
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

    /// Limits on bytes only.
    fn bytes(max_bytes: usize) -> DecodeLimits {
        DecodeLimits {
            max_bytes,
            max_series: usize::MAX,
            max_labels: usize::MAX,
            max_samples: usize::MAX,
        }
    }

    #[test]
    fn a_bomb_of_empty_series_is_refused_before_it_is_decoded() {
        // 8 MiB of `0a 00` (an empty TimeSeries, 2 bytes, 48 or more once decoded) compresses
        // to a few hundred KiB; decoded, it would take gigabytes.
        let raw = [0x0a, 0x00].repeat(4 << 20);
        let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
        let limits = DecodeLimits {
            max_series: 100_000,
            ..bytes(64 << 20)
        };
        match decode(&body, &limits) {
            Err(DecodeError::TooMany { what, limit }) => {
                assert_eq!((what, limit), ("series", 100_000))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn labels_and_samples_are_counted_over_all_series() {
        let body = snap::raw::Encoder::new()
            .compress_vec(&request().encode_to_vec())
            .unwrap();
        // The request holds 2 series, 4 labels and 3 samples.
        let exactly = DecodeLimits {
            max_bytes: 1 << 20,
            max_series: 2,
            max_labels: 4,
            max_samples: 3,
        };
        assert!(decode(&body, &exactly).is_ok());
        for (limits, over) in [
            (
                DecodeLimits {
                    max_series: 1,
                    ..exactly
                },
                "series",
            ),
            (
                DecodeLimits {
                    max_labels: 3,
                    ..exactly
                },
                "labels",
            ),
            (
                DecodeLimits {
                    max_samples: 2,
                    ..exactly
                },
                "samples",
            ),
        ] {
            match decode(&body, &limits) {
                Err(DecodeError::TooMany { what, .. }) => assert_eq!(what, over),
                other => panic!("{over}: {other:?}"),
            }
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
            decode(&body, &bytes(1 << 20)).unwrap().encode_to_vec(),
            request().encode_to_vec()
        );
    }

    #[test]
    fn corrupt_and_oversized_bodies_are_refused() {
        assert!(matches!(
            decode(b"\xff\xff\xff\xff\xff", &bytes(1 << 20)),
            Err(DecodeError::Snappy(_))
        ));
        let body = snap::raw::Encoder::new()
            .compress_vec(&request().encode_to_vec())
            .unwrap();
        assert!(matches!(
            decode(&body, &bytes(10)),
            Err(DecodeError::TooLarge { .. })
        ));
        let raw = request().encode_to_vec();
        let truncated = snap::raw::Encoder::new()
            .compress_vec(&raw[..raw.len() - 3])
            .unwrap();
        assert!(matches!(
            decode(&truncated, &bytes(1 << 20)),
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
    fn a_label_with_a_nul_byte_is_not_kept_but_its_samples_are() {
        let mut request = request();
        request.timeseries[0].labels.push(label("note", "a\0b"));
        request.timeseries[0].labels.push(label("z\0", "c"));
        let mut batch = batch();
        let (_, labels) = add_to_batch(&request, "instance", &mut batch).unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(
            labels["web-1:9100"],
            BTreeMap::from([("job".to_owned(), "node".to_owned())])
        );
    }

    #[test]
    fn the_asset_label_is_configurable() {
        let mut batch = batch();
        let (skipped, _) = add_to_batch(&request(), "job", &mut batch).unwrap();
        assert_eq!(batch.asset_names(), ["node"]);
        assert_eq!(skipped.unnamed, 1);
    }
}
