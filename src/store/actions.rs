//! Corrective actions and what the guard decided about them, the learned outcome counts per
//! (failure kind, asset class, action), and the kill switch. Proposing an action reads the
//! guard's situation and inserts the action in one transaction under an advisory lock, so
//! concurrent alerts (a storm) cannot together exceed the budget.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{Error, Result, Store};
use crate::policy::guard::Situation;

/// Advisory lock key that serializes guard decisions across replicas.
const GUARD_LOCK: i64 = 0x5649_4749_4c47; // "VIGILG"

/// A stored action.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct ActionRow {
    pub action_id: i64,
    /// The asset acted on.
    pub asset: String,
    pub asset_class: String,
    /// The alert that prompted it.
    pub alert_id: Option<i64>,
    /// The incident it belongs to, once known.
    pub incident_id: Option<i64>,
    /// Catalog name.
    pub name: String,
    /// webhook, command or dry_run.
    pub executor: String,
    /// What was (or would be) sent or run.
    pub params: Value,
    /// Why it was chosen.
    pub reason: String,
    /// The diagnosed failure kind.
    pub failure_kind: Option<String>,
    /// observe, approve or auto.
    pub mode: String,
    /// recommended, awaiting_approval, approved, rejected, expired, blocked, running,
    /// succeeded or failed.
    pub state: String,
    /// The guard's verdict and every check.
    pub guard_decision: Value,
    /// When it was proposed.
    pub requested_at: DateTime<Utc>,
    /// When an approval request expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// Who approved or rejected it.
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    /// When it started running.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// The executor's result.
    pub result: Option<Value>,
    /// pending, healed, not_healed or skipped.
    pub verification: String,
    /// When verified.
    pub verified_at: Option<DateTime<Utc>>,
}

/// An action to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAction {
    pub alert_id: Option<i64>,
    /// Catalog name.
    pub name: String,
    /// Executor name.
    pub executor: String,
    /// Parameters.
    pub params: Value,
    pub reason: String,
    /// Failure kind.
    pub failure_kind: Option<String>,
    /// Mode name.
    pub mode: String,
    /// Initial state.
    pub state: String,
    /// The guard's decision.
    pub guard_decision: Value,
    /// Approval expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

/// What the guard sees, per candidate action name.
#[derive(Debug, Clone, Default)]
pub struct GuardState {
    /// The asset-wide part (runs_last_hour is 0 here).
    pub asset: Situation,
    /// Runs of each candidate in the last hour.
    pub runs_last_hour: HashMap<String, u32>,
}

impl GuardState {
    /// The situation of one candidate action.
    pub fn for_action(&self, name: &str) -> Situation {
        Situation {
            runs_last_hour: self.runs_last_hour.get(name).copied().unwrap_or(0),
            ..self.asset
        }
    }
}

/// Learned outcome counts of one (failure kind, asset class, action).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct ActionStat {
    /// Failure kind.
    pub failure_kind: String,
    /// Asset class.
    pub asset_class: String,
    pub action_name: String,
    /// Times it healed.
    pub healed: i64,
    /// Times it did not.
    pub not_healed: i64,
}

const ACTION_SELECT: &str = "select a.action_id, s.name as asset, s.class as asset_class, \
     a.alert_id, a.incident_id, a.name, a.executor, a.params, a.reason, a.failure_kind, a.mode, \
     a.state, a.guard_decision, a.requested_at, a.expires_at, a.decided_by, a.decided_at, \
     a.started_at, a.finished_at, a.result, a.verification, a.verified_at \
     from action a join asset s using (asset_id)";

/// States in which an action counts as in flight (it acts, or is waiting for verification).
const IN_FLIGHT: &str = "(a.state in ('approved', 'running') \
     or (a.state = 'succeeded' and a.verification = 'pending'))";

