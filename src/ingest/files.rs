//! CSV and Parquet files read with polars: samples in long form (`asset,metric,ts,value`) or
//! wide form (`asset,ts` and one numeric column per metric), and incidents
//! (`asset,kind,started_at` plus optional `severity,detected_at,resolved_at,root_cause`).
//!
//! Timestamps may be Unix seconds (integer or fractional), RFC 3339 strings
//! (`2024-01-01T00:00:00Z`), `YYYY-MM-DD HH:MM:SS[.f]` strings taken as UTC, or Parquet
//! datetimes. Every bad row is reported with its number and reason, not only the first.

use std::path::Path;

use chrono::{DateTime, NaiveDateTime};
use polars::prelude::*;

use super::{IngestError, NamedBatch, seconds_to_micros};

/// Reasons a file cannot be read at all (as opposed to single bad rows).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Not `.csv` or `.parquet`.
    #[error("{0}: unknown file type; use a .csv or .parquet file")]
    UnknownFormat(String),
    /// A required column is missing or has the wrong type.
    #[error("{path}: {reason}")]
    Columns {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// polars could not read or write the file.
    #[error("{path}: {source}")]
    Polars {
        /// The file.
        path: String,
        /// The cause.
        source: PolarsError,
    },
    /// Reading from the database failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// The file cannot be opened or created.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Layout of a samples file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// `metric` and `value` columns present: long; otherwise wide.
    Auto,
    /// One row per sample: `asset,metric,ts,value`.
    Long,
    /// One row per asset and time, one numeric column per metric: `asset,ts,<metric>...`.
    Wide,
}

/// Bad rows of a file: each with its 1-based row number (header excluded) and reason.
#[derive(Debug, Default)]
pub struct Rejections {
    /// Up to [`Rejections::KEEP`] rejected rows, in file order.
    pub rows: Vec<IngestError>,
    /// How many rows were rejected in all.
    pub count: u64,
}

impl Rejections {
    /// How many rejected rows are kept with their reason.
    pub const KEEP: usize = 20;

    fn add(&mut self, error: IngestError) {
        self.count += 1;
        if self.rows.len() < Self::KEEP {
            self.rows.push(error);
        }
    }
}

fn polars_err(path: &Path) -> impl FnOnce(PolarsError) -> FileError + '_ {
    move |source| FileError::Polars {
        path: path.display().to_string(),
        source,
    }
}

fn columns_err(path: &Path, reason: impl Into<String>) -> FileError {
    FileError::Columns {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Reads a whole CSV or Parquet file into a data frame.
pub fn read_frame(path: &Path) -> Result<DataFrame, FileError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "csv" => CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(10_000))
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .map_err(polars_err(path))?
            .finish()
            .map_err(polars_err(path)),
        "parquet" | "pq" => {
            let file = std::fs::File::open(path).map_err(|source| FileError::Io {
                path: path.display().to_string(),
                source,
            })?;
            ParquetReader::new(file).finish().map_err(polars_err(path))
        }
        _ => Err(FileError::UnknownFormat(path.display().to_string())),
    }
}

/// Writes a data frame as Parquet.
pub fn write_parquet(path: &Path, frame: &mut DataFrame) -> Result<(), FileError> {
    let file = std::fs::File::create(path).map_err(|source| FileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    ParquetWriter::new(file)
        .finish(frame)
        .map_err(polars_err(path))?;
    Ok(())
}

fn column<'a>(frame: &'a DataFrame, path: &Path, names: &[&str]) -> Result<&'a Column, FileError> {
    names
        .iter()
        .find_map(|name| frame.column(name).ok())
        .ok_or_else(|| {
            columns_err(
                path,
                format!(
                    "missing column {:?} (columns: {:?})",
                    names[0],
                    frame.get_column_names()
                ),
            )
        })
}

