//! Prometheus remote-write 1.0: the `WriteRequest` messages (prost derives, no protoc), the
//! snappy block decoding, and the mapping of time series to Vigil's samples.
//!
//! The configured label (default `instance`) or template names the asset; the
//! asset-describing labels (default `job`, `namespace`) go on the asset; `__name__` and the
//! remaining labels make the series key (`node_cpu_seconds_total{cpu="0",mode="idle"}`),
//! stored as one metric of the dictionary. Metadata gives families their type (counters
//! become rates where models see them). What Vigil cannot store is skipped and counted
//! rather than failing the request (a 4xx makes Prometheus drop the whole batch, good
//! series included): staleness markers and other NaN or infinite values, series without a
//! metric name or an asset label, series over the label limits, exemplars, native
//! histograms and metadata of unknown types.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{IngestError, NamedBatch};

/// `WriteRequest` of remote-write 1.0 (`prompb/remote.proto`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Metadata of metric families (Prometheus sends it in requests of its own).
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `MetricMetadata`: a family's type, help and unit.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    /// 0 unknown, 1 counter, 2 gauge, 3 histogram, 4 gauge histogram, 5 summary, 6 info,
    /// 7 stateset.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// The family's name.
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// Help text.
    #[prost(string, tag = "4")]
    pub help: String,
    /// Unit.
    #[prost(string, tag = "5")]
    pub unit: String,
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
    /// Exemplars, kept undecoded: counted, not stored.
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub exemplars: Vec<Vec<u8>>,
    /// Native histograms, kept undecoded: counted, not stored.
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub histograms: Vec<Vec<u8>>,
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

/// Samples skipped from a request, by reason, and other parts of it Vigil does not store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// NaN (including Prometheus staleness markers) or infinite values.
    pub non_finite: u64,
    /// Samples of series without `__name__` or without the asset label (or a label the
    /// asset template names).
    pub unnamed: u64,
    /// Samples of series over the label-count or key-length limits, or with a label name
    /// or value Vigil cannot store (a NUL byte).
    pub invalid_series: u64,
    /// Exemplars (not stored).
    pub exemplars: u64,
    /// Native histogram samples (not stored).
    pub histograms: u64,
    /// Metadata entries of a type Vigil does not know.
    pub unknown_metadata: u64,
}

impl Skipped {
    /// Samples skipped (exemplars, histograms and metadata are not samples).
    pub fn samples(&self) -> u64 {
        self.non_finite + self.unnamed + self.invalid_series
    }
}

/// Labels to keep on each asset (the configured asset-describing labels), first value wins.
pub type AssetLabels = BTreeMap<String, BTreeMap<String, String>>;

/// How series labels map to assets and series.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// How an asset's name is made from a series' labels.
    pub asset: AssetName,
    /// Labels that describe the asset: kept on the asset, not on the series.
    pub asset_labels: Vec<String>,
}

/// How an asset's name is made from a series' labels.
#[derive(Debug, Clone, PartialEq)]
pub enum AssetName {
    /// The value of one label, with `:port` cut off when `drop_port`.
    Label {
        /// The label (`instance`).
        name: String,
        /// Cut a trailing `:digits` (`host:9100` -> `host`).
        drop_port: bool,
    },
    /// A template such as `{job}/{instance}`: literal text and label values.
    Template(Vec<TemplatePart>),
}

/// A piece of an asset-name template.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplatePart {
    /// Text as written.
    Text(String),
    /// The value of this label.
    Label(String),
}

