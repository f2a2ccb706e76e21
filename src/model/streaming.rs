//! The cold-start detector: an unsupervised anomaly score in [0, 1] for one series, learnt
//! online from the series' own past (each value is scored before it is learnt, so there is
//! no look-ahead). It answers where no trained model can: before the first training run,
//! and for assets or metrics a model has not seen.
//!
//! **Raw surprise.** For each new value it asks how rare several views of the series are
//! among their recent past (sliding windows of `memory` values), as a rank tail probability
//! `p` turned into a surprise `-ln p / ln(m + 1)` in [0, 1] (1: beyond everything seen):
//!
//! - the value itself (spikes, level shifts),
//! - its change since the previous value (jumps, changed noise),
//! - the mean of the last `smooth` values (slow drifts hidden in noise),
//! - the shape of the last `context` values: the distance from this context (scaled by the
//!   series' spread) to the nearest of the last `contexts` ones (a changed pattern),
//! - with `day_bin_rows` set (`vigil detect` sets it from the timestamps), the shape of the
//!   last day in `day_bins` averaged bins, the same way (a day that lacks its usual jump,
//!   or flattens, which no short context sees).
//!
//! The raw surprise is the largest view (the context views weighted).
//!
//! **Likelihood**, as Numenta's anomaly likelihood: the mean raw surprise of the last
//! `recent` values is compared with a normal distribution fitted to its own last `baseline`
//! values, and its tail probability `q` becomes the score `ln q / ln 1e-10` (0.4 at
//! q = 1e-4, 0.5 at 1e-5, 1 at 1e-10), so a series that is always noisy does not alert all
//! the time, and scores compare across series. An **alarm** is a tail probability below
//! `alarm_tail`; an alarm within `refractory` values of the previous one is held at the
//! alarm level (a sustained anomaly is reported once). Last, a value beyond the range seen
//! so far by more than `range_tolerance` of that range scores 1.
//!
//! On the shared NAB subset (`vigil eval nab`) the defaults score 74.6 (standard profile).
//! They are the ones `vigil eval nab --loco` chooses on every category (the best mean of the
//! per-category scores, rather than the best score over all files); see `README.md` for the
//! comparison with published detectors and the leave-one-category-out figures.

use std::collections::VecDeque;

use super::ParamsError;

/// Parameters of [`StreamingDetector`] before checking.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamingParams {
    /// Past values each view is compared with.
    pub memory: usize,
    /// Values scored 0 while the detector learns (at least 2); also the likelihood stage's.
    pub warmup: usize,
    /// Values averaged in the smoothed view.
    pub smooth: usize,
    /// Raw surprises averaged in the recent mean of the likelihood stage.
    pub recent: usize,
    /// Recent means the likelihood stage fits its normal distribution to.
    pub baseline: usize,
    /// Tail probability below which the likelihood raises an alarm, in (0, 1).
    pub alarm_tail: f64,
    /// Values after an alarm during which further alarms are held at the alarm level.
    pub refractory: usize,
    /// A value beyond the seen range by more than this share of it scores 1 (0: off).
    pub range_tolerance: f64,
    /// Values in a context (0: no context view).
    pub context: usize,
    /// Past contexts searched for the nearest one (both context views).
    pub contexts: usize,
    /// Weight of the context view.
    pub context_weight: f64,
    /// Bins of the day-long context.
    pub day_bins: usize,
    /// Values averaged per bin of the day-long context (0: no day-long view); see
    /// [`StreamingParams::with_step`].
    pub day_bin_rows: usize,
    /// Weight of the day-long context view.
    pub day_weight: f64,
}

impl Default for StreamingParams {
    fn default() -> Self {
        Self {
            memory: 6000,
            warmup: 20,
            smooth: 6,
            recent: 20,
            baseline: 4000,
            alarm_tail: 1e-3,
            refractory: 200,
            range_tolerance: 0.05,
            context: 8,
            contexts: 1000,
            context_weight: 0.6,
            day_bins: 10,
            day_bin_rows: 0,
            day_weight: 1.0,
        }
    }
}

