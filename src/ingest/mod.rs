//! Ingestion: samples named by asset and metric, from any source (the REST API, Prometheus
//! remote-write, CSV and Parquet files), checked against one set of rules and stored as one
//! atomic batch. Unknown assets and metrics are created on first sight.
//!
//! Sources build a [`NamedBatch`] with [`NamedBatch::push`], which rejects a non-finite
//! value, a timestamp out of bounds or a malformed name with an [`IngestError`] that says
//! where; [`store_batch`] resolves names to ids and writes the batch through `COPY`.

pub mod files;
pub mod remote_write;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::IngestSettings;
use crate::counters::{self, Counters};
use crate::store::samples::SampleColumns;
use crate::store::{self, Store};

pub use crate::vocab::{MAX_NAME_LEN, is_valid_name};

/// Why a sample or a batch was refused. `at` says where, in the source's own terms
/// (`series[2].values[7]`, `row 18`, `timeseries[0]`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestError {
    /// NaN or an infinity.
    #[error("{at}: {value} is not a finite number")]
    NonFinite {
        /// Where, in the source's own terms (`series[2].values[7]`, `row 18`, `timeseries[0]`).
        at: String,
        /// The value as text.
        value: String,
    },
    /// A timestamp before `ingest.min_timestamp` or too far in the future.
    #[error("{at}: timestamp {ts} is outside the accepted range {min} .. {max}")]
    TimestampOutOfRange {
        /// Where, in the source's own terms (`series[2].values[7]`, `row 18`, `timeseries[0]`).
        at: String,
        /// The timestamp as given.
        ts: String,
        /// Earliest accepted.
        min: DateTime<Utc>,
        /// Latest accepted.
        max: DateTime<Utc>,
    },
    /// A timestamp that cannot be read.
    #[error("{at}: {reason}")]
    BadTimestamp {
        /// Where, in the source's own terms (`series[2].values[7]`, `row 18`, `timeseries[0]`).
        at: String,
        /// Why, in words for people; clients branch on the code, never on this.
        reason: String,
    },
    /// A malformed asset or metric name.
    #[error(
        "{at}: {name:?} is not a valid {what} name: 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 _ . : / -, starting with a letter, digit or _"
    )]
    BadName {
        /// Where, in the source's own terms (`series[2].values[7]`, `row 18`, `timeseries[0]`).
        at: String,
        /// `asset` or `metric`.
        what: &'static str,
        name: String,
    },
    /// A columnar series whose timestamps and values differ in length.
    #[error("{at}: {timestamps} timestamps but {values} values")]
    LengthMismatch {
        /// Where, in the source's own terms (`series[2].values[7]`, `row 18`, `timeseries[0]`).
        at: String,
        /// Number of timestamps.
        timestamps: usize,
        /// Number of values.
        values: usize,
    },
    /// A required field is empty.
    #[error("{at}: {field} is missing")]
    Missing {
        /// Where, in the source's own terms (`series[2].values[7]`, `row 18`, `timeseries[0]`).
        at: String,
        field: &'static str,
    },
    /// A field's value is not acceptable.
    #[error("{at}: {reason}")]
    Invalid {
        /// Where, in the source's own terms (`series[2].values[7]`, `row 18`, `timeseries[0]`).
        at: String,
        /// Why, in words for people; clients branch on the code, never on this.
        reason: String,
    },
    /// More samples than `ingest.max_batch_samples`.
    #[error("the batch holds more than {max} samples; split it")]
    TooLarge {
        /// The limit.
        max: usize,
    },
}

impl IngestError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NonFinite { .. } => "non_finite_value",
            Self::TimestampOutOfRange { .. } => "timestamp_out_of_range",
            Self::BadTimestamp { .. } => "invalid_timestamp",
            Self::BadName { .. } => "invalid_name",
            Self::LengthMismatch { .. } => "length_mismatch",
            Self::Missing { .. } => "missing_field",
            Self::Invalid { .. } => "invalid_value",
            Self::TooLarge { .. } => "batch_too_large",
        }
    }
}

