//! Model inputs derived from an asset's stored series ([`ModelInputs`]): training and
//! scoring from stored samples both call [`derive`], so a model sees the same inputs in
//! both.
//!
//! Each derived metric is evaluated on the grid of `step_secs` (Unix seconds that are
//! multiples of the step): a gauge series at a grid point is its last sample at or before
//! it, no older than the lookback; a counter series (`rate`) is its per-second rate over
//! the range before the grid point, as PromQL's `rate()` computes it ([`extrapolated_rate`]).
//! Series combine within groups of equal `by` labels, groups divide by the same group of
//! `divide_by`, and groups aggregate into one value. A grid point where nothing combines is
//! absent from the derived history (a gap, as with any metric).
//!
//! An asset that no derived metric selects anything of keeps its unlabelled series
//! (`passthrough`): gauges as stored, counters as `<name>:rate`.

use std::collections::BTreeMap;

use crate::vocab::{Combine, MetricHistory, ModelInputs, Selection, SeriesKey};

/// The suffix of a passthrough counter's model input (`requests_total:rate`).
pub const RATE_SUFFIX: &str = ":rate";

/// Whether a family is read as a counter: `*_total`, `*_count`, `*_sum`, or named in
/// `inputs.counters`. (`*_bucket` series carry `le` labels: never passed through.)
pub fn is_counter(family: &str, inputs: &ModelInputs) -> bool {
    ["_total", "_count", "_sum"]
        .iter()
        .any(|s| family.ends_with(s))
        || inputs.counters.iter().any(|c| c == family)
}

/// The rate range in seconds for a grid step: `rate_range_secs`, or four steps when 0.
pub fn rate_range(inputs: &ModelInputs, step_secs: i64) -> i64 {
    if inputs.rate_range_secs > 0 {
        inputs.rate_range_secs
    } else {
        4 * step_secs
    }
}

/// PromQL's extrapolated `rate()` of a counter over the range `(end - range, end]`, from its
/// samples in that range (`ts` in any unit, ascending; `range` in the same unit): the
/// increase with resets added back, extrapolated to the range's ends when the first and
/// last samples lie within 1.1 average intervals of them (else by half an interval), never
/// back past the counter's zero, divided by the range in seconds (`unit_per_sec` units to
/// a second). `None` with fewer than two samples.
pub fn extrapolated_rate(
    ts: &[i64],
    values: &[f64],
    end: i64,
    range: i64,
    unit_per_sec: f64,
) -> Option<f64> {
    let n = ts.len();
    if n < 2 || range <= 0 {
        return None;
    }
    let start = end - range;
    let mut increase = values[n - 1] - values[0];
    for pair in values.windows(2) {
        if pair[1] < pair[0] {
            increase += pair[0];
        }
    }
    let sampled = (ts[n - 1] - ts[0]) as f64;
    if sampled <= 0.0 {
        return None;
    }
    let mut to_start = (ts[0] - start) as f64;
    let to_end = (end - ts[n - 1]) as f64;
    let average = sampled / (n - 1) as f64;
    if increase > 0.0 && values[0] >= 0.0 {
        let to_zero = sampled * (values[0] / increase);
        to_start = to_start.min(to_zero);
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        average / 2.0
    };
    Some(increase * (interval / sampled) / (range as f64 / unit_per_sec))
}

/// A counter's rate at each end in `ends` (ascending, same unit as `ts`), over `range`
/// before it: `None` where fewer than two samples fall in the range.
pub fn rates_at(
    ts: &[i64],
    values: &[f64],
    ends: impl Iterator<Item = i64>,
    range: i64,
    unit_per_sec: f64,
) -> Vec<Option<f64>> {
    let (mut lo, mut hi) = (0, 0);
    ends.map(|end| {
        while hi < ts.len() && ts[hi] <= end {
            hi += 1;
        }
        while lo < hi && ts[lo] <= end - range {
            lo += 1;
        }
        extrapolated_rate(&ts[lo..hi], &values[lo..hi], end, range, unit_per_sec)
    })
    .collect()
}

/// The grid an asset's inputs are derived on: points `start, start + step, ..., end`
/// (multiples of `step`), each reading samples back to `lookback` seconds (gauges) or the
/// rate range (counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// First point, Unix seconds.
    pub start: i64,
    /// Last point, Unix seconds.
    pub end: i64,
    /// Seconds between points.
    pub step: i64,
    /// Oldest a gauge sample may be, in seconds.
    pub lookback: i64,
}

