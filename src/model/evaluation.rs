//! Quality measures of probabilistic classifiers: ROC AUC, average precision (as
//! scikit-learn computes them), Brier score, a reliability table, and the best-F1 alert
//! threshold.

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
    /// Positive windows it was chosen on.
    pub positives: u64,
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
    let total = positives as f64;
    sweep_down(scores, labels)
        .into_iter()
        .filter(|&(_, tp, _)| tp > 0.0)
        .map(|(fire_at, tp, fp)| {
            let (precision, recall) = (tp / (tp + fp), tp / total);
            ThresholdChoice {
                fire_at,
                precision,
                recall,
                f1: 2.0 * precision * recall / (precision + recall),
                positives: positives as u64,
            }
        })
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
