//! The trained bundle: everything real-time scoring needs (feature schema, per-asset
//! baselines, isolation forest, calibrated failure model, diagnosis tree) with the report of
//! the run that made it, saved as one JSON artifact; and [`Bundle::score`], which turns one
//! window into a failure probability, an anomaly score and an explanation.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::diagnosis::{Diagnosed, KindScore};
use super::evaluation::{Scorecard, ThresholdChoice};
use super::{Diagnosis, FailureModel, GradientBoosting, IsolationForest, rounded};
use crate::features::{
    Context, FEATURE_VERSION, FeatureSchema, WindowError, check_window, extract,
};

/// Everything scoring needs, saved as one artifact.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bundle {
    /// Feature names, order and window shape.
    pub schema: FeatureSchema,
    /// Label horizon in seconds: the probability is of a failure within it.
    pub horizon_secs: i64,
    /// Each training asset's past per metric as its data ended ([`crate::features::context`]),
    /// for windows scored with no stored past of their own.
    #[serde(default)]
    pub contexts: BTreeMap<String, BTreeMap<String, Context>>,
    /// Anomaly model.
    pub forest: IsolationForest,
    /// Failure-probability model, the one that scores.
    pub failure: FailureModel,
    /// The failure model as first fitted, on the training windows alone: the one the
    /// validation figures, the alert threshold and the comparisons with other models (the
    /// champion, per-class bundles) describe. `failure` is then the same procedure fitted
    /// again on the training and validation windows together (`training.refit`). None when
    /// it was not fitted again: `failure` is that first fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validated: Option<FailureModel>,
    /// Failure-kind diagnosis, when the training windows before failures allowed one.
    #[serde(default)]
    pub diagnosis: Option<Diagnosis>,
    /// Time to failure, when the training windows allowed one.
    #[serde(default)]
    pub time_to_failure: Option<TimeToFailure>,
    /// Each training asset's class, when known.
    #[serde(default)]
    pub asset_classes: BTreeMap<String, String>,
    /// Per-class bundles (each with the schema of the metrics its class reports), kept for
    /// the classes where they scored at least as well as this fleet-wide bundle on the
    /// class's validation windows. Assets of other classes, or of none, use this bundle.
    #[serde(default)]
    pub classes: BTreeMap<String, Bundle>,
    /// The hyperparameters it was trained with. Bundles saved before this struct existed
    /// named the field `settings` (the configuration's struct); they still load.
    #[serde(alias = "settings")]
    pub params: TrainingParams,
    /// What drift of live windows is measured against (none in bundles trained before, or
    /// without validation windows).
    #[serde(default)]
    pub drift: Option<super::drift::Reference>,
    /// The alert threshold chosen on the validation windows: the one whose alerts cost
    /// least there when they held at least [`MIN_THRESHOLD_FAILURES`] failures, else the
    /// best-F1 one when they held at least [`MIN_THRESHOLD_POSITIVES`] windows before
    /// failures; used until a threshold is stored for the asset's class (feedback-tuned or
    /// set by an admin).
    #[serde(default)]
    pub alert_threshold: Option<ThresholdChoice>,
    /// Validation measures.
    pub report: TrainReport,
}

/// Validation windows before failures needed before a bundle proposes its own alert
/// threshold.
pub const MIN_THRESHOLD_POSITIVES: usize = 10;

/// Validation failures needed before a bundle chooses its alert threshold by what its
/// alerts would cost (else by best F1 on the windows).
pub const MIN_THRESHOLD_FAILURES: usize = 5;

