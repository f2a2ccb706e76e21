//! The cold-start detector: an unsupervised anomaly score in [0, 1] for one series, learnt
//! online from the series' own past (each value is scored before it is learnt, so there is
//! no look-ahead). It answers where no trained model can: before the first training run,
//! and for assets or metrics a model has not seen.
//!
//! For each new value it asks how rare four views of the series are among their recent
//! past (sliding windows of `memory` values):
//!
//! - the value itself (spikes, level shifts),
//! - its change since the previous value (jumps, changed noise),
//! - the mean of the last `smooth` values (slow drifts hidden in noise),
//! - the shape of the last `context` values: the distance from this context (scaled by the
//!   series' spread) to the nearest of the last `contexts` ones (a changed pattern),
//!
//! as a rank tail probability `p`, turned into a surprise `-ln p / ln(m + 1)` in [0, 1]
//! (1: beyond everything seen). The raw surprise is the largest view (the context view
//! weighted by `context_weight`). A second stage, like Numenta's anomaly likelihood, ranks
//! the mean raw surprise of the last `recent` values among its own past `baseline` values,
//! so a series that is always noisy does not alert all the time, and scores are comparable
//! across series. Last, a sustained anomaly is reported once: a score counts in full only
//! when it exceeds every score of the last `refractory` values; otherwise it is damped.
//!
//! On the shared NAB subset (`vigil eval nab`) the defaults score 56.2 (standard profile);
//! see `README.md` for the comparison with published detectors.

use std::collections::VecDeque;

use super::ParamsError;

/// Parameters of [`StreamingDetector`] before checking.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamingParams {
    /// Past values each view is compared with.
    pub memory: usize,
    /// Values scored 0 while the detector learns (at least 2).
    pub warmup: usize,
    /// Values averaged in the smoothed view.
    pub smooth: usize,
    /// Raw surprises averaged in the recent mean of the likelihood stage.
    pub recent: usize,
    /// Raw surprises in the long-run distribution of the likelihood stage.
    pub baseline: usize,
    /// Values after a high score during which lower scores are damped.
    pub refractory: usize,
    /// Factor applied to damped scores, in [0, 1].
    pub damping: f64,
    /// Values in a context (0: no context view).
    pub context: usize,
    /// Past contexts searched for the nearest one.
    pub contexts: usize,
    /// Weight of the context view.
    pub context_weight: f64,
}

impl Default for StreamingParams {
    fn default() -> Self {
        Self {
            memory: 6000,
            warmup: 20,
            smooth: 6,
            recent: 6,
            baseline: 6000,
            refractory: 100,
            damping: 0.3,
            context: 8,
            contexts: 1000,
            context_weight: 0.9,
        }
    }
}

impl StreamingParams {
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
        if !(0.0..=1.0).contains(&self.damping) {
            return Err(ParamsError::OutOfRange("damping", "in [0, 1]"));
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

/// Running sum over the last `cap` values.
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
    last: Moving,
    raw_recent: Moving,
    scores: VecDeque<f64>,
    contexts: VecDeque<Vec<f64>>,
    distances: Window,
    level: Moving,
    last_k: VecDeque<f64>,
    recent_means: Window,
}

impl StreamingDetector {
    /// A detector that has seen nothing.
    pub fn new(params: StreamingParams) -> Result<Self, ParamsError> {
        let params = params.check()?;
        Ok(Self {
            params,
            seen: 0,
            previous: None,
            values: Window::default(),
            changes: Window::default(),
            smoothed: Window::default(),
            last: Moving::default(),
            raw_recent: Moving::default(),
            scores: VecDeque::new(),
            contexts: VecDeque::new(),
            distances: Window::default(),
            level: Moving::default(),
            last_k: VecDeque::new(),
            recent_means: Window::default(),
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
        let p = &self.params;
        self.last.push(x, p.smooth);
        let smooth = self.last.mean();
        let change = self.previous.map(|prev| x - prev);
        let raw = if self.seen < p.warmup {
            0.0
        } else {
            let mut raw = self.values.surprise(x).max(self.smoothed.surprise(smooth));
            if let Some(c) = change {
                raw = raw.max(self.changes.surprise(c));
            }
            raw
        };
        // Context: the last `context` values, scaled by the series' spread; how far is it
        // from the nearest context seen before?
        self.level.push(x, p.memory);
        let k = p.context;
        let mut context_raw = 0.0;
        if k > 0 && self.last_k.len() + 1 >= k {
            let scale = self.level.std().max(1e-9);
            let mean = self.level.mean();
            let mut ctx: Vec<f64> = self
                .last_k
                .iter()
                .skip(self.last_k.len() + 1 - k)
                .map(|v| (v - mean) / scale)
                .collect();
            ctx.push((x - mean) / scale);
            let older = self.contexts.len().saturating_sub(k);
            let nearest = self
                .contexts
                .iter()
                .take(older)
                .map(|c| {
                    c.iter()
                        .zip(&ctx)
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f64>()
                })
                .fold(f64::INFINITY, f64::min);
            if nearest.is_finite() {
                let d = nearest.sqrt();
                if self.seen >= p.warmup {
                    context_raw = self.distances.surprise_above(d);
                }
                self.distances.push(d, p.memory);
            }
            if self.contexts.len() == p.contexts {
                self.contexts.pop_front();
            }
            self.contexts.push_back(ctx);
        }
        if self.last_k.len() == k.max(1) {
            self.last_k.pop_front();
        }
        self.last_k.push_back(x);
        let raw = raw.max(context_raw * p.context_weight);
        self.values.push(x, p.memory);
        self.smoothed.push(smooth, p.memory);
        if let Some(c) = change {
            self.changes.push(c, p.memory);
        }
        self.previous = Some(x);
        self.seen += 1;

        // Likelihood: is the recent raw surprise unusual for this series?
        self.raw_recent.push(raw, p.recent);
        let recent = self.raw_recent.mean();
        let score = if self.recent_means.values.len() < p.warmup {
            0.0
        } else {
            self.recent_means.surprise_above(recent)
        };
        self.recent_means.push(recent, p.baseline);

        // Report a sustained anomaly once.
        let peak = self.scores.iter().copied().fold(0.0, f64::max);
        let out = if score > peak {
            score
        } else {
            score * p.damping
        };
        if self.scores.len() == p.refractory.max(1) {
            self.scores.pop_front();
        }
        self.scores.push_back(score);
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
