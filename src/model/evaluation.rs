//! Quality measures of probabilistic classifiers: ROC AUC, average precision (as
//! scikit-learn computes them), Brier score, a reliability table, and the alert threshold:
//! the one whose alerts cost least on the validation windows, else the best-F1 one.

use serde::{Deserialize, Serialize};

/// ROC AUC by ranks (ties share their average rank); `None` without both classes.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut positives) = (0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if labels[k] {
                rank_sum += average_rank;
                positives += 1.0;
            }
        }
        i = j + 1;
    }
    let negatives = scores.len() as f64 - positives;
    (positives > 0.0 && negatives > 0.0)
        .then(|| (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

/// Cumulative (true, false) positives at each distinct score, from the highest down: what
/// alerting at or above that score would catch and raise.
fn sweep_down(scores: &[f64], labels: &[bool]) -> Vec<(f64, f64, f64)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp, mut out) = (0.0, 0.0, Vec::new());
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        for &k in &order[i..=j] {
            if labels[k] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
        }
        out.push((scores[order[i]], tp, fp));
        i = j + 1;
    }
    out
}

/// Average precision: the sum over score thresholds of (recall step) x precision, as
/// scikit-learn's `average_precision_score`; `None` without positives.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let total_positives = labels.iter().filter(|&&l| l).count() as f64;
    if total_positives == 0.0 {
        return None;
    }
    let (mut ap, mut last_recall) = (0.0, 0.0);
    for (_, tp, fp) in sweep_down(scores, labels) {
        let recall = tp / total_positives;
        ap += (recall - last_recall) * tp / (tp + fp);
        last_recall = recall;
    }
    Some(ap)
}

/// An alert threshold chosen on labelled windows, and how it did on them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThresholdChoice {
    /// Alert at or above this probability.
    pub fire_at: f64,
    /// Of the windows at or above it, the share that preceded a failure.
    pub precision: f64,
    /// Of the windows that preceded a failure, the share at or above it.
    pub recall: f64,
    /// Harmonic mean of both.
    pub f1: f64,
    /// Positive windows it was measured on.
    pub positives: u64,
    /// The alerts it opened on the windows (when chosen by [`best_event_threshold`]);
    /// `None`: chosen by [`best_f1_threshold`], on windows alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<EventFigures>,
}

impl ThresholdChoice {
    /// The window figures of alerting at or above `fire_at`.
    fn at(scores: &[f64], labels: &[bool], fire_at: f64) -> Self {
        let (mut tp, mut fp, mut positives) = (0.0, 0.0, 0u64);
        for (&s, &l) in scores.iter().zip(labels) {
            positives += u64::from(l);
            match (s >= fire_at, l) {
                (true, true) => tp += 1.0,
                (true, false) => fp += 1.0,
                _ => {}
            }
        }
        Self::of_counts(fire_at, tp, fp, positives)
    }

    /// The figures of alerting at `fire_at` from its true and false positive windows, of
    /// `positives` positive windows.
    fn of_counts(fire_at: f64, tp: f64, fp: f64, positives: u64) -> Self {
        let precision = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
        let recall = if positives > 0 {
            tp / positives as f64
        } else {
            0.0
        };
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Self {
            fire_at,
            precision,
            recall,
            f1,
            positives,
            events: None,
        }
    }
}

/// How alerts open and clear (scoring's hysteresis) and what their errors cost (the
/// policy's), for [`best_event_threshold`] and the clear point of any threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertRule {
    /// Consecutive grid points at or above the threshold that open an alert.
    pub fire_windows: u32,
    /// An alert clears below `fire_at - clear_gap` or `fire_at * clear_ratio`, whichever is
    /// higher ([`AlertRule::clear_below`]).
    pub clear_gap: f64,
    /// See `clear_gap`.
    pub clear_ratio: f64,
    /// Cost of an alert that no failure followed.
    pub false_alarm_cost: f64,
    /// Cost of a failure no alert opened before.
    pub missed_failure_cost: f64,
    /// Lowest and highest threshold allowed.
    pub bounds: (f64, f64),
}