/// The hyperparameters a bundle was trained with: the model's own record of them, not the
/// configuration's struct (which may change without breaking saved bundles). Unknown fields
/// are ignored, so an older bundle that saved the whole training configuration still loads;
/// a field it lacks takes the default the code of its day used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainingParams {
    /// Points per window.
    pub window: usize,
    /// Grid step in seconds.
    pub step_secs: i64,
    /// Most grid points a value is carried over a gap.
    pub max_fill: usize,
    /// Grid points between window ends.
    pub stride: usize,
    /// A window is positive when a failure starts within this many seconds after it.
    pub horizon_secs: i64,
    /// Fraction of the time range used for training (the rest validates).
    pub train_frac: f64,
    /// Isolation forest trees.
    pub n_trees: usize,
    /// Isolation forest rows per tree.
    pub sample_size: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Normal windows kept per pre-failure window to fit the failure model.
    pub negatives_per_positive: usize,
    /// Times each window operators called a false alarm entered the fit (0 in bundles
    /// trained before feedback reached training).
    #[serde(default)]
    pub false_alarm_weight: usize,
    /// Latest fraction of the training windows that chose and calibrated the failure model;
    /// 0.2 in bundles trained before it was a setting.
    #[serde(default = "earlier_calibration_frac")]
    pub calibration_frac: f64,
    /// Time to failure was capped at this many seconds.
    pub ttf_cap_secs: i64,
    /// Most windows the time-to-failure model was fitted on.
    pub ttf_max_rows: usize,
}

/// What a bundle that names no `calibration_frac` (trained before it was a setting) used.
fn earlier_calibration_frac() -> f64 {
    0.2
}

impl Default for TrainingParams {
    /// The values `training.*` has by default.
    fn default() -> Self {
        Self {
            window: 60,
            step_secs: 60,
            max_fill: 10,
            stride: 1,
            horizon_secs: 1800,
            train_frac: 0.7,
            n_trees: 100,
            sample_size: 256,
            seed: 0,
            negatives_per_positive: 50,
            false_alarm_weight: 5,
            calibration_frac: 0.3,
            ttf_cap_secs: 21_600,
            ttf_max_rows: 20_000,
        }
    }
}

/// The time-to-failure model: gradient-boosted trees on the window's features, predicting
/// the seconds to the asset's next failure, capped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimeToFailure {
    /// The regression.
    pub model: GradientBoosting,
    /// Predictions are capped here (the targets were).
    pub cap_secs: i64,
}

/// A time-to-failure estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TimeToFailureEstimate {
    /// Estimated seconds until the asset's next failure, in `[0, cap_secs]`.
    pub secs: f64,
    /// The cap: an estimate near it means "not soon", not a date.
    pub cap_secs: i64,
}

/// Time-to-failure measures on the validation windows whose target is known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TtfReport {
    /// Training windows fitted (after thinning to `ttf_max_rows`).
    pub train_rows: u64,
    /// Validation windows with a known target.
    pub validation_rows: u64,
    /// Root mean squared error, minutes, over them.
    pub rmse_minutes: Option<f64>,
    /// Validation windows within the horizon before a failure.
    pub near_rows: u64,
    /// Mean absolute error, minutes, over those.
    pub near_mae_minutes: Option<f64>,
    /// The same for always predicting the training targets' mean (the baseline to beat).
    pub near_mae_minutes_of_mean: Option<f64>,
    /// The model was measured no better than that mean ([`TtfReport::has_skill`]) and the
    /// bundle keeps none: answers carry no time to failure rather than a misleading one.
    #[serde(default)]
    pub withheld: bool,
}

