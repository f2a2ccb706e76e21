//! Features: the one definition of how a window of samples becomes a feature vector. The
//! training pipeline and real-time scoring both call [`extract`]; nothing else turns samples
//! into model inputs.
//!
//! A window is the last `window` points of each metric of an asset on a regular grid of
//! `step_secs`. Irregular samples are put on the grid by [`resample`]: each grid point takes
//! the last sample at or before it, forward-filled for at most `max_fill` points; a longer gap
//! makes that metric's window missing, with the reason. Per metric the features are, in this
//! order, [`STATS`]: mean, population std, min, max, last, least-squares slope per step, the
//! deviation of the window mean from the asset's own longer-run baseline in baseline standard
//! deviations, and a missing indicator. A missing metric gets zeros and `missing = 1`, so a
//! window lacking some metrics is still scored from what it has; a window with no usable
//! metric is refused.
//!
//! This module does no IO: plain functions over slices.

pub mod dataset;
pub mod derive;

use serde::{Deserialize, Serialize};

/// Version of the feature definition, saved with every model; bump it when [`STATS`] or
/// their formulas change.
pub const FEATURE_VERSION: u32 = 1;

/// Per-metric statistics, in feature order.
pub const STATS: [&str; 8] = [
    "mean",
    "std",
    "min",
    "max",
    "last",
    "slope",
    "baseline_z",
    "missing",
];

/// Smallest baseline standard deviation used as a divisor.
const MIN_BASELINE_STD: f64 = 1e-9;

/// Names, order and shape of a model's inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSchema {
    /// [`FEATURE_VERSION`] when the schema was made.
    pub version: u32,
    /// Metrics in feature order.
    pub metrics: Vec<String>,
    /// Points per window.
    pub window: usize,
    /// Grid step in seconds.
    pub step_secs: i64,
    /// Most grid points a value is carried forward over a gap.
    pub max_fill: usize,
    /// How the metrics derive from stored series ([`derive::derive`]); none in bundles made
    /// before derived inputs (their metrics are stored series names, read as stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<crate::vocab::ModelInputs>,
}

impl FeatureSchema {
    /// A schema of the current version.
    pub fn new(metrics: Vec<String>, window: usize, step_secs: i64, max_fill: usize) -> Self {
        Self {
            version: FEATURE_VERSION,
            metrics,
            window,
            step_secs,
            max_fill,
            inputs: None,
        }
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.metrics.len() * STATS.len()
    }

    /// True when the schema has no metric.
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }

    /// Feature names, `<metric>_<stat>`, in order.
    pub fn names(&self) -> Vec<String> {
        self.metrics
            .iter()
            .flat_map(|m| STATS.iter().map(move |s| format!("{m}_{s}")))
            .collect()
    }

    /// Index of a metric in feature order.
    pub fn metric_index(&self, metric: &str) -> Option<usize> {
        self.metrics.iter().position(|m| m == metric)
    }
}

/// An asset's longer-run level of one metric, so that assets with different normal levels
/// compare.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
}

impl Baseline {
    /// Mean and population standard deviation of the finite values, if any.
    pub fn of(values: &[f64]) -> Option<Baseline> {
        let (mut n, mut sum, mut sum_sq) = (0.0, 0.0, 0.0);
        for &v in values.iter().filter(|v| v.is_finite()) {
            n += 1.0;
            sum += v;
            sum_sq += v * v;
        }
        (n > 0.0).then(|| {
            let mean = sum / n;
            Baseline {
                mean,
                std: (sum_sq / n - mean * mean).max(0.0).sqrt(),
            }
        })
    }
}

/// Why a metric's window is missing, or a whole window refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WindowError {
    /// No sample at or before the window's first grid point within the fill limit.
    #[error("{metric}: no sample within {max_fill} steps before {at} (gap)")]
    Gap {
        metric: String,
        /// Unix seconds of the grid point.
        at: i64,
        /// The fill limit.
        max_fill: usize,
    },
    /// A window given on the grid has the wrong number of points.
    #[error("{metric}: {got} points, the model's window is {expected}")]
    WrongLength {
        metric: String,
        /// Points the schema wants.
        expected: usize,
        /// Points given.
        got: usize,
    },
    /// A value that is not a finite number.
    #[error("{metric}: value {index} is not a finite number")]
    NonFinite {
        metric: String,
        /// Position in the window.
        index: usize,
    },
    /// Not one metric of the schema is usable.
    #[error("nothing usable in the window: {0}")]
    NothingUsable(String),
}