impl StreamingParams {
    /// Sets the day-long context's bins for a series sampled every `step_secs` seconds (off
    /// when a day holds fewer values than bins).
    pub fn with_step(mut self, step_secs: f64) -> Self {
        self.day_bin_rows = if step_secs > 0.0 && self.day_bins > 0 {
            (86_400.0 / self.day_bins as f64 / step_secs).round() as usize
        } else {
            0
        };
        self
    }

    /// The lowest score of a fresh alarm: a tail probability below `alarm_tail`, or a value
    /// out of range. Alarms held through the refractory period score exactly
    /// `tail_score(alarm_tail)`, just under it, so a threshold here reports each alarm once
    /// and needs nothing fitted to scores.
    pub fn alarm_threshold(&self) -> f64 {
        tail_score(self.alarm_tail).next_up()
    }

    /// Checks the parameters.
    pub fn check(self) -> Result<Self, ParamsError> {
        for (name, v) in [
            ("memory", self.memory),
            ("smooth", self.smooth),
            ("recent", self.recent),
            ("baseline", self.baseline),
        ] {
            if v == 0 {
                return Err(ParamsError::Zero(name));
            }
        }
        if self.warmup < 2 {
            return Err(ParamsError::TooSmall {
                name: "warmup",
                min: 2,
                got: self.warmup,
            });
        }
        if !(self.alarm_tail > 0.0 && self.alarm_tail < 1.0) {
            return Err(ParamsError::OutOfRange("alarm_tail", "in (0, 1)"));
        }
        if self.range_tolerance.is_nan() || self.range_tolerance < 0.0 {
            return Err(ParamsError::OutOfRange("range_tolerance", "at least 0"));
        }
        Ok(self)
    }
}

/// A bounded window of past values with rank surprise.
#[derive(Debug, Clone, Default)]
struct Window {
    values: VecDeque<f64>,
}

impl Window {
    /// How rare `x` is among the window's values, in [0, 1].
    fn surprise(&self, x: f64) -> f64 {
        let m = self.values.len();
        if m < 2 {
            return 0.0;
        }
        let (mut above, mut below) = (0usize, 0usize);
        for &v in &self.values {
            above += usize::from(v >= x);
            below += usize::from(v <= x);
        }
        let n = (m + 1) as f64;
        let p = (2.0 * (above.min(below) + 1) as f64 / n).min(1.0);
        (-p.ln() / n.ln()).clamp(0.0, 1.0)
    }

    /// How rare a value this high is, in [0, 1] (one-sided).
    fn surprise_above(&self, x: f64) -> f64 {
        let m = self.values.len();
        if m < 2 {
            return 0.0;
        }
        let above = self.values.iter().filter(|&&v| v >= x).count();
        let n = (m + 1) as f64;
        (-((above + 1) as f64 / n).ln() / n.ln()).clamp(0.0, 1.0)
    }

    fn push(&mut self, x: f64, cap: usize) {
        if self.values.len() == cap {
            self.values.pop_front();
        }
        self.values.push_back(x);
    }
}

/// Running mean and spread of the last `cap` values.
#[derive(Debug, Clone, Default)]
struct Moving {
    values: VecDeque<f64>,
    sum: f64,
    sum_sq: f64,
}

impl Moving {
    fn push(&mut self, x: f64, cap: usize) {
        if self.values.len() == cap
            && let Some(old) = self.values.pop_front()
        {
            self.sum -= old;
            self.sum_sq -= old * old;
        }
        self.values.push_back(x);
        self.sum += x;
        self.sum_sq += x * x;
    }

    fn mean(&self) -> f64 {
        self.sum / self.values.len().max(1) as f64
    }

    fn std(&self) -> f64 {
        let n = self.values.len().max(1) as f64;
        (self.sum_sq / n - self.mean().powi(2)).max(0.0).sqrt()
    }
}

/// A context view: the last `bins * bin_rows` values as `bins` averaged bins, scaled by the
/// series' level and spread, and how far it lies from the nearest earlier context that does
/// not overlap it.
#[derive(Debug, Clone)]
struct ContextView {
    bins: usize,
    bin_rows: usize,
    contexts: VecDeque<Vec<f64>>,
    distances: Window,
}

