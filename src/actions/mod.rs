//! Corrective actions: when an alert opens, choose an action from the catalog by Thompson
//! sampling among those the safety guard permits, record the guard's decision whatever it is,
//! run it (or wait for approval, or only recommend), and verify afterwards whether it healed
//! the asset; the verification updates the action's posterior without anyone clicking.
//!
//! Invariant: every action passes `policy::guard::judge` inside `Store::propose_action`
//! (one transaction under the guard's lock) and is stored before it runs.

pub mod executor;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand08::SeedableRng;
use rand08::rngs::SmallRng;
use serde_json::json;

use crate::config::{ActionSettings, Settings};
use crate::policy::bandit::{self, Arm};
use crate::policy::guard::{self, Mode, Verdict};
use crate::store::Store;
use crate::store::actions::{ActionRow, ActionStat, NewAction};

/// Retries of recording an action's result while the database is unavailable (about 48 s of
/// waits): an action that ran must not stay `running`.
pub const RECORD_RETRIES: u32 = 10;

/// How long after its start an action still `running` counts as lost (then the sweeper marks
/// it `failed`): the longest run of any action in `catalog`, with every retry of recording
/// its result, and 10 s more.
pub fn lost_after(catalog: &[ActionSettings]) -> Duration {
    catalog
        .iter()
        .map(executor::longest_run)
        .max()
        .unwrap_or_default()
        + crate::store::retry_unavailable_waits(RECORD_RETRIES)
        + Duration::from_secs(10)
}

/// The name of the escalation action used when an asset's breaker opens.
pub const PAGE_HUMAN: &str = "page_human";

/// An alert that may call for an action.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertContext {
    pub alert_id: i64,
    pub asset: String,
    pub class: String,
    /// The diagnosed failure kind (`unknown` when none).
    pub kind: String,
}

/// Errors of the action machinery.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// Storage.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// The action is not waiting for approval (or its approval expired).
    #[error("action {0} is not awaiting approval (decided, or expired)")]
    NotAwaiting(i64),
    /// The guard refused an approved action now.
    #[error("the guard refuses action {id} now: {rule}")]
    Refused {
        /// The action.
        id: i64,
        /// The rule that refused.
        rule: String,
    },
    /// The action's name is not in the catalog any more.
    #[error("action {0} is not in the catalog")]
    NotInCatalog(String),
}

/// Re-scores an asset for verification: its current level (probability, or cold-start
/// anomaly score) and the threshold below which an alert clears.
pub type Rescore = Arc<dyn Fn(String) -> RescoreFuture + Send + Sync>;

/// What a [`Rescore`] returns.
pub type RescoreFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(f64, f64), String>> + Send>>;

/// The action runner shared by the service.
pub struct Actions {
    store: Store,
    settings: Arc<Settings>,
    client: reqwest::Client,
    rng: Mutex<SmallRng>,
}

impl std::fmt::Debug for Actions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actions")
            .field("catalog", &self.settings.actions.len())
            .finish()
    }
}

/// How much the outcomes of the same failure kind on other asset classes count toward a
/// class's posterior (partial pooling: a class with few outcomes of its own borrows from the
/// others, and its own outcomes dominate as they accumulate).
pub const POOLING: f64 = 0.5;

/// The posterior arms of the catalog actions for a (kind, class), from the learned counts and
/// priors; the kind's outcomes on other classes add to the prior with weight [`POOLING`].
pub fn arms(
    catalog: &[&ActionSettings],
    stats: &[ActionStat],
    kind: &str,
    class: &str,
) -> Vec<Arm> {
    catalog
        .iter()
        .map(|spec| {
            let (mut own, mut other) = ((0u64, 0u64), (0.0, 0.0));
            for s in stats
                .iter()
                .filter(|s| s.failure_kind == kind && s.action_name == spec.name)
            {
                let (h, n) = (s.healed.max(0) as u64, s.not_healed.max(0) as u64);
                if s.asset_class == class {
                    own = (own.0 + h, own.1 + n);
                } else {
                    other = (other.0 + h as f64, other.1 + n as f64);
                }
            }
            Arm {
                action: spec.name.clone(),
                prior: (
                    spec.prior.0 + POOLING * other.0,
                    spec.prior.1 + POOLING * other.1,
                ),
                healed: own.0,
                not_healed: own.1,
            }
        })
        .collect()
}