impl AlertRule {
    /// Where an alert opened at `fire_at` clears: `clear_gap` below it or `clear_ratio` of
    /// it, whichever is higher, within [0, `fire_at`] (0.5 clears at 0.3, 0.1 at 0.06 with
    /// the defaults, not at 0).
    pub fn clear_below(&self, fire_at: f64) -> f64 {
        (fire_at - self.clear_gap)
            .max(fire_at * self.clear_ratio.min(1.0))
            .clamp(0.0, fire_at.max(0.0))
    }
}

/// What alerting at one threshold did on validation windows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EventFigures {
    /// Failures with a window in the horizon before them.
    pub failures: u64,
    /// Of those, the ones an alert opened before (at most `lead_secs` before).
    pub caught: u64,
    /// Alerts opened.
    pub alerts: u64,
    /// Alerts no failure followed within `lead_secs` of their opening.
    pub false_alarms: u64,
    /// `false_alarm_cost` x false alarms + `missed_failure_cost` x missed failures.
    pub cost: f64,
}

/// Validation windows for [`best_event_threshold`], by index.
#[derive(Debug, Clone, Copy)]
pub struct EventWindows<'a> {
    /// Each window's asset.
    pub asset: &'a [u32],
    /// Each window's end, Unix seconds.
    pub end: &'a [i64],
    /// The window precedes a failure within the horizon (a positive window).
    pub positive: &'a [bool],
    /// Start of the asset's next failure after the window, when one is known.
    pub next_failure: &'a [Option<i64>],
    /// An alert opened at most this long before a failure announced it (an early alarm
    /// is a true one); one opened earlier, or followed by none, is a false alarm.
    pub lead_secs: i64,
    /// Grid points between consecutive windows of an asset (a longer gap restarts the
    /// count of windows in a row).
    pub stride: usize,
    /// Grid step, seconds.
    pub step_secs: i64,
}

/// Most thresholds [`best_event_threshold`] tries (evenly spaced ranks of the scores).
const EVENT_CANDIDATES: usize = 400;

/// The threshold whose alerts, replayed on `windows` in time order per asset with `rule`'s
/// hysteresis, cost least (on ties, the middle candidate of the highest run of them; the
/// candidates are up to 400 evenly spaced ranks of the scores): an alert
/// opens after `fire_windows` grid points in a row at or above it, unless one is open, and
/// clears at the first below [`AlertRule::clear_below`]; it catches the failure that
/// follows its opening within `lead_secs`, and is a false alarm when none does. The
/// failures to catch are those with a positive window. `None` with fewer than
/// `min_failures` of them.
pub fn best_event_threshold(
    scores: &[f64],
    windows: &EventWindows<'_>,
    rule: &AlertRule,
    min_failures: usize,
) -> Option<ThresholdChoice> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by_key(|&i| (windows.asset[i], windows.end[i]));
    let mut failures: Vec<(u32, i64)> = (0..scores.len())
        .filter(|&i| windows.positive[i])
        .filter_map(|i| Some((windows.asset[i], windows.next_failure[i]?)))
        .collect();
    failures.sort_unstable();
    failures.dedup();
    if failures.is_empty() || failures.len() < min_failures {
        return None;
    }
    let mut sorted: Vec<f64> = scores
        .iter()
        .copied()
        .filter(|s| (rule.bounds.0..=rule.bounds.1).contains(s))
        .collect();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    let mut candidates: Vec<f64> = (0..EVENT_CANDIDATES.min(sorted.len()))
        .map(|k| sorted[k * sorted.len() / EVENT_CANDIDATES.min(sorted.len())])
        .chain([rule.bounds.0, rule.bounds.1])
        .collect();
    candidates.sort_by(|a, b| b.total_cmp(a));
    candidates.dedup();
    let tried: Vec<(f64, EventFigures)> = candidates
        .into_iter()
        .map(|fire_at| {
            let events = replay_alerts(scores, windows, &order, &failures, rule, fire_at);
            (fire_at, events)
        })
        .collect();
    // The least cost is often reached over a range of thresholds (every failure caught,
    // no false alarm, from just above the negatives to just below the positives): take
    // the middle of the highest such range, a margin both ways for windows to come.
    let least = tried.iter().map(|t| t.1.cost).fold(f64::INFINITY, f64::min);
    let first = tried.iter().position(|t| t.1.cost == least)?;
    let run = tried[first..]
        .iter()
        .take_while(|t| t.1.cost == least)
        .count();
    let (fire_at, events) = tried[first + run / 2];
    Some(ThresholdChoice {
        events: Some(events),
        ..ThresholdChoice::at(scores, windows.positive, fire_at)
    })
}