fn strings(column: &Column, path: &Path) -> Result<StringChunked, FileError> {
    let cast = column.cast(&DataType::String).map_err(polars_err(path))?;
    Ok(cast.str().map_err(polars_err(path))?.clone())
}

fn floats(column: &Column, path: &Path) -> Result<Float64Chunked, FileError> {
    let cast = column.cast(&DataType::Float64).map_err(|_| {
        columns_err(
            path,
            format!("column {:?} is not numeric", column.name().as_str()),
        )
    })?;
    Ok(cast.f64().map_err(polars_err(path))?.clone())
}

/// Parses a timestamp string: RFC 3339, or `YYYY-MM-DD HH:MM:SS[.f]` / `...T...` as UTC, or
/// Unix seconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    text.parse::<f64>().ok().and_then(seconds_to_micros)
}

/// A column's timestamps in microseconds since the Unix epoch; `None` where missing or
/// unreadable.
enum Timestamps {
    /// Whole Unix seconds, the usual case: converted as they are read (exact, without going
    /// through floats, and without a copy of the column).
    Seconds(Int64Chunked),
    /// Converted when the column was read.
    Micros(Vec<Option<i64>>),
}

impl Timestamps {
    fn iter(&self) -> Box<dyn Iterator<Item = Option<i64>> + '_> {
        match self {
            Self::Seconds(secs) => Box::new(
                secs.iter()
                    .map(|v| v.and_then(|secs| secs.checked_mul(1_000_000))),
            ),
            Self::Micros(micros) => Box::new(micros.iter().copied()),
        }
    }
}

/// Reads a column's timestamps: Unix seconds, RFC 3339 strings or datetimes.
fn timestamps(column: &Column, path: &Path) -> Result<Timestamps, FileError> {
    let micros = match column.dtype() {
        DataType::Int64 => {
            return Ok(Timestamps::Seconds(
                column.i64().map_err(polars_err(path))?.clone(),
            ));
        }
        DataType::String => column
            .str()
            .map_err(polars_err(path))?
            .iter()
            .map(|v| v.and_then(parse_timestamp))
            .collect(),
        DataType::Datetime(unit, _) => {
            let scale = match unit {
                TimeUnit::Nanoseconds => 0.001,
                TimeUnit::Microseconds => 1.0,
                TimeUnit::Milliseconds => 1000.0,
            };
            let raw = column.cast(&DataType::Int64).map_err(polars_err(path))?;
            raw.i64()
                .map_err(polars_err(path))?
                .iter()
                .map(|v| v.map(|v| (v as f64 * scale).round() as i64))
                .collect()
        }
        dtype if dtype.is_primitive_numeric() => floats(column, path)?
            .iter()
            .map(|v| v.and_then(seconds_to_micros))
            .collect(),
        other => {
            return Err(columns_err(
                path,
                format!(
                    "column {:?} has type {other}; timestamps are Unix seconds, RFC 3339 strings or datetimes",
                    column.name().as_str()
                ),
            ));
        }
    };
    Ok(Timestamps::Micros(micros))
}

fn row_at(row: usize) -> impl Fn() -> String {
    move || format!("row {}", row + 1)
}