impl Actions {
    /// A runner over the configured catalog; `seed` fixes the sampling.
    pub fn new(store: Store, settings: Arc<Settings>, seed: u64) -> Self {
        Self {
            store,
            settings,
            client: reqwest::Client::new(),
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
        }
    }

    fn spec(&self, name: &str) -> Option<&ActionSettings> {
        self.settings.actions.iter().find(|a| a.name == name)
    }

    /// Chooses, guards, records and (when permitted in auto mode) runs an action for a newly
    /// opened alert. `None` when the catalog has nothing for its kind and class.
    pub async fn on_alert(&self, alert: &AlertContext) -> Result<Option<ActionRow>, ActionError> {
        let candidates: Vec<&ActionSettings> = self
            .settings
            .actions
            .iter()
            .filter(|a| a.name != PAGE_HUMAN && a.applies_to(&alert.kind, &alert.class))
            .collect();
        if candidates.is_empty() {
            return Ok(None);
        }
        let stats = self.store.action_stats().await?;
        let arms = arms(&candidates, &stats, &alert.kind, &alert.class);
        let asset = self.store.asset_by_name(&alert.asset).await?;
        let mut names: Vec<String> = candidates.iter().map(|c| c.name.clone()).collect();
        names.push(PAGE_HUMAN.to_owned());
        let limits = guard_limits(&self.settings.guard);
        let page_human = self.spec(PAGE_HUMAN);
        let approval = chrono::Duration::seconds(self.settings.guard.approval_timeout_secs);
        let row = {
            let rng = &self.rng;
            self.store
                .propose_action(
                    asset.asset_id,
                    &names,
                    self.settings.guard.kill_switch,
                    self.settings.guard.breaker_reset_secs,
                    |gs| {
                        let decisions: Vec<_> = candidates
                            .iter()
                            .map(|c| guard::judge(c.mode, &limits, &gs.for_action(&c.name)))
                            .collect();
                        let permitted: Vec<usize> = (0..candidates.len())
                            .filter(|&i| {
                                !matches!(decisions[i].verdict, Verdict::Block | Verdict::Escalate)
                            })
                            .collect();
                        let mut rng = rng.lock().unwrap_or_else(|e| e.into_inner());
                        let pool: Vec<Arm> = permitted.iter().map(|&i| arms[i].clone()).collect();
                        let (spec, decision, reason) = match bandit::choose(&pool, &mut *rng) {
                            Some(k) => {
                                let i = permitted[k];
                                (
                                    candidates[i],
                                    decisions[i].clone(),
                                    format!(
                                        "Thompson sampling among {} permitted of {} applicable \
                                         actions for {} on a {} asset (posterior mean {:.2} \
                                         from {} outcomes)",
                                        permitted.len(),
                                        candidates.len(),
                                        alert.kind,
                                        alert.class,
                                        arms[i].mean(),
                                        arms[i].healed + arms[i].not_healed
                                    ),
                                )
                            }
                            None => {
                                // Nothing may run: record what would have been chosen, and
                                // why not (or escalate when the breaker opened).
                                let i = bandit::choose(&arms, &mut *rng).unwrap_or(0);
                                let d = decisions[i].clone();
                                if d.verdict == Verdict::Escalate
                                    && let Some(page) = page_human
                                {
                                    let decision = guard::Decision {
                                        verdict: Verdict::Run,
                                        checks: d.checks,
                                    };
                                    return Some(new_action(
                                        alert,
                                        page,
                                        &decision,
                                        "the breaker is open for this asset: escalating to a human"
                                            .to_owned(),
                                        approval,
                                    ));
                                }
                                (candidates[i], d, "blocked by the safety guard".to_owned())
                            }
                        };
                        Some(new_action(alert, spec, &decision, reason, approval))
                    },
                )
                .await?
        };
        let Some(row) = row else { return Ok(None) };
        if row.state == "running" {
            self.run(&row).await?;
            return Ok(Some(self.store.action(row.action_id).await?));
        }
        Ok(Some(row))
    }

