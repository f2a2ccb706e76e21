//! The replay benchmark of the learning loop (`vigil replay`): a generated stream of
//! incidents and alerts, driven through the same policy code the service uses
//! ([`bandit::choose`] for actions, [`threshold::adapt`] for thresholds), to measure how
//! fast action choice finds the right action and how much feedback cuts false alarms.
//!
//! Actions: each failure kind has one right action, which heals with probability
//! `p_right`; any other heals with `p_wrong`. Thresholds: windows score from a Beta
//! distribution, higher before failures; every alert gets true/false feedback, every
//! failure below the threshold counts as missed, calm windows within one step below the
//! threshold count as the false alarms a lower threshold would raise, and the adapter runs
//! after each label.

use rand08::rngs::SmallRng;
use rand08::{Rng, SeedableRng};
use serde::Serialize;

use crate::policy::bandit::{self, Arm, sample_beta};
use crate::policy::threshold::{self, Costs, Decision, Labelled};

/// Failure kinds and their right action.
pub const KINDS: [(&str, &str); 6] = [
    ("memory_leak", "restart"),
    ("disk_filling", "clean_disk"),
    ("latency_creep", "scale_out"),
    ("error_burst", "reroute"),
    ("thermal_drift", "throttle"),
    ("bad_deploy", "rollback"),
];

/// The replay's knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayParams {
    /// Incidents in the action stream.
    pub incidents: usize,
    /// Probability that the right action heals.
    pub p_right: f64,
    /// Probability that another action heals.
    pub p_wrong: f64,
    /// Labelled alerts to feed back.
    pub labelled_alerts: usize,
    /// Windows in the evaluation stream of the thresholds (before and after).
    pub eval_windows: usize,
    /// Fraction of windows that precede a failure.
    pub failure_rate: f64,
    /// Beta(a, b) of the scores of windows before failures.
    pub failure_beta: (f64, f64),
    /// Beta(a, b) of the scores of calm windows (its tail above the threshold is the false
    /// alarms).
    pub calm_beta: (f64, f64),
    /// The starting threshold.
    pub start_threshold: f64,
    /// The adapter's costs and limits.
    pub costs: Costs,
    pub seed: u64,
}

impl Default for ReplayParams {
    fn default() -> Self {
        Self {
            incidents: 600,
            p_right: 0.9,
            p_wrong: 0.1,
            labelled_alerts: 200,
            eval_windows: 20_000,
            failure_rate: 0.01,
            failure_beta: (12.0, 2.0),
            calm_beta: (2.0, 6.0),
            start_threshold: 0.5,
            costs: Costs {
                false_alarm: 1.0,
                missed_failure: 10.0,
                min_precision: 0.0,
                min_labels: 20,
                max_step: 0.05,
                min_gain: 0.02,
                bounds: (0.05, 0.95),
            },
            seed: 1,
        }
    }
}

/// Action choice over one block of 100 incidents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Block {
    /// Incidents `from..to`.
    pub from: usize,
    /// End (exclusive).
    pub to: usize,
    /// Fraction where the chosen action was the right one.
    pub right: f64,
    /// Cumulative regret up to `to`: expected heals lost against always choosing right.
    pub cumulative_regret: f64,
}

/// The action half of the replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionReport {
    /// Per block of 100.
    pub blocks: Vec<Block>,
    /// Fraction right among incidents after the 20th of their kind.
    pub right_after_20: f64,
    /// Total regret.
    pub regret: f64,
}

/// The threshold half of the replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdReport {
    /// The threshold before feedback.
    pub before: f64,
    /// After `labelled_alerts` labelled alerts.
    pub after: f64,
    /// False alarms on the evaluation stream at each.
    pub false_alarms: (usize, usize),
    /// Failures caught on the evaluation stream at each.
    pub caught: (usize, usize),
    /// Failures in the evaluation stream.
    pub failures: usize,
    /// Threshold moves made.
    pub moves: usize,
}