impl TtfReport {
    /// Whether the estimates beat always predicting the mean within the horizon before a
    /// failure, where they matter. Without such validation windows nothing says otherwise,
    /// so the model is kept.
    pub fn has_skill(&self) -> bool {
        match (self.near_mae_minutes, self.near_mae_minutes_of_mean) {
            (Some(model), Some(mean)) => model < mean,
            _ => true,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainReport {
    /// Seconds per stage, in order. A stage whose parts ran at the same time is followed by
    /// the parts, each with its own seconds and its name indented by two spaces.
    pub stages: Vec<(String, f64)>,
    /// Samples read.
    pub samples: u64,
    pub assets: u64,
    /// Failures known.
    pub failures: u64,
    /// Train/validation cutoff, Unix seconds.
    pub cutoff: i64,
    /// First and last sample time of the data, Unix seconds.
    #[serde(default)]
    pub data_range: (i64, i64),
    /// Train windows, of which positive.
    pub train_windows: (u64, u64),
    /// Validation windows, of which positive.
    pub validation_windows: (u64, u64),
    /// Windows with a missing metric (train + validation).
    pub windows_with_missing: u64,
    /// Isolation forest on validation.
    pub anomaly: Option<Scorecard>,
    /// Failure model on validation.
    pub failure: Option<Scorecard>,
    /// The active model measured on the same validation windows, when there was one.
    pub champion: Option<ChampionComparison>,
    /// Diagnosis per kind on the validation windows before failures.
    #[serde(default)]
    pub diagnosis: Option<Vec<KindScore>>,
    /// Time to failure on the validation windows.
    #[serde(default)]
    pub time_to_failure: Option<TtfReport>,
    /// Per-class models: trained, measured, kept or not.
    #[serde(default)]
    pub classes: Vec<ClassReport>,
    /// Labels from operators' feedback on alerts, and what they changed.
    #[serde(default)]
    pub feedback: Option<FeedbackReport>,
    /// Windows (of which before a failure) the served failure model was fitted on again
    /// after validation: the training and validation windows together. None when it was not.
    #[serde(default)]
    pub refit_windows: Option<(u64, u64)>,
    /// Validation that does not flatter: a second failure model, fitted without one asset in
    /// [`HELD_OUT_EVERY`] (whole assets, in name order), scored on those assets' validation
    /// windows; and the model's figures on a sample of its own training windows, for the gap.
    #[serde(default)]
    pub held_out: Option<HeldOutReport>,
}

/// Operators' feedback in a training run: alerts they called true or false alarms became
/// labelled windows (a false alarm a hard negative, a true alarm a positive, a given kind the
/// diagnosis label).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedbackReport {
    /// How many labels went where.
    #[serde(flatten)]
    pub labels: crate::features::dataset::LabelUse,
    /// Mean failure probability of the validation windows called false alarms: this model's.
    pub false_alarm_probability: Option<f64>,
    /// The same windows under the model active before (when it could be measured).
    pub champion_false_alarm_probability: Option<f64>,
    /// Mean failure probability of the validation windows called true alarms: this model's.
    pub true_alarm_probability: Option<f64>,
    /// The same windows under the model active before.
    pub champion_true_alarm_probability: Option<f64>,
}

/// A per-class model against the fleet-wide one on that class's validation windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassReport {
    /// The asset class.
    pub class: String,
    pub assets: u64,
    /// Metrics its assets report (the class model's schema).
    pub metrics: Vec<String>,
    /// The class model's validation average precision, when it could be trained.
    pub class_average_precision: Option<f64>,
    /// The fleet-wide model's on the same class's validation windows.
    pub fleet_average_precision: Option<f64>,
    /// Whether the class model scores this class's assets.
    pub used: bool,
    /// Why (or why not).
    pub reason: String,
}

/// The challenger (this run) against the champion (the active model) on the same
/// validation windows, by average precision of the failure model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChampionComparison {
    /// The champion's average precision, if it could be measured.
    pub champion_average_precision: Option<f64>,
    /// The challenger's average precision.
    pub challenger_average_precision: Option<f64>,
    /// Whether the challenger is at least as good.
    pub challenger_wins: bool,
    /// Why, in words for people; clients branch on the code, never on this.
    pub reason: String,
}

impl TrainReport {
    pub(crate) fn stage(&mut self, name: &str, started: Instant) {
        self.stages
            .push((name.to_owned(), started.elapsed().as_secs_f64()));
    }