impl ContextView {
    fn new(bins: usize, bin_rows: usize) -> Self {
        Self {
            bins,
            bin_rows,
            contexts: VecDeque::new(),
            distances: Window::default(),
        }
    }

    /// Values the context spans (0: the view is off).
    fn span(&self) -> usize {
        self.bins * self.bin_rows
    }

    /// Surprise of the context ending with the newest value of `past` (newest last), then
    /// learns it. `level` gives the scale.
    fn update(&mut self, past: &VecDeque<f64>, level: &Moving, p: &StreamingParams) -> f64 {
        let span = self.span();
        if span == 0 || past.len() < span {
            return 0.0;
        }
        let (mean, scale) = (level.mean(), level.std().max(1e-9));
        let start = past.len() - span;
        let context: Vec<f64> = (0..self.bins)
            .map(|b| {
                let first = start + b * self.bin_rows;
                let sum: f64 = past.range(first..first + self.bin_rows).sum();
                (sum / self.bin_rows as f64 - mean) / scale
            })
            .collect();
        // Contexts overlapping this one are too alike to count.
        let older = self.contexts.len().saturating_sub(span);
        let nearest = self
            .contexts
            .iter()
            .take(older)
            .map(|c| {
                c.iter()
                    .zip(&context)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
            })
            .fold(f64::INFINITY, f64::min);
        let mut surprise = 0.0;
        if nearest.is_finite() {
            let d = nearest.sqrt();
            surprise = self.distances.surprise_above(d);
            self.distances.push(d, p.memory);
        }
        if self.contexts.len() == p.contexts.max(1) {
            self.contexts.pop_front();
        }
        self.contexts.push_back(context);
        surprise
    }
}

/// Lower bounds of the likelihood stage's normal distribution (Numenta's): a mean of 0.03
/// and a variance of 0.0003.
const MIN_MEAN: f64 = 0.03;
const MIN_STD: f64 = 0.017_320_508_075_688_77;

/// The score of a tail probability: `ln q / ln 1e-10`, clamped to [0, 1].
fn tail_score(q: f64) -> f64 {
    ((q + 1e-10).ln() / 1e-10_f64.ln()).clamp(0.0, 1.0)
}

/// The complementary error function, with a relative error below 1.2e-7 everywhere
/// (Numerical Recipes' Chebyshev fit), so tail probabilities stay accurate far out.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = [
        -1.265_512_23,
        1.000_023_68,
        0.374_091_96,
        0.096_784_18,
        -0.186_288_06,
        0.278_868_07,
        -1.135_203_98,
        1.488_515_87,
        -0.822_152_23,
        0.170_872_77,
    ]
    .iter()
    .rev()
    .fold(0.0, |acc, c| c + t * acc);
    let r = t * (-z * z + poly).exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The streaming detector of one series. Serializable state is not needed: it relearns
/// from the series' stored past.
#[derive(Debug, Clone)]
pub struct StreamingDetector {
    params: StreamingParams,
    seen: usize,
    previous: Option<f64>,
    values: Window,
    changes: Window,
    smoothed: Window,
    level: Moving,
    past: VecDeque<f64>,
    context: ContextView,
    day: ContextView,
    raw_recent: Moving,
    recent_means: Moving,
    last_alarm: Option<usize>,
    range: Option<(f64, f64)>,
}

impl StreamingDetector {
    /// A detector that has seen nothing.
    pub fn new(params: StreamingParams) -> Result<Self, ParamsError> {
        let params = params.check()?;
        Ok(Self {
            seen: 0,
            previous: None,
            values: Window::default(),
            changes: Window::default(),
            smoothed: Window::default(),
            level: Moving::default(),
            past: VecDeque::new(),
            context: ContextView::new(params.context, 1),
            day: ContextView::new(params.day_bins, params.day_bin_rows),
            raw_recent: Moving::default(),
            recent_means: Moving::default(),
            last_alarm: None,
            range: None,
            params,
        })
    }

    /// Values seen so far.
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// Scores `x` against the past, then learns it. Non-finite values are skipped (score 0,
    /// nothing learnt).
    pub fn update(&mut self, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        let raw = self.raw_surprise(x);
        let score = self.likelihood(raw);
        self.out_of_range(x).unwrap_or(score)
    }