/// The alerts `rule` opens at `fire_at` on `windows` (visited in `order`: by asset, then
/// time), against the `failures` (asset, start; sorted) they could catch.
fn replay_alerts(
    scores: &[f64],
    windows: &EventWindows<'_>,
    order: &[usize],
    failures: &[(u32, i64)],
    rule: &AlertRule,
    fire_at: f64,
) -> EventFigures {
    let stride = windows.stride.max(1);
    let needed = (rule.fire_windows.max(1) as usize).div_ceil(stride);
    let spacing = stride as i64 * windows.step_secs;
    let clear = rule.clear_below(fire_at);
    let mut caught: Vec<(u32, i64)> = Vec::new();
    let (mut alerts, mut false_alarms) = (0u64, 0u64);
    let (mut streak, mut open, mut last) = (0usize, false, None::<(u32, i64)>);
    for &i in order {
        let (asset, end) = (windows.asset[i], windows.end[i]);
        match last {
            Some((a, _)) if a != asset => (streak, open) = (0, false),
            Some((_, e)) if end - e > spacing => streak = 0,
            _ => {}
        }
        last = Some((asset, end));
        if scores[i] >= fire_at {
            streak += 1;
            if streak >= needed && !open {
                open = true;
                alerts += 1;
                match windows.next_failure[i] {
                    Some(at) if at - end <= windows.lead_secs => caught.push((asset, at)),
                    _ => false_alarms += 1,
                }
            }
        } else {
            streak = 0;
            open &= scores[i] >= clear;
        }
    }
    caught.sort_unstable();
    caught.dedup();
    caught.retain(|f| failures.binary_search(f).is_ok());
    let missed = failures.len() - caught.len();
    EventFigures {
        failures: failures.len() as u64,
        caught: caught.len() as u64,
        alerts,
        false_alarms,
        cost: rule.false_alarm_cost * false_alarms as f64
            + rule.missed_failure_cost * missed as f64,
    }
}

/// The score threshold with the best F1 on `scores` (the highest one on ties: fewer
/// alerts for the same F1); `None` with fewer than `min_positives` positives.
pub fn best_f1_threshold(
    scores: &[f64],
    labels: &[bool],
    min_positives: usize,
) -> Option<ThresholdChoice> {
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 || positives < min_positives {
        return None;
    }
    sweep_down(scores, labels)
        .into_iter()
        .filter(|&(_, tp, _)| tp > 0.0)
        .map(|(fire_at, tp, fp)| ThresholdChoice::of_counts(fire_at, tp, fp, positives as u64))
        .fold(None, |best: Option<ThresholdChoice>, c| match best {
            Some(b) if b.f1 >= c.f1 => Some(b),
            _ => Some(c),
        })
}

/// Mean squared difference between predicted probability and outcome.
pub fn brier(probabilities: &[f64], labels: &[bool]) -> f64 {
    let n = probabilities.len().max(1) as f64;
    probabilities
        .iter()
        .zip(labels)
        .map(|(p, &l)| (p - if l { 1.0 } else { 0.0 }).powi(2))
        .sum::<f64>()
        / n
}

/// One bin of a reliability table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Lower edge of predicted probability.
    pub from: f64,
    /// Upper edge.
    pub to: f64,
    /// Windows in the bin.
    pub count: u64,
    /// Mean predicted probability.
    pub predicted: f64,
    /// Observed failure rate.
    pub observed: f64,
}

