//! Samples: the partitioned time-series table. Owns the creation of daily partitions on
//! demand, batch inserts through binary `COPY` (a batch is stored whole or not at all, and a
//! re-sent sample is stored once), reads with optional downsampling, and retention by
//! dropping whole partitions.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::copy::{self, Tuple};
use super::{Error, Result, Store};
use crate::vocab::MetricHistory;

/// Microseconds in a day.
const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Size of the chunks sent to `COPY`.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// A batch of samples in columnar form, with asset and metric names already resolved to ids.
/// All four vectors have the same length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleColumns {
    /// Asset id of each sample.
    pub asset_ids: Vec<i64>,
    /// Metric id of each sample.
    pub metric_ids: Vec<i32>,
    /// Timestamp of each sample, microseconds since the Unix epoch (UTC).
    pub ts_micros: Vec<i64>,
    /// Value of each sample (finite).
    pub values: Vec<f64>,
}

impl SampleColumns {
    /// An empty batch with room for `n` samples.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            asset_ids: Vec::with_capacity(n),
            metric_ids: Vec::with_capacity(n),
            ts_micros: Vec::with_capacity(n),
            values: Vec::with_capacity(n),
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the batch holds no sample.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Appends one sample.
    pub fn push(&mut self, asset_id: i64, metric_id: i32, ts: DateTime<Utc>, value: f64) {
        self.push_micros(asset_id, metric_id, ts.timestamp_micros(), value);
    }

    /// Appends one sample with its time in microseconds since the Unix epoch.
    pub fn push_micros(&mut self, asset_id: i64, metric_id: i32, ts_micros: i64, value: f64) {
        self.asset_ids.push(asset_id);
        self.metric_ids.push(metric_id);
        self.ts_micros.push(ts_micros);
        self.values.push(value);
    }

    /// The distinct UTC days the samples fall on, in order.
    fn days(&self) -> Vec<NaiveDate> {
        let mut days = std::collections::BTreeSet::new();
        let mut last = None;
        for &ts in &self.ts_micros {
            let day = ts.div_euclid(MICROS_PER_DAY);
            if last != Some(day) {
                days.insert(day);
                last = Some(day);
            }
        }
        days.into_iter()
            .filter_map(|day| DateTime::from_timestamp(day * 86_400, 0).map(|t| t.date_naive()))
            .collect()
    }

    /// Encodes rows `range` in PostgreSQL's binary COPY tuple format.
    fn encode_rows(&self, range: std::ops::Range<usize>, out: &mut Vec<u8>) {
        for i in range {
            Tuple::start(out, 4)
                .int8(self.asset_ids[i])
                .int4(self.metric_ids[i])
                .timestamptz(self.ts_micros[i])
                .float8(self.values[i]);
        }
    }
}

/// Bytes of one row in the binary COPY format: field count, then four length-prefixed fields.
const COPY_ROW_BYTES: usize = 2 + (4 + 8) + (4 + 4) + (4 + 8) + (4 + 8);

/// One series read back, with timestamps in microseconds since the Unix epoch.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SeriesPoints {
    /// Metric name.
    pub metric: String,
    /// Timestamps (bucket starts when downsampled).
    pub ts_micros: Vec<i64>,
    /// Values (bucket aggregates when downsampled).
    pub values: Vec<f64>,
}

/// How to aggregate samples in a downsampling bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    /// Mean.
    Avg,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
    /// The latest sample of the bucket.
    Last,
}

/// Which samples of one asset to read.
#[derive(Debug, Clone)]
pub struct SampleQuery {
    /// Asset id.
    pub asset_id: i64,
    /// Only this metric (a series key); all when `None`.
    pub metric: Option<String>,
    /// Only the series of this family; all when `None`.
    pub family: Option<String>,
    /// Start, inclusive.
    pub from: DateTime<Utc>,
    /// End, exclusive.
    pub to: DateTime<Utc>,
    /// Bucket width in seconds for downsampling; raw samples when `None`.
    pub step_secs: Option<i64>,
    /// Aggregate of a bucket.
    pub aggregate: Aggregate,
    /// Most points returned in all; more is an error.
    pub max_points: i64,
}