/// Puts one metric's samples (`ts` ascending Unix seconds, `values`) on the grid of
/// `n_points` points `start, start + step, ...`: each point takes the last sample at or
/// before it, carried forward at most `max_fill` points; a point with none is NaN. This is
/// the one resampling rule: [`resample`] (one window) and the training pipeline (whole
/// histories) both use it.
pub fn resample_grid(
    ts: &[i64],
    values: &[f64],
    start: i64,
    n_points: usize,
    step_secs: i64,
    max_fill: usize,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(n_points);
    let max_age = max_fill as i64 * step_secs;
    // Index of the first sample after the current grid point.
    let mut next = ts.partition_point(|&t| t <= start);
    for k in 0..n_points as i64 {
        let at = start + k * step_secs;
        while next < ts.len() && ts[next] <= at {
            next += 1;
        }
        let value = match next.checked_sub(1) {
            Some(last) if at - ts[last] <= max_age => values[last],
            _ => f64::NAN,
        };
        out.push(value);
    }
    out
}

/// Puts one metric's samples on the grid of `schema.window` points ending at `end`
/// ([`resample_grid`]); a point without a sample within the fill limit is a gap.
pub fn resample(
    metric: &str,
    ts: &[i64],
    values: &[f64],
    end: i64,
    schema: &FeatureSchema,
) -> Result<Vec<f64>, WindowError> {
    let start = end - (schema.window as i64 - 1) * schema.step_secs;
    let grid = resample_grid(
        ts,
        values,
        start,
        schema.window,
        schema.step_secs,
        schema.max_fill,
    );
    match grid.iter().position(|v| v.is_nan()) {
        Some(k) => Err(WindowError::Gap {
            metric: metric.to_owned(),
            at: start + k as i64 * schema.step_secs,
            max_fill: schema.max_fill,
        }),
        None => Ok(grid),
    }
}

/// Checks a window given directly on the grid (as scoring requests send it).
pub fn check_window(
    metric: &str,
    values: &[f64],
    schema: &FeatureSchema,
) -> Result<(), WindowError> {
    if values.len() != schema.window {
        return Err(WindowError::WrongLength {
            metric: metric.to_owned(),
            expected: schema.window,
            got: values.len(),
        });
    }
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(WindowError::NonFinite {
            metric: metric.to_owned(),
            index,
        }),
        None => Ok(()),
    }
}

/// Writes the feature vector of one window into `out` (length `schema.len()`).
///
/// `window[i]` is metric `schema.metrics[i]` on the grid (length `schema.window`, finite) or
/// `None` when missing; `baselines[i]` is the asset's baseline of that metric, if known.
/// Returns the indexes of the missing metrics, or [`WindowError::NothingUsable`].
pub fn extract(
    schema: &FeatureSchema,
    window: &[Option<&[f64]>],
    baselines: &[Option<Baseline>],
    out: &mut [f64],
) -> Result<Vec<usize>, WindowError> {
    debug_assert_eq!(window.len(), schema.metrics.len());
    debug_assert_eq!(out.len(), schema.len());
    let mut missing = Vec::new();
    for (i, values) in window.iter().enumerate() {
        let slot = &mut out[i * STATS.len()..(i + 1) * STATS.len()];
        match values {
            Some(values) if !values.is_empty() => {
                metric_stats(values, baselines.get(i).copied().flatten(), slot);
            }
            _ => {
                slot.fill(0.0);
                slot[STATS.len() - 1] = 1.0;
                missing.push(i);
            }
        }
    }
    if missing.len() == schema.metrics.len() {
        return Err(WindowError::NothingUsable(format!(
            "none of the metrics {:?} has a window",
            schema.metrics
        )));
    }
    Ok(missing)
}