/// The accepted timestamp range, fixed when a batch starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Earliest accepted, microseconds since the Unix epoch.
    pub min_micros: i64,
    /// Latest accepted, microseconds since the Unix epoch.
    pub max_micros: i64,
    /// Most samples in one batch (REST and remote-write; files are not limited).
    pub max_batch_samples: usize,
}

impl Limits {
    /// Limits from config, relative to `now`.
    pub fn new(settings: &IngestSettings, now: DateTime<Utc>) -> Self {
        Self {
            min_micros: settings.min_timestamp.timestamp_micros(),
            max_micros: now
                .timestamp_micros()
                .saturating_add(settings.max_future_secs.saturating_mul(1_000_000)),
            max_batch_samples: settings.max_batch_samples,
        }
    }

    /// Refuses a timestamp outside the accepted range, naming the place with `at`.
    pub fn check_time(
        &self,
        ts_micros: i64,
        at: impl FnOnce() -> String,
    ) -> Result<(), IngestError> {
        if ts_micros < self.min_micros || ts_micros > self.max_micros {
            return Err(IngestError::TimestampOutOfRange {
                at: at(),
                ts: micros_to_string(ts_micros),
                min: DateTime::from_timestamp_micros(self.min_micros).unwrap_or_default(),
                max: DateTime::from_timestamp_micros(self.max_micros).unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// No batch size limit (for files, which are streamed).
    pub fn unbounded_batch(mut self) -> Self {
        self.max_batch_samples = usize::MAX;
        self
    }
}

/// Converts Unix seconds (possibly fractional) to microseconds, if representable.
pub fn seconds_to_micros(secs: f64) -> Option<i64> {
    let micros = (secs * 1e6).round();
    (micros.is_finite() && micros.abs() < 9.0e18).then_some(micros as i64)
}

fn micros_to_string(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .map_or_else(|| format!("{micros} us"), |t| t.to_rfc3339())
}

/// Samples named by asset and metric, with names interned: what every source builds.
#[derive(Debug, Clone)]
pub struct NamedBatch {
    limits: Limits,
    asset_names: Vec<String>,
    asset_index: HashMap<String, u32>,
    metric_names: Vec<String>,
    metric_index: HashMap<String, u32>,
    asset_idx: Vec<u32>,
    metric_idx: Vec<u32>,
    ts_micros: Vec<i64>,
    values: Vec<f64>,
}

impl NamedBatch {
    /// An empty batch that enforces `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            asset_names: Vec::new(),
            asset_index: HashMap::new(),
            metric_names: Vec::new(),
            metric_index: HashMap::new(),
            asset_idx: Vec::new(),
            metric_idx: Vec::new(),
            ts_micros: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Distinct asset names in the batch.
    pub fn asset_names(&self) -> &[String] {
        &self.asset_names
    }

    /// Distinct metric names in the batch.
    pub fn metric_names(&self) -> &[String] {
        &self.metric_names
    }

    /// Takes the batch apart into its columns.
    pub fn into_parts(self) -> BatchParts {
        BatchParts {
            assets: self.asset_names,
            metrics: self.metric_names,
            asset: self.asset_idx,
            metric: self.metric_idx,
            ts_micros: self.ts_micros,
            values: self.values,
        }
    }

    /// Each asset of the batch with its newest sample time (microseconds).
    pub fn latest_per_asset(&self) -> Vec<(String, i64)> {
        let mut latest = vec![i64::MIN; self.asset_names.len()];
        for (&a, &ts) in self.asset_idx.iter().zip(&self.ts_micros) {
            let slot = &mut latest[a as usize];
            *slot = (*slot).max(ts);
        }
        self.asset_names
            .iter()
            .cloned()
            .zip(latest)
            .filter(|(_, ts)| *ts > i64::MIN)
            .collect()
    }

    /// The earliest timestamp in the batch, microseconds since the Unix epoch.
    pub fn oldest_micros(&self) -> Option<i64> {
        self.ts_micros.iter().min().copied()
    }

    /// Reserves room for `n` more samples.
    pub fn reserve(&mut self, n: usize) {
        self.asset_idx.reserve(n);
        self.metric_idx.reserve(n);
        self.ts_micros.reserve(n);
        self.values.reserve(n);
    }

    /// Interns an asset name, checking it; returns its index in the batch.
    pub fn asset(&mut self, name: &str, at: impl FnOnce() -> String) -> Result<u32, IngestError> {
        intern(
            &mut self.asset_names,
            &mut self.asset_index,
            name,
            "asset",
            at,
        )
    }

    /// Interns a metric name or series key (`name{k="v",...}`, stored by its canonical
    /// text), checking it; returns its index in the batch.
    pub fn metric(&mut self, name: &str, at: impl FnOnce() -> String) -> Result<u32, IngestError> {
        if let Some(&idx) = self.metric_index.get(name) {
            return Ok(idx);
        }
        if name.contains('{') {
            let key = crate::vocab::SeriesKey::parse(name)
                .map_err(|reason| IngestError::Invalid { at: at(), reason })?;
            let idx = self.series(&key, String::new)?;
            self.metric_index.insert(name.to_owned(), idx);
            return Ok(idx);
        }
        intern(
            &mut self.metric_names,
            &mut self.metric_index,
            name,
            "metric",
            at,
        )
    }

    /// Interns a series key (already checked by [`crate::vocab::SeriesKey::checked`]);
    /// returns its index in the batch.
    pub fn series(
        &mut self,
        key: &crate::vocab::SeriesKey,
        at: impl FnOnce() -> String,
    ) -> Result<u32, IngestError> {
        if key.labels.is_empty() {
            return self.metric(&key.family, at);
        }
        if !is_valid_name(&key.family) {
            return Err(IngestError::BadName {
                at: at(),
                what: "metric",
                name: key.family.clone(),
            });
        }
        let text = key.key();
        if let Some(&idx) = self.metric_index.get(&text) {
            return Ok(idx);
        }
        let idx = self.metric_names.len() as u32;
        self.metric_names.push(text.clone());
        self.metric_index.insert(text, idx);
        Ok(idx)
    }

    /// Appends one sample after checking its value and timestamp.
    pub fn push(
        &mut self,
        asset: u32,
        metric: u32,
        ts_micros: i64,
        value: f64,
        at: impl FnOnce() -> String,
    ) -> Result<(), IngestError> {
        if !value.is_finite() {
            return Err(IngestError::NonFinite {
                at: at(),
                value: value.to_string(),
            });
        }
        self.limits.check_time(ts_micros, at)?;
        if self.values.len() >= self.limits.max_batch_samples {
            return Err(IngestError::TooLarge {
                max: self.limits.max_batch_samples,
            });
        }
        self.asset_idx.push(asset);
        self.metric_idx.push(metric);
        self.ts_micros.push(ts_micros);
        self.values.push(value);
        Ok(())
    }
}

/// The columns of a [`NamedBatch`]: sample i is asset `assets[asset[i]]`, metric
/// `metrics[metric[i]]`, at `ts_micros[i]`.
#[derive(Debug, Clone, Default)]
pub struct BatchParts {
    /// Distinct asset names.
    pub assets: Vec<String>,
    /// Distinct metric names.
    pub metrics: Vec<String>,
    /// Asset index of each sample.
    pub asset: Vec<u32>,
    /// Metric index of each sample.
    pub metric: Vec<u32>,
    /// Microseconds since the Unix epoch.
    pub ts_micros: Vec<i64>,
    pub values: Vec<f64>,
}

fn intern(
    names: &mut Vec<String>,
    index: &mut HashMap<String, u32>,
    name: &str,
    what: &'static str,
    at: impl FnOnce() -> String,
) -> Result<u32, IngestError> {
    if let Some(&idx) = index.get(name) {
        return Ok(idx);
    }
    if !is_valid_name(name) {
        return Err(IngestError::BadName {
            at: at(),
            what,
            name: name.to_owned(),
        });
    }
    let idx = names.len() as u32;
    names.push(name.to_owned());
    index.insert(name.to_owned(), idx);
    Ok(idx)
}

/// What storing a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct IngestReport {
    /// Samples in the batch.
    pub received: u64,
    /// Samples that were new (the rest were stored before).
    pub stored: u64,
    /// Distinct assets in the batch.
    pub assets: u64,
    /// Distinct metrics in the batch.
    pub metrics: u64,
}

/// Resolves the batch's names to ids (creating unknown assets and metrics) and stores it in
/// one transaction. `progress` gets the number of samples sent so far.
pub async fn store_batch(
    store: &Store,
    batch: NamedBatch,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<IngestReport, store::Error> {
    let received = batch.len() as u64;
    if batch.is_empty() {
        return Ok(IngestReport::default());
    }
    let asset_ids = store.resolve_asset_ids(&batch.asset_names).await?;
    let metric_ids = store.resolve_metric_ids(&batch.metric_names).await?;
    let asset_by_idx: Vec<i64> = batch.asset_names.iter().map(|n| asset_ids[n]).collect();
    let metric_by_idx: Vec<i32> = batch.metric_names.iter().map(|n| metric_ids[n]).collect();
    let columns = SampleColumns {
        asset_ids: batch
            .asset_idx
            .iter()
            .map(|&i| asset_by_idx[i as usize])
            .collect(),
        metric_ids: batch
            .metric_idx
            .iter()
            .map(|&i| metric_by_idx[i as usize])
            .collect(),
        ts_micros: batch.ts_micros,
        values: batch.values,
    };
    let stored = store
        .insert_samples_with_progress(&columns, progress)
        .await?;
    Ok(IngestReport {
        received,
        stored,
        assets: batch.asset_names.len() as u64,
        metrics: batch.metric_names.len() as u64,
    })
}

/// A batch made durable: each asset it touched, with its newest sample time in microseconds.
/// [`Ingestor::store`] publishes one after every commit, for scoring on ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    /// (asset name, newest sample time in microseconds), one entry per asset of the batch.
    pub assets: Vec<(String, i64)>,
}

/// Capacity of the queue of [`Ingested`] events; when it is full an event is dropped, never
/// waited for, so a slow watcher cannot slow ingestion.
pub const INGESTED_QUEUE: usize = 1024;

/// The one seam between ingestion and what follows it: stores a batch with [`store_batch`]
/// and then tells the watcher (if any) what became durable. Handlers call [`Ingestor::store`]
/// and so cannot forget to tell scoring.
#[derive(Debug, Clone)]
pub struct Ingestor {
    store: Store,
    watcher: Option<tokio::sync::mpsc::Sender<Ingested>>,
    counters: Arc<Counters>,
}

impl Ingestor {
    /// An ingestor that tells nobody (commands, and the app before it serves).
    pub fn new(store: Store, counters: Arc<Counters>) -> Self {
        Self {
            store,
            watcher: None,
            counters,
        }
    }

    /// An ingestor whose events arrive on the returned receiver; the receiver sees the end
    /// of the stream once every clone of the ingestor is gone.
    pub fn watched(
        store: Store,
        counters: Arc<Counters>,
    ) -> (Self, tokio::sync::mpsc::Receiver<Ingested>) {
        let (tx, rx) = tokio::sync::mpsc::channel(INGESTED_QUEUE);
        (
            Self {
                store,
                watcher: Some(tx),
                counters,
            },
            rx,
        )
    }

    /// Stores `batch` whole or not at all, then publishes its [`Ingested`] event without
    /// waiting (a full queue drops the event: the asset is scored with its next batch).
    pub async fn store(&self, batch: NamedBatch) -> Result<IngestReport, store::Error> {
        let assets = batch.latest_per_asset();
        let report = store_batch(&self.store, batch, &mut |_| {}).await?;
        counters::add(&self.counters.samples_received, report.received);
        counters::add(&self.counters.samples_stored, report.stored);
        if let Some(tx) = &self.watcher
            && !assets.is_empty()
            && tx.try_send(Ingested { assets }).is_err()
        {
            tracing::debug!("ingest watcher busy: batch not announced");
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::new(
            &IngestSettings::default(),
            DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        )
    }

    #[test]
    fn prometheus_style_names_are_accepted_and_odd_ones_refused() {
        for name in [
            "web-01",
            "host-1:9100",
            "node_memory_bytes",
            "pump/7",
            "a",
            "_up",
        ] {
            assert!(is_valid_name(name), "{name}");
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        for name in ["", "-lead", "with space", "semi;colon", "é", long.as_str()] {
            assert!(!is_valid_name(name), "{name}");
        }
    }

    #[test]
    fn non_finite_value_is_refused_with_its_place() {
        let mut batch = NamedBatch::new(limits());
        let a = batch.asset("web-01", || "x".into()).unwrap();
        let m = batch.metric("cpu", || "x".into()).unwrap();
        let err = batch
            .push(a, m, 1_700_000_000_000_000, f64::NAN, || "values[3]".into())
            .unwrap_err();
        assert_eq!(err.code(), "non_finite_value");
        assert!(err.to_string().starts_with("values[3]"));
        assert!(
            batch
                .push(a, m, 1_700_000_000_000_000, f64::NEG_INFINITY, String::new)
                .is_err()
        );
        assert!(batch.is_empty());
    }

    #[test]
    fn timestamps_outside_the_range_are_refused() {
        let mut batch = NamedBatch::new(limits());
        let a = batch.asset("web-01", String::new).unwrap();
        let m = batch.metric("cpu", String::new).unwrap();
        let too_old = batch.push(a, m, 0, 1.0, String::new).unwrap_err();
        assert_eq!(too_old.code(), "timestamp_out_of_range");
        let future = 1_800_000_000_000_000 + 86_401 * 1_000_000;
        assert!(batch.push(a, m, future, 1.0, String::new).is_err());
        assert!(
            batch
                .push(a, m, 1_800_000_000_000_000, 1.0, String::new)
                .is_ok()
        );
    }

    #[test]
    fn the_batch_size_limit_holds() {
        let mut limits = limits();
        limits.max_batch_samples = 2;
        let mut batch = NamedBatch::new(limits);
        let a = batch.asset("a", String::new).unwrap();
        let m = batch.metric("m", String::new).unwrap();
        batch
            .push(a, m, 1_700_000_000_000_000, 1.0, String::new)
            .unwrap();
        batch
            .push(a, m, 1_700_000_000_000_001, 1.0, String::new)
            .unwrap();
        let err = batch
            .push(a, m, 1_700_000_000_000_002, 1.0, String::new)
            .unwrap_err();
        assert_eq!(err, IngestError::TooLarge { max: 2 });
    }

    #[test]
    fn names_are_interned_once() {
        let mut batch = NamedBatch::new(limits());
        assert_eq!(batch.asset("a", String::new).unwrap(), 0);
        assert_eq!(batch.asset("b", String::new).unwrap(), 1);
        assert_eq!(batch.asset("a", String::new).unwrap(), 0);
        assert_eq!(batch.asset_names(), ["a", "b"]);
        assert!(batch.metric("bad name", String::new).is_err());
    }

    #[test]
    fn seconds_convert_to_microseconds() {
        assert_eq!(seconds_to_micros(1.5), Some(1_500_000));
        assert_eq!(seconds_to_micros(f64::NAN), None);
        assert_eq!(seconds_to_micros(1e300), None);
    }
}