    /// Records one of the parts of the stage before that ran at the same time, with the
    /// seconds it took alone (its name indented), and passes its value on.
    pub(crate) fn substage<T>(&mut self, name: &str, (value, secs): (T, f64)) -> T {
        self.stages.push((format!("  {name}"), secs));
        value
    }
}

impl TimeToFailure {
    /// The estimate for one feature row.
    pub fn estimate(&self, row: ndarray::ArrayView1<f64>) -> TimeToFailureEstimate {
        TimeToFailureEstimate {
            secs: self.model.predict_one(row).clamp(0.0, self.cap_secs as f64),
            cap_secs: self.cap_secs,
        }
    }
}

/// Why an artifact is not a bundle this build can serve.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Not a bundle's JSON.
    #[error(transparent)]
    Parse(#[from] serde_json::Error),
    /// Made with another feature definition.
    #[error(
        "made with feature version {found}; this build computes version {FEATURE_VERSION} \
         (each window against the asset's own past), so retrain (`vigil train`)"
    )]
    FeatureVersion {
        /// The bundle's version.
        found: u32,
    },
}

/// Where a window's past came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContextSource {
    /// The asset's stored samples of the day before the window.
    Live,
    /// The asset's past as training saw it last (nothing stored since).
    Training,
    /// No past known: the window was scored on its own shape.
    None,
}

/// One asset in this many (in name order) is held out for [`HeldOutReport`].
pub const HELD_OUT_EVERY: usize = 5;

/// Validation on held-out assets, and the training figures beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOutReport {
    /// Assets held out.
    pub assets: u64,
    /// The failure model fitted without them, on their validation windows.
    pub failure: Option<Scorecard>,
    /// The bundle's failure model on a sample of its own training windows.
    pub training: Option<Scorecard>,
}

/// Kind of the registry rows that hold bundles.
pub const BUNDLE_KIND: &str = "bundle";

impl Bundle {
    /// Reads a bundle from its artifact (JSON, as the registry stores it), refusing one made
    /// with another feature definition ([`FEATURE_VERSION`]), whose inputs this build would
    /// compute differently.
    pub fn from_artifact(bytes: &[u8]) -> Result<Bundle, ArtifactError> {
        let bundle: Bundle = serde_json::from_slice(bytes)?;
        let found = bundle.schema.version;
        if found != FEATURE_VERSION {
            return Err(ArtifactError::FeatureVersion { found });
        }
        Ok(bundle)
    }

    /// Calibrated failure log-odds of feature rows made with this bundle's schema.
    pub fn logits(&self, features: ndarray::ArrayView2<f64>) -> Vec<f64> {
        self.logits_under(&self.failure, features)
    }

    /// Calibrated failure log-odds under `failure`, one of this bundle's failure models.
    fn logits_under(&self, failure: &FailureModel, features: ndarray::ArrayView2<f64>) -> Vec<f64> {
        let anomaly = self.forest.score(features);
        failure.logits(features, &anomaly)
    }

    /// The failure model its validation figures describe, fitted on its training windows
    /// alone: what another model is compared with on later windows.
    pub fn validated_failure(&self) -> &FailureModel {
        self.validated.as_ref().unwrap_or(&self.failure)
    }

    /// [`Bundle::logits`] under [`Bundle::validated_failure`].
    pub fn validated_logits(&self, features: ndarray::ArrayView2<f64>) -> Vec<f64> {
        self.logits_under(self.validated_failure(), features)
    }
}

/// One input that pushed a score, for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Driver {
    /// Feature name, `<metric>_<stat>`, or `anomaly_score`.
    pub feature: String,
    /// Its value in this window.
    pub value: f64,
    /// Standard deviations from the training windows' mean.
    pub sd_from_training: f64,
    /// Signed contribution to the calibrated log-odds of failure.
    pub contribution: f64,
    /// The same in words.
    pub text: String,
}

