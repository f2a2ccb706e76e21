//! Job runs: one row per run of a scheduled job, with how it ended and what it did.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Result, Store};

/// One run of a job.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct JobRun {
    pub job_run_id: i64,
    /// The job's name (`train`, `retention`).
    pub job: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended; `None` while it runs.
    pub finished_at: Option<DateTime<Utc>>,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// What it did (model id and figures), or its error.
    pub detail: Value,
}

impl Store {
    /// Records the start of a run of `job`; returns its id.
    pub async fn start_job_run(&self, job: &str) -> Result<i64> {
        let id = sqlx::query_scalar("insert into job_run (job) values ($1) returning job_run_id")
            .bind(job)
            .fetch_one(&self.pool)
            .await?;
        Ok(id)
    }

    /// Records how a run ended.
    pub async fn finish_job_run(
        &self,
        job_run_id: i64,
        succeeded: bool,
        detail: &Value,
    ) -> Result<()> {
        sqlx::query(
            "update job_run set finished_at = now(), status = $2, detail = $3 where job_run_id = $1",
        )
        .bind(job_run_id)
        .bind(if succeeded { "succeeded" } else { "failed" })
        .bind(detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The latest `limit` runs of `job`, newest first.
    pub async fn job_runs(&self, job: &str, limit: i64) -> Result<Vec<JobRun>> {
        let runs = sqlx::query_as(
            "select job_run_id, job, started_at, finished_at, status, detail from job_run \
             where job = $1 order by started_at desc, job_run_id desc limit $2",
        )
        .bind(job)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(runs)
    }
}