    /// The largest surprise of the views, learning `x` in each.
    fn raw_surprise(&mut self, x: f64) -> f64 {
        let p = &self.params;
        self.past.push_back(x);
        if self.past.len() > p.smooth.max(self.context.span()).max(self.day.span()) {
            self.past.pop_front();
        }
        let smooth = self.past.iter().rev().take(p.smooth).sum::<f64>()
            / self.past.len().min(p.smooth) as f64;
        let change = self.previous.map(|prev| x - prev);
        let mut raw = self.values.surprise(x).max(self.smoothed.surprise(smooth));
        if let Some(c) = change {
            raw = raw.max(self.changes.surprise(c));
        }
        self.level.push(x, p.memory);
        raw = raw.max(p.context_weight * self.context.update(&self.past, &self.level, p));
        raw = raw.max(p.day_weight * self.day.update(&self.past, &self.level, p));
        self.values.push(x, p.memory);
        self.smoothed.push(smooth, p.memory);
        if let Some(c) = change {
            self.changes.push(c, p.memory);
        }
        self.previous = Some(x);
        self.seen += 1;
        if self.seen <= p.warmup { 0.0 } else { raw }
    }

    /// Is the recent raw surprise unusual for this series? The score of its tail
    /// probability, with later alarms of a sustained anomaly held at the alarm level.
    fn likelihood(&mut self, raw: f64) -> f64 {
        let p = &self.params;
        self.raw_recent.push(raw, p.recent);
        let recent = self.raw_recent.mean();
        let mut score = 0.0;
        if self.recent_means.values.len() >= p.warmup {
            let mean = self.recent_means.mean().max(MIN_MEAN);
            let std = self.recent_means.std().max(MIN_STD);
            let mut q = 0.5 * erfc((recent - mean) / (std * std::f64::consts::SQRT_2));
            if q < p.alarm_tail {
                let index = self.seen;
                if self
                    .last_alarm
                    .is_some_and(|last| index - last < p.refractory)
                {
                    q = p.alarm_tail;
                } else {
                    self.last_alarm = Some(index);
                }
            }
            score = tail_score(q);
        }
        self.recent_means.push(recent, p.baseline);
        score
    }

    /// 1 for a value beyond the range seen so far (by more than the tolerance), which then
    /// counts as an alarm; learns the range.
    fn out_of_range(&mut self, x: f64) -> Option<f64> {
        let p = &self.params;
        let out = match self.range {
            Some((lo, hi)) if p.range_tolerance > 0.0 && self.seen > p.warmup && hi > lo => {
                let tolerance = (hi - lo) * p.range_tolerance;
                (x > hi + tolerance || x < lo - tolerance).then(|| {
                    self.last_alarm = Some(self.seen);
                    1.0
                })
            }
            _ => None,
        };
        self.range = Some(match self.range {
            Some((lo, hi)) => (lo.min(x), hi.max(x)),
            None => (x, x),
        });
        out
    }