/// Runs the action half.
pub fn replay_actions(p: &ReplayParams) -> ActionReport {
    let mut rng = SmallRng::seed_from_u64(p.seed);
    let actions: Vec<&str> = KINDS.iter().map(|k| k.1).collect();
    let mut arms: Vec<Vec<Arm>> = KINDS
        .iter()
        .map(|_| {
            actions
                .iter()
                .map(|a| Arm {
                    action: (*a).to_owned(),
                    prior: (1.0, 1.0),
                    healed: 0,
                    not_healed: 0,
                })
                .collect()
        })
        .collect();
    let mut seen = [0usize; KINDS.len()];
    let (mut right_late, mut late) = (0usize, 0usize);
    let mut regret = 0.0;
    let mut blocks = Vec::new();
    let mut block_right = 0;
    for i in 0..p.incidents {
        let kind = rng.gen_range(0..KINDS.len());
        let chosen = bandit::choose(&arms[kind], &mut rng).unwrap_or(0);
        let right = actions[chosen] == KINDS[kind].1;
        let p_heal = if right { p.p_right } else { p.p_wrong };
        regret += p.p_right - p_heal;
        if rng.r#gen::<f64>() < p_heal {
            arms[kind][chosen].healed += 1;
        } else {
            arms[kind][chosen].not_healed += 1;
        }
        seen[kind] += 1;
        if seen[kind] > 20 {
            late += 1;
            right_late += usize::from(right);
        }
        block_right += usize::from(right);
        if (i + 1) % 100 == 0 || i + 1 == p.incidents {
            let from = i / 100 * 100;
            blocks.push(Block {
                from,
                to: i + 1,
                right: block_right as f64 / (i + 1 - from) as f64,
                cumulative_regret: regret,
            });
            block_right = 0;
        }
    }
    ActionReport {
        blocks,
        right_after_20: if late > 0 {
            right_late as f64 / late as f64
        } else {
            0.0
        },
        regret,
    }
}

/// One window: its score and whether a failure follows.
fn window(rng: &mut SmallRng, p: &ReplayParams) -> Labelled {
    let failure = rng.r#gen::<f64>() < p.failure_rate;
    // Windows before failures mostly score high; calm windows mostly low, with a tail that
    // crosses the default threshold (the false alarms feedback should remove).
    let score = if failure {
        sample_beta(p.failure_beta.0, p.failure_beta.1, rng)
    } else {
        sample_beta(p.calm_beta.0, p.calm_beta.1, rng)
    };
    Labelled { score, failure }
}

/// Runs the threshold half.
pub fn replay_thresholds(p: &ReplayParams) -> ThresholdReport {
    let mut rng = SmallRng::seed_from_u64(p.seed ^ 0x7468_7265_7368);
    let mut current = p.start_threshold;
    let mut cases: Vec<Labelled> = Vec::new();
    let mut labelled_alerts = 0;
    let mut moves = 0;
    while labelled_alerts < p.labelled_alerts {
        let w = window(&mut rng, p);
        if w.score >= current {
            // An alert, labelled by the operator.
            labelled_alerts += 1;
            cases.push(w);
        } else if w.failure {
            // A failure without an alert: a missed detection, labelled by its incident.
            cases.push(w);
        } else if w.score >= current - p.costs.max_step {
            // A calm window within one step below the threshold, and no failure followed:
            // the false alarm a lower threshold would raise (the service finds these in its
            // stored scores).
            cases.push(w);
            continue;
        } else {
            continue;
        }
        if let Decision::Move { fire_at, .. } = threshold::adapt(&cases, current, &p.costs) {
            current = fire_at;
            moves += 1;
        }
    }
    // The same evaluation stream, scored at the threshold before and after.
    let mut eval_rng = SmallRng::seed_from_u64(p.seed ^ 0x6576_616c);
    let stream: Vec<Labelled> = (0..p.eval_windows)
        .map(|_| window(&mut eval_rng, p))
        .collect();
    let count = |t: f64| {
        let fa = stream.iter().filter(|w| !w.failure && w.score >= t).count();
        let caught = stream.iter().filter(|w| w.failure && w.score >= t).count();
        (fa, caught)
    };
    let (fa0, c0) = count(p.start_threshold);
    let (fa1, c1) = count(current);
    ThresholdReport {
        before: p.start_threshold,
        after: current,
        false_alarms: (fa0, fa1),
        caught: (c0, c1),
        failures: stream.iter().filter(|w| w.failure).count(),
        moves,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_choice_learns_the_right_action_of_each_kind() {
        let report = replay_actions(&ReplayParams::default());
        assert!(
            report.right_after_20 >= 0.85,
            "right after 20 per kind: {}",
            report.right_after_20
        );
        let first = report.blocks.first().unwrap().right;
        let last = report.blocks.last().unwrap().right;
        assert!(last > first, "{first} -> {last}");
        assert!(report.regret > 0.0);
    }

    #[test]
    fn feedback_cuts_false_alarms_and_keeps_the_failures() {
        let r = replay_thresholds(&ReplayParams::default());
        assert!(r.after > r.before, "{r:?}");
        assert!(r.false_alarms.1 < r.false_alarms.0, "{r:?}");
        assert!(r.caught.1 as f64 >= 0.9 * r.caught.0 as f64, "{r:?}");
    }
}
