//! Job runs: one row per run of a scheduled job, with how it ended and what it did.

use serde_json::Value;

use super::{Result, Store};

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
}
