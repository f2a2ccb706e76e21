//! Failure probability within the horizon: logistic regression (linfa-logistic, with an L2
//! penalty that grows with the windows fitted) on the
//! standardized features plus the isolation-forest score, with class imbalance handled by
//! keeping every positive and a seeded sample of `negatives_per_positive` negatives (a share
//! of them from the windows just beyond the horizon before a failure, which a uniform sample
//! almost never draws and which are the hardest to tell from the positives), then
//! Platt calibration (and an isotonic map) on a later, untouched slice of the training
//! windows, so that a predicted 0.2 means about 20% again. A tree ensemble (gradient-boosted
//! trees on the same rows) is fitted too, and so is their blend (a weighted mean of both
//! models' Platt-calibrated log-odds, the logistic regression's weight one of 0.1 to 0.9 in
//! steps of 0.1, whichever ranks best on that slice); of the three, the one with the highest
//! average precision on that slice is kept (a later one must beat each simpler one by
//! [`MIN_GAIN`]). The trees' explanations are path contributions, the blend's each model's
//! times its weight.

use linfa::prelude::*;
use linfa_logistic::{FittedLogisticRegression, LogisticRegression};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rand08::SeedableRng;
use rand08::rngs::SmallRng;
use rand08::seq::SliceRandom;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::evaluation::average_precision;
use super::{FitError, GradientBoosting, ParamsError};

/// Checked hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FailureModelValidParams {
    alpha: f64,
    max_iterations: u64,
    negatives_per_positive: usize,
    calibration_frac: f64,
    seed: u64,
    #[serde(default)]
    ensemble_rounds: usize,
    #[serde(default)]
    near_negatives_frac: f64,
    #[serde(default)]
    hard_negative_weight: usize,
    /// L2 penalty per fitted window, added to `alpha` (so the penalty keeps its weight
    /// against the loss, a sum over the windows, whatever their number). Bundles from before
    /// it had none.
    #[serde(default)]
    penalty_per_window: f64,
}

/// Unchecked hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureModelParams(FailureModelValidParams);

/// A fitted, calibrated failure-probability model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureModel {
    params: FailureModelValidParams,
    mean: Vec<f64>,
    std: Vec<f64>,
    /// Coefficients of the standardized inputs (the last one is the anomaly score).
    weights: Vec<f64>,
    intercept: f64,
    platt_a: f64,
    platt_b: f64,
    /// Isotonic map from the Platt log-odds to the probability, fitted on the same
    /// calibration slice: breakpoints (log-odds, probability), ascending, interpolated
    /// linearly. Empty (too few failures in the slice, or an older model): the sigmoid.
    #[serde(default)]
    isotonic: Vec<(f64, f64)>,
    /// The tree ensemble, when it won on the calibration slice alone or in the blend: it
    /// then gives the raw score, or half of it.
    #[serde(default)]
    ensemble: Option<GradientBoosting>,
    /// When the blend won: Platt's (a, b) for each candidate, whose calibrated log-odds
    /// the blend averages.
    #[serde(default)]
    blend: Option<Blend>,
    /// How the candidates did on the calibration slice.
    #[serde(default)]
    selection: Option<Selection>,
}

/// The failure-model candidates on the calibration slice (the latest training windows,
/// not used to fit either model), by average precision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// The logistic regression's.
    pub logistic_average_precision: Option<f64>,
    /// The tree ensemble's, when one was fitted.
    pub ensemble_average_precision: Option<f64>,
    /// The blend's (the weighted mean of both calibrated log-odds), when an ensemble was
    /// fitted.
    #[serde(default)]
    pub blend_average_precision: Option<f64>,
    /// The logistic regression's weight in that blend (the tree ensemble's is one minus it).
    #[serde(default)]
    pub blend_weight: Option<f64>,
    /// `logistic_regression`, `tree_ensemble` or `blend`.
    pub chosen: String,
}

/// The blend of both candidates: each one's score through its own Platt map `(a, b)` to
/// calibrated log-odds, then their mean weighted by `weight` (the logistic regression's) and
/// one minus it. Where the two models err on different windows the mean ranks better than
/// either; it is kept only when the calibration slice says so.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Blend {
    logistic: (f64, f64),
    ensemble: (f64, f64),
    /// Bundles from before the weight was chosen used the plain mean.
    #[serde(default = "Blend::even")]
    weight: f64,
}

impl Blend {
    /// The logistic regression's weights tried, in order (the first best is kept).
    const WEIGHTS: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

    fn even() -> f64 {
        0.5
    }

    fn of(&self, logistic: f64, ensemble: f64) -> f64 {
        self.weight * (self.logistic.0 * logistic + self.logistic.1)
            + (1.0 - self.weight) * (self.ensemble.0 * ensemble + self.ensemble.1)
    }
}

impl FailureModel {
    /// Defaults: alpha = 1e-3 (L2) plus penalty_per_window = 0.1 per fitted window,
    /// max_iterations = 200, negatives_per_positive = 50,
    /// near_negatives_frac = 0.4, calibration_frac = 0.3, seed = 0, ensemble_rounds = 100,
    /// hard_negative_weight = 5.
    pub fn params() -> FailureModelParams {
        FailureModelParams(FailureModelValidParams {
            alpha: 1e-3,
            max_iterations: 200,
            negatives_per_positive: 50,
            calibration_frac: 0.3,
            seed: 0,
            ensemble_rounds: 100,
            near_negatives_frac: 0.4,
            hard_negative_weight: 5,
            penalty_per_window: 0.1,
        })
    }