/// Reads samples from a file into `batch`; bad rows go to the returned [`Rejections`].
/// Returns the number of data rows read and the rejections.
pub fn read_samples(
    path: &Path,
    layout: Layout,
    batch: &mut NamedBatch,
) -> Result<(u64, Rejections), FileError> {
    let frame = read_frame(path)?;
    let has_long_columns = frame.column("metric").is_ok() && frame.column("value").is_ok();
    let long = match layout {
        Layout::Long => true,
        Layout::Wide => false,
        Layout::Auto => has_long_columns,
    };
    let mut rejections = Rejections::default();
    let assets = strings(column(&frame, path, &["asset"])?, path)?;
    let ts = timestamps(column(&frame, path, &["ts", "timestamp"])?, path)?;
    if long {
        let metrics = strings(column(&frame, path, &["metric"])?, path)?;
        let values = floats(column(&frame, path, &["value"])?, path)?;
        // An optional `labels` column (`cpu="0",mode="idle"`) adds labels to the series key.
        let labels = match frame.column("labels") {
            Ok(c) => Some(strings(c, path)?),
            Err(_) => None,
        };
        let label_at = |row: usize| {
            labels
                .as_ref()
                .and_then(|l| l.get(row))
                .filter(|l| !l.is_empty())
        };
        batch.reserve(frame.height());
        // Rows usually come sorted by asset and metric: remember the last lookup.
        let mut last_asset: Option<(&str, u32)> = None;
        let mut last_metric: Option<(&str, u32)> = None;
        for (row, (((asset, metric), ts), value)) in assets
            .iter()
            .zip(metrics.iter())
            .zip(ts.iter())
            .zip(values.iter())
            .enumerate()
        {
            let result = (|| {
                let asset = asset.ok_or_else(|| missing(row, "asset"))?;
                let metric = metric.ok_or_else(|| missing(row, "metric"))?;
                let ts = ts.ok_or_else(|| bad_ts(row))?;
                let value = value.ok_or_else(|| missing(row, "value"))?;
                let asset_idx = match last_asset {
                    Some((name, idx)) if name == asset => idx,
                    _ => batch.asset(asset, row_at(row))?,
                };
                last_asset = Some((asset, asset_idx));
                let metric_idx = match (label_at(row), last_metric) {
                    (Some(labels), _) => {
                        batch.metric(&format!("{metric}{{{labels}}}"), row_at(row))?
                    }
                    (None, Some((name, idx))) if name == metric => idx,
                    (None, _) => batch.metric(metric, row_at(row))?,
                };
                if label_at(row).is_none() {
                    last_metric = Some((metric, metric_idx));
                }
                batch.push(asset_idx, metric_idx, ts, value, row_at(row))
            })();
            if let Err(e) = result {
                rejections.add(e);
            }
        }
    } else {
        let metric_columns: Vec<&Column> = frame
            .columns()
            .iter()
            .filter(|c| !matches!(c.name().as_str(), "asset" | "ts" | "timestamp"))
            .collect();
        if metric_columns.is_empty() {
            return Err(columns_err(
                path,
                "no metric columns: the long form needs asset,metric,ts,value; the wide form asset,ts and one column per metric",
            ));
        }
        let mut metric_values = Vec::with_capacity(metric_columns.len());
        for c in &metric_columns {
            let idx = batch
                .metric(c.name().as_str(), || {
                    format!("column {:?}", c.name().as_str())
                })
                .map_err(|e| columns_err(path, e.to_string()))?;
            metric_values.push((idx, floats(c, path)?));
        }
        batch.reserve(frame.height() * metric_columns.len());
        for (row, (asset, ts)) in assets.iter().zip(ts.iter()).enumerate() {
            let result = (|| {
                let asset = asset.ok_or_else(|| missing(row, "asset"))?;
                let ts = ts.ok_or_else(|| bad_ts(row))?;
                let asset_idx = batch.asset(asset, row_at(row))?;
                for (metric_idx, values) in &metric_values {
                    // An empty cell means the metric was not reported at that time.
                    if let Some(value) = values.get(row) {
                        batch.push(asset_idx, *metric_idx, ts, value, row_at(row))?;
                    }
                }
                Ok(())
            })();
            if let Err(e) = result {
                rejections.add(e);
            }
        }
    }
    Ok((frame.height() as u64, rejections))
}

fn missing(row: usize, field: &'static str) -> IngestError {
    IngestError::Missing {
        at: format!("row {}", row + 1),
        field,
    }
}

fn bad_ts(row: usize) -> IngestError {
    IngestError::BadTimestamp {
        at: format!("row {}", row + 1),
        reason: "timestamp is missing or unreadable (Unix seconds or RFC 3339 expected)".to_owned(),
    }
}