impl Grid {
    /// The grid covering samples from `first` to `last`.
    pub fn covering(first: i64, last: i64, step: i64, lookback: i64) -> Self {
        Self {
            start: first.div_euclid(step) * step
                + if first.rem_euclid(step) == 0 { 0 } else { step },
            end: last.div_euclid(step) * step,
            step,
            lookback,
        }
    }

    fn points(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.len() as i64).map(move |k| self.start + k * self.step)
    }

    fn len(&self) -> usize {
        if self.end < self.start {
            0
        } else {
            ((self.end - self.start) / self.step + 1) as usize
        }
    }
}

/// Whether a label value passes a matcher (`"v"`, `"a|b"`, `"!v"`, `"!a|b"`).
fn matches(value: &str, matcher: &str) -> bool {
    match matcher.strip_prefix('!') {
        Some(none_of) => !none_of.split('|').any(|m| m == value),
        None => matcher.split('|').any(|m| m == value),
    }
}

/// Whether a series is one the selection takes.
pub fn selects(selection: &Selection, key: &SeriesKey) -> bool {
    selection.name.split('|').any(|n| n == key.family)
        && selection.matchers.iter().all(|(label, matcher)| {
            matches(key.labels.get(label).map_or("", String::as_str), matcher)
        })
}

/// One series on the grid: its gauge values or its rates; NaN where it has none.
fn on_grid(history: &MetricHistory, rate: bool, grid: &Grid, range: i64) -> Vec<f64> {
    if rate {
        return rates_at(&history.ts, &history.values, grid.points(), range, 1.0)
            .into_iter()
            .map(|r| r.unwrap_or(f64::NAN))
            .collect();
    }
    let mut next = 0;
    grid.points()
        .map(|at| {
            while next < history.ts.len() && history.ts[next] <= at {
                next += 1;
            }
            match next.checked_sub(1) {
                Some(last) if at - history.ts[last] <= grid.lookback => history.values[last],
                _ => f64::NAN,
            }
        })
        .collect()
}

/// Folds finite values with a combine rule; NaN when none.
#[derive(Clone, Copy)]
struct Fold {
    rule: Combine,
    acc: f64,
    n: usize,
}

impl Fold {
    fn new(rule: Combine) -> Self {
        Self {
            rule,
            acc: 0.0,
            n: 0,
        }
    }

    fn add(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        self.acc = match (self.rule, self.n) {
            (Combine::Count, _) => 0.0,
            (_, 0) => v,
            (Combine::Sum | Combine::Avg, _) => self.acc + v,
            (Combine::Max, _) => self.acc.max(v),
            (Combine::Min, _) => self.acc.min(v),
        };
        self.n += 1;
    }

    fn value(&self) -> f64 {
        match (self.rule, self.n) {
            (Combine::Count, n) => n as f64,
            (_, 0) => f64::NAN,
            (Combine::Avg, n) => self.acc / n as f64,
            _ => self.acc,
        }
    }
}

/// A selection's groups on the grid: group key (the `by` labels' values) -> values.
fn groups(
    selection: &Selection,
    by: &[String],
    series: &[(&SeriesKey, &MetricHistory)],
    grid: &Grid,
    range: i64,
) -> BTreeMap<Vec<String>, Vec<f64>> {
    let mut folds: BTreeMap<Vec<String>, Vec<Fold>> = BTreeMap::new();
    for (key, history) in series.iter().filter(|(k, _)| selects(selection, k)) {
        let group: Vec<String> = by
            .iter()
            .map(|b| key.labels.get(b).cloned().unwrap_or_default())
            .collect();
        let values = on_grid(history, selection.rate, grid, range);
        let fold = folds
            .entry(group)
            .or_insert_with(|| vec![Fold::new(selection.within); grid.len()]);
        for (f, v) in fold.iter_mut().zip(values) {
            f.add(v);
        }
    }
    folds
        .into_iter()
        .map(|(k, f)| (k, f.iter().map(Fold::value).collect()))
        .collect()
}

/// Keeps the finite points of grid values as a history.
fn history_of(values: &[f64], grid: &Grid) -> MetricHistory {
    let mut out = MetricHistory::default();
    for (at, &v) in grid.points().zip(values) {
        if v.is_finite() {
            out.ts.push(at);
            out.values.push(v);
        }
    }
    out
}