    /// Number of inputs: features plus the anomaly score.
    pub fn n_inputs(&self) -> usize {
        self.weights.len()
    }

    /// How the candidates did and which one scores.
    pub fn selection(&self) -> Option<&Selection> {
        self.selection.as_ref()
    }

    /// The uncalibrated score of one window (its features and its anomaly score): the
    /// ensemble's or the blend's when chosen, else the logistic log-odds.
    fn raw_logit(&self, features: ArrayView1<f64>, anomaly: f64) -> f64 {
        match (&self.ensemble, &self.blend) {
            (Some(ensemble), Some(blend)) => blend.of(
                self.linear_logit(features, anomaly),
                ensemble.predict_slice(&inputs(features, anomaly)),
            ),
            (Some(ensemble), None) => ensemble.predict_slice(&inputs(features, anomaly)),
            (None, _) => self.linear_logit(features, anomaly),
        }
    }

    /// The logistic regression's log-odds.
    fn linear_logit(&self, features: ArrayView1<f64>, anomaly: f64) -> f64 {
        let d = features.len();
        let mut z = self.intercept + self.weights[d] * (anomaly - self.mean[d]) / self.std[d];
        for (((&v, &m), &s), &w) in features
            .iter()
            .zip(&self.mean)
            .zip(&self.std)
            .zip(&self.weights)
        {
            z += w * (v - m) / s;
        }
        z
    }

    /// The calibrated log-odds of failure: monotone in the probability, and free of the
    /// ties that a saturated probability has, so rankings use it.
    pub fn logit(&self, features: ArrayView1<f64>, anomaly: f64) -> f64 {
        self.platt_a * self.raw_logit(features, anomaly) + self.platt_b
    }

    /// Calibrated failure probability of one window.
    pub fn probability(&self, features: ArrayView1<f64>, anomaly: f64) -> f64 {
        self.calibrate(self.logit(features, anomaly))
    }

    /// The probability of a Platt log-odds `z` (from [`FailureModel::logit`]): the
    /// isotonic map when fitted, else the sigmoid.
    pub fn calibrate(&self, z: f64) -> f64 {
        let iso = &self.isotonic;
        let (Some(first), Some(last)) = (iso.first(), iso.last()) else {
            return sigmoid(z);
        };
        let k = iso.partition_point(|&(x, _)| x < z);
        if k == 0 {
            return first.1;
        }
        if k == iso.len() {
            return last.1;
        }
        let ((x0, y0), (x1, y1)) = (iso[k - 1], iso[k]);
        if x1 > x0 {
            y0 + (y1 - y0) * (z - x0) / (x1 - x0)
        } else {
            y1
        }
    }

    /// Calibrated log-odds of many windows.
    pub fn logits(&self, features: ArrayView2<f64>, anomaly: &[f64]) -> Vec<f64> {
        (0..features.nrows())
            .into_par_iter()
            .map(|i| self.logit(features.row(i), anomaly[i]))
            .collect()
    }

    /// Each input (features, then the anomaly score) in standard deviations from the
    /// training windows' mean.
    pub fn standardized(&self, features: ArrayView1<f64>, anomaly: f64) -> Vec<f64> {
        features
            .iter()
            .chain(std::iter::once(&anomaly))
            .zip(&self.mean)
            .zip(&self.std)
            .map(|((&v, &m), &s)| (v - m) / s)
            .collect()
    }

    /// Signed contributions of each input (features, then the anomaly score) to the
    /// calibrated log-odds: what pushed this window's score up (positive) or down.
    pub fn contributions(&self, features: ArrayView1<f64>, anomaly: f64) -> Vec<f64> {
        let linear = || {
            features
                .iter()
                .chain(std::iter::once(&anomaly))
                .zip(&self.mean)
                .zip(&self.std)
                .zip(&self.weights)
                .map(|(((&v, &m), &s), &w)| w * (v - m) / s)
        };
        let trees =
            |ensemble: &GradientBoosting| ensemble.contributions(&inputs(features, anomaly));
        let raw: Vec<f64> = match (&self.ensemble, &self.blend) {
            (Some(ensemble), Some(blend)) => linear()
                .zip(trees(ensemble))
                .map(|(l, t)| {
                    blend.weight * blend.logistic.0 * l
                        + (1.0 - blend.weight) * blend.ensemble.0 * t
                })
                .collect(),
            (Some(ensemble), None) => trees(ensemble),
            (None, _) => linear().collect(),
        };
        raw.into_iter().map(|c| self.platt_a * c).collect()
    }
}

