//! Job runs: one row per run of a scheduled job, with how it ended and what it did.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Result, Store};

/// One run of a job.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow, schemars::JsonSchema)]
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
    /// What started it: `schedule`, `drift` or `manual` (`None`: recorded before triggers
    /// were).
    pub trigger: Option<String>,
    /// The schedule's tick a scheduled run belongs to.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// What it did (model id and figures), or its error.
    pub detail: Value,
}

impl Store {
    /// Records the start of a run of `job`, started by `trigger` (`schedule`, `drift` or
    /// `manual`); returns its id. A scheduled run names its tick: `None` when a run of that
    /// tick is already recorded (another replica took it).
    pub async fn start_job_run(
        &self,
        job: &str,
        trigger: &str,
        scheduled_for: Option<DateTime<Utc>>,
    ) -> Result<Option<i64>> {
        let id = sqlx::query_scalar(
            "insert into job_run (job, trigger, scheduled_for) values ($1, $2, $3) \
             on conflict (job, trigger, scheduled_for) where scheduled_for is not null do nothing \
             returning job_run_id",
        )
        .bind(job)
        .bind(trigger)
        .bind(scheduled_for)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id)
    }

    /// Marks failed every run of `job` still `running` but `current`: for a job that runs
    /// under a lock, whoever holds the lock knows that any other such run was lost with the
    /// process that ran it. Returns how many.
    pub async fn fail_lost_job_runs(&self, job: &str, current: i64) -> Result<u64> {
        let done = sqlx::query(
            "update job_run set finished_at = now(), status = 'failed', \
             detail = detail || '{\"error\": \"lost: the process running it stopped\", \"lost\": true}' \
             where job = $1 and status = 'running' and job_run_id <> $2",
        )
        .bind(job)
        .bind(current)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
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

    /// The latest `limit` runs of `job` (every job when `None`), newest first.
    pub async fn job_runs(&self, job: Option<&str>, limit: i64) -> Result<Vec<JobRun>> {
        let runs = sqlx::query_as(
            "select job_run_id, job, started_at, finished_at, status, trigger, scheduled_for, \
             detail from job_run where $1::text is null or job = $1 \
             order by started_at desc, job_run_id desc limit $2",
        )
        .bind(job)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(runs)
    }

    /// One job run.
    pub async fn job_run(&self, job_run_id: i64) -> Result<JobRun> {
        sqlx::query_as(
            "select job_run_id, job, started_at, finished_at, status, trigger, scheduled_for, \
             detail from job_run where job_run_id = $1",
        )
        .bind(job_run_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| super::Error::NotFound(format!("job run {job_run_id}")))
    }
}

/// What `/metrics` shows from the database: alerts, actions, guard blocks, training runs,
/// thresholds. Counts are over all replicas (the database's, not this process's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OperationsSnapshot {
    /// Open alerts by asset class.
    pub open_alerts: Vec<(String, i64)>,
    /// Actions by state (every state, 0 when none).
    pub actions: Vec<(String, i64)>,
    /// Blocked actions by the rule that refused them (every rule, 0 when none).
    pub guard_blocks: Vec<(String, i64)>,
    /// Training runs by status (every status), with their summed duration in seconds.
    pub training_runs: Vec<(String, i64, f64)>,
    /// The latest finished training run's duration in seconds.
    pub last_training_secs: Option<f64>,
    /// Thresholds by class: (class, fire at, clear at).
    pub thresholds: Vec<(String, f64, f64)>,
}

impl Store {
    /// The operations snapshot for `/metrics`.
    pub async fn operations_snapshot(&self, training_job: &str) -> Result<OperationsSnapshot> {
        let open_alerts = sqlx::query_as(
            "select s.class, count(*) from alert a join asset s using (asset_id) \
             where a.state = 'open' group by s.class order by s.class",
        )
        .fetch_all(&self.pool)
        .await?;
        let actions = sqlx::query_as(
            "select s, count(a.action_id) from unnest(array['recommended', 'awaiting_approval', \
             'approved', 'rejected', 'expired', 'blocked', 'running', 'succeeded', 'failed']) s \
             left join action a on a.state = s group by s order by s",
        )
        .fetch_all(&self.pool)
        .await?;
        let guard_blocks = sqlx::query_as(
            "select r, count(c.rule) from unnest(array['kill_switch', 'breaker', 'cooldown', \
             'rate_limit', 'budget']) r left join (select c->>'rule' as rule from action, \
             jsonb_array_elements(guard_decision->'checks') c \
             where (c->>'passed')::boolean = false) c on c.rule = r group by r order by r",
        )
        .fetch_all(&self.pool)
        .await?;
        let training_runs = sqlx::query_as(
            "select s, count(j.job_run_id), \
             coalesce(sum(extract(epoch from j.finished_at - j.started_at)), 0)::float8 \
             from unnest(array['running', 'succeeded', 'failed']) s \
             left join job_run j on j.status = s and j.job = $1 group by s order by s",
        )
        .bind(training_job)
        .fetch_all(&self.pool)
        .await?;
        let last_training_secs = sqlx::query_scalar(
            "select extract(epoch from finished_at - started_at)::float8 from job_run \
             where job = $1 and finished_at is not null order by started_at desc limit 1",
        )
        .bind(training_job)
        .fetch_optional(&self.pool)
        .await?;
        let thresholds = sqlx::query_as(
            "select asset_class, fire_at, clear_at from threshold order by asset_class",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(OperationsSnapshot {
            open_alerts,
            actions,
            guard_blocks,
            training_runs,
            last_training_secs,
            thresholds,
        })
    }
}