    /// Runs a stored `running` action and records the result (retried [`RECORD_RETRIES`]
    /// times while the database is unavailable).
    async fn run(&self, row: &ActionRow) -> Result<(), ActionError> {
        let spec = self
            .spec(&row.name)
            .ok_or_else(|| ActionError::NotInCatalog(row.name.clone()))?
            .clone();
        let target = executor::Target {
            action_id: row.action_id,
            asset: row.asset.clone(),
            class: row.asset_class.clone(),
            kind: row
                .failure_kind
                .clone()
                .filter(|k| crate::vocab::is_valid_name(k))
                .unwrap_or_else(|| "unknown".to_owned()),
            alert_id: row.alert_id,
            reason: row.reason.clone(),
        };
        let outcome = executor::execute(&spec, &target, &self.client).await;
        // The action ran: its result is recorded even across a database outage (for about
        // a minute), or it would stay `running`, in flight, holding the asset and the budget.
        let what = format!("record the result of action {}", row.action_id);
        crate::store::retry_unavailable(&what, RECORD_RETRIES, || {
            self.store
                .finish_action(row.action_id, outcome.ok, &outcome.result)
        })
        .await?;
        Ok(())
    }

    /// An admin approves (re-checked by the guard now) or rejects an action awaiting
    /// approval.
    pub async fn decide(&self, id: i64, approve: bool, by: &str) -> Result<ActionRow, ActionError> {
        self.store.expire_actions().await?;
        let row = self.store.action(id).await?;
        if row.state != "awaiting_approval" {
            return Err(ActionError::NotAwaiting(id));
        }
        let decision = if approve {
            let asset = self.store.asset_by_name(&row.asset).await?;
            let gs = self
                .store
                .guard_state_now(
                    asset.asset_id,
                    std::slice::from_ref(&row.name),
                    self.settings.guard.kill_switch,
                    self.settings.guard.breaker_reset_secs,
                )
                .await?;
            let d = guard::judge(
                Mode::Auto,
                &guard_limits(&self.settings.guard),
                &gs.for_action(&row.name),
            );
            if let Some(rule) = d.refused_by() {
                return Err(ActionError::Refused {
                    id,
                    rule: format!("{rule:?}"),
                });
            }
            Some(serde_json::to_value(&d).unwrap_or_default())
        } else {
            None
        };
        let decided = self
            .store
            .decide_approval(id, approve, by, decision.as_ref())
            .await?
            .ok_or(ActionError::NotAwaiting(id))?;
        if decided.state == "running" {
            self.run(&decided).await?;
            return Ok(self.store.action(id).await?);
        }
        Ok(decided)
    }

    /// Verifies every action whose settle time and window have passed: healed when no
    /// incident of the asset started after the alert that prompted it (or, without an alert,
    /// was recorded since it ran), and its score is below the clear threshold now and was in
    /// every score stored since it settled. An action whose asset had failed within the
    /// horizon before its alert is skipped: the asset's recovery is not its doing. When an action did not heal and its alert is still open, the next
    /// action is chosen for it (the guard's breaker bounds the tries). Returns how many were
    /// verified.
    pub async fn verify_due(&self, rescore: &Rescore) -> Result<usize, ActionError> {
        let g = &self.settings.guard;
        let due = self
            .store
            .actions_to_verify(g.settle_secs + g.verify_window_secs)
            .await?;
        let mut verified = 0;
        for action in due {
            let since = action.started_at.unwrap_or(action.requested_at);
            // Incidents are placed in data time by the alert that prompted the action (when
            // there is one) so that backfilled or replayed data compare correctly.
            let (failed_before, failed_after) = match action.alert_id {
                Some(alert_id) => {
                    let alert = self.store.alert(alert_id).await?;
                    self.store
                        .incidents_around(
                            &action.asset,
                            alert.opened_at,
                            self.settings.training.horizon_secs,
                        )
                        .await?
                }
                None => (
                    false,
                    self.store.incident_since(&action.asset, since).await?,
                ),
            };
            // An action on an asset that had already failed cannot be credited with its
            // recovery (nor blamed): it is not counted.
            if failed_before && !failed_after {
                let detail = json!({ "skipped": "the asset had failed before the alert" });
                if self
                    .store
                    .skip_verification(action.action_id, &detail)
                    .await?
                {
                    verified += 1;
                }
                continue;
            }
            let incident = failed_after;
            let settled =
                action.finished_at.unwrap_or(since) + chrono::Duration::seconds(g.settle_secs);
            let worst = self.store.max_level_since(&action.asset, settled).await?;
            let score = rescore(action.asset.clone()).await;
            let (healed, detail) = match (&score, incident) {
                (_, true) => (false, json!({ "incident_since_action": true })),
                (Ok((level, clear)), false) => (
                    *level < *clear && worst.is_none_or(|w| w < *clear),
                    json!({ "level": level, "highest_since_settling": worst, "clear_below": clear }),
                ),
                (Err(e), false) => (false, json!({ "rescore_error": e })),
            };
            if self
                .store
                .record_verification(action.action_id, healed, &detail)
                .await?
            {
                verified += 1;
                if !healed && action.name != PAGE_HUMAN {
                    self.retry(&action).await?;
                }
            }
        }
        Ok(verified)
    }