impl FailureModelParams {
    /// L2 penalty. Default 1e-3.
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.0.alpha = alpha;
        self
    }

    /// L2 penalty per fitted window, added to [`Self::alpha`]. Default 0.1: on a fleet of
    /// varied assets (bench/fleet2, tuned on seed 1) a weak penalty let the logistic
    /// regression learn the training assets' windows by heart, and its average precision
    /// on later windows fell to a third.
    pub fn penalty_per_window(mut self, penalty: f64) -> Self {
        self.0.penalty_per_window = penalty;
        self
    }

    /// Solver iterations. Default 200.
    pub fn max_iterations(mut self, n: u64) -> Self {
        self.0.max_iterations = n;
        self
    }

    /// Negatives kept per positive for the fit. Default 50.
    pub fn negatives_per_positive(mut self, n: usize) -> Self {
        self.0.negatives_per_positive = n;
        self
    }

    /// Largest share of the sampled negatives drawn from the windows marked near a failure
    /// (see [`FailureModelValidParams::fit`]); the rest come from the others. Default 0.4.
    pub fn near_negatives_frac(mut self, frac: f64) -> Self {
        self.0.near_negatives_frac = frac;
        self
    }

    /// How many times each hard negative (a window an operator called a false alarm) enters
    /// the fit, on top of the sampled negatives. Default 5.
    pub fn hard_negative_weight(mut self, weight: usize) -> Self {
        self.0.hard_negative_weight = weight;
        self
    }

    /// Latest fraction of the training windows kept for calibration. Default 0.3.
    pub fn calibration_frac(mut self, frac: f64) -> Self {
        self.0.calibration_frac = frac;
        self
    }

    /// Seed of the negative sampling. Default 0.
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }

    /// Boosting rounds of the tree-ensemble candidate; 0 fits none. Default 100.
    pub fn ensemble_rounds(mut self, n: usize) -> Self {
        self.0.ensemble_rounds = n;
        self
    }

    /// Validates the hyperparameters.
    pub fn check(self) -> Result<FailureModelValidParams, ParamsError> {
        if self.0.max_iterations == 0 {
            return Err(ParamsError::Zero("max_iterations"));
        }
        if self.0.negatives_per_positive == 0 {
            return Err(ParamsError::Zero("negatives_per_positive"));
        }
        if !(self.0.alpha >= 0.0 && self.0.alpha.is_finite()) {
            return Err(ParamsError::OutOfRange("alpha", "a finite number >= 0"));
        }
        if !(self.0.penalty_per_window >= 0.0 && self.0.penalty_per_window.is_finite()) {
            return Err(ParamsError::OutOfRange(
                "penalty_per_window",
                "a finite number >= 0",
            ));
        }
        if !(0.0..=1.0).contains(&self.0.near_negatives_frac) {
            return Err(ParamsError::OutOfRange(
                "near_negatives_frac",
                "between 0 and 1",
            ));
        }
        if !(self.0.calibration_frac > 0.0 && self.0.calibration_frac < 1.0) {
            return Err(ParamsError::OutOfRange(
                "calibration_frac",
                "between 0 and 1",
            ));
        }
        Ok(self.0)
    }
}