/// Reliability table over `bins` equal-width probability bins (empty bins left out).
pub fn reliability(probabilities: &[f64], labels: &[bool], bins: usize) -> Vec<ReliabilityBin> {
    let mut sums = vec![(0u64, 0.0, 0.0); bins];
    for (&p, &l) in probabilities.iter().zip(labels) {
        let bin = ((p * bins as f64) as usize).min(bins - 1);
        sums[bin].0 += 1;
        sums[bin].1 += p;
        sums[bin].2 += if l { 1.0 } else { 0.0 };
    }
    sums.iter()
        .enumerate()
        .filter(|(_, (count, _, _))| *count > 0)
        .map(|(i, &(count, p, y))| ReliabilityBin {
            from: i as f64 / bins as f64,
            to: (i + 1) as f64 / bins as f64,
            count,
            predicted: p / count as f64,
            observed: y / count as f64,
        })
        .collect()
}

/// The measures of one binary classifier on one data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scorecard {
    /// Windows.
    pub n: u64,
    /// Positive windows.
    pub positives: u64,
    /// ROC AUC.
    pub roc_auc: Option<f64>,
    /// Average precision.
    pub average_precision: Option<f64>,
    /// Brier score (probabilities only).
    pub brier: Option<f64>,
    /// Reliability table (probabilities only).
    pub reliability: Vec<ReliabilityBin>,
}

impl Scorecard {
    /// Ranks only (anomaly scores).
    pub fn ranking(scores: &[f64], labels: &[bool]) -> Self {
        Self {
            n: labels.len() as u64,
            positives: labels.iter().filter(|&&l| l).count() as u64,
            roc_auc: roc_auc(scores, labels),
            average_precision: average_precision(scores, labels),
            brier: None,
            reliability: Vec::new(),
        }
    }

