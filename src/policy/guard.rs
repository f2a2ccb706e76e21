//! The safety guard's rules, as one pure function: given an action's mode, the limits and
//! the situation (read from the database by the caller), the verdict and every check that
//! led to it. The caller records the decision whatever it is (the audit trail) before
//! anything runs.

use serde::{Deserialize, Serialize};

pub use crate::vocab::Mode;

/// The guard's limits (from config).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Seconds after an action on an asset before another may act on it.
    pub cooldown_secs: i64,
    /// Most runs of one action (fleet-wide) per hour.
    pub rate_limit_per_hour: u32,
    /// Most assets with an action in flight (running or awaiting verification) at once.
    pub budget: u32,
    /// Actions in a row that did not heal an asset before the breaker opens for it.
    pub breaker_after: u32,
}

/// What the caller found in the database for this action and asset.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Situation {
    /// The global kill switch is on.
    pub kill_switch: bool,
    /// Seconds since the last action (of any kind, not blocked) on this asset.
    pub since_last_action_secs: Option<i64>,
    /// Runs of this action in the last hour, fleet-wide.
    pub runs_last_hour: u32,
    /// Other assets with an action in flight.
    pub assets_in_flight: u32,
    /// This asset has an action in flight.
    pub asset_in_flight: bool,
    /// The asset's latest verified actions that did not heal it, in a row.
    pub not_healed_in_a_row: u32,
}

/// A guard rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The global kill switch.
    KillSwitch,
    /// The per-asset circuit breaker.
    Breaker,
    /// The per-asset cooldown.
    Cooldown,
    /// The per-action rate limit.
    RateLimit,
    /// The fleet-wide blast-radius budget.
    Budget,
}

/// One rule's check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub rule: Rule,
    /// Whether it let the action through.
    pub passed: bool,
    /// What it saw.
    pub detail: String,
}

/// What the guard decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Observe mode: recorded as a recommendation, nothing runs.
    Recommend,
    /// Approve mode: waits for an admin.
    AwaitApproval,
    /// Auto mode (or approved): run now.
    Run,
    /// A rule refused it.
    Block,
    /// The breaker is open: no more automatic actions on this asset; page a human.
    Escalate,
}

/// The verdict and every check, as recorded in `action.guard_decision`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl Decision {
    /// The first rule that refused, if any.
    pub fn refused_by(&self) -> Option<Rule> {
        self.checks.iter().find(|c| !c.passed).map(|c| c.rule)
    }
}

/// Judges one proposed action. All rules are checked and recorded; a failing rule blocks
/// (the breaker escalates). In observe mode the result is a recommendation whatever the
/// rules say, since nothing runs.
pub fn judge(mode: Mode, limits: &Limits, s: &Situation) -> Decision {
    let cooldown_ok = s
        .since_last_action_secs
        .is_none_or(|secs| secs >= limits.cooldown_secs);
    let checks = vec![
        Check {
            rule: Rule::KillSwitch,
            passed: !s.kill_switch,
            detail: format!("kill switch {}", if s.kill_switch { "on" } else { "off" }),
        },
        Check {
            rule: Rule::Breaker,
            passed: s.not_healed_in_a_row < limits.breaker_after,
            detail: format!(
                "{} actions in a row did not heal this asset (breaker at {})",
                s.not_healed_in_a_row, limits.breaker_after
            ),
        },
        Check {
            rule: Rule::Cooldown,
            passed: cooldown_ok && !s.asset_in_flight,
            detail: match (s.since_last_action_secs, s.asset_in_flight) {
                (_, true) => "an action on this asset is still in flight".to_owned(),
                (Some(secs), false) => format!(
                    "last action {secs} s ago (cooldown {} s)",
                    limits.cooldown_secs
                ),
                (None, false) => "no earlier action on this asset".to_owned(),
            },
        },
        Check {
            rule: Rule::RateLimit,
            passed: s.runs_last_hour < limits.rate_limit_per_hour,
            detail: format!(
                "{} runs of this action in the last hour (limit {})",
                s.runs_last_hour, limits.rate_limit_per_hour
            ),
        },
        Check {
            rule: Rule::Budget,
            passed: s.assets_in_flight < limits.budget,
            detail: format!(
                "{} other assets have an action in flight (budget {})",
                s.assets_in_flight, limits.budget
            ),
        },
    ];
    let verdict = match mode {
        Mode::Observe => Verdict::Recommend,
        _ if !checks[0].passed => Verdict::Block,
        _ if !checks[1].passed => Verdict::Escalate,
        _ if checks.iter().any(|c| !c.passed) => Verdict::Block,
        Mode::Approve => Verdict::AwaitApproval,
        Mode::Auto => Verdict::Run,
    };
    Decision { verdict, checks }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        cooldown_secs: 600,
        rate_limit_per_hour: 5,
        budget: 2,
        breaker_after: 3,
    };

    #[test]
    fn each_rule_blocks_when_it_must_and_passes_when_it_may() {
        let calm = Situation::default();
        assert_eq!(judge(Mode::Auto, &LIMITS, &calm).verdict, Verdict::Run);
        assert_eq!(
            judge(Mode::Approve, &LIMITS, &calm).verdict,
            Verdict::AwaitApproval
        );
        let cases = [
            (
                Situation {
                    kill_switch: true,
                    ..calm
                },
                Rule::KillSwitch,
            ),
            (
                Situation {
                    since_last_action_secs: Some(599),
                    ..calm
                },
                Rule::Cooldown,
            ),
            (
                Situation {
                    asset_in_flight: true,
                    ..calm
                },
                Rule::Cooldown,
            ),
            (
                Situation {
                    runs_last_hour: 5,
                    ..calm
                },
                Rule::RateLimit,
            ),
            (
                Situation {
                    assets_in_flight: 2,
                    ..calm
                },
                Rule::Budget,
            ),
        ];
        for (situation, rule) in cases {
            let d = judge(Mode::Auto, &LIMITS, &situation);
            assert_eq!(d.verdict, Verdict::Block, "{rule:?}");
            assert_eq!(d.refused_by(), Some(rule));
            assert_eq!(d.checks.len(), 5, "every rule is recorded");
        }
        // Just inside each limit passes.
        let edge = Situation {
            since_last_action_secs: Some(600),
            runs_last_hour: 4,
            assets_in_flight: 1,
            not_healed_in_a_row: 2,
            ..calm
        };
        assert_eq!(judge(Mode::Auto, &LIMITS, &edge).verdict, Verdict::Run);
    }

    #[test]
    fn the_breaker_escalates_and_observe_only_recommends() {
        let tripped = Situation {
            not_healed_in_a_row: 3,
            ..Situation::default()
        };
        let d = judge(Mode::Auto, &LIMITS, &tripped);
        assert_eq!(d.verdict, Verdict::Escalate);
        assert_eq!(d.refused_by(), Some(Rule::Breaker));
        let killed = Situation {
            kill_switch: true,
            ..tripped
        };
        assert_eq!(judge(Mode::Auto, &LIMITS, &killed).verdict, Verdict::Block);
        assert_eq!(
            judge(Mode::Observe, &LIMITS, &killed).verdict,
            Verdict::Recommend
        );
    }
}