impl FailureModelValidParams {
    /// Fits on windows given by their `labels` and `ends` (window end times, which decide
    /// the calibration slice); `features` makes the feature rows of the windows it is given
    /// (only those used: the sampled ones and the calibration slice), and `anomaly` scores
    /// feature rows. `near` marks the negative windows a failure follows soon after the
    /// horizon (empty: none is marked): up to `near_negatives_frac` of the sampled
    /// negatives are drawn from them.
    /// `hard` marks the negative windows operators called false alarms (empty: none): each
    /// of those in the fit part enters the fit `hard_negative_weight` times, besides the
    /// sampled negatives, so the model learns to tell them from failures.
    pub fn fit(
        &self,
        features: &(dyn Fn(&[usize]) -> Array2<f64> + Sync),
        anomaly: &(dyn Fn(ArrayView2<f64>) -> Vec<f64> + Sync),
        labels: &[bool],
        ends: &[i64],
        near: &[bool],
        hard: &[bool],
    ) -> Result<FailureModel, FitError> {
        if labels.len() < 10 {
            return Err(FitError::TooFewRows {
                min: 10,
                got: labels.len(),
            });
        }
        // The rows of `windows`, checked finite (an error names the window).
        let rows_of = |windows: &[usize]| -> Result<Array2<f64>, FitError> {
            let x = features(windows);
            super::check_selected(x.view(), windows, 0)?;
            Ok(x)
        };
        let mut by_time: Vec<usize> = (0..labels.len()).collect();
        by_time.sort_by_key(|&i| ends[i]);
        let n_cal = ((labels.len() as f64) * self.calibration_frac) as usize;
        let (fit_rows, mut cal_rows) = by_time.split_at(labels.len() - n_cal);
        let positives: Vec<usize> = fit_rows.iter().copied().filter(|&i| labels[i]).collect();
        let is_hard = |i: usize| hard.get(i).copied().unwrap_or(false);
        let hard_negatives: Vec<usize> = fit_rows
            .iter()
            .copied()
            .filter(|&i| !labels[i] && is_hard(i))
            .collect();
        let (mut near_negatives, mut negatives): (Vec<usize>, Vec<usize>) = fit_rows
            .iter()
            .filter(|&&i| !labels[i] && !is_hard(i))
            .partition(|&&i| near.get(i).copied().unwrap_or(false));
        if positives.is_empty() {
            return Err(FitError::OneClass);
        }
        // With few failures the latest slice may hold none; calibrating on all training
        // windows is then the least bad choice (in-sample, so somewhat overconfident).
        if !cal_rows.iter().any(|&i| labels[i]) {
            cal_rows = &by_time;
        }
        let mut rng = SmallRng::seed_from_u64(self.seed);
        near_negatives.shuffle(&mut rng);
        negatives.shuffle(&mut rng);
        let budget = positives.len() * self.negatives_per_positive;
        near_negatives.truncate((budget as f64 * self.near_negatives_frac) as usize);
        negatives.truncate(budget - near_negatives.len());
        let mut chosen = positives;
        chosen.extend(near_negatives);
        chosen.extend(negatives);
        for _ in 0..self.hard_negative_weight {
            chosen.extend(&hard_negatives);
        }
        chosen.sort_unstable();

        // Anomaly scores only for the rows used: the sampled fit rows and the calibration slice.
        let chosen_features = rows_of(&chosen)?;
        let chosen_anomaly = anomaly(chosen_features.view());
        let x = with_anomaly(chosen_features.view(), &chosen_anomaly);
        let (mean, std) = standardizer(x.view());
        let z = (&x - &Array1::from(mean.clone())) / &Array1::from(std.clone());
        let y: Array1<bool> = chosen.iter().map(|&i| labels[i]).collect();
        // The ensemble competes only on a genuine later slice (not the in-sample fallback).
        let held_out = cal_rows.len() < by_time.len();
        let targets: Vec<f64> = y.iter().map(|&l| f64::from(u8::from(l))).collect();
        // Three independent pieces side by side: the logistic regression, the tree ensemble,
        // and the calibration slice's features and anomaly scores.
        let (lr, (ensemble, calibration)) = rayon::join(
            || {
                LogisticRegression::default()
                    .alpha(self.alpha + self.penalty_per_window * chosen.len() as f64)
                    .max_iterations(self.max_iterations)
                    .fit(&Dataset::new(z, y))
                    .map_err(|e| FitError::Solver(e.to_string()))
            },
            || {
                rayon::join(
                    || -> Result<Option<GradientBoosting>, FitError> {
                        if self.ensemble_rounds == 0 || !held_out {
                            return Ok(None);
                        }
                        // Shallow trees on large leaves: deeper ones (4, leaves of 20)
                        // learnt each training failure's windows by heart on a fleet of
                        // varied assets (bench/fleet2, #27).
                        GradientBoosting::params()
                            .n_rounds(self.ensemble_rounds)
                            .learning_rate(0.1)
                            .max_depth(3)
                            .min_leaf(100)
                            .seed(self.seed)
                            .check()
                            .map_err(|e| FitError::Solver(e.to_string()))?
                            .fit(x.view(), &targets)
                            .map(Some)
                    },
                    || -> Result<_, FitError> {
                        let cal_features = rows_of(cal_rows)?;
                        let cal_anomaly = anomaly(cal_features.view());
                        Ok((cal_features, cal_anomaly))
                    },
                )
            },
        );
        let lr: FittedLogisticRegression<f64, bool> = lr?;
        let (cal_features, cal_anomaly) = calibration?;
        // linfa reports P(labels().pos), and `pos` is the more frequent class: flip to
        // P(failure) when that is `false`.
        let sign = if lr.labels().pos.class { 1.0 } else { -1.0 };
        let mut model = FailureModel {
            params: *self,
            mean,
            std,
            weights: lr.params().iter().map(|w| sign * w).collect(),
            intercept: sign * lr.intercept(),
            platt_a: 1.0,
            platt_b: 0.0,
            isotonic: Vec::new(),
            ensemble: None,
            blend: None,
            selection: None,
        };
        let cal_logits: Vec<f64> = (0..cal_features.nrows())
            .into_par_iter()
            .map(|i| model.raw_logit(cal_features.row(i), cal_anomaly[i]))
            .collect();
        let cal_labels: Vec<bool> = cal_rows.iter().map(|&i| labels[i]).collect();
        let mut cal_scores = cal_logits;
        let logistic_ap = average_precision(&cal_scores, &cal_labels);
        let mut selection = Selection {
            logistic_average_precision: logistic_ap,
            ensemble_average_precision: None,
            blend_average_precision: None,
            blend_weight: None,
            chosen: "logistic_regression".to_owned(),
        };
        if let Some(ensemble) = ensemble? {
            let scores = ensemble.predict(with_anomaly(cal_features.view(), &cal_anomaly).view());
            let ensemble_ap = average_precision(&scores, &cal_labels);
            let (logistic, ensemble_platt) =
                (platt(&cal_scores, &cal_labels), platt(&scores, &cal_labels));
            // Each weight's blend of the slice and its average precision; the first best.
            let (blend, blended, blend_ap) = Blend::WEIGHTS
                .par_iter()
                .map(|&weight| {
                    let blend = Blend {
                        logistic,
                        ensemble: ensemble_platt,
                        weight,
                    };
                    let blended: Vec<f64> = cal_scores
                        .iter()
                        .zip(&scores)
                        .map(|(&l, &e)| blend.of(l, e))
                        .collect();
                    let ap = average_precision(&blended, &cal_labels);
                    (blend, blended, ap)
                })
                .reduce_with(|best, next| if next.2 > best.2 { next } else { best })
                .expect("the weights are not empty");
            selection.ensemble_average_precision = ensemble_ap;
            selection.blend_average_precision = blend_ap;
            selection.blend_weight = Some(blend.weight);
            if beats(blend_ap, logistic_ap) && beats(blend_ap, ensemble_ap) {
                selection.chosen = "blend".to_owned();
                model.blend = Some(blend);
                model.ensemble = Some(ensemble);
                cal_scores = blended;
            } else if beats(ensemble_ap, logistic_ap) {
                selection.chosen = "tree_ensemble".to_owned();
                model.ensemble = Some(ensemble);
                cal_scores = scores;
            }
        }
        model.selection = Some(selection);
        let (a, b) = platt(&cal_scores, &cal_labels);
        model.platt_a = a;
        model.platt_b = b;
        // Platt's two parameters cannot bend: where the log-odds are not sigmoid-shaped
        // (the tails), an isotonic map on the same slice follows the observed rates.
        if cal_labels.iter().filter(|&&l| l).count() >= MIN_ISOTONIC_FAILURES {
            let z: Vec<f64> = cal_scores.iter().map(|&r| a * r + b).collect();
            model.isotonic = isotonic(&z, &cal_labels);
        }
        Ok(model)
    }
}