/// One action, read through `conn` (the pool, or a transaction).
async fn action_in<'e>(conn: impl sqlx::PgExecutor<'e>, action_id: i64) -> Result<ActionRow> {
    sqlx::query_as::<_, ActionRow>(sqlx::AssertSqlSafe(format!(
        "{ACTION_SELECT} where a.action_id = $1"
    )))
    .bind(action_id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| Error::NotFound(format!("action {action_id}")))
}

impl Store {
    /// Reads the guard's situation for `asset_id` and the candidate `names`, lets `decide`
    /// turn it into an action (or none), and inserts it, all in one transaction under the
    /// guard's advisory lock. Times are read from the clock once the lock is held
    /// (`clock_timestamp()`, not the transaction's start, which may precede a long wait for
    /// the lock), so the action's `requested_at` comes after everything the guard saw.
    pub async fn propose_action<F>(
        &self,
        asset_id: i64,
        names: &[String],
        kill_switch_default: bool,
        breaker_reset_secs: i64,
        decide: F,
    ) -> Result<Option<ActionRow>>
    where
        F: FnOnce(&GuardState) -> Option<NewAction>,
    {
        let mut tx = self.pool.begin().await?;
        sqlx::query("select pg_advisory_xact_lock($1)")
            .bind(GUARD_LOCK)
            .execute(&mut *tx)
            .await?;
        let state = guard_state(
            &mut tx,
            asset_id,
            names,
            kill_switch_default,
            breaker_reset_secs,
        )
        .await?;
        let Some(new) = decide(&state) else {
            return Ok(None);
        };
        let action_id: i64 = sqlx::query_scalar(
            "insert into action (asset_id, alert_id, name, executor, params, reason, failure_kind, \
             mode, state, guard_decision, expires_at, requested_at, started_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, clock_timestamp(), \
                     case when $9 = 'running' then clock_timestamp() end) returning action_id",
        )
        .bind(asset_id)
        .bind(new.alert_id)
        .bind(&new.name)
        .bind(&new.executor)
        .bind(&new.params)
        .bind(&new.reason)
        .bind(&new.failure_kind)
        .bind(&new.mode)
        .bind(&new.state)
        .bind(&new.guard_decision)
        .bind(new.expires_at)
        .fetch_one(&mut *tx)
        .await?;
        // Read back before the commit: once it is committed as `running`, the caller must
        // get the row to run it, and a read after the commit could meet a lost connection.
        let row = action_in(&mut *tx, action_id).await?;
        tx.commit().await?;
        Ok(Some(row))
    }

