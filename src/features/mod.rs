//! Features: the one definition of how a window of samples becomes a feature vector. The
//! training pipeline and real-time scoring both call [`extract`]; nothing else turns samples
//! into model inputs.
//!
//! A window is the last `window` points of each metric of an asset on a regular grid of
//! `step_secs`. Irregular samples are put on the grid by [`resample`]: each grid point takes
//! the last sample at or before it, forward-filled for at most `max_fill` points; a longer gap
//! makes that metric's window missing, with the reason.
//!
//! Each metric's window is compared with the asset's own past ([`context::Context`]: the
//! metric over the day before the window's hour), never with other assets: per metric the
//! features are [`RELATIVE_STATS`]: the window's last value, mean, min and max as z-scores
//! against that past (its standard deviation floored at 0.01% of its level, z clamped at
//! ±[`Z_CLAMP`]); the trend over the whole window and over its last third, as the change
//! over a window's length in the same units; the log of the window's spread over the past's;
//! the shift of the window's mean from the last hour's mean (a level that moved within the
//! hour, against one that has held for a day); the last value against the window's own mean
//! and spread; the window's mean and last value against the week before its day (a slow
//! creep the day's past has absorbed) with a flag for no known week; a flag for no known past;
//! the log of the roughness of the window's last third (its mean change from one point to the
//! next: a saw-tooth or a wobble that grows, which the whole window's spread dilutes) over the
//! past's spread; and a missing indicator. Without a known past the
//! comparisons are 0 and the flag 1. Absolute levels (the head of [`LEVEL_STATS`]: mean, std,
//! min, max, last, slope per step) come first only where a schema asks for them (`levels`). A missing metric
//! gets zeros and `missing = 1`, so a window lacking some metrics is still scored from what it
//! has; a window with no usable metric is refused.
//!
//! This module does no IO: plain functions over slices.

pub mod context;
pub mod dataset;
pub mod derive;

use serde::{Deserialize, Serialize};

/// Version of the feature definition, saved with every model; bump it when the stats or
/// their formulas change. Version 1 had absolute levels and a baseline fixed at training;
/// version 2 had no week; version 3 had no roughness; bundles of another version are refused
/// at load with a request to retrain.
pub const FEATURE_VERSION: u32 = 4;

pub use context::Context;

/// Per-metric statistics of a schema with `levels`, in feature order: the absolute levels,
/// then [`RELATIVE_STATS`].
pub const LEVEL_STATS: [&str; 21] = [
    "mean",
    "std",
    "min",
    "max",
    "last",
    "slope",
    "z_last",
    "z_mean",
    "z_min",
    "z_max",
    "trend",
    "trend_recent",
    "spread",
    "shift",
    "within",
    "week_z_mean",
    "week_z_last",
    "no_week",
    "no_context",
    "rough",
    "missing",
];

/// Number of absolute levels at the head of [`LEVEL_STATS`].
const LEVELS: usize = 6;

/// Per-metric statistics against the asset's own past, in feature order (every schema's,
/// and all of one without `levels`).
pub const RELATIVE_STATS: &[&str] = LEVEL_STATS.split_at(LEVELS).1;

/// Largest absolute z-score a feature takes.
pub const Z_CLAMP: f64 = 20.0;

/// A standard deviation used as a divisor is at least this share of the level...
const REL_FLOOR: f64 = 1e-4;
/// ...and at least this.
const ABS_FLOOR: f64 = 1e-6;
/// The spread's log ratio adds this share of the past's deviation to both sides, so that a
/// flat window reads about ln(0.01), not minus infinity.
const SPREAD_FLOOR: f64 = 0.01;

fn floor_at(level: f64) -> f64 {
    (level.abs() * REL_FLOOR).max(ABS_FLOOR)
}