/// Average precision on the calibration slice by which a candidate must beat each simpler
/// one to be kept: closer than that the slice cannot tell them apart (a blend that puts its
/// weight on a flat logistic regression differs from the tree ensemble alone by noise), and
/// the simpler model stays.
pub const MIN_GAIN: f64 = 1e-3;

/// Whether average precision `candidate` beats `simpler` by [`MIN_GAIN`]; an average
/// precision that could not be computed (`None`) beats nothing and is beaten by any.
fn beats(candidate: Option<f64>, simpler: Option<f64>) -> bool {
    match (candidate, simpler) {
        (Some(c), Some(s)) => c >= s + MIN_GAIN,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Column means and standard deviations (1 for constant columns).
fn standardizer(x: ArrayView2<f64>) -> (Vec<f64>, Vec<f64>) {
    let mean = x.mean_axis(Axis(0)).expect("rows were checked");
    let std = x.std_axis(Axis(0), 0.0);
    let std = std
        .iter()
        .map(|&s| if s > 1e-12 { s } else { 1.0 })
        .collect();
    (mean.to_vec(), std)
}

/// A window's inputs: its features, then its anomaly score.
fn inputs(features: ArrayView1<f64>, anomaly: f64) -> Vec<f64> {
    features.iter().copied().chain([anomaly]).collect()
}

/// Failure windows the calibration slice needs for an isotonic map.
const MIN_ISOTONIC_FAILURES: usize = 30;

/// Isotonic regression (pool adjacent violators) of the labels on `z`: the breakpoints
/// (mean z, failure rate) of the pooled blocks, ascending, rates kept off 0 and 1.
pub fn isotonic(z: &[f64], labels: &[bool]) -> Vec<(f64, f64)> {
    let mut order: Vec<usize> = (0..z.len()).collect();
    order.sort_by(|&a, &b| z[a].total_cmp(&z[b]));
    // Blocks: (sum of z, failures, windows).
    let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
    for i in order {
        blocks.push((z[i], f64::from(u8::from(labels[i])), 1.0));
        while blocks.len() > 1 {
            let (s1, y1, n1) = blocks[blocks.len() - 1];
            let (s0, y0, n0) = blocks[blocks.len() - 2];
            if y0 / n0 < y1 / n1 {
                break;
            }
            blocks.pop();
            let merged = blocks.last_mut().expect("two blocks");
            *merged = (s0 + s1, y0 + y1, n0 + n1);
        }
    }
    let floor = 0.5 / z.len().max(1) as f64;
    blocks
        .into_iter()
        .map(|(s, y, n)| (s / n, (y / n).clamp(floor, 1.0 - floor)))
        .collect()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Platt scaling: fits P(y | z) = sigmoid(a z + b) by Newton's method with a backtracking
/// line search (Lin, Lin and Weng's safeguarded version: a full Newton step can overshoot
/// and run away when the scores nearly separate the labels), with Platt's smoothed targets
/// so that perfectly separated calibration data stays finite.
pub fn platt(z: &[f64], labels: &[bool]) -> (f64, f64) {
    let n_pos = labels.iter().filter(|&&l| l).count() as f64;
    let n_neg = labels.len() as f64 - n_pos;
    let hi = (n_pos + 1.0) / (n_pos + 2.0);
    let lo = 1.0 / (n_neg + 2.0);
    let target = |l: bool| if l { hi } else { lo };
    // Negative log-likelihood: sum of (1 - t) f + ln(1 + e^-f), computed stably.
    let objective = |a: f64, b: f64| -> f64 {
        z.iter()
            .zip(labels)
            .map(|(&zi, &l)| {
                let f = a * zi + b;
                let softplus = if f >= 0.0 {
                    (-f).exp().ln_1p()
                } else {
                    -f + f.exp().ln_1p()
                };
                (1.0 - target(l)) * f + softplus
            })
            .sum()
    };
    let (mut a, mut b) = (1.0, 0.0);
    let mut current = objective(a, b);
    for _ in 0..100 {
        let (mut g_a, mut g_b, mut h_aa, mut h_ab, mut h_bb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&zi, &l) in z.iter().zip(labels) {
            let p = sigmoid(a * zi + b);
            let d = p - target(l);
            let w = (p * (1.0 - p)).max(1e-12);
            g_a += d * zi;
            g_b += d;
            h_aa += w * zi * zi;
            h_ab += w * zi;
            h_bb += w;
        }
        // A little ridge keeps the 2x2 system solvable.
        h_aa += 1e-9;
        h_bb += 1e-9;
        let det = h_aa * h_bb - h_ab * h_ab;
        if det.abs() < 1e-18 {
            break;
        }
        let step_a = (h_bb * g_a - h_ab * g_b) / det;
        let step_b = (h_aa * g_b - h_ab * g_a) / det;
        // The Newton decrement: about twice what a full step could still gain. Once that is
        // lost in the sums' rounding, no line search can make progress (it would halve the
        // step dozens of times, each a pass over every window).
        let slope = g_a * step_a + g_b * step_b;
        if (step_a.abs() < 1e-10 && step_b.abs() < 1e-10) || slope <= 1e-12 * (1.0 + current.abs())
        {
            break;
        }
        // Backtrack until the objective decreases enough (Armijo), or give up.
        let mut t = 1.0;
        let mut moved = false;
        while t >= 1e-10 {
            let (na, nb) = (a - t * step_a, b - t * step_b);
            let value = objective(na, nb);
            if value.is_finite() && value <= current - 1e-4 * t * slope {
                (a, b, current) = (na, nb, value);
                moved = true;
                break;
            }
            t /= 2.0;
        }
        if !moved {
            break;
        }
    }
    (a, b)
}

/// Appends the anomaly score as a last column.
fn with_anomaly<'a>(features: ArrayView2<'a, f64>, anomaly: &'a [f64]) -> Array2<f64> {
    let column = ArrayView1::from(anomaly).insert_axis(Axis(1));
    ndarray::concatenate(Axis(1), &[features, column]).expect("one anomaly score per row")
}

#[cfg(test)]
mod tests {
    use rand08::Rng;

    use super::*;
    use crate::model::evaluation::roc_auc;

    /// 3000 windows, 2% positive; feature 0 (unit-variance noise) shifts up by 2 before
    /// failures, feature 1 is noise: the best possible AUC is about 0.92.
    fn data(seed: u64) -> (Array2<f64>, Vec<bool>, Vec<i64>) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..3000 {
            let positive = rng.gen_bool(0.02);
            let shift = if positive { 2.0 } else { 0.0 };
            let noise: f64 = (0..3).map(|_| rng.gen_range(-1.0..1.0)).sum();
            rows.extend([noise + shift, rng.gen_range(-1.0..1.0), 0.5]);
            labels.push(positive);
        }
        (
            Array2::from_shape_vec((3000, 3), rows).unwrap(),
            labels,
            (0..3000).collect(),
        )
    }

    #[test]
    fn failures_rank_high_and_probabilities_are_calibrated() {
        let (x, y, ends) = data(1);
        let model = FailureModel::params()
            .check()
            .unwrap()
            .fit(
                &|rows| x.select(Axis(0), rows),
                &|rows| vec![0.5; rows.nrows()],
                &y,
                &ends,
                &[],
                &[],
            )
            .unwrap();
        let (x_val, y_val, _) = data(2);
        let p: Vec<f64> = x_val
            .axis_iter(Axis(0))
            .map(|row| model.probability(row, 0.5))
            .collect();
        let auc = roc_auc(&p, &y_val).unwrap();
        assert!(auc > 0.85, "auc {auc}, weights {:?}", model.weights);
        // Calibration: the mean prediction is near the base rate (about 2%), although the
        // fit saw 1 positive in 21.
        let mean = p.iter().sum::<f64>() / p.len() as f64;
        let rate = y_val.iter().filter(|&&l| l).count() as f64 / y_val.len() as f64;
        assert!((mean - rate).abs() < 0.015, "mean {mean} vs rate {rate}");
        let contributions = model.contributions(x_val.row(0), 0.5);
        assert_eq!(contributions.len(), 4);
        let logits = model.logits(x_val.view(), &vec![0.5; y_val.len()]);
        assert!((sigmoid(logits[0]) - p[0]).abs() < 1e-12);
    }

    /// Fits with default params on rows of `d` features, one window per second in row
    /// order, with a constant anomaly score.
    fn fit_in_time_order(rows: Vec<f64>, d: usize, labels: &[bool]) -> FailureModel {
        let x = Array2::from_shape_vec((labels.len(), d), rows).unwrap();
        let ends: Vec<i64> = (0..labels.len() as i64).collect();
        FailureModel::params()
            .check()
            .unwrap()
            .fit(
                &|rows| x.select(Axis(0), rows),
                &|rows| vec![0.5; rows.nrows()],
                labels,
                &ends,
                &[],
                &[],
            )
            .unwrap()
    }

    fn assert_round_trips(model: &FailureModel) {
        let back: FailureModel =
            serde_json::from_str(&serde_json::to_string(model).unwrap()).unwrap();
        assert_eq!(&back, model);
    }

    #[test]
    fn a_candidate_is_kept_only_when_it_ranks_clearly_better() {
        assert!(beats(Some(0.5 + MIN_GAIN), Some(0.5)));
        assert!(!beats(Some(0.5 + MIN_GAIN / 2.0), Some(0.5)));
        assert!(!beats(Some(0.4), Some(0.5)));
        assert!(beats(Some(0.1), None));
        assert!(!beats(None, Some(0.1)));
        assert!(!beats(None, None));
    }

    #[test]
    fn the_tree_ensemble_is_kept_where_it_ranks_better() {
        // Failures at both ends of x0: no straight line separates them, trees do.
        let mut rng = SmallRng::seed_from_u64(3);
        let n = 6000;
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..n {
            let x0: f64 = rng.gen_range(-2.0..2.0);
            rows.extend([x0, rng.gen_range(-1.0..1.0)]);
            labels.push(x0.abs() > 1.6);
        }
        let model = fit_in_time_order(rows, 2, &labels);
        let selection = model.selection().unwrap();
        assert_eq!(selection.chosen, "tree_ensemble", "{selection:?}");
        assert!(
            selection.ensemble_average_precision > selection.logistic_average_precision,
            "{selection:?}"
        );
        let low = model.probability(ndarray::arr1(&[-1.9, 0.0]).view(), 0.5);
        let mid = model.probability(ndarray::arr1(&[0.0, 0.0]).view(), 0.5);
        let high = model.probability(ndarray::arr1(&[1.9, 0.0]).view(), 0.5);
        assert!(low > 0.8 && high > 0.8 && mid < 0.2, "{low} {mid} {high}");
        // Explanations: x0 drives the score, on both sides.
        for v in [-1.9, 1.9] {
            let c = model.contributions(ndarray::arr1(&[v, 0.0]).view(), 0.5);
            assert_eq!(c.len(), 3);
            assert!(c[0] > 0.0 && c[0].abs() > c[1].abs(), "{c:?}");
        }
        assert_round_trips(&model);
    }

    #[test]
    fn the_blend_is_kept_where_it_ranks_better_and_explains_its_score() {
        // Risk rises smoothly with the sum of x1..x9 (a line fits it, trees only in steps)
        // and jumps at both ends of x0 (trees fit it, a line cannot): each model misses part.
        let mut rng = SmallRng::seed_from_u64(5);
        let n = 6000;
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..n {
            let row: Vec<f64> = (0..10).map(|_| rng.gen_range(-2.0..2.0)).collect();
            let sum: f64 = row[1..].iter().sum();
            let p = sigmoid(0.8 * sum - 5.0).max(if row[0].abs() > 1.5 { 0.8 } else { 0.0 });
            labels.push(rng.gen_bool(p));
            rows.extend(row);
        }
        let model = fit_in_time_order(rows, 10, &labels);
        let selection = model.selection().unwrap();
        assert_eq!(selection.chosen, "blend", "{selection:?}");
        assert!(
            selection.blend_average_precision > selection.logistic_average_precision
                && selection.blend_average_precision > selection.ensemble_average_precision,
            "{selection:?}"
        );
        // The weight kept is one of those tried.
        let weight = selection.blend_weight.unwrap();
        assert!(Blend::WEIGHTS.contains(&weight), "{weight}");
        assert_eq!(model.blend.unwrap().weight, weight);
        // Contributions are additive: between two windows they move as the log-odds do.
        let (a, b) = (
            ndarray::arr1(&[1.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
            ndarray::arr1(&[0.0; 10]),
        );
        let moved: f64 = model.contributions(a.view(), 0.5).iter().sum::<f64>()
            - model.contributions(b.view(), 0.5).iter().sum::<f64>();
        let logit_moved = model.logit(a.view(), 0.5) - model.logit(b.view(), 0.5);
        assert!(
            (moved - logit_moved).abs() < 1e-9,
            "{moved} vs {logit_moved}"
        );
        assert!(logit_moved > 0.0);
        assert_round_trips(&model);
        // A bundle saved before the blend had a weight blends with the plain mean.
        let mut json = serde_json::to_value(&model).unwrap();
        json["blend"].as_object_mut().unwrap().remove("weight");
        let old: FailureModel = serde_json::from_value(json).unwrap();
        let even = Blend {
            weight: 0.5,
            ..model.blend.unwrap()
        };
        assert_eq!(old.blend, Some(even));
        let (l, e) = (model.linear_logit(a.view(), 0.5), 0.3);
        assert_eq!(
            even.of(l, e),
            0.5 * (even.logistic.0 * l + even.logistic.1)
                + 0.5 * (even.ensemble.0 * e + even.ensemble.1)
        );
    }

    /// Windows of three sorts: normal (x0 low), positive (x0 high) and, 1 in 100, near a
    /// failure but beyond the horizon (x0 high, x1 low): x1 tells the near ones from the
    /// positives, and nothing else (normal windows have the positives' x1). Returns rows,
    /// labels and which are near.
    fn near_data(seed: u64, n: usize) -> (Array2<f64>, Vec<bool>, Vec<bool>) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let (mut rows, mut labels, mut near) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let u: f64 = rng.gen_range(0.0..1.0);
            let (positive, is_near) = (u < 0.02, (0.02..0.03).contains(&u));
            let x0 = if positive || is_near { 2.0 } else { 0.0 } + rng.gen_range(-0.5..0.5);
            let x1 = if is_near { 0.0 } else { 1.0 } + rng.gen_range(-0.5..0.5);
            rows.extend([x0, x1]);
            labels.push(positive);
            near.push(is_near);
        }
        (Array2::from_shape_vec((n, 2), rows).unwrap(), labels, near)
    }

    #[test]
    fn sampling_the_windows_near_failures_teaches_them_apart_from_the_positives() {
        let (x, y, near) = near_data(5, 20_000);
        let ends: Vec<i64> = (0..y.len() as i64).collect();
        let fit = |near: &[bool]| {
            FailureModel::params()
                .negatives_per_positive(2)
                .ensemble_rounds(0)
                // The sampling alone: no penalty to blur the boundary it teaches.
                .penalty_per_window(0.0)
                .check()
                .unwrap()
                .fit(
                    &|rows| x.select(Axis(0), rows),
                    &|rows| vec![0.5; rows.nrows()],
                    &y,
                    &ends,
                    near,
                    &[],
                )
                .unwrap()
        };
        // On fresh data: the near windows' mean probability, against the positives'.
        let (x_val, y_val, near_val) = near_data(6, 20_000);
        let mean_of = |model: &FailureModel, which: &dyn Fn(usize) -> bool| {
            let p: Vec<f64> = (0..y_val.len())
                .filter(|&i| which(i))
                .map(|i| model.probability(x_val.row(i), 0.5))
                .collect();
            p.iter().sum::<f64>() / p.len() as f64
        };
        let (uniform, marked) = (fit(&[]), fit(&near));
        let near_uniform = mean_of(&uniform, &|i| near_val[i]);
        let near_marked = mean_of(&marked, &|i| near_val[i]);
        let positive_marked = mean_of(&marked, &|i| y_val[i]);
        // A uniform sample holds about 8 near windows: the model barely learns x1.
        assert!(
            near_marked < 0.5 * near_uniform,
            "near windows: {near_marked} marked vs {near_uniform} uniform"
        );
        assert!(near_marked < 0.2, "near windows, marked: {near_marked}");
        assert!(
            positive_marked > 0.6,
            "positives, marked: {positive_marked}"
        );
    }

    #[test]
    fn one_class_data_is_refused() {
        let (x, _, ends) = data(1);
        let err = FailureModel::params()
            .check()
            .unwrap()
            .fit(
                &|rows| x.select(Axis(0), rows),
                &|rows| vec![0.5; rows.nrows()],
                &[false; 3000],
                &ends,
                &[],
                &[],
            )
            .unwrap_err();
        assert_eq!(err, FitError::OneClass);
    }

    #[test]
    fn bad_params_are_refused() {
        assert!(
            FailureModel::params()
                .calibration_frac(1.5)
                .check()
                .is_err()
        );
        assert!(FailureModel::params().alpha(f64::NAN).check().is_err());
        assert!(
            FailureModel::params()
                .near_negatives_frac(1.5)
                .check()
                .is_err()
        );
        assert!(
            FailureModel::params()
                .negatives_per_positive(0)
                .check()
                .is_err()
        );
    }

    #[test]
    fn isotonic_pools_violators_into_a_monotone_map() {
        let z = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        let labels = [false, true, false, false, true, true];
        let map = isotonic(&z, &labels);
        // (0) 0, then 1, 0, 0 pool to 1/3 at mean z 2, then two failures.
        assert_eq!(map.len(), 3, "{map:?}");
        assert_eq!(map[1].0, 2.0);
        assert!((map[1].1 - 1.0 / 3.0).abs() < 1e-12);
        assert!(map.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert!(
            map[0].1 > 0.0 && map[2].1 < 1.0,
            "kept off 0 and 1: {map:?}"
        );
    }

    #[test]
    fn platt_stays_finite_on_separated_saturated_scores() {
        // Raw log-odds of a model that separates its calibration slice, far from 0: a
        // full Newton step from (1, 0) meets vanishing curvature and runs away.
        let mut rng = SmallRng::seed_from_u64(9);
        let mut z = Vec::new();
        let mut y = Vec::new();
        for _ in 0..2000 {
            let failure = rng.gen_bool(0.05);
            z.push(if failure {
                rng.gen_range(40.0..60.0)
            } else {
                rng.gen_range(-60.0..-40.0)
            });
            y.push(failure);
        }
        let (a, b) = platt(&z, &y);
        assert!(
            a.is_finite() && b.is_finite() && a > 0.0 && a < 10.0,
            "a {a} b {b}"
        );
        let n_pos = y.iter().filter(|&&l| l).count() as f64;
        let hi = (n_pos + 1.0) / (n_pos + 2.0);
        assert!((sigmoid(a * 50.0 + b) - hi).abs() < 0.05, "a {a} b {b}");
        assert!(sigmoid(a * -50.0 + b) < 0.05, "a {a} b {b}");
    }

    #[test]
    fn platt_recovers_a_known_scaling() {
        let mut rng = SmallRng::seed_from_u64(5);
        let z: Vec<f64> = (0..20_000).map(|_| rng.gen_range(-4.0..4.0)).collect();
        let y: Vec<bool> = z
            .iter()
            .map(|&zi| rng.gen_bool(sigmoid(0.5 * zi - 1.0)))
            .collect();
        let (a, b) = platt(&z, &y);
        assert!(
            (a - 0.5).abs() < 0.05 && (b + 1.0).abs() < 0.08,
            "a {a} b {b}"
        );
    }
}