/// What scoring one window gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WindowScore {
    /// Calibrated probability of a failure within `horizon_secs`.
    pub probability: f64,
    /// Isolation-forest anomaly score in (0, 1] (about 0.5 normal).
    pub anomaly_score: f64,
    /// The horizon of `probability`.
    pub horizon_secs: i64,
    /// Schema metrics the window lacked (scored as missing).
    pub missing_metrics: Vec<String>,
    /// Metrics of the window the model does not know (not used).
    pub ignored_metrics: Vec<String>,
    /// Where the past each metric was compared with came from.
    pub context: ContextSource,
    /// The inputs that pushed the probability most, strongest first.
    pub drivers: Vec<Driver>,
    /// The likely failure kind, with the rule path.
    pub diagnosis: Option<Diagnosed>,
    /// Estimated time to the asset's next failure, when the model has one.
    pub time_to_failure: Option<TimeToFailureEstimate>,
    /// The asset class whose own model answered; absent when the fleet-wide one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_class: Option<String>,
    /// The window's drift bins ([`super::drift::Reference::bins`]) under the bundle that
    /// answered; empty without a reference. For counting, never answered.
    #[serde(skip)]
    pub drift_bins: Vec<u16>,
}

impl Bundle {
    /// The alert threshold proposed by the model that scores windows of `model_class` (its
    /// class bundle's when it proposes one, else this fleet-wide bundle's).
    pub fn proposed_threshold(&self, model_class: Option<&str>) -> Option<f64> {
        model_class
            .and_then(|c| self.classes.get(c)?.alert_threshold)
            .or(self.alert_threshold)
            .map(|t| t.fire_at)
    }

    /// Scores one window: `window` maps metric names to values on the model's grid, oldest
    /// first, each of exactly `schema.window` finite values. Metrics the model knows but the
    /// window lacks are scored as missing; a window with none of them is refused. The
    /// model of the asset's class (`class`, else its class at training) answers when there
    /// is one, the fleet-wide model otherwise.
    ///
    /// Each metric is compared with the asset's past: `live` (per metric, from its stored
    /// samples of the day before the window) when given, else the past training saw last,
    /// else none ([`ContextSource`]).
    pub fn score(
        &self,
        asset: &str,
        class: Option<&str>,
        window: &BTreeMap<String, Vec<f64>>,
        live: Option<&BTreeMap<String, Context>>,
        top: usize,
    ) -> Result<WindowScore, WindowError> {
        let class = class.or_else(|| self.asset_classes.get(asset).map(String::as_str));
        match class.and_then(|c| self.classes.get_key_value(c)) {
            Some((class, bundle)) => Ok(WindowScore {
                model_class: Some(class.clone()),
                ..bundle.score_here(asset, window, live, top)?
            }),
            None => self.score_here(asset, window, live, top),
        }
    }

    /// Scores one window with this bundle's own models.
    fn score_here(
        &self,
        asset: &str,
        window: &BTreeMap<String, Vec<f64>>,
        live: Option<&BTreeMap<String, Context>>,
        top: usize,
    ) -> Result<WindowScore, WindowError> {
        let mut ignored_metrics = Vec::new();
        let mut slots: Vec<Option<&[f64]>> = vec![None; self.schema.metrics.len()];
        for (name, values) in window {
            match self.schema.metric_index(name) {
                Some(i) => {
                    check_window(name, values, &self.schema)?;
                    slots[i] = Some(values.as_slice());
                }
                None => ignored_metrics.push(name.clone()),
            }
        }
        let (past, context) = match (live, self.contexts.get(asset)) {
            (Some(live), _) => (Some(live), ContextSource::Live),
            (None, Some(training)) => (Some(training), ContextSource::Training),
            (None, None) => (None, ContextSource::None),
        };
        let contexts: Vec<Option<Context>> = self
            .schema
            .metrics
            .iter()
            .map(|m| past.and_then(|p| p.get(m).copied()))
            .collect();
        let mut features = vec![0.0; self.schema.len()];
        let missing = extract(&self.schema, &slots, &contexts, &mut features)?;
        let row = ndarray::ArrayView1::from(&features);
        let anomaly_score = self.forest.score_one(row);
        let probability = self.failure.probability(row, anomaly_score);
        let drivers = self.drivers(row, anomaly_score, top);
        Ok(WindowScore {
            probability,
            anomaly_score,
            horizon_secs: self.horizon_secs,
            missing_metrics: missing
                .iter()
                .map(|&i| self.schema.metrics[i].clone())
                .collect(),
            ignored_metrics,
            context,
            drivers,
            diagnosis: self.diagnosis.as_ref().map(|d| d.diagnose(row)),
            time_to_failure: self.time_to_failure.as_ref().map(|t| t.estimate(row)),
            model_class: None,
            drift_bins: self
                .drift
                .as_ref()
                .map(|d| d.bins(&features, probability))
                .unwrap_or_default(),
        })
    }

