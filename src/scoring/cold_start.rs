//! Cold start: when no trained model can answer, each metric's series is scored by the
//! streaming detector from its own past only.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::streaming::{StreamingDetector, StreamingParams};

/// The cold-start detector's scores: each metric's series scored from its own past only.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ColdStartScore {
    /// The largest metric score, in [0, 1].
    pub anomaly_score: f64,
    /// Per metric: its highest score over the last few points.
    pub metrics: BTreeMap<String, f64>,
    /// Metrics too short to learn from (fewer than `min_points`).
    pub too_short: Vec<String>,
    /// Points a metric needs.
    pub min_points: usize,
}

/// Points a series needs before the cold-start detector's score means anything: its warm-up
/// and the warm-up of its likelihood stage.
pub fn cold_start_min_points() -> usize {
    2 * StreamingParams::default().warmup
}

/// Scores each series of `window` (or those `wanted`) with a fresh streaming detector that
/// learns from the series' own earlier values (its last `max_points`, so that a long posted
/// window costs no more than a stored one); a metric's score is its highest over the last
/// `recent` points (the likelihood stage's averaging span). `None` when no metric is long
/// enough.
pub fn cold_start(
    window: &BTreeMap<String, Vec<f64>>,
    wanted: impl Fn(&str) -> bool,
    max_points: usize,
) -> Option<ColdStartScore> {
    let params = StreamingParams::default();
    let min_points = cold_start_min_points();
    let mut metrics = BTreeMap::new();
    let mut too_short = Vec::new();
    for (name, values) in window.iter().filter(|(name, _)| wanted(name)) {
        let values = &values[values.len().saturating_sub(max_points.max(min_points))..];
        if values.len() < min_points {
            too_short.push(name.clone());
            continue;
        }
        let Ok(scores) = StreamingDetector::score_series(params.clone(), values) else {
            continue;
        };
        let tail = &scores[scores.len().saturating_sub(params.recent)..];
        metrics.insert(name.clone(), tail.iter().copied().fold(0.0, f64::max));
    }
    let anomaly_score = metrics
        .values()
        .copied()
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))?;
    Some(ColdStartScore {
        anomaly_score,
        metrics,
        too_short,
        min_points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_window_is_scored_on_its_last_points_only() {
        let series: Vec<f64> = (0..5000).map(|i| ((i * 37) % 101) as f64).collect();
        let long = BTreeMap::from([("m".to_owned(), series.clone())]);
        let last = BTreeMap::from([("m".to_owned(), series[5000 - 300..].to_vec())]);
        assert_eq!(
            cold_start(&long, |_| true, 300),
            cold_start(&last, |_| true, 300)
        );
    }
}