    /// The guard's situation now (for re-checking an approval), under the guard's lock.
    pub async fn guard_state_now(
        &self,
        asset_id: i64,
        names: &[String],
        kill_switch_default: bool,
        breaker_reset_secs: i64,
    ) -> Result<GuardState> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("select pg_advisory_xact_lock($1)")
            .bind(GUARD_LOCK)
            .execute(&mut *tx)
            .await?;
        let state = guard_state(
            &mut tx,
            asset_id,
            names,
            kill_switch_default,
            breaker_reset_secs,
        )
        .await?;
        tx.commit().await?;
        Ok(state)
    }

    /// One action.
    pub async fn action(&self, action_id: i64) -> Result<ActionRow> {
        action_in(&self.pool, action_id).await
    }

    /// Actions, newest first, of one asset and/or in one state.
    pub async fn list_actions(
        &self,
        asset: Option<&str>,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ActionRow>> {
        Ok(sqlx::query_as::<_, ActionRow>(sqlx::AssertSqlSafe(format!(
            "{ACTION_SELECT} where ($1::text is null or s.name = $1) \
             and ($2::text is null or a.state = $2) order by a.action_id desc limit $3"
        )))
        .bind(asset)
        .bind(state)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records the executor's result: `succeeded` or `failed`.
    pub async fn finish_action(&self, action_id: i64, ok: bool, result: &Value) -> Result<()> {
        sqlx::query(
            "update action set state = $2, result = $3, finished_at = now() where action_id = $1",
        )
        .bind(action_id)
        .bind(if ok { "succeeded" } else { "failed" })
        .bind(result)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// An admin's decision on an action awaiting approval: `approved` (then running, with
    /// the guard's new decision) or `rejected`. `None` when it is not awaiting approval (or
    /// has expired).
    pub async fn decide_approval(
        &self,
        action_id: i64,
        approve: bool,
        by: &str,
        guard_decision: Option<&Value>,
    ) -> Result<Option<ActionRow>> {
        let mut tx = self.pool.begin().await?;
        let updated: Option<i64> = sqlx::query_scalar(
            "update action set state = $2, decided_by = $3, decided_at = now(), \
             guard_decision = coalesce($4, guard_decision), \
             started_at = case when $2 = 'running' then now() end \
             where action_id = $1 and state = 'awaiting_approval' \
             and (expires_at is null or expires_at > now()) returning action_id",
        )
        .bind(action_id)
        .bind(if approve { "running" } else { "rejected" })
        .bind(by)
        .bind(guard_decision)
        .fetch_optional(&mut *tx)
        .await?;
        // Read back before the commit, as in `propose_action`.
        let row = match updated {
            Some(id) => Some(action_in(&mut *tx, id).await?),
            None => None,
        };
        tx.commit().await?;
        Ok(row)
    }

    /// Marks `failed` every action `running` for longer than `after_secs` (longer than any
    /// run and the recording of its result can take): its result was lost, for instance
    /// when the commit that started it was acknowledged to no one, or its process died;
    /// their result says `"lost": true`. A result recorded later still replaces this one.
    /// Returns their ids.
    pub async fn fail_lost_actions(&self, after_secs: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "update action set state = 'failed', finished_at = now(), \
             result = jsonb_build_object('lost', true, 'error', 'no result was recorded \
                                         within ' || $1 || ' s of its start') \
             where state = 'running' and started_at < now() - make_interval(secs => $1) \
             returning action_id",
        )
        .bind(after_secs)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Marks approval requests past their expiry `expired`; returns how many.
    pub async fn expire_actions(&self) -> Result<u64> {
        Ok(sqlx::query(
            "update action set state = 'expired' \
             where state = 'awaiting_approval' and expires_at <= now()",
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Succeeded actions awaiting verification that finished at least `after_secs` ago.
    pub async fn actions_to_verify(&self, after_secs: i64) -> Result<Vec<ActionRow>> {
        Ok(sqlx::query_as::<_, ActionRow>(sqlx::AssertSqlSafe(format!(
            "{ACTION_SELECT} where a.state = 'succeeded' and a.verification = 'pending' \
             and a.finished_at <= now() - make_interval(secs => $1) order by a.action_id"
        )))
        .bind(after_secs as f64)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Whether an incident of the asset was recorded at or after `since` (by when it was
    /// recorded, so that backfilled or simulated incident times compare with action times).
    pub async fn incident_since(&self, asset: &str, since: DateTime<Utc>) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "select exists (select 1 from incident i join asset s using (asset_id) \
             where s.name = $1 and i.created_at >= $2)",
        )
        .bind(asset)
        .bind(since)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Incidents of the asset around `at` (data time, e.g. when the action's alert opened):
    /// whether one started in the `horizon_secs` up to `at` (the asset had failed already),
    /// and whether one started after it.
    pub async fn incidents_around(
        &self,
        asset: &str,
        at: DateTime<Utc>,
        horizon_secs: i64,
    ) -> Result<(bool, bool)> {
        Ok(sqlx::query_as(
            "select exists (select 1 from incident i join asset s using (asset_id) \
               where s.name = $1 and i.started_at <= $2 \
               and i.started_at >= $2 - make_interval(secs => $3)), \
             exists (select 1 from incident i join asset s using (asset_id) \
               where s.name = $1 and i.started_at > $2)",
        )
        .bind(asset)
        .bind(at)
        .bind(horizon_secs as f64)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Marks an action's verification skipped (not counted either way), e.g. when the asset
    /// had already failed before it ran. `false` when it was verified already.
    pub async fn skip_verification(&self, action_id: i64, detail: &Value) -> Result<bool> {
        Ok(sqlx::query(
            "update action set verification = 'skipped', verified_at = now(), \
             result = coalesce(result, '{}'::jsonb) || jsonb_build_object('verification', $2::jsonb) \
             where action_id = $1 and verification = 'pending'",
        )
        .bind(action_id)
        .bind(detail)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// The highest level (probability, or the cold-start anomaly score) among the asset's
    /// scores stored since `since` (by when they were stored); `None` without any.
    pub async fn max_level_since(&self, asset: &str, since: DateTime<Utc>) -> Result<Option<f64>> {
        Ok(sqlx::query_scalar(
            "select max(coalesce(sc.probability, sc.anomaly_score)) from score sc \
             join asset s using (asset_id) where s.name = $1 and sc.scored_at >= $2",
        )
        .bind(asset)
        .bind(since)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Records a verification and counts it for the action's (kind, class, name), in one
    /// transaction. `false` when it was verified already.
    pub async fn record_verification(
        &self,
        action_id: i64,
        healed: bool,
        detail: &Value,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let row: Option<(Option<String>, String, String)> = sqlx::query_as(
            "update action a set verification = $2, verified_at = now(), \
             result = coalesce(result, '{}'::jsonb) || jsonb_build_object('verification', $3::jsonb) \
             from asset s where a.asset_id = s.asset_id and a.action_id = $1 \
             and a.verification = 'pending' returning a.failure_kind, s.class, a.name",
        )
        .bind(action_id)
        .bind(if healed { "healed" } else { "not_healed" })
        .bind(detail)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((kind, class, name)) = row else {
            return Ok(false);
        };
        count_outcome(
            &mut tx,
            kind.as_deref().unwrap_or("unknown"),
            &class,
            &name,
            healed,
            1,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// All learned outcome counts.
    pub async fn action_stats(&self) -> Result<Vec<ActionStat>> {
        Ok(sqlx::query_as::<_, ActionStat>(
            "select failure_kind, asset_class, action_name, healed, not_healed \
             from action_outcome_stat order by failure_kind, asset_class, action_name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The kill switch: the stored value, else `default`.
    pub async fn kill_switch(&self, default: bool) -> Result<bool> {
        let on: Option<bool> = sqlx::query_scalar(
            "select (value->>'on')::bool from guard_setting where name = 'kill_switch'",
        )
        .fetch_optional(&self.pool)
        .await?
        .flatten();
        Ok(on.unwrap_or(default))
    }

    /// Sets the kill switch for every replica.
    pub async fn set_kill_switch(&self, on: bool, by: &str) -> Result<()> {
        sqlx::query(
            "insert into guard_setting (name, value, updated_by) values ('kill_switch', $1, $2) \
             on conflict (name) do update set value = excluded.value, \
             updated_by = excluded.updated_by, updated_at = now()",
        )
        .bind(serde_json::json!({ "on": on }))
        .bind(by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// The guard's situation for an asset and candidate action names.
async fn guard_state(
    conn: &mut sqlx::PgConnection,
    asset_id: i64,
    names: &[String],
    kill_switch_default: bool,
    breaker_reset_secs: i64,
) -> Result<GuardState> {
    let kill: Option<bool> = sqlx::query_scalar(
        "select (value->>'on')::bool from guard_setting where name = 'kill_switch'",
    )
    .fetch_optional(&mut *conn)
    .await?
    .flatten();
    let (since, in_flight_elsewhere, in_flight_here, not_healed): (
            Option<f64>,
            i64,
            bool,
            i64,
        ) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select \
               (select extract(epoch from clock_timestamp() - max(requested_at))::float8 from action \
                  where asset_id = $1 and state not in ('blocked', 'recommended', 'rejected', 'expired', 'awaiting_approval')), \
               (select count(distinct a.asset_id) from action a where a.asset_id <> $1 and {IN_FLIGHT}), \
               exists (select 1 from action a where a.asset_id = $1 and {IN_FLIGHT}), \
               (select count(*) from action where asset_id = $1 and verification = 'not_healed' \
                  and verified_at > clock_timestamp() - make_interval(secs => $2) \
                  and verified_at > coalesce((select max(verified_at) from action \
                  where asset_id = $1 and verification = 'healed'), '-infinity'))"
        )))
        .bind(asset_id)
        .bind(breaker_reset_secs as f64)
        .fetch_one(&mut *conn)
        .await?;
    let runs: Vec<(String, i64)> = sqlx::query_as(
        "select name, count(*) from action where name = any($1) \
             and started_at > clock_timestamp() - interval '1 hour' group by name",
    )
    .bind(names)
    .fetch_all(&mut *conn)
    .await?;
    Ok(GuardState {
        asset: Situation {
            kill_switch: kill.unwrap_or(kill_switch_default),
            since_last_action_secs: since.map(|s| s as i64),
            runs_last_hour: 0,
            assets_in_flight: in_flight_elsewhere as u32,
            asset_in_flight: in_flight_here,
            not_healed_in_a_row: not_healed as u32,
        },
        runs_last_hour: runs.into_iter().map(|(n, c)| (n, c as u32)).collect(),
    })
}

/// Adds `n` (negative: removes) outcomes to a (kind, class, action)'s counts.
pub(crate) async fn count_outcome(
    tx: &mut sqlx::PgConnection,
    kind: &str,
    class: &str,
    action: &str,
    healed: bool,
    n: i64,
) -> Result<()> {
    let (h, nh) = if healed { (n, 0) } else { (0, n) };
    sqlx::query(
        "insert into action_outcome_stat (failure_kind, asset_class, action_name, healed, not_healed) \
         values ($1, $2, $3, greatest($4, 0), greatest($5, 0)) \
         on conflict (failure_kind, asset_class, action_name) do update set \
         healed = greatest(action_outcome_stat.healed + $4, 0), \
         not_healed = greatest(action_outcome_stat.not_healed + $5, 0), updated_at = now()",
    )
    .bind(kind)
    .bind(class)
    .bind(action)
    .bind(h)
    .bind(nh)
    .execute(tx)
    .await?;
    Ok(())
}

/// How an incident ended, as a person reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutcome {
    pub incident_id: i64,
    /// Root cause, if known.
    pub root_cause: Option<String>,
    /// Actions tried, in order (catalog names or others).
    pub actions_tried: Vec<String>,
    /// The one that healed, if any (one of `actions_tried`).
    pub healed_by: Option<String>,
    /// Seconds from the start to recovery.
    pub time_to_recover_secs: Option<f64>,
    /// Idempotency key.
    pub client_key: String,
    pub author: String,
    /// Seconds before the incident in which an alert counts as having predicted it.
    pub horizon_secs: i64,
}

/// A stored outcome.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct Outcome {
    pub incident_outcome_id: i64,
    pub incident_id: i64,
    /// human, verification or vigil.
    pub source: String,
    /// Root cause.
    pub root_cause: Option<String>,
    /// Actions tried, in order.
    pub actions_tried: Value,
    /// The one that healed.
    pub healed_by: Option<String>,
    /// Seconds to recover.
    pub time_to_recover_secs: Option<f64>,
    /// No alert opened in the horizon before the incident.
    pub missed_detection: bool,
    /// Idempotency key.
    pub client_key: Option<String>,
    /// Who reported it.
    pub author: String,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Records a person's outcome of an incident once per client key, and counts it for
    /// action choice in the same transaction: each action tried counts as healed (the one
    /// that healed) or not. A human outcome overrides what verification counted for Vigil's
    /// actions on the asset around the incident, and an earlier human outcome of the same
    /// incident (the newest wins). Returns the outcome and whether this call stored it.
    pub async fn record_outcome(&self, new: &NewOutcome) -> Result<(Outcome, bool)> {
        if let Some(earlier) =
            sqlx::query_as::<_, Outcome>("select * from incident_outcome where client_key = $1")
                .bind(&new.client_key)
                .fetch_optional(&self.pool)
                .await?
        {
            return Ok((earlier, false));
        }
        let mut tx = self.pool.begin().await?;
        let (asset_id, kind, class, started_at): (i64, String, String, DateTime<Utc>) =
            sqlx::query_as(
                "select i.asset_id, i.kind, s.class, i.started_at from incident i \
                 join asset s using (asset_id) where i.incident_id = $1 for update of i",
            )
            .bind(new.incident_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::NotFound(format!("incident {}", new.incident_id)))?;
        let horizon = new.horizon_secs as f64;
        let missed: bool = sqlx::query_scalar(
            "select not exists (select 1 from alert where asset_id = $1 \
             and opened_at between $2 - make_interval(secs => $3) and $2)",
        )
        .bind(asset_id)
        .bind(started_at)
        .bind(horizon)
        .fetch_one(&mut *tx)
        .await?;
        // Undo what this outcome supersedes: the previous human outcome of the incident...
        let previous: Option<(Value, Option<String>)> = sqlx::query_as(
            "select actions_tried, healed_by from incident_outcome \
             where incident_id = $1 and source = 'human' order by created_at desc limit 1",
        )
        .bind(new.incident_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((tried, healed_by)) = previous {
            for name in tried
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let healed = healed_by.as_deref() == Some(name);
                count_outcome(&mut tx, &kind, &class, name, healed, -1).await?;
            }
        }
        // ...and the verifications of Vigil's actions on the asset around the incident.
        let verified: Vec<(i64, String, Option<String>, String)> = sqlx::query_as(
            "select action_id, name, failure_kind, verification from action \
             where asset_id = $1 and verification in ('healed', 'not_healed') \
             and requested_at between $3 - make_interval(secs => $4) and now() \
             and (incident_id is null or incident_id = $2) for update",
        )
        .bind(asset_id)
        .bind(new.incident_id)
        .bind(started_at)
        .bind(horizon)
        .fetch_all(&mut *tx)
        .await?;
        for (action_id, name, action_kind, verification) in verified {
            let action_kind = action_kind.as_deref().unwrap_or("unknown");
            count_outcome(
                &mut tx,
                action_kind,
                &class,
                &name,
                verification == "healed",
                -1,
            )
            .await?;
            sqlx::query(
                "update action set verification = 'skipped', incident_id = $2 \
                 where action_id = $1",
            )
            .bind(action_id)
            .bind(new.incident_id)
            .execute(&mut *tx)
            .await?;
        }
        for name in &new.actions_tried {
            let healed = new.healed_by.as_deref() == Some(name.as_str());
            count_outcome(&mut tx, &kind, &class, name, healed, 1).await?;
        }
        let outcome = sqlx::query_as::<_, Outcome>(
            "insert into incident_outcome (incident_id, source, root_cause, actions_tried, \
             healed_by, time_to_recover_secs, missed_detection, client_key, author) \
             values ($1, 'human', $2, $3, $4, $5, $6, $7, $8) returning *",
        )
        .bind(new.incident_id)
        .bind(&new.root_cause)
        .bind(serde_json::json!(new.actions_tried))
        .bind(&new.healed_by)
        .bind(new.time_to_recover_secs)
        .bind(missed)
        .bind(&new.client_key)
        .bind(&new.author)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((outcome, true))
    }
}