/// The model inputs of one asset from its stored series, on `grid`: the derived metrics
/// (by `as` name; absent when nothing of the asset is selected or no point has a value),
/// else, with `passthrough`, its unlabelled series.
pub fn derive(
    inputs: &ModelInputs,
    series: &[(&SeriesKey, &MetricHistory)],
    grid: &Grid,
) -> BTreeMap<String, MetricHistory> {
    let range = rate_range(inputs, grid.step);
    let mut out = BTreeMap::new();
    let mut selected_any = false;
    for metric in &inputs.metrics {
        let numerator = groups(&metric.selection(), &metric.by, series, grid, range);
        if numerator.is_empty() {
            continue;
        }
        selected_any = true;
        let denominator = metric
            .divide_by
            .as_ref()
            .map(|d| groups(d, &metric.by, series, grid, range));
        let mut across = vec![Fold::new(metric.aggregate); grid.len()];
        for (group, values) in &numerator {
            let divisor = match &denominator {
                Some(d) => match d.get(group) {
                    Some(divisor) => Some(divisor),
                    None => continue,
                },
                None => None,
            };
            for (k, (fold, &v)) in across.iter_mut().zip(values).enumerate() {
                let v = match divisor {
                    Some(d) if d[k] != 0.0 => v / d[k],
                    Some(_) => f64::NAN,
                    None => v,
                };
                fold.add(v);
            }
        }
        let values: Vec<f64> = across.iter().map(Fold::value).collect();
        let history = history_of(&values, grid);
        if !history.ts.is_empty() {
            out.insert(metric.as_name.clone(), history);
        }
    }
    if selected_any || !inputs.passthrough {
        return out;
    }
    for (key, history) in series.iter().filter(|(k, _)| k.labels.is_empty()) {
        if is_counter(&key.family, inputs) {
            let values = on_grid(history, true, grid, range);
            let history = history_of(&values, grid);
            if !history.ts.is_empty() {
                out.insert(format!("{}{RATE_SUFFIX}", key.family), history);
            }
        } else {
            out.insert(key.family.clone(), (*history).clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::DerivedMetric;

    /// [`derive`] of series given with owned keys.
    fn derive_keyed(
        inputs: &ModelInputs,
        series: &[(SeriesKey, &MetricHistory)],
        grid: &Grid,
    ) -> BTreeMap<String, MetricHistory> {
        let borrowed: Vec<_> = series.iter().map(|(k, h)| (k, *h)).collect();
        derive(inputs, &borrowed, grid)
    }

    fn key(text: &str) -> SeriesKey {
        SeriesKey::parse(text).unwrap()
    }

    fn history(ts: &[i64], values: &[f64]) -> MetricHistory {
        MetricHistory {
            ts: ts.to_vec(),
            values: values.to_vec(),
        }
    }

    #[test]
    fn rate_matches_promql_extrapolation_and_resets() {
        // Samples every 10 s inside a 60 s range ending at 60: first at 5, last at 55.
        let ts = [5, 15, 25, 35, 45, 55];
        let values = [100.0, 110.0, 120.0, 130.0, 140.0, 150.0];
        // increase 50 over 50 s sampled; 5 s to each end < 1.1 * 10: extrapolate 60 s.
        let r = extrapolated_rate(&ts, &values, 60, 60, 1.0).unwrap();
        assert!((r - 1.0).abs() < 1e-12, "{r}");
        // A reset: 130 -> 5 adds 130 back: increase (150-100)+... = values end 25.
        let reset = [100.0, 110.0, 120.0, 130.0, 5.0, 15.0];
        let r = extrapolated_rate(&ts, &reset, 60, 60, 1.0).unwrap();
        let increase = 15.0 - 100.0 + 130.0;
        assert!((r - increase * 60.0 / 50.0 / 60.0).abs() < 1e-12, "{r}");
        // Far from the range's start (gap 30 s > 1.1 avg): extrapolate half an interval.
        let r = extrapolated_rate(&[30, 40, 50, 60], &[0.5, 1.5, 2.5, 3.5], 60, 60, 1.0).unwrap();
        // to_zero = 30 * 0.5 / 3 = 5 s < threshold 11: extrapolated by 5 s, end by 0.
        assert!((r - 3.0 * 35.0 / 30.0 / 60.0).abs() < 1e-12, "{r}");
        assert!(extrapolated_rate(&[10], &[1.0], 60, 60, 1.0).is_none());
    }

    #[test]
    fn cpu_busy_fraction_is_per_cpu_then_averaged() {
        let inputs = ModelInputs::default();
        let ts: Vec<i64> = (0..=30).map(|k| k * 10).collect();
        let counter =
            |per_sec: f64| -> Vec<f64> { ts.iter().map(|&t| t as f64 * per_sec).collect() };
        let hs = [
            history(&ts, &counter(0.75)),
            history(&ts, &counter(0.25)),
            history(&ts, &counter(0.5)),
            history(&ts, &counter(0.5)),
        ];
        let series = vec![
            (
                key(r#"node_cpu_seconds_total{cpu="0",mode="idle"}"#),
                &hs[0],
            ),
            (
                key(r#"node_cpu_seconds_total{cpu="0",mode="user"}"#),
                &hs[1],
            ),
            (
                key(r#"node_cpu_seconds_total{cpu="1",mode="idle"}"#),
                &hs[2],
            ),
            (
                key(r#"node_cpu_seconds_total{cpu="1",mode="system"}"#),
                &hs[3],
            ),
        ];
        let grid = Grid::covering(0, 300, 60, 600);
        let out = derive_keyed(&inputs, &series, &grid);
        let busy = &out["cpu_busy_fraction"];
        // cpu 0 busy 0.25 of 1.0, cpu 1 busy 0.5 of 1.0: mean 0.375.
        assert!(
            busy.values.iter().all(|v| (v - 0.375).abs() < 1e-9),
            "{busy:?}"
        );
        let load = &out.get("load1_per_core");
        assert!(load.is_none(), "no node_load1 series: no input");
        // Selected: nothing passes through.
        assert!(!out.keys().any(|k| k.starts_with("node_")));
    }

    #[test]
    fn divide_by_a_count_and_min_across_groups() {
        let mut inputs = ModelInputs::default();
        inputs.metrics.push(DerivedMetric {
            as_name: "x".into(),
            name: "free".into(),
            matchers: [("fs".to_owned(), "!tmpfs".to_owned())].into(),
            rate: false,
            within: Combine::Sum,
            by: vec!["dev".into()],
            divide_by: Some(Selection {
                name: "size".into(),
                matchers: Default::default(),
                rate: false,
                within: Combine::Sum,
            }),
            aggregate: Combine::Min,
        });
        let ts = [0, 60, 120];
        let h = |v: f64| history(&ts, &[v, v, v]);
        let hs = [h(10.0), h(100.0), h(30.0), h(40.0), h(1.0)];
        let series = vec![
            (key(r#"free{dev="a",fs="ext4"}"#), &hs[0]),
            (key(r#"size{dev="a"}"#), &hs[1]),
            (key(r#"free{dev="b",fs="ext4"}"#), &hs[2]),
            (key(r#"size{dev="b"}"#), &hs[3]),
            (key(r#"free{dev="c",fs="tmpfs"}"#), &hs[4]),
        ];
        let out = derive_keyed(&inputs, &series, &Grid::covering(0, 120, 60, 600));
        assert_eq!(out["x"].values, vec![0.1, 0.1, 0.1]);
        assert_eq!(out["x"].ts, vec![0, 60, 120]);
    }

    #[test]
    fn unselected_assets_pass_their_unlabelled_series_through() {
        let inputs = ModelInputs::default();
        let ts: Vec<i64> = (0..=10).map(|k| k * 60).collect();
        let gauge = history(&ts, &vec![0.5; ts.len()]);
        let counter = history(&ts, &ts.iter().map(|&t| 2.0 * t as f64).collect::<Vec<_>>());
        let labelled = gauge.clone();
        let series = vec![
            (key("cpu"), &gauge),
            (key("requests_total"), &counter),
            (key(r#"latency{quantile="0.5"}"#), &labelled),
        ];
        let out = derive_keyed(&inputs, &series, &Grid::covering(0, 600, 60, 600));
        assert_eq!(out["cpu"], gauge);
        // From a full range after the first sample on, the rate is exact (before, PromQL's
        // rate only extrapolates to the counter's zero: it reads lower).
        let rates = &out["requests_total:rate"];
        let full: Vec<f64> = (rates.ts.iter().zip(&rates.values))
            .filter(|(t, _)| **t >= 240)
            .map(|(_, r)| *r)
            .collect();
        assert_eq!(full.len(), 7);
        assert!(full.iter().all(|r| (r - 2.0).abs() < 1e-9), "{rates:?}");
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn matchers_take_alternatives_and_negations() {
        assert!(matches("user", "!idle|iowait"));
        assert!(!matches("idle", "!idle|iowait"));
        assert!(matches("idle", "idle"));
        assert!(matches("", "!lo"));
        assert!(!matches("eth0", "lo|docker0"));
    }
}