impl Store {
    /// Stores a batch in one transaction, creating the day partitions it needs; samples
    /// already stored (same asset, metric, timestamp) are skipped. Returns how many rows
    /// were new. `progress` is called with the number of rows sent so far.
    ///
    /// The fast path streams the batch with binary `COPY` straight into `sample`. A batch
    /// that repeats stored samples makes that fail on the primary key; it is then sent again
    /// through a temporary table and `INSERT .. ON CONFLICT DO NOTHING`, so a retried batch
    /// is slower but never stored twice.
    pub async fn insert_samples_with_progress(
        &self,
        batch: &SampleColumns,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64> {
        if batch.is_empty() {
            return Ok(0);
        }
        let days = batch.days();
        match self.copy_samples(batch, &days, false, progress).await {
            Err(Error::Duplicate { .. }) => self.copy_samples(batch, &days, true, progress).await,
            other => other,
        }
    }

    /// [`Store::insert_samples_with_progress`] without progress reports.
    pub async fn insert_samples(&self, batch: &SampleColumns) -> Result<u64> {
        self.insert_samples_with_progress(batch, &mut |_| {}).await
    }

    async fn copy_samples(
        &self,
        batch: &SampleColumns,
        days: &[NaiveDate],
        skip_existing: bool,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("select vigil_ensure_sample_partitions($1)")
            .bind(days)
            .execute(&mut *tx)
            .await?;
        let target = if skip_existing {
            sqlx::query(
                "create temporary table sample_stage (like sample including defaults) on commit drop",
            )
            .execute(&mut *tx)
            .await?;
            "copy sample_stage (asset_id, metric_id, ts, value) from stdin with (format binary)"
        } else {
            "copy sample (asset_id, metric_id, ts, value) from stdin with (format binary)"
        };
        let mut copy = tx.copy_in_raw(target).await?;
        let rows_per_chunk = (COPY_CHUNK_BYTES / COPY_ROW_BYTES).max(1);
        let mut buf = Vec::with_capacity(COPY_CHUNK_BYTES + 64);
        buf.extend_from_slice(copy::HEADER);
        let mut start = 0;
        while start < batch.len() {
            let end = (start + rows_per_chunk).min(batch.len());
            batch.encode_rows(start..end, &mut buf);
            if end == batch.len() {
                buf.extend_from_slice(&copy::TRAILER);
            }
            copy = copy::send(copy, std::mem::take(&mut buf)).await?;
            buf.reserve(COPY_CHUNK_BYTES + 64);
            progress(end as u64);
            start = end;
        }
        let copied = copy.finish().await?;
        let new_series = self.record_series(batch, &mut tx).await?;
        let inserted = if skip_existing {
            sqlx::query("insert into sample select * from sample_stage on conflict do nothing")
                .execute(&mut *tx)
                .await?
                .rows_affected()
        } else {
            copied
        };
        tx.commit().await?;
        self.ids
            .series
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(new_series);
        Ok(inserted)
    }

    /// Adds the batch's (asset, metric) pairs that this process has not seen to `series`,
    /// in the batch's transaction; returns them, for the cache once committed.
    async fn record_series(
        &self,
        batch: &SampleColumns,
        tx: &mut sqlx::PgConnection,
    ) -> Result<Vec<(i64, i32)>> {
        let mut first: std::collections::HashMap<(i64, i32), i64> = Default::default();
        {
            let known = self.ids.series.read().unwrap_or_else(|e| e.into_inner());
            let mut last = None;
            for i in 0..batch.len() {
                let pair = (batch.asset_ids[i], batch.metric_ids[i]);
                let ts = batch.ts_micros[i];
                if last == Some(pair) && !first.contains_key(&pair) {
                    continue;
                }
                last = Some(pair);
                if !known.contains(&pair) {
                    let t = first.entry(pair).or_insert(ts);
                    *t = (*t).min(ts);
                }
            }
        }
        if first.is_empty() {
            return Ok(Vec::new());
        }
        // In key order, so that concurrent batches lock the rows they share in one order.
        let mut pairs: Vec<((i64, i32), i64)> = first.into_iter().collect();
        pairs.sort_unstable();
        let (mut assets, mut metrics, mut times) = (Vec::new(), Vec::new(), Vec::new());
        for &((a, m), ts) in &pairs {
            assets.push(a);
            metrics.push(m);
            times.push(DateTime::from_timestamp_micros(ts).unwrap_or_default());
        }
        sqlx::query(
            "insert into series (asset_id, metric_id, first_ts) \
             select * from unnest($1::int8[], $2::int4[], $3::timestamptz[]) \
             on conflict (asset_id, metric_id) \
             do update set first_ts = least(series.first_ts, excluded.first_ts)",
        )
        .bind(&assets)
        .bind(&metrics)
        .bind(&times)
        .execute(&mut *tx)
        .await?;
        Ok(pairs.into_iter().map(|(pair, _)| pair).collect())
    }

    /// Reads one asset's samples, raw or downsampled into `step_secs` buckets, grouped by
    /// metric in name order. [`Error::Constraint`] when more than `max_points` would return.
    pub async fn read_samples(&self, query: &SampleQuery) -> Result<Vec<SeriesPoints>> {
        let aggregate = match query.aggregate {
            Aggregate::Avg => "avg(s.value)",
            Aggregate::Min => "min(s.value)",
            Aggregate::Max => "max(s.value)",
            Aggregate::Last => "(array_agg(s.value order by s.ts desc))[1]",
        };
        let sql = match query.step_secs {
            None => "select m.name, (extract(epoch from s.ts) * 1000000)::int8 as t, s.value as v \
                     from sample s join metric m using (metric_id) \
                     where s.asset_id = $1 and ($2::text is null or m.name = $2) \
                     and ($7::text is null or m.family = $7) and s.ts >= $3 and s.ts < $4 order by m.name, s.ts limit $6"
                .to_owned(),
            Some(_) => format!(
                "select m.name, (extract(epoch from b.bucket) * 1000000)::int8 as t, b.v from ( \
                   select s.metric_id, date_bin(make_interval(secs => $5), s.ts, $3) as bucket, \
                          {aggregate} as v \
                   from sample s join metric m using (metric_id) \
                   where s.asset_id = $1 and ($2::text is null or m.name = $2) \
                   and ($7::text is null or m.family = $7) and s.ts >= $3 and s.ts < $4 group by 1, 2) b \
                 join metric m using (metric_id) order by m.name, b.bucket limit $6"
            ),
        };
        let rows: Vec<(String, i64, f64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(query.asset_id)
            .bind(&query.metric)
            .bind(query.from)
            .bind(query.to)
            .bind(query.step_secs.unwrap_or(1) as f64)
            .bind(query.max_points + 1)
            .bind(&query.family)
            .fetch_all(&self.pool)
            .await?;
        if rows.len() as i64 > query.max_points {
            return Err(Error::Constraint {
                constraint: format!(
                    "more than {} points: narrow the time range or downsample with step",
                    query.max_points
                ),
            });
        }
        let mut series: Vec<SeriesPoints> = Vec::new();
        for (metric, t, v) in rows {
            if series.last().is_none_or(|s| s.metric != metric) {
                series.push(SeriesPoints {
                    metric,
                    ..SeriesPoints::default()
                });
            }
            let current = series.last_mut().expect("pushed above");
            current.ts_micros.push(t);
            current.values.push(v);
        }
        Ok(series)
    }

    /// Creates the missing partitions of the given UTC days; returns how many.
    pub async fn ensure_sample_partitions(&self, days: &[NaiveDate]) -> Result<i32> {
        let created = sqlx::query_scalar("select vigil_ensure_sample_partitions($1)")
            .bind(days)
            .fetch_one(&self.pool)
            .await?;
        Ok(created)
    }

    /// Drops every day partition that ends at or before `cutoff`; returns their names.
    pub async fn drop_sample_partitions_before(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        let dropped = sqlx::query_scalar("select vigil_drop_sample_partitions($1)")
            .bind(cutoff)
            .fetch_all(&self.pool)
            .await?;
        Ok(dropped)
    }

    /// Names of the existing day partitions, oldest first.
    pub async fn sample_partitions(&self) -> Result<Vec<String>> {
        let names = sqlx::query_scalar(
            "select c.relname::text from pg_inherits i join pg_class c on c.oid = i.inhrelid \
             where i.inhparent = 'sample'::regclass order by c.relname",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(names)
    }

    /// Time of an asset's latest sample, if any.
    pub async fn latest_sample_time(&self, asset_id: i64) -> Result<Option<DateTime<Utc>>> {
        // Most assets report often: the last two days' partitions answer quickly; only an
        // asset silent for longer needs the full scan.
        let recent: Option<DateTime<Utc>> = sqlx::query_scalar(
            "select max(ts) from sample where asset_id = $1 and ts > now() - interval '2 days'",
        )
        .bind(asset_id)
        .fetch_one(&self.pool)
        .await?;
        if recent.is_some() {
            return Ok(recent);
        }
        let latest = sqlx::query_scalar("select max(ts) from sample where asset_id = $1")
            .bind(asset_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(latest)
    }

    /// Samples stored with a timestamp at or after `since`.
    pub async fn count_samples_since(&self, since: DateTime<Utc>) -> Result<i64> {
        let count = sqlx::query_scalar("select count(*) from sample where ts >= $1")
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
        Ok(count)
    }

    /// Samples stored, of one asset or of all.
    pub async fn count_samples(&self, asset_id: Option<i64>) -> Result<i64> {
        let count = sqlx::query_scalar(
            "select count(*) from sample where $1::bigint is null or asset_id = $1",
        )
        .bind(asset_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(count)
    }
}

/// All samples of a time range, for training: ids and names resolved, one series per asset
/// and metric.
#[derive(Debug, Clone, Default)]
pub struct SampleDump {
    /// Asset names by id.
    pub assets: std::collections::HashMap<i64, String>,
    /// Metric names by id.
    pub metrics: std::collections::HashMap<i32, String>,
    /// The series, ordered by asset id, then metric id.
    pub series: Vec<SeriesDump>,
}

impl SampleDump {
    /// Samples in all series.
    pub fn samples(&self) -> u64 {
        self.series.iter().map(|s| s.history.ts.len() as u64).sum()
    }
}

/// One asset's samples of one metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesDump {
    pub asset_id: i64,
    pub metric_id: i32,
    /// Its points, in time order.
    pub history: MetricHistory,
}

/// Unix seconds of a time in microseconds, rounded to the nearest second, halves away from
/// zero (as PostgreSQL's `extract(epoch from ts)::int8`).
fn unix_secs(micros: i64) -> i64 {
    let (secs, rest) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    if rest > 500_000 || (rest == 500_000 && micros >= 0) {
        secs + 1
    } else {
        secs
    }
}

impl Store {
    /// Every sample in `[from, to)`, read from the database into series. The rows come by
    /// binary `COPY` in the order the partitions are scanned: each is appended to its series
    /// (the last one used, or found by id), and each series is put in time order after.
    /// Sorting here instead of in the query keeps the server from sorting the whole range.
    pub async fn dump_samples(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<SampleDump> {
        use futures_util::StreamExt;
        use rayon::prelude::*;
        let mut dump = SampleDump {
            assets: sqlx::query_as("select asset_id, name from asset")
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .collect(),
            metrics: sqlx::query_as("select metric_id, name from metric")
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .collect(),
            ..SampleDump::default()
        };
        // COPY takes no bind parameters; the bounds are timestamps chrono formats.
        let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let statement = format!(
            "copy (select asset_id, metric_id, ts, value from sample \
             where ts >= '{}' and ts < '{}') to stdout (format binary)",
            at(from),
            at(to)
        );
        let mut conn = self.pool.acquire().await?;
        let mut stream = conn.copy_out_raw(&statement).await?;
        let mut reader = copy::Reader::default();
        let mut series: Vec<SeriesDump> = Vec::new();
        let mut index: std::collections::HashMap<(i64, i32), usize> =
            std::collections::HashMap::new();
        let mut last: Option<(i64, i32, usize)> = None;
        while let Some(chunk) = stream.next().await {
            reader.feed(&chunk?, &mut |fields| {
                let (asset_id, metric_id) = (fields.int8()?, fields.int4()?);
                let (ts, value) = (unix_secs(fields.timestamptz()?), fields.float8()?);
                let k = match last {
                    Some((a, m, k)) if (a, m) == (asset_id, metric_id) => k,
                    _ => {
                        let k = *index.entry((asset_id, metric_id)).or_insert_with(|| {
                            series.push(SeriesDump {
                                asset_id,
                                metric_id,
                                ..SeriesDump::default()
                            });
                            series.len() - 1
                        });
                        last = Some((asset_id, metric_id, k));
                        k
                    }
                };
                series[k].history.ts.push(ts);
                series[k].history.values.push(value);
                Ok(())
            })?;
        }
        drop(stream);
        reader.finish()?;
        series.sort_unstable_by_key(|s| (s.asset_id, s.metric_id));
        series
            .par_iter_mut()
            .for_each(|s| s.history = std::mem::take(&mut s.history).into_time_order());
        dump.series = series;
        Ok(dump)
    }
}