    fn drivers(&self, features: ndarray::ArrayView1<f64>, anomaly: f64, top: usize) -> Vec<Driver> {
        let n_features = self.schema.len();
        let stats = self.schema.stats();
        let contributions = self.failure.contributions(features, anomaly);
        let standardized = self.failure.standardized(features, anomaly);
        let by_strength =
            |a: &usize, b: &usize| contributions[*b].abs().total_cmp(&contributions[*a].abs());
        let mut order: Vec<usize> = (0..contributions.len()).collect();
        // Only the strongest `top` need ordering.
        if top < order.len() {
            order.select_nth_unstable_by(top, by_strength);
            order.truncate(top);
        }
        order.sort_by(by_strength);
        order
            .into_iter()
            .map(|i| {
                let (feature, value) = if i < n_features {
                    let metric = &self.schema.metrics[i / stats.len()];
                    (format!("{metric}_{}", stats[i % stats.len()]), features[i])
                } else {
                    ("anomaly_score".to_owned(), anomaly)
                };
                let stat = stats.get(i % stats.len()).copied().unwrap_or("");
                let direction = if contributions[i] > 0.0 {
                    "raises"
                } else {
                    "lowers"
                };
                let text = if i < n_features && stat.starts_with("z_") {
                    let metric = &self.schema.metrics[i / stats.len()];
                    format!(
                        "{metric} {} {:+} sd from this asset's past day; {direction} the risk",
                        &stat[2..],
                        rounded(value, 1)
                    )
                } else {
                    format!(
                        "{} = {} ({:+} sd from training windows); {direction} the risk",
                        feature.replace('_', " "),
                        rounded(value, 4),
                        rounded(standardized[i], 1)
                    )
                };
                Driver {
                    feature,
                    value,
                    sd_from_training: standardized[i],
                    contribution: contributions[i],
                    text,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_to_failure_is_kept_only_where_it_beats_the_mean() {
        let report = |model: Option<f64>, mean: Option<f64>| TtfReport {
            train_rows: 500,
            validation_rows: 400,
            rmse_minutes: Some(90.0),
            near_rows: 40,
            near_mae_minutes: model,
            near_mae_minutes_of_mean: mean,
            withheld: false,
        };
        assert!(report(Some(20.0), Some(60.0)).has_skill());
        assert!(!report(Some(60.0), Some(60.0)).has_skill());
        assert!(!report(Some(277.0), Some(255.0)).has_skill());
        // No validation window near a failure: nothing measured against it.
        assert!(report(None, None).has_skill());
        // A report stored before the guard reads as kept.
        let mut old = serde_json::to_value(report(Some(20.0), Some(60.0))).unwrap();
        old.as_object_mut().unwrap().remove("withheld");
        let back: TtfReport = serde_json::from_value(old).unwrap();
        assert!(!back.withheld);
    }
}