impl AssetName {
    /// Reads a template: `{label}` is replaced by the label's value, the rest is kept.
    pub fn template(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(TemplatePart::Text(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("{text:?}: a {{ without its }}"))?;
            let label = &rest[open + 1..open + close];
            if !crate::vocab::is_label_name(label) {
                return Err(format!("{text:?}: {label:?} is not a label name"));
            }
            parts.push(TemplatePart::Label(label.to_owned()));
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Text(rest.to_owned()));
        }
        if !parts.iter().any(|p| matches!(p, TemplatePart::Label(_))) {
            return Err(format!("{text:?}: the template names no label"));
        }
        Ok(Self::Template(parts))
    }

    /// True when the label goes into the asset's name (so not into the series key).
    fn uses(&self, label: &str) -> bool {
        match self {
            Self::Label { name, .. } => name == label,
            Self::Template(parts) => parts
                .iter()
                .any(|p| matches!(p, TemplatePart::Label(l) if l == label)),
        }
    }

    /// The asset's name from a series' labels; `None` when a label it needs is missing.
    fn name<'a>(
        &self,
        label: impl Fn(&str) -> Option<&'a str>,
    ) -> Option<std::borrow::Cow<'a, str>> {
        match self {
            Self::Label { name, drop_port } => {
                let value = label(name)?;
                Some(std::borrow::Cow::Borrowed(if *drop_port {
                    without_port(value)
                } else {
                    value
                }))
            }
            Self::Template(parts) => {
                let mut out = String::new();
                for part in parts {
                    match part {
                        TemplatePart::Text(t) => out.push_str(t),
                        TemplatePart::Label(l) => out.push_str(label(l)?),
                    }
                }
                Some(std::borrow::Cow::Owned(out))
            }
        }
    }
}

/// `host:9100` -> `host`, `[::1]:9100` -> `[::1]`; anything else as it is.
fn without_port(value: &str) -> &str {
    match value.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty()
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            host
        }
        _ => value,
    }
}

impl Mapping {
    /// The mapping the settings describe.
    pub fn from_settings(settings: &crate::config::RemoteWriteSettings) -> Result<Self, String> {
        let asset = match &settings.asset_template {
            Some(template) => AssetName::template(template)?,
            None => AssetName::Label {
                name: settings.asset_label.clone(),
                drop_port: settings.drop_port,
            },
        };
        Ok(Self {
            asset,
            asset_labels: settings.asset_labels.clone(),
        })
    }

    /// The default mapping: asset from `instance`, port kept, `job` and `namespace` on the
    /// asset (the unit tests' mapping).
    #[cfg(test)]
    pub fn instance() -> Self {
        Self::from_settings(&crate::config::RemoteWriteSettings::default())
            .expect("the default settings are valid")
    }
}