/// One incident read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRow {
    /// Asset name.
    pub asset: String,
    /// Failure kind.
    pub kind: String,
    /// Severity (default `major`).
    pub severity: String,
    /// Start, microseconds since the Unix epoch.
    pub started_micros: i64,
    /// Detection time.
    pub detected_micros: Option<i64>,
    /// Resolution time.
    pub resolved_micros: Option<i64>,
    /// Root cause.
    pub root_cause: Option<String>,
}

/// Severities an incident may have.
pub const SEVERITIES: [&str; 5] = ["info", "warning", "minor", "major", "critical"];

/// Reads incidents from a CSV or Parquet file; bad rows go to the rejections.
pub fn read_incidents(path: &Path) -> Result<(Vec<IncidentRow>, Rejections), FileError> {
    let frame = read_frame(path)?;
    let assets = strings(column(&frame, path, &["asset"])?, path)?;
    let kinds = strings(column(&frame, path, &["kind"])?, path)?;
    let read_ts = |c: &Column| -> Result<Vec<Option<i64>>, FileError> {
        Ok(timestamps(c, path)?.iter().collect())
    };
    let started = read_ts(column(&frame, path, &["started_at"])?)?;
    let optional_ts = |name: &str| -> Result<Vec<Option<i64>>, FileError> {
        match frame.column(name) {
            Ok(c) => read_ts(c),
            Err(_) => Ok(vec![None; frame.height()]),
        }
    };
    let detected = optional_ts("detected_at")?;
    let resolved = optional_ts("resolved_at")?;
    let optional_str = |name: &str| -> Result<Option<StringChunked>, FileError> {
        frame
            .column(name)
            .ok()
            .map(|c| strings(c, path))
            .transpose()
    };
    let severities = optional_str("severity")?;
    let causes = optional_str("root_cause")?;
    let mut rows = Vec::with_capacity(frame.height());
    let mut rejections = Rejections::default();
    for row in 0..frame.height() {
        let at = row_at(row);
        let result = (|| {
            let asset = assets.get(row).ok_or_else(|| missing(row, "asset"))?;
            if !super::is_valid_name(asset) {
                return Err(IngestError::BadName {
                    at: at(),
                    what: "asset",
                    name: asset.to_owned(),
                });
            }
            let kind = kinds
                .get(row)
                .filter(|k| !k.is_empty())
                .ok_or_else(|| missing(row, "kind"))?;
            let started_micros = started[row].ok_or_else(|| bad_ts(row))?;
            let severity = severities
                .as_ref()
                .and_then(|s| s.get(row))
                .unwrap_or("major");
            if !SEVERITIES.contains(&severity) {
                return Err(IngestError::Invalid {
                    at: at(),
                    reason: format!("severity {severity:?} is not one of {SEVERITIES:?}"),
                });
            }
            Ok(IncidentRow {
                asset: asset.to_owned(),
                kind: kind.to_owned(),
                severity: severity.to_owned(),
                started_micros,
                detected_micros: detected[row],
                resolved_micros: resolved[row],
                root_cause: causes.as_ref().and_then(|c| c.get(row)).map(str::to_owned),
            })
        })();
        match result {
            Ok(incident) => rows.push(incident),
            Err(e) => rejections.add(e),
        }
    }
    Ok((rows, rejections))
}

/// Which samples [`export_parquet`] writes.
#[derive(Debug, Clone)]
pub struct ExportFilter {
    /// Only this asset; all when `None`.
    pub asset: Option<String>,
    /// Only this metric; all when `None`.
    pub metric: Option<String>,
    /// Start, inclusive.
    pub from: chrono::DateTime<chrono::Utc>,
    /// End, exclusive.
    pub to: chrono::DateTime<chrono::Utc>,
}