    /// Scores a whole series in order, each value from the ones before it only.
    pub fn score_series(params: StreamingParams, values: &[f64]) -> Result<Vec<f64>, ParamsError> {
        let mut detector = Self::new(params)?;
        Ok(values.iter().map(|&x| detector.update(x)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<f64> {
        // A small deterministic generator: no look at the rand crates needed here.
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                ((s >> 33) as f64 / (1u64 << 31) as f64) - 0.5
            })
            .collect()
    }

    #[test]
    fn a_spike_scores_higher_than_noise_and_scores_stay_in_range() {
        let mut series: Vec<f64> = noise(2000, 7).iter().map(|x| 10.0 + x).collect();
        series[1500] = 30.0;
        let scores = StreamingDetector::score_series(StreamingParams::default(), &series).unwrap();
        assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
        let before = scores[100..1500].iter().copied().fold(0.0, f64::max);
        // The likelihood stage averages the last `recent` surprises: the spike shows within
        // them.
        let spike = scores[1500..1506].iter().copied().fold(0.0, f64::max);
        assert!(spike > before, "spike {spike} vs noise max {before}");
        assert!(spike > 0.8, "{spike}");
    }

    #[test]
    fn a_day_without_its_daily_jump_is_an_alarm_with_the_day_long_context() {
        // Every 5 minutes: low (20) for 180 values, high (80) for 108, for 12 days; on day 9
        // the jump does not come. No single value, change or short stretch is new then.
        let day = 288;
        let noise = noise(12 * day, 5);
        let series: Vec<f64> = (0..12 * day)
            .map(|i| {
                let high = i % day >= 180 && i / day != 9;
                (if high { 80.0 } else { 20.0 }) + 2.0 * noise[i]
            })
            .collect();
        let params = StreamingParams::default().with_step(300.0);
        assert_eq!(params.day_bin_rows, 29);
        let scores = StreamingDetector::score_series(params.clone(), &series).unwrap();
        let normal_days = scores[3 * day..9 * day].iter().copied().fold(0.0, f64::max);
        let missing = scores[9 * day + 180..10 * day]
            .iter()
            .copied()
            .fold(0.0, f64::max);
        assert!(missing > tail_score(params.alarm_tail), "{missing}");
        assert!(missing > normal_days, "{missing} vs {normal_days}");
    }

    #[test]
    fn tail_probabilities_are_accurate_far_out() {
        // erfc from tables; the score scale's landmarks.
        for (x, expected) in [
            (0.0, 1.0),
            (1.0, 0.157_299_207_050_285_1),
            (3.0, 2.209_049_699_858_544e-5),
            (5.0, 1.537_459_794_428_035e-12),
            (-1.0, 1.842_700_792_949_715),
        ] {
            let got = erfc(x);
            assert!(
                ((got - expected) / expected).abs() < 2e-7,
                "erfc({x}) = {got}"
            );
        }
        assert!((tail_score(1e-4) - 0.4).abs() < 1e-5);
        assert!((tail_score(1e-5) - 0.5).abs() < 1e-4);
        assert_eq!(tail_score(0.0), 1.0);
        assert_eq!(tail_score(1.0), 0.0);
    }

    #[test]
    fn a_sustained_anomaly_alarms_once_per_refractory_period() {
        let mut series: Vec<f64> = noise(3000, 9).iter().map(|x| 10.0 + x).collect();
        // A burst of noise ten times wider, inside the seen range's tolerance: no value is out
        // of range, but the likelihood alarms.
        for (i, x) in noise(60, 4).iter().enumerate() {
            series[2000 + i] = 10.0 + 0.5 * x.signum() * 1.04;
        }
        let params = StreamingParams::default();
        let alarm = tail_score(params.alarm_tail);
        let scores = StreamingDetector::score_series(params.clone(), &series).unwrap();
        let alarms: Vec<usize> = (0..series.len()).filter(|&i| scores[i] > alarm).collect();
        assert!(!alarms.is_empty(), "the burst raised no alarm");
        // The alarm threshold counts the fresh alarms and none of the held ones.
        let fresh: Vec<usize> = (0..series.len())
            .filter(|&i| scores[i] >= params.alarm_threshold())
            .collect();
        assert_eq!(fresh, alarms);
        assert!(scores.contains(&alarm), "no alarm was held");
        for pair in alarms.windows(2) {
            assert!(pair[1] - pair[0] >= params.refractory, "{alarms:?}");
        }
    }

    #[test]
    fn a_value_is_scored_from_the_past_only() {
        let series: Vec<f64> = noise(500, 3);
        let all = StreamingDetector::score_series(StreamingParams::default(), &series).unwrap();
        let prefix =
            StreamingDetector::score_series(StreamingParams::default(), &series[..300]).unwrap();
        assert_eq!(
            &all[..300],
            &prefix[..],
            "later values changed earlier scores"
        );
    }

    #[test]
    fn bad_params_and_values_are_handled() {
        let bad = StreamingParams {
            warmup: 1,
            ..StreamingParams::default()
        };
        assert!(StreamingDetector::new(bad).is_err());
        let mut d = StreamingDetector::new(StreamingParams::default()).unwrap();
        assert_eq!(d.update(f64::NAN), 0.0);
        assert_eq!(d.seen(), 0);
    }
}
