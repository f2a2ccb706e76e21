//! Samples: the partitioned time-series table. Owns the creation of daily partitions on
//! demand, idempotent batch inserts (a batch is stored whole or not at all), and retention
//! by dropping whole partitions.

use chrono::{DateTime, Utc};

use super::{Result, Store};

/// A batch of samples in columnar form, with asset and metric names already resolved to ids.
/// All four vectors have the same length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleColumns {
    /// Asset id of each sample.
    pub asset_ids: Vec<i64>,
    /// Metric id of each sample.
    pub metric_ids: Vec<i64>,
    /// Timestamp of each sample.
    pub ts: Vec<DateTime<Utc>>,
    /// Value of each sample (finite).
    pub values: Vec<f64>,
}

impl SampleColumns {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the batch holds no sample.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Appends one sample.
    pub fn push(&mut self, asset_id: i64, metric_id: i64, ts: DateTime<Utc>, value: f64) {
        self.asset_ids.push(asset_id);
        self.metric_ids.push(metric_id);
        self.ts.push(ts);
        self.values.push(value);
    }

    fn time_range(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let min = self.ts.iter().min()?;
        let max = self.ts.iter().max()?;
        Some((*min, *max))
    }
}

impl Store {
    /// Stores a batch in one transaction, creating the day partitions it needs; samples
    /// already stored (same asset, metric, timestamp) are skipped. Returns how many rows
    /// were new.
    pub async fn insert_samples(&self, batch: &SampleColumns) -> Result<u64> {
        let Some((from, to)) = batch.time_range() else {
            return Ok(0);
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query("select vigil_ensure_sample_partitions($1, $2)")
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "insert into sample (asset_id, metric_id, ts, value) \
             select * from unnest($1::bigint[], $2::bigint[], $3::timestamptz[], $4::float8[]) \
             on conflict do nothing",
        )
        .bind(&batch.asset_ids)
        .bind(&batch.metric_ids)
        .bind(&batch.ts)
        .bind(&batch.values)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted)
    }

    /// Creates the missing day partitions covering `[from, to]`; returns how many.
    pub async fn ensure_sample_partitions(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<i32> {
        let created = sqlx::query_scalar("select vigil_ensure_sample_partitions($1, $2)")
            .bind(from)
            .bind(to)
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

    /// Number of stored samples, optionally of one asset.
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