/// A frame in the long form `asset, metric, ts (UTC datetime), value`.
fn long_frame(
    assets: Vec<String>,
    metrics: Vec<String>,
    ts_micros: Vec<i64>,
    values: Vec<f64>,
) -> PolarsResult<DataFrame> {
    let ts = Series::new("ts".into(), ts_micros)
        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
    DataFrame::new_infer_height(vec![
        Column::new("asset".into(), assets),
        Column::new("metric".into(), metrics),
        ts.into(),
        Column::new("value".into(), values),
    ])
}

/// Writes samples to a Parquet file in the long form that `vigil import` reads, one asset
/// at a time; `progress` gets the number of rows written. Returns the number of rows.
pub async fn export_parquet(
    store: &crate::store::Store,
    path: &Path,
    filter: &ExportFilter,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, FileError> {
    use crate::store::assets::AssetFilter;
    use crate::store::samples::{Aggregate, SampleQuery};

    let assets = match &filter.asset {
        Some(name) => vec![store.asset_by_name(name).await?],
        None => {
            let mut all = Vec::new();
            loop {
                let page = store
                    .list_assets(&AssetFilter {
                        class: None,
                        after: all
                            .last()
                            .map(|a: &crate::store::assets::Asset| a.name.clone()),
                        limit: 1000,
                    })
                    .await?;
                if page.is_empty() {
                    break;
                }
                all.extend(page);
            }
            all
        }
    };
    let file = std::fs::File::create(path).map_err(|source| FileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let empty =
        long_frame(Vec::new(), Vec::new(), Vec::new(), Vec::new()).map_err(polars_err(path))?;
    let mut writer = ParquetWriter::new(file)
        .batched(empty.schema())
        .map_err(polars_err(path))?;
    let mut rows = 0u64;
    for asset in &assets {
        let query = SampleQuery {
            asset_id: asset.asset_id,
            metric: filter.metric.clone(),
            family: None,
            from: filter.from,
            to: filter.to,
            step_secs: None,
            aggregate: Aggregate::Avg,
            max_points: i64::MAX - 1,
        };
        let series = store.read_samples(&query).await?;
        let n: usize = series.iter().map(|s| s.values.len()).sum();
        if n == 0 {
            continue;
        }
        let mut metrics = Vec::with_capacity(n);
        let mut ts = Vec::with_capacity(n);
        let mut values = Vec::with_capacity(n);
        for s in series {
            metrics.extend(std::iter::repeat_n(s.metric, s.values.len()));
            ts.extend(s.ts_micros);
            values.extend(s.values);
        }
        let frame = long_frame(vec![asset.name.clone(); n], metrics, ts, values)
            .map_err(polars_err(path))?;
        writer.write_batch(&frame).map_err(polars_err(path))?;
        rows += n as u64;
        progress(rows);
    }
    writer.finish().map_err(polars_err(path))?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IngestSettings;
    use crate::ingest::Limits;

    fn batch() -> NamedBatch {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        NamedBatch::new(Limits::new(&IngestSettings::default(), now).unbounded_batch())
    }

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn timestamps_parse_in_every_accepted_form() {
        let expect = 1_704_067_200_000_000;
        assert_eq!(parse_timestamp("2024-01-01T00:00:00Z"), Some(expect));
        assert_eq!(parse_timestamp("2024-01-01T01:00:00+01:00"), Some(expect));
        assert_eq!(parse_timestamp("2024-01-01 00:00:00"), Some(expect));
        assert_eq!(parse_timestamp("1704067200"), Some(expect));
        assert_eq!(parse_timestamp("1704067200.5"), Some(expect + 500_000));
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn long_csv_is_read_and_bad_rows_reported_with_their_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "s.csv",
            "asset,metric,ts,value\nweb-1,cpu,1704067200,0.5\nweb-1,cpu,1704067260,\nweb-1,cpu,soon,0.7\nbad name,cpu,1704067320,0.1\nweb-1,mem,1704067200,42\n",
        );
        let mut batch = batch();
        let (rows, rejections) = read_samples(&path, Layout::Auto, &mut batch).unwrap();
        assert_eq!(rows, 5);
        assert_eq!(batch.len(), 2);
        assert_eq!(rejections.count, 3);
        let reasons: Vec<String> = rejections.rows.iter().map(ToString::to_string).collect();
        assert!(reasons[0].starts_with("row 2"), "{reasons:?}");
        assert!(reasons[1].starts_with("row 3"), "{reasons:?}");
        assert!(
            reasons[2].starts_with("row 4") && reasons[2].contains("bad name"),
            "{reasons:?}"
        );
    }

    #[test]
    fn a_labels_column_and_keyed_metric_names_name_the_same_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "l.csv",
            "asset,metric,labels,ts,value\n\
             h,cpu_seconds_total,\"mode=\"\"idle\"\",cpu=\"\"0\"\"\",1704067200,1\n\
             h,\"cpu_seconds_total{cpu=\"\"0\"\",mode=\"\"idle\"\"}\",,1704067260,2\n\
             h,cpu_seconds_total,\"cpu=\"\"1\"\",mode=\"\"idle\"\"\",1704067200,3\n\
             h,load1,,1704067200,0.5\n\
             h,load1,\"bad label=\"\"x\"\"\",1704067260,0.5\n",
        );
        let mut batch = batch();
        let (rows, rejections) = read_samples(&path, Layout::Auto, &mut batch).unwrap();
        assert_eq!(rows, 5);
        assert_eq!(rejections.count, 1, "{:?}", rejections.rows);
        assert_eq!(
            batch.metric_names(),
            &[
                r#"cpu_seconds_total{cpu="0",mode="idle"}"#.to_owned(),
                r#"cpu_seconds_total{cpu="1",mode="idle"}"#.to_owned(),
                "load1".to_owned(),
            ]
        );
        assert_eq!(batch.len(), 4);
    }

    #[test]
    fn wide_csv_maps_columns_to_metrics_and_skips_empty_cells() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "w.csv",
            "asset,ts,cpu,mem\npump-1,2024-01-01T00:00:00Z,0.5,10\npump-1,2024-01-01T00:01:00Z,,11\n",
        );
        let mut batch = batch();
        let (rows, rejections) = read_samples(&path, Layout::Auto, &mut batch).unwrap();
        assert_eq!((rows, rejections.count), (2, 0));
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.metric_names(), ["cpu", "mem"]);
    }

    #[test]
    fn parquet_round_trips_through_polars() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.parquet");
        let mut frame = df!(
            "asset" => ["a", "a"],
            "metric" => ["cpu", "cpu"],
            "ts" => [1_704_067_200i64, 1_704_067_260],
            "value" => [1.0, 2.0],
        )
        .unwrap();
        write_parquet(&path, &mut frame).unwrap();
        let mut batch = batch();
        let (rows, rejections) = read_samples(&path, Layout::Long, &mut batch).unwrap();
        assert_eq!((rows, rejections.count, batch.len()), (2, 0, 2));
    }

    #[test]
    fn missing_columns_are_a_file_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "x.csv", "host,when,v\na,1,2\n");
        let err = read_samples(&path, Layout::Long, &mut batch()).unwrap_err();
        assert!(
            err.to_string().contains("missing column \"asset\""),
            "{err}"
        );
        let err = read_samples(&dir.path().join("x.txt"), Layout::Auto, &mut batch()).unwrap_err();
        assert!(matches!(err, FileError::UnknownFormat(_)));
    }

    #[test]
    fn incidents_csv_is_read_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "i.csv",
            "asset,started_at,kind\nweb-1,1704067200,memory_leak\nweb-2,never,disk_full\n",
        );
        let (rows, rejections) = read_incidents(&path).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].severity, "major");
        assert_eq!(rows[0].started_micros, 1_704_067_200_000_000);
        assert_eq!(rejections.count, 1);
    }
}