/// Adds a request's series to `batch`, each stored as (asset, series key) where the key is
/// the metric name with the labels left once the asset's name and the asset-describing
/// labels are taken out; returns what was skipped and the labels per asset. A malformed
/// asset name or an out-of-range timestamp refuses the request; a series Vigil cannot key
/// (too many labels, too long, a NUL byte) is skipped and counted, so that the rest of the
/// batch is stored (Prometheus drops a whole batch on a 4xx).
pub fn add_to_batch(
    request: &WriteRequest,
    mapping: &Mapping,
    batch: &mut NamedBatch,
) -> Result<(Skipped, AssetLabels), IngestError> {
    let mut skipped = Skipped::default();
    let mut labels_by_asset = AssetLabels::new();
    let total: usize = request.timeseries.iter().map(|s| s.samples.len()).sum();
    batch.reserve(total);
    for (series_idx, series) in request.timeseries.iter().enumerate() {
        skipped.exemplars += series.exemplars.len() as u64;
        skipped.histograms += series.histograms.len() as u64;
        let label = |name: &str| {
            series
                .labels
                .iter()
                .find(|l| l.name == name)
                .map(|l| l.value.as_str())
        };
        let (Some(metric), Some(asset)) = (label("__name__"), mapping.asset.name(label)) else {
            skipped.unnamed += series.samples.len() as u64;
            continue;
        };
        let mut key = crate::vocab::SeriesKey::plain(metric);
        let mut describing = Vec::new();
        let mut keyable = true;
        for l in &series.labels {
            if l.name == "__name__" || mapping.asset.uses(&l.name) {
                continue;
            }
            if mapping.asset_labels.contains(&l.name) {
                // PostgreSQL stores no NUL in jsonb: such a label is not kept.
                if !l.value.contains('\0') {
                    describing.push(l);
                }
            } else if key.insert(&l.name, l.value.clone()).is_err() {
                keyable = false;
            }
        }
        let at = || format!("timeseries[{series_idx}]");
        let metric_idx = match keyable.then(|| key.checked()) {
            Some(Ok(key)) => batch.series(&key, at)?,
            _ => {
                skipped.invalid_series += series.samples.len() as u64;
                continue;
            }
        };
        let asset_idx = batch.asset(&asset, at)?;
        if !describing.is_empty() {
            let kept = labels_by_asset.entry(asset.into_owned()).or_default();
            for l in describing {
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

/// The metric types of remote-write metadata, by family, as stored in `metric_family`;
/// entries of a type number Vigil does not know are counted in `skipped`.
pub fn metadata_types(
    request: &WriteRequest,
    skipped: &mut Skipped,
) -> BTreeMap<String, MetricMeta> {
    let mut types = BTreeMap::new();
    for m in &request.metadata {
        let kind = match m.r#type {
            0 => "unknown",
            1 => "counter",
            2 => "gauge",
            3 => "histogram",
            4 => "gaugehistogram",
            5 => "summary",
            6 => "info",
            7 => "stateset",
            _ => {
                skipped.unknown_metadata += 1;
                continue;
            }
        };
        if !crate::vocab::is_valid_name(&m.metric_family_name) {
            skipped.unknown_metadata += 1;
            continue;
        }
        let clean = |t: &str| (!t.is_empty() && !t.contains('\0')).then(|| t.to_owned());
        types.insert(
            m.metric_family_name.clone(),
            MetricMeta {
                kind,
                help: clean(&m.help),
                unit: clean(&m.unit),
            },
        );
    }
    types
}

pub use crate::vocab::FamilyMeta as MetricMeta;

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
                    ..TimeSeries::default()
                },
                TimeSeries {
                    labels: vec![label("__name__", "scrape_duration_seconds")],
                    samples: vec![Sample {
                        value: 0.1,
                        timestamp: 1_700_000_000_000,
                    }],
                    ..TimeSeries::default()
                },
            ],
            ..WriteRequest::default()
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
        let (skipped, labels) = add_to_batch(&request(), &Mapping::instance(), &mut batch).unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(
            skipped,
            Skipped {
                non_finite: 1,
                unnamed: 1,
                ..Skipped::default()
            }
        );
        assert_eq!(labels["web-1:9100"]["job"], "node");
        assert_eq!(batch.metric_names(), ["up"]);
    }

    fn cpu_series(cpu: &str, mode: &str, value: f64) -> TimeSeries {
        TimeSeries {
            labels: vec![
                label("__name__", "node_cpu_seconds_total"),
                label("cpu", cpu),
                label("instance", "web-1:9100"),
                label("job", "node"),
                label("mode", mode),
            ],
            samples: vec![Sample {
                value,
                timestamp: 1_700_000_000_000,
            }],
            ..TimeSeries::default()
        }
    }

    #[test]
    fn each_labelled_series_is_its_own_metric_and_the_asset_keeps_only_its_labels() {
        let request = WriteRequest {
            timeseries: vec![
                cpu_series("0", "idle", 10.0),
                cpu_series("0", "user", 2.0),
                cpu_series("1", "idle", 11.0),
            ],
            ..WriteRequest::default()
        };
        let mut batch = batch();
        let (skipped, labels) = add_to_batch(&request, &Mapping::instance(), &mut batch).unwrap();
        assert_eq!(skipped, Skipped::default());
        assert_eq!(batch.len(), 3);
        assert_eq!(
            batch.metric_names(),
            [
                r#"node_cpu_seconds_total{cpu="0",mode="idle"}"#,
                r#"node_cpu_seconds_total{cpu="0",mode="user"}"#,
                r#"node_cpu_seconds_total{cpu="1",mode="idle"}"#,
            ]
        );
        assert_eq!(
            labels["web-1:9100"],
            BTreeMap::from([("job".to_owned(), "node".to_owned())])
        );
    }

    #[test]
    fn the_asset_name_can_drop_the_port_or_follow_a_template() {
        let request = WriteRequest {
            timeseries: vec![cpu_series("0", "idle", 1.0)],
            ..WriteRequest::default()
        };
        let dropped = Mapping {
            asset: AssetName::Label {
                name: "instance".into(),
                drop_port: true,
            },
            asset_labels: vec![],
        };
        let mut b = batch();
        add_to_batch(&request, &dropped, &mut b).unwrap();
        assert_eq!(b.asset_names(), ["web-1"]);
        // `job` is not an asset label here, so it stays on the series.
        assert_eq!(
            b.metric_names(),
            [r#"node_cpu_seconds_total{cpu="0",job="node",mode="idle"}"#]
        );
        let templated = Mapping {
            asset: AssetName::template("{job}/{instance}").unwrap(),
            asset_labels: vec![],
        };
        let mut b = batch();
        add_to_batch(&request, &templated, &mut b).unwrap();
        assert_eq!(b.asset_names(), ["node/web-1:9100"]);
        assert_eq!(
            b.metric_names(),
            [r#"node_cpu_seconds_total{cpu="0",mode="idle"}"#]
        );
        for (value, host) in [
            ("h:9100", "h"),
            ("[::1]:9100", "[::1]"),
            ("h", "h"),
            ("::1", "::1"),
            ("h:", "h:"),
        ] {
            assert_eq!(without_port(value), host, "{value}");
        }
        assert!(AssetName::template("{job").is_err());
        assert!(AssetName::template("fixed").is_err());
        assert!(AssetName::template("{1x}").is_err());
    }

    #[test]
    fn series_that_cannot_be_keyed_exemplars_histograms_and_odd_metadata_are_counted() {
        let mut request = request();
        request.timeseries[0].labels.push(label("note", "a\0b"));
        let mut crowded = cpu_series("0", "idle", 1.0);
        for i in 0..=crate::vocab::MAX_SERIES_LABELS {
            crowded.labels.push(label(&format!("l{i}"), "v"));
        }
        let mut fine = cpu_series("1", "idle", 1.0);
        fine.exemplars = vec![vec![1, 2, 3]];
        fine.histograms = vec![vec![], vec![8]];
        request.timeseries.push(crowded);
        request.timeseries.push(fine);
        request.metadata = vec![
            MetricMetadata {
                r#type: 1,
                metric_family_name: "node_cpu_seconds_total".into(),
                help: "Seconds the CPUs spent in each mode.".into(),
                unit: String::new(),
            },
            MetricMetadata {
                r#type: 42,
                metric_family_name: "odd".into(),
                ..MetricMetadata::default()
            },
        ];
        // Through the wire format, as Prometheus sends it.
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap();
        let request = decode(&body, &bytes(1 << 20)).unwrap();
        let mut batch = batch();
        let (mut skipped, _) = add_to_batch(&request, &Mapping::instance(), &mut batch).unwrap();
        let families = metadata_types(&request, &mut skipped);
        assert_eq!(batch.len(), 1, "only the fine series is stored");
        assert_eq!(
            skipped,
            Skipped {
                non_finite: 0,
                unnamed: 1,
                invalid_series: 3,
                exemplars: 1,
                histograms: 2,
                unknown_metadata: 1,
            }
        );
        assert_eq!(families["node_cpu_seconds_total"].kind, "counter");
        assert_eq!(families.len(), 1);
    }

    #[test]
    fn the_asset_label_is_configurable() {
        let mapping = Mapping {
            asset: AssetName::Label {
                name: "job".into(),
                drop_port: false,
            },
            asset_labels: vec![],
        };
        let mut batch = batch();
        let (skipped, _) = add_to_batch(&request(), &mapping, &mut batch).unwrap();
        assert_eq!(batch.asset_names(), ["node"]);
        assert_eq!(batch.metric_names(), [r#"up{instance="web-1:9100"}"#]);
        assert_eq!(skipped.unnamed, 1);
    }
}