/// Accumulators the pass keeps per statistic, over values `k`, `k + LANES`, ...:
/// independent chains of additions that overlap instead of each waiting on the one before.
const LANES: usize = 2;

/// The [`STATS`] of one metric's window, in one pass. Sums run over the values' differences
/// from the first value, `d`: the mean is `x0 + sum(d) / n`, the variance
/// `(sum(d^2) - sum(d)^2 / n) / n` (exactly 0 for a constant window) and the slope's
/// covariance `sum((k - centre) d)` (the centred `k` sum to zero, so no mean is needed).
/// Shifting by a value of the window keeps the sums small where the values sit far from
/// zero.
fn metric_stats(x: &[f64], baseline: Option<Baseline>, out: &mut [f64]) {
    let n = x.len() as f64;
    let x0 = x[0];
    let centre = (n - 1.0) / 2.0;
    let (mut sums, mut squares, mut covs) = ([0.0; LANES], [0.0; LANES], [0.0; LANES]);
    let (mut mins, mut maxs) = ([x0; LANES], [x0; LANES]);
    // Each lane's k - centre, exact (half-integers), advanced by LANES per chunk.
    let mut dks: [f64; LANES] = std::array::from_fn(|lane| lane as f64 - centre);
    let chunks = x.chunks_exact(LANES);
    let first_rest = x.len() - chunks.remainder().len();
    for chunk in chunks {
        for (lane, &v) in chunk.iter().enumerate() {
            let d = v - x0;
            sums[lane] += d;
            squares[lane] += d * d;
            covs[lane] += dks[lane] * d;
            dks[lane] += LANES as f64;
            // Comparisons rather than f64::min/max: the window holds no NaN (a gap makes it
            // missing), and a plain compare-and-pick compiles to one instruction.
            mins[lane] = if v < mins[lane] { v } else { mins[lane] };
            maxs[lane] = if v > maxs[lane] { v } else { maxs[lane] };
        }
    }
    let mut sum: f64 = sums.into_iter().sum();
    let mut square: f64 = squares.into_iter().sum();
    let mut cov: f64 = covs.into_iter().sum();
    let mut min = mins.into_iter().fold(x0, f64::min);
    let mut max = maxs.into_iter().fold(x0, f64::max);
    for (k, &v) in x.iter().enumerate().skip(first_rest) {
        let d = v - x0;
        sum += d;
        square += d * d;
        cov += (k as f64 - centre) * d;
        min = min.min(v);
        max = max.max(v);
    }
    let mean = x0 + sum / n;
    let var = (square - sum * sum / n).max(0.0);
    // The sum of (k - centre)^2 over the window: n (n^2 - 1) / 12, exact in f64 (the
    // squares are of half-integers).
    let ss_k = n * (n * n - 1.0) / 12.0;
    out[0] = mean;
    out[1] = (var / n).sqrt();
    out[2] = min;
    out[3] = max;
    out[4] = x[x.len() - 1];
    out[5] = if ss_k > 0.0 { cov / ss_k } else { 0.0 };
    out[6] = match baseline {
        Some(b) => (mean - b.mean) / b.std.max(MIN_BASELINE_STD),
        None => 0.0,
    };
    out[7] = 0.0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(metrics: &[&str], window: usize) -> FeatureSchema {
        FeatureSchema::new(
            metrics.iter().map(|m| m.to_string()).collect(),
            window,
            60,
            2,
        )
    }

    #[test]
    fn stats_match_their_definitions() {
        let s = schema(&["cpu"], 5);
        let x = [1.0, 2.0, 3.0, 4.0, 10.0];
        let mut out = vec![0.0; s.len()];
        let baseline = Baseline {
            mean: 2.0,
            std: 2.0,
        };
        let missing = extract(&s, &[Some(&x)], &[Some(baseline)], &mut out).unwrap();
        assert!(missing.is_empty());
        let mean = 4.0;
        let std = ((9.0 + 4.0 + 1.0 + 0.0 + 36.0) / 5.0f64).sqrt();
        // slope: sum((k-2)(x-4)) / sum((k-2)^2) = (6 + 2 + 0 + 0 + 12) / 10
        assert_eq!(out, vec![mean, std, 1.0, 10.0, 10.0, 2.0, 1.0, 0.0]);
        assert_eq!(s.names()[5], "cpu_slope");
    }

    #[test]
    fn stats_stay_exact_far_from_zero_and_on_constant_windows() {
        let s = schema(&["cpu"], 60);
        let mut out = vec![0.0; s.len()];
        // A ramp of step 0.5 on top of 1e9: every value and difference is exact in f64.
        let ramp: Vec<f64> = (0..60).map(|k| 1e9 + 0.5 * k as f64).collect();
        extract(&s, &[Some(&ramp)], &[None], &mut out).unwrap();
        assert_eq!(out[0], 1e9 + 14.75);
        let std = 0.5 * ((60.0 * 60.0 - 1.0) / 12.0f64).sqrt();
        assert!((out[1] - std).abs() < 1e-12, "{} vs {std}", out[1]);
        assert_eq!(out[5], 0.5);
        let flat = vec![123_456.789; 60];
        extract(&s, &[Some(&flat)], &[None], &mut out).unwrap();
        assert_eq!(
            &out[..6],
            &[123_456.789, 0.0, 123_456.789, 123_456.789, 123_456.789, 0.0]
        );
    }

    #[test]
    fn a_missing_metric_is_flagged_and_the_rest_scored() {
        let s = schema(&["cpu", "mem"], 3);
        let mut out = vec![9.0; s.len()];
        let missing =
            extract(&s, &[None, Some(&[1.0, 1.0, 1.0])], &[None, None], &mut out).unwrap();
        assert_eq!(missing, vec![0]);
        assert_eq!(&out[..8], &[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(out[8], 1.0);
        assert_eq!(out[15], 0.0);
    }

    #[test]
    fn a_window_with_nothing_usable_is_refused() {
        let s = schema(&["cpu", "mem"], 3);
        let mut out = vec![0.0; s.len()];
        let err = extract(&s, &[None, None], &[None, None], &mut out).unwrap_err();
        assert!(matches!(err, WindowError::NothingUsable(_)));
    }

    #[test]
    fn resampling_fills_short_gaps_and_refuses_long_ones() {
        let s = schema(&["cpu"], 4);
        // Jittered samples and one missing minute at t = 120.
        let ts = [-3, 62, 181];
        let values = [1.0, 2.0, 3.0];
        assert_eq!(
            resample("cpu", &ts, &values, 180, &s).unwrap(),
            vec![1.0, 1.0, 2.0, 2.0]
        );
        assert_eq!(
            resample("cpu", &ts, &values, 240, &s).unwrap(),
            vec![1.0, 2.0, 2.0, 3.0]
        );
        let err = resample("cpu", &ts, &values, 600, &s).unwrap_err();
        assert!(matches!(err, WindowError::Gap { at: 420, .. }), "{err}");
        assert!(
            resample("cpu", &ts, &values, 60, &s).is_err(),
            "nothing before the first point"
        );
    }

    #[test]
    fn grid_windows_are_checked() {
        let s = schema(&["cpu"], 3);
        assert!(check_window("cpu", &[1.0, 2.0, 3.0], &s).is_ok());
        assert!(matches!(
            check_window("cpu", &[1.0], &s),
            Err(WindowError::WrongLength { got: 1, .. })
        ));
        assert!(matches!(
            check_window("cpu", &[1.0, f64::NAN, 2.0], &s),
            Err(WindowError::NonFinite { index: 1, .. })
        ));
    }

    #[test]
    fn baselines_ignore_non_finite_values() {
        let b = Baseline::of(&[1.0, 3.0, f64::NAN]).unwrap();
        assert_eq!(
            b,
            Baseline {
                mean: 2.0,
                std: 1.0
            }
        );
        assert_eq!(Baseline::of(&[]), None);
    }
}