    /// Ranks and calibration (probabilities).
    pub fn probabilities(probabilities: &[f64], labels: &[bool]) -> Self {
        Self {
            brier: Some(brier(probabilities, labels)),
            reliability: reliability(probabilities, labels, 10),
            ..Self::ranking(probabilities, labels)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_hand_computed_cases() {
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            Some(0.75)
        );
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(roc_auc(&[0.5, 0.6], &[true, true]), None);
    }

    #[test]
    fn best_f1_threshold_of_a_hand_computed_case() {
        // Alerting at or above 0.8: P 1, R 1/3, F1 1/2; 0.4: P 1/2, F1 2/5; 0.35: P 2/3,
        // R 2/3, F1 2/3; 0.3: P 3/4, R 1, F1 6/7 (best); 0.2: P 3/5, F1 3/4; 0.1: F1 2/3.
        let scores = [0.1, 0.4, 0.35, 0.8, 0.2, 0.3];
        let labels = [false, false, true, true, false, true];
        let c = best_f1_threshold(&scores, &labels, 1).unwrap();
        assert_eq!(c.fire_at, 0.3);
        assert!((c.precision - 0.75).abs() < 1e-12 && c.recall == 1.0);
        assert!((c.f1 - 6.0 / 7.0).abs() < 1e-12);
        assert_eq!(c.positives, 3);
        assert_eq!(best_f1_threshold(&scores, &labels, 4), None);
        assert_eq!(best_f1_threshold(&[0.5], &[false], 0), None);
    }

    #[test]
    fn event_threshold_of_a_hand_computed_case() {
        // One asset, windows a minute apart (ends 0, 60, ..., 960 s); a failure at 540 s
        // has positive windows 5..=8, one at 1020 s 14..=16. An alert opened at most 300 s
        // before a failure announces it. Two in a row open an alert; it clears below
        // max(t - 0.2, 0.6 t).
        let scores = [
            0.1, 0.5, 0.5, 0.1, 0.1, 0.2, 0.3, 0.3, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.3, 0.9, 0.9,
        ];
        let asset = [0; 17];
        let end: Vec<i64> = (0..17).map(|i| i * 60).collect();
        let positive: Vec<bool> = (0..17).map(|i| matches!(i, 5..=8 | 14..=16)).collect();
        let next_failure: Vec<Option<i64>> = (0..17)
            .map(|i| Some(if i <= 8 { 540 } else { 1020 }))
            .collect();
        let mut windows = EventWindows {
            asset: &asset,
            end: &end,
            positive: &positive,
            next_failure: &next_failure,
            lead_secs: 300,
            stride: 1,
            step_secs: 60,
        };
        let rule = AlertRule {
            fire_windows: 2,
            clear_gap: 0.2,
            clear_ratio: 0.6,
            false_alarm_cost: 1.0,
            missed_failure_cost: 10.0,
            bounds: (0.0, 1.0),
        };
        // At 0.9: one alert (window 16) catches the second failure: cost 10. At 0.5 (clear
        // below 0.3): a false alarm (window 2), the 0.9s open a second: cost 11. At 0.3
        // (clear below 0.18): the false alarm clears at window 3, windows 6, 7 open one
        // that catches the first failure, 14, 15 one that catches the second: cost 1. At
        // 0.2 (clear below 0.12) windows 5, 6 open the first failure's: cost 1 too. At 0.1
        // one alert opens at window 1 and never clears: cost 21. Of the run of least cost
        // (0.3, 0.2), the middle one (the second of two) is taken.
        let c = best_event_threshold(&scores, &windows, &rule, 1).unwrap();
        assert_eq!(c.fire_at, 0.2);
        let e = c.events.unwrap();
        assert_eq!(
            (e.failures, e.caught, e.alerts, e.false_alarms),
            (2, 2, 3, 1)
        );
        assert_eq!(e.cost, 1.0);
        // Window figures at 0.2: 9 windows at or above it, 7 of them before a failure, all
        // 7 windows before failures.
        assert_eq!(c.positives, 7);
        assert!((c.precision - 7.0 / 9.0).abs() < 1e-12);
        assert_eq!(c.recall, 1.0);
        // With windows 10 and 11 at 0.2, 0.2 opens a second false alarm there (cost 2) and
        // 0.3 is alone at the least cost.
        let mut noisier = scores;
        noisier[10] = 0.2;
        noisier[11] = 0.2;
        let c = best_event_threshold(&noisier, &windows, &rule, 1).unwrap();
        assert_eq!(c.fire_at, 0.3);
        assert_eq!(c.events.unwrap().cost, 1.0);
        // Only alerts opened at most 100 s before a failure count: those at 0.3 and 0.2
        // open 120 s and more before theirs (false alarms, both failures missed: cost 23);
        // 0.9's opens 60 s before the second (cost 10).
        windows.lead_secs = 100;
        let c = best_event_threshold(&scores, &windows, &rule, 1).unwrap();
        assert_eq!(c.fire_at, 0.9);
        let e = c.events.unwrap();
        assert_eq!((e.caught, e.false_alarms, e.cost), (1, 0, 10.0));
        windows.lead_secs = 300;
        // Fewer failures than asked for: no choice.
        assert_eq!(best_event_threshold(&scores, &windows, &rule, 3), None);
        assert_eq!(rule.clear_below(0.5), 0.3);
        assert!((rule.clear_below(0.1) - 0.06).abs() < 1e-12);
    }

    #[test]
    fn average_precision_matches_scikit_learn() {
        // sklearn.metrics.average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.8333...
        let ap = average_precision(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert!((ap - 0.833_333_333_333_333_4).abs() < 1e-12, "{ap}");
        assert_eq!(average_precision(&[0.2], &[false]), None);
    }

    #[test]
    fn brier_and_reliability() {
        assert_eq!(brier(&[1.0, 0.0, 0.5], &[true, false, true]), 0.25 / 3.0);
        let table = reliability(&[0.05, 0.07, 0.95], &[false, true, true], 10);
        assert_eq!(table.len(), 2);
        assert_eq!(table[0].count, 2);
        assert_eq!(table[0].observed, 0.5);
        assert_eq!(table[1].from, 0.9);
    }
}