    /// Chooses another action for the alert of an action that did not heal, if that alert
    /// is still open.
    async fn retry(&self, action: &ActionRow) -> Result<(), ActionError> {
        let Some(alert_id) = action.alert_id else {
            return Ok(());
        };
        let alert = self.store.alert(alert_id).await?;
        if alert.state != "open" {
            return Ok(());
        }
        let context = AlertContext {
            alert_id,
            asset: action.asset.clone(),
            class: action.asset_class.clone(),
            kind: action
                .failure_kind
                .clone()
                .unwrap_or_else(|| "unknown".to_owned()),
        };
        if let Some(next) = self.on_alert(&context).await? {
            tracing::info!(
                alert_id,
                action = %next.name,
                state = %next.state,
                "the previous action did not heal; chose another"
            );
        }
        Ok(())
    }

    /// Expires approvals, marks lost actions failed ([`lost_after`]) and verifies due
    /// actions every `every`, until aborted.
    pub fn spawn_sweeper(
        self: Arc<Self>,
        rescore: Rescore,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        // The catalog is fixed for the life of `self`: so is when an action counts as lost.
        let lost = lost_after(&self.settings.actions).as_secs() as i64;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = self.store.expire_actions().await {
                    tracing::warn!("cannot expire approvals: {e}");
                }
                match self.store.fail_lost_actions(lost).await {
                    Ok(ids) if ids.is_empty() => {}
                    Ok(ids) => {
                        tracing::warn!(?ids, "actions without a result after {lost} s: failed")
                    }
                    Err(e) => tracing::warn!("cannot look for lost actions: {e}"),
                }
                match self.verify_due(&rescore).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(verified = n, "verified actions"),
                    Err(e) => tracing::warn!("cannot verify actions: {e}"),
                }
            }
        })
    }
}

fn new_action(
    alert: &AlertContext,
    spec: &ActionSettings,
    decision: &guard::Decision,
    reason: String,
    approval: chrono::Duration,
) -> NewAction {
    let state = match decision.verdict {
        Verdict::Recommend => "recommended",
        Verdict::AwaitApproval => "awaiting_approval",
        Verdict::Run => "running",
        Verdict::Block | Verdict::Escalate => "blocked",
    };
    NewAction {
        alert_id: Some(alert.alert_id),
        name: spec.name.clone(),
        executor: spec.executor.as_str().to_owned(),
        params: executor::describe(
            spec,
            &executor::Target {
                action_id: 0,
                asset: alert.asset.clone(),
                class: alert.class.clone(),
                kind: alert.kind.clone(),
                alert_id: Some(alert.alert_id),
                reason: reason.clone(),
            },
        ),
        reason,
        failure_kind: Some(alert.kind.clone()),
        mode: spec.mode.as_str().to_owned(),
        state: state.to_owned(),
        guard_decision: serde_json::to_value(decision).unwrap_or_default(),
        expires_at: (decision.verdict == Verdict::AwaitApproval)
            .then(|| chrono::Utc::now() + approval),
    }
}

/// The limits the guard rules take, from `guard.*`.
fn guard_limits(settings: &crate::config::GuardSettings) -> crate::policy::guard::Limits {
    crate::policy::guard::Limits {
        cooldown_secs: settings.cooldown_secs,
        rate_limit_per_hour: settings.rate_limit_per_hour,
        budget: settings.budget,
        breaker_after: settings.breaker_after,
    }
}