fn clamp_z(z: f64) -> f64 {
    z.clamp(-Z_CLAMP, Z_CLAMP)
}

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
    /// Whether absolute levels ([`LEVEL_STATS`]) enter besides the comparisons with the
    /// asset's past.
    #[serde(default)]
    pub levels: bool,
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
            levels: false,
        }
    }

    /// The per-metric statistics, in feature order.
    pub fn stats(&self) -> &'static [&'static str] {
        if self.levels {
            &LEVEL_STATS
        } else {
            RELATIVE_STATS
        }
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.metrics.len() * self.stats().len()
    }

    /// True when the schema has no metric.
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }

    /// Feature names, `<metric>_<stat>`, in order.
    pub fn names(&self) -> Vec<String> {
        let stats = self.stats();
        self.metrics
            .iter()
            .flat_map(|m| stats.iter().map(move |s| format!("{m}_{s}")))
            .collect()
    }

    /// Index of a metric in feature order.
    pub fn metric_index(&self, metric: &str) -> Option<usize> {
        self.metrics.iter().position(|m| m == metric)
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
/// `None` when missing; `contexts[i]` is the asset's past of that metric, if known.
/// Returns the indexes of the missing metrics, or [`WindowError::NothingUsable`].
pub fn extract(
    schema: &FeatureSchema,
    window: &[Option<&[f64]>],
    contexts: &[Option<Context>],
    out: &mut [f64],
) -> Result<Vec<usize>, WindowError> {
    debug_assert_eq!(window.len(), schema.metrics.len());
    debug_assert_eq!(out.len(), schema.len());
    let width = schema.stats().len();
    let mut missing = Vec::new();
    for (i, values) in window.iter().enumerate() {
        let slot = &mut out[i * width..(i + 1) * width];
        match values {
            Some(values) if !values.is_empty() => {
                let raw = window_stats(values);
                let relative = if schema.levels {
                    slot[..LEVELS].copy_from_slice(&[
                        raw.mean, raw.std, raw.min, raw.max, raw.last, raw.slope,
                    ]);
                    &mut slot[LEVELS..]
                } else {
                    slot
                };
                relative_stats(&raw, contexts.get(i).copied().flatten(), relative);
                relative[RELATIVE_STATS.len() - 1] = 0.0;
            }
            _ => {
                slot.fill(0.0);
                slot[width - 1] = 1.0;
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

/// One metric's window in its own units.
struct WindowStats {
    mean: f64,
    std: f64,
    min: f64,
    max: f64,
    last: f64,
    /// Least-squares slope per step over the whole window...
    slope: f64,
    /// ...and over its last third (at least 3 points).
    slope_recent: f64,
    /// Mean absolute change from one point to the next over the same last third.
    rough: f64,
    /// Points.
    n: f64,
}

/// The first [`RELATIVE_STATS`] (all but `missing`) of a window against its past.
fn relative_stats(w: &WindowStats, context: Option<Context>, out: &mut [f64]) {
    let span = (w.n - 1.0).max(1.0);
    // |last - mean| is at most sqrt(n - 1) population deviations: no floor is needed.
    out[8] = if w.std > 0.0 {
        clamp_z((w.last - w.mean) / w.std)
    } else {
        0.0
    };
    out[9..14].copy_from_slice(&[0.0, 0.0, 1.0, 1.0, 0.0]);
    let Some(c) = context else {
        out[..8].fill(0.0);
        return;
    };
    let sd = c.std.max(floor_at(c.mean));
    let z = |v: f64| clamp_z((v - c.mean) / sd);
    out[0] = z(w.last);
    out[1] = z(w.mean);
    out[2] = z(w.min);
    out[3] = z(w.max);
    out[4] = clamp_z(w.slope * span / sd);
    out[5] = clamp_z(w.slope_recent * span / sd);
    out[6] = log_over(w.std, sd);
    out[7] = c.recent_mean.map_or(0.0, |r| clamp_z((w.mean - r) / sd));
    if let Some(week) = c.week {
        let sd = week.std.max(floor_at(week.mean));
        out[9] = clamp_z((w.mean - week.mean) / sd);
        out[10] = clamp_z((w.last - week.mean) / sd);
        out[11] = 0.0;
    }
    out[12] = 0.0;
    out[13] = log_over(w.rough, sd);
}

/// The log of a window's deviation-like `value` over the past's deviation `sd`, both sides
/// raised by [`SPREAD_FLOOR`] of `sd` (a flat window reads about ln(0.01)), clamped.
fn log_over(value: f64, sd: f64) -> f64 {
    clamp_z(((value + SPREAD_FLOOR * sd) / ((1.0 + SPREAD_FLOOR) * sd)).ln())
}

/// Accumulators the pass keeps per statistic, over values `k`, `k + LANES`, ...:
/// independent chains of additions that overlap instead of each waiting on the one before.
const LANES: usize = 2;

/// The [`WindowStats`] of one metric's window, in one pass (and a short one over the last
/// third for its recent slope). Sums run over the values' differences from the first value,
/// `d`: the mean is `x0 + sum(d) / n`, the variance `(sum(d^2) - sum(d)^2 / n) / n` (exactly 0
/// for a constant window) and the slope's covariance `sum((k - centre) d)` (the centred `k`
/// sum to zero, so no mean is needed). Shifting by a value of the window keeps the sums small
/// where the values sit far from zero.
fn window_stats(x: &[f64]) -> WindowStats {
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
    let var = (square - sum * sum / n).max(0.0);
    let slope = slope_of(cov, n);
    let recent = &x[x.len() - (x.len() / 3).max(3).min(x.len())..];
    let rough = recent.windows(2).map(|p| (p[1] - p[0]).abs()).sum::<f64>()
        / (recent.len() - 1).max(1) as f64;
    let slope_recent = if recent.len() == x.len() {
        slope
    } else {
        let (m, c) = (recent.len() as f64, (recent.len() as f64 - 1.0) / 2.0);
        let r0 = recent[0];
        slope_of(
            recent
                .iter()
                .enumerate()
                .map(|(k, &v)| (k as f64 - c) * (v - r0))
                .sum(),
            m,
        )
    };
    WindowStats {
        mean: x0 + sum / n,
        std: (var / n).sqrt(),
        min,
        max,
        last: x[x.len() - 1],
        slope,
        slope_recent,
        rough,
        n,
    }
}

/// A least-squares slope per step from the centred covariance over `n` points: divided by
/// the sum of `(k - centre)^2`, `n (n^2 - 1) / 12`, exact in f64 (squares of half-integers).
fn slope_of(cov: f64, n: f64) -> f64 {
    let ss_k = n * (n * n - 1.0) / 12.0;
    if ss_k > 0.0 { cov / ss_k } else { 0.0 }
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
        let mut s = schema(&["cpu"], 5);
        s.levels = true;
        let x = [1.0, 2.0, 3.0, 4.0, 10.0];
        let mut out = vec![0.0; s.len()];
        let context = Context {
            mean: 2.0,
            std: 2.0,
            recent_mean: Some(3.0),
            week: Some(context::Spread {
                mean: 1.0,
                std: 4.0,
            }),
        };
        let missing = extract(&s, &[Some(&x)], &[Some(context)], &mut out).unwrap();
        assert!(missing.is_empty());
        let mean = 4.0;
        let std = ((9.0 + 4.0 + 1.0 + 0.0 + 36.0) / 5.0f64).sqrt();
        // slope: sum((k-2)(x-4)) / sum((k-2)^2) = (6 + 2 + 0 + 0 + 12) / 10; over the last
        // three points [3, 4, 10]: (-1 * -3 + 1 * 3) / 2
        let (slope, recent) = (2.0, 3.5);
        let expected = [
            mean,
            std,
            1.0,
            10.0,
            10.0,
            slope,
            (10.0 - 2.0) / 2.0,
            (mean - 2.0) / 2.0,
            (1.0 - 2.0) / 2.0,
            (10.0 - 2.0) / 2.0,
            slope * 4.0 / 2.0,
            recent * 4.0 / 2.0,
            ((std + 0.02) / 2.02f64).ln(),
            (mean - 3.0) / 2.0,
            (10.0 - mean) / std,
            (mean - 1.0) / 4.0,
            (10.0 - 1.0) / 4.0,
            0.0,
            0.0,
            // rough: the last three points [3, 4, 10] step by 1 and 6.
            ((3.5 + 0.02) / 2.02f64).ln(),
            0.0,
        ];
        assert_eq!(out.len(), expected.len());
        for (i, (got, want)) in out.iter().zip(expected).enumerate() {
            assert!(
                (got - want).abs() < 1e-12,
                "{}: {got} vs {want}",
                s.names()[i]
            );
        }
        assert_eq!(s.names()[5], "cpu_slope");
        assert_eq!(s.names()[6], "cpu_z_last");
        // Without a past: comparisons 0, the flag set, the window's own shape kept.
        extract(&s, &[Some(&x)], &[None], &mut out).unwrap();
        assert_eq!(&out[6..14], &[0.0; 8]);
        assert!((out[14] - (10.0 - mean) / std).abs() < 1e-12);
        assert_eq!(&out[15..21], &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn no_absolute_level_enters_by_default() {
        let s = schema(&["cpu"], 30);
        assert_eq!(s.len(), RELATIVE_STATS.len());
        // Two assets whose levels differ by 1000 but move alike against their own past.
        let low: Vec<f64> = (0..30).map(|k| 10.0 + (k % 3) as f64).collect();
        let high: Vec<f64> = low.iter().map(|v| v + 1000.0).collect();
        let past = |mean| Context {
            mean,
            std: 20.0,
            recent_mean: Some(mean),
            week: Some(context::Spread { mean, std: 30.0 }),
        };
        let (mut a, mut b) = (vec![0.0; s.len()], vec![0.0; s.len()]);
        extract(&s, &[Some(&low)], &[Some(past(11.0))], &mut a).unwrap();
        extract(&s, &[Some(&high)], &[Some(past(1011.0))], &mut b).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-9, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn stats_stay_exact_far_from_zero_and_on_constant_windows() {
        // A ramp of step 0.5 on top of 1e9: every value and difference is exact in f64.
        let ramp: Vec<f64> = (0..60).map(|k| 1e9 + 0.5 * k as f64).collect();
        let w = window_stats(&ramp);
        assert_eq!(w.mean, 1e9 + 14.75);
        let std = 0.5 * ((60.0 * 60.0 - 1.0) / 12.0f64).sqrt();
        assert!((w.std - std).abs() < 1e-12, "{} vs {std}", w.std);
        assert_eq!((w.slope, w.slope_recent), (0.5, 0.5));
        let flat = window_stats(&[123_456.789; 60]);
        assert_eq!(
            [
                flat.mean, flat.std, flat.min, flat.max, flat.last, flat.slope
            ],
            [123_456.789, 0.0, 123_456.789, 123_456.789, 123_456.789, 0.0]
        );
        // A flat past: the floor keeps the z-scores finite and clamped.
        let s = schema(&["cpu"], 60);
        let mut out = vec![0.0; s.len()];
        let past = Context {
            mean: 0.0,
            std: 0.0,
            recent_mean: None,
            week: None,
        };
        extract(&s, &[Some(&ramp)], &[Some(past)], &mut out).unwrap();
        assert!(
            out.iter().all(|v| v.is_finite() && v.abs() <= Z_CLAMP),
            "{out:?}"
        );
        assert_eq!(out[0], Z_CLAMP);
    }

    #[test]
    fn a_missing_metric_is_flagged_and_the_rest_scored() {
        let s = schema(&["cpu", "mem"], 3);
        let mut out = vec![9.0; s.len()];
        let missing =
            extract(&s, &[None, Some(&[1.0, 1.0, 1.0])], &[None, None], &mut out).unwrap();
        assert_eq!(missing, vec![0]);
        let width = RELATIVE_STATS.len();
        assert!(out[..width - 1].iter().all(|&v| v == 0.0));
        assert_eq!(out[width - 1], 1.0);
        // The present metric: no past known, not missing.
        assert_eq!(out[width + 12], 1.0);
        assert_eq!(out[2 * width - 1], 0.0);
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
}
