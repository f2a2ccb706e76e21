//! Training: from metric histories and incidents to a model bundle (feature schema,
//! per-asset baselines, isolation forest, calibrated failure model) with its validation
//! measures and stage timings.
//!
//! [`train`] is pure computation on histories already in memory; [`histories_from_files`]
//! loads them from CSV/Parquet (the offline path, no database) and [`load_from_store`] from
//! PostgreSQL. [`register`] stores a run as a new registry version and activates it only if
//! it is at least as good as the active one on the same validation windows
//! (champion/challenger); otherwise it stays a candidate with the reason recorded.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use chrono::Utc;
use ndarray::{Array2, Axis};
use rayon::prelude::*;
use sha2::Digest;

use crate::config::{Settings, TrainingSettings};
use crate::features::dataset::{self, AssetHistory, DatasetParams, Failure, Label, MetricHistory};
use crate::features::{FeatureSchema, derive};
use crate::ingest::files::{self, FileError, Layout, Rejections};
use crate::ingest::{Limits, NamedBatch};
pub use crate::model::bundle::{
    Bundle, ChampionComparison, ClassReport, TimeToFailure, TrainReport, TrainingParams, TtfReport,
};
use crate::model::bundle::{MIN_THRESHOLD_FAILURES, MIN_THRESHOLD_POSITIVES};
use crate::model::diagnosis::KindScore;
use crate::model::evaluation::{
    AlertRule, EventWindows, Scorecard, best_event_threshold, best_f1_threshold, brier, reliability,
};
use crate::model::{
    Diagnosis, FailureModel, FitError, GradientBoosting, IsolationForest, ParamsError,
};
use crate::store::Store;
use crate::store::models::{ModelRecord, NewModel};

/// A negative window counts as near a failure when one follows within this many horizons
/// of its end: the failure model samples a share of its negatives from those
/// ([`FailureModel`]'s `near_negatives_frac`).
const NEAR_FAILURE_HORIZONS: i64 = 6;

/// The labelling and split parameters `training.*` gives.
pub fn dataset_params(settings: &TrainingSettings) -> DatasetParams {
    DatasetParams {
        horizon_secs: settings.horizon_secs,
        stride: settings.stride,
        train_frac: settings.train_frac,
        ttf_cap_secs: settings.ttf_cap_secs,
    }
}

/// How alerts open and clear and what their errors cost, from the settings:
/// `scoring.fire_windows`; clearing `policy.clear_gap` below the fire point or at the ratio
/// `scoring.clear_threshold` bears to `scoring.alert_threshold` (0.6), whichever is higher;
/// `policy.false_alarm_cost` and `missed_failure_cost`; within `policy.min_threshold` and
/// `max_threshold`. Training chooses a model's threshold with it; scoring clears thresholds
/// set without a clear point by it.
pub fn alert_rule(settings: &Settings) -> AlertRule {
    let (scoring, policy) = (&settings.scoring, &settings.policy);
    AlertRule {
        fire_windows: scoring.fire_windows,
        clear_gap: policy.clear_gap,
        clear_ratio: if scoring.alert_threshold > 0.0 {
            scoring.clear_threshold / scoring.alert_threshold
        } else {
            0.0
        },
        false_alarm_cost: policy.false_alarm_cost,
        missed_failure_cost: policy.missed_failure_cost,
        bounds: (policy.min_threshold, policy.max_threshold),
    }
}

/// The rule of the default settings.
impl Default for AlertRule {
    fn default() -> Self {
        alert_rule(&Settings::default())
    }
}

/// The hyperparameters a bundle records, from `training.*` (the schedule and the history
/// read are the job's, not the model's).
pub fn training_params(settings: &TrainingSettings) -> TrainingParams {
    TrainingParams {
        window: settings.window,
        step_secs: settings.step_secs,
        max_fill: settings.max_fill,
        stride: settings.stride,
        horizon_secs: settings.horizon_secs,
        train_frac: settings.train_frac,
        n_trees: settings.n_trees,
        sample_size: settings.sample_size,
        seed: settings.seed,
        negatives_per_positive: settings.negatives_per_positive,
        false_alarm_weight: settings.false_alarm_weight,
        calibration_frac: settings.calibration_frac,
        ttf_cap_secs: settings.ttf_cap_secs,
        ttf_max_rows: settings.ttf_max_rows,
    }
}

/// Errors of a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The input files cannot be read.
    #[error(transparent)]
    File(#[from] FileError),
    /// Rows of the input were rejected.
    #[error("{path}: {count} bad row(s), first: {first}")]
    BadRows {
        /// The file.
        path: String,
        /// How many.
        count: u64,
        /// The first reason.
        first: String,
    },
    /// Not enough data to train.
    #[error("not enough data: {0}")]
    NotEnoughData(String),
    /// The training task panicked or was cancelled (a bug: please report it).
    #[error("the training task failed: {0}")]
    Task(String),
    /// A hyperparameter in config is unusable.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// A model could not be fitted.
    #[error(transparent)]
    Fit(#[from] FitError),
    /// Reading data or writing the registry failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// A registered model's artifact is missing, altered or not a bundle: it cannot serve.
    #[error("model {model_id} cannot be loaded: {reason}")]
    Unloadable {
        /// The model's registry id.
        model_id: i64,
        /// What is wrong with its artifact.
        reason: String,
    },
    /// Another training run holds the lock (on this replica or another).
    #[error("another training run is under way")]
    Busy,
    /// Another replica already ran this tick of the schedule.
    #[error("another replica already ran this tick of the schedule")]
    TickTaken,
    /// The artifact could not be written or read.
    #[error("{path}: {source}")]
    Artifact {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Training input loaded from files.
#[derive(Debug, Clone)]
pub struct TrainingData {
    /// Metric names, in feature order.
    pub metrics: Vec<String>,
    /// Per-asset histories.
    pub histories: Vec<AssetHistory>,
    /// Known failures.
    pub failures: Vec<Failure>,
    /// Operators' feedback on alerts, as labelled windows (none from files).
    pub labels: Vec<Label>,
    /// Samples read.
    pub samples: u64,
    /// Each asset's class, when known (the database knows; files do not).
    pub classes: BTreeMap<String, String>,
    /// How `metrics` were derived from stored series (none: files, read as they are).
    pub inputs: Option<crate::vocab::ModelInputs>,
}

/// Reads samples (long or wide CSV/Parquet) and incidents into histories and failures.
/// Strict: a bad row fails the run.
pub fn histories_from_files(
    samples: &Path,
    incidents: Option<&Path>,
    limits: Limits,
) -> Result<TrainingData, TrainError> {
    let mut batch = NamedBatch::new(limits.unbounded_batch());
    let (_, rejections) = files::read_samples(samples, Layout::Auto, &mut batch)?;
    refuse_bad_rows(samples, &rejections)?;
    let n_samples = batch.len() as u64;
    let (metrics, histories) = histories_from_batch(batch);
    let failures = match incidents {
        None => Vec::new(),
        Some(path) => {
            let (rows, rejections) = files::read_incidents(path)?;
            refuse_bad_rows(path, &rejections)?;
            rows.into_iter()
                .map(|r| Failure {
                    asset: r.asset,
                    kind: r.kind,
                    started: r.started_micros.div_euclid(1_000_000),
                    resolved: r.resolved_micros.map(|t| t.div_euclid(1_000_000)),
                })
                .collect()
        }
    };
    Ok(TrainingData {
        metrics,
        histories,
        failures,
        labels: Vec::new(),
        samples: n_samples,
        classes: BTreeMap::new(),
        inputs: None,
    })
}

fn refuse_bad_rows(path: &Path, rejections: &Rejections) -> Result<(), TrainError> {
    match rejections.rows.first() {
        None => Ok(()),
        Some(first) => Err(TrainError::BadRows {
            path: path.display().to_string(),
            count: rejections.count,
            first: first.to_string(),
        }),
    }
}

/// Groups a batch's samples by asset and metric, sorted by time; metrics in name order.
pub fn histories_from_batch(batch: NamedBatch) -> (Vec<String>, Vec<AssetHistory>) {
    let parts = batch.into_parts();
    let mut metric_order: Vec<usize> = (0..parts.metrics.len()).collect();
    metric_order.sort_by(|&a, &b| parts.metrics[a].cmp(&parts.metrics[b]));
    let mut position = vec![0; parts.metrics.len()];
    for (pos, &m) in metric_order.iter().enumerate() {
        position[m] = pos;
    }
    let metrics: Vec<String> = metric_order
        .iter()
        .map(|&m| parts.metrics[m].clone())
        .collect();
    // Each series' length first, so that every one is allocated once at its size.
    let mut lengths = vec![vec![0usize; metrics.len()]; parts.assets.len()];
    for (&a, &m) in parts.asset.iter().zip(&parts.metric) {
        lengths[a as usize][position[m as usize]] += 1;
    }
    let mut grouped: Vec<Vec<MetricHistory>> = lengths
        .iter()
        .map(|series| {
            series
                .iter()
                .map(|&n| MetricHistory {
                    ts: Vec::with_capacity(n),
                    values: Vec::with_capacity(n),
                })
                .collect()
        })
        .collect();
    for i in 0..parts.values.len() {
        let series = &mut grouped[parts.asset[i] as usize][position[parts.metric[i] as usize]];
        series.ts.push(parts.ts_micros[i].div_euclid(1_000_000));
        series.values.push(parts.values[i]);
    }
    let histories = grouped
        .into_iter()
        .zip(parts.assets)
        .map(|(series, asset)| AssetHistory {
            asset,
            metrics: series
                .into_iter()
                .map(|m| (!m.ts.is_empty()).then(|| m.into_time_order()))
                .collect(),
        })
        .collect();
    (metrics, histories)
}

/// Trains a bundle, and measures `champion` (the active bundle, if any) on the same
/// validation windows. `on_stage` is told each stage as it starts.
pub fn train<H: std::borrow::Borrow<AssetHistory> + Sync>(
    metrics: Vec<String>,
    histories: &[H],
    failures: &[Failure],
    settings: &TrainingSettings,
    rule: &AlertRule,
    champion: Option<&Bundle>,
    on_stage: &mut dyn FnMut(&str),
) -> Result<Bundle, TrainError> {
    let outcomes = Outcomes {
        failures,
        labels: &[],
    };
    train_derived(
        metrics,
        None,
        histories,
        outcomes,
        Rules {
            training: settings,
            alerts: rule,
        },
        champion,
        on_stage,
    )
}

/// What a training run follows: `training.*`, and how alerts open and what they cost (for
/// the threshold it proposes).
#[derive(Debug, Clone, Copy)]
struct Rules<'a> {
    training: &'a TrainingSettings,
    alerts: &'a AlertRule,
}

/// What happened after the windows: recorded failures, and what operators said about
/// alerts.
#[derive(Debug, Clone, Copy)]
struct Outcomes<'a> {
    failures: &'a [Failure],
    labels: &'a [Label],
}

/// [`train`] of metrics derived from stored series by `inputs` (saved in the schema), with
/// operators' labels.
fn train_derived<H: std::borrow::Borrow<AssetHistory> + Sync>(
    metrics: Vec<String>,
    inputs: Option<crate::vocab::ModelInputs>,
    histories: &[H],
    outcomes: Outcomes<'_>,
    rules: Rules<'_>,
    champion: Option<&Bundle>,
    on_stage: &mut dyn FnMut(&str),
) -> Result<Bundle, TrainError> {
    let Outcomes { failures, labels } = outcomes;
    let Rules {
        training: settings,
        alerts: rule,
    } = rules;
    let mut report = TrainReport {
        assets: histories.len() as u64,
        failures: failures.len() as u64,
        ..TrainReport::default()
    };
    let mut schema = FeatureSchema::new(
        metrics,
        settings.window,
        settings.step_secs,
        settings.max_fill,
    );
    schema.inputs = inputs;
    schema.levels = settings.levels;
    on_stage("features");
    let started = Instant::now();
    let params = dataset_params(settings);
    let data = dataset::build_labelled(&schema, histories, failures, labels, &params);
    // Every validation window is scored; of the training windows only those the fits sample
    // get features, when they ask.
    let validation_x = data.all_features(&data.validation);
    let train_rows = |rows: &[usize]| data.features(&data.train, rows);
    report.stage("features", started);
    report.cutoff = data.cutoff;
    report.data_range = data.range;
    report.train_windows = (data.train.len() as u64, data.train.positives() as u64);
    report.validation_windows = (
        data.validation.len() as u64,
        data.validation.positives() as u64,
    );
    report.windows_with_missing = (data.train.with_missing + data.validation.with_missing) as u64;
    if data.train.positives() == 0 {
        return Err(TrainError::NotEnoughData(format!(
            "no training window precedes a failure ({} windows, {} failures)",
            data.train.len(),
            failures.len()
        )));
    }

    on_stage("fit isolation forest");
    let started = Instant::now();
    let forest = IsolationForest::params()
        .n_trees(settings.n_trees)
        .sample_size(settings.sample_size)
        .seed(settings.seed)
        .check()?
        .fit_rows(data.train.len(), schema.len(), &train_rows)?;
    report.stage("fit_if", started);

    // The failure model's logistic regression runs on one core; the diagnosis tree, the
    // time-to-failure trees and the validation windows' anomaly scores fill the other.
    on_stage("fit failure model, diagnosis and time to failure");
    let started = Instant::now();
    let failure_params = FailureModel::params()
        .seed(settings.seed)
        .negatives_per_positive(settings.negatives_per_positive)
        .hard_negative_weight(settings.false_alarm_weight)
        .calibration_frac(settings.calibration_frac)
        .check()?;
    let (near, hard) = negative_kinds(&data.train, settings);
    let (failure, (diagnosis, (time_to_failure, validation_anomaly))) = rayon::join(
        || {
            timed(|| {
                failure_params.fit(
                    &train_rows,
                    &|rows| forest.score(rows),
                    &data.train.y,
                    &data.train.end,
                    &near,
                    &hard,
                )
            })
        },
        || {
            rayon::join(
                || timed(|| fit_diagnosis(&schema, &data, &validation_x)),
                || {
                    rayon::join(
                        || timed(|| fit_time_to_failure(settings, &data, &validation_x)),
                        || timed(|| forest.score(validation_x.view())),
                    )
                },
            )
        },
    );
    report.stage("fit_models", started);
    let failure = report.substage("fit_failure", failure)?;
    let diagnosis = report
        .substage("fit_diagnosis", diagnosis)?
        .map(|(model, scores)| {
            report.diagnosis = scores;
            model
        });
    let time_to_failure = report
        .substage("fit_time_to_failure", time_to_failure)?
        .and_then(|(model, mut ttf)| {
            ttf.withheld = !ttf.has_skill();
            let kept = (!ttf.withheld).then_some(model);
            report.time_to_failure = Some(ttf);
            kept
        });
    let validation_anomaly = report.substage("score_anomaly", validation_anomaly);

    on_stage("score validation");
    let started = Instant::now();
    let mut probabilities = Vec::new();
    let mut alert_threshold = None;
    if !data.validation.is_empty() {
        let logits = failure.logits(validation_x.view(), &validation_anomaly);
        probabilities = logits.iter().map(|&z| failure.calibrate(z)).collect();
        let y = &data.validation.y;
        report.anomaly = Some(Scorecard::ranking(&validation_anomaly, y));
        report.failure = Some(Scorecard {
            brier: Some(brier(&probabilities, y)),
            reliability: reliability(&probabilities, y, 10),
            ..Scorecard::ranking(&logits, y)
        });
        alert_threshold = propose_threshold(&probabilities, &data.validation, settings, rule);
    }
    report.stage("score_validation", started);
    // Validation on held-out assets, and the failure model fitted again on all windows for
    // scoring: independent fits, side by side (each one's logistic regression is serial).
    let all = (settings.refit && data.validation.positives() > 0)
        .then(|| data.train.joined(&data.validation));
    on_stage(if all.is_some() {
        "validate on held-out assets; fit the failure model again on all windows"
    } else {
        "validate on held-out assets"
    });
    let started = Instant::now();
    let (held_out, served) = rayon::join(
        || timed(|| held_out_check(&data, &failure, &failure_params, &forest, &near, &hard)),
        || {
            all.as_ref().map(|all| {
                timed(|| {
                    let (near, hard) = negative_kinds(all, settings);
                    failure_params.fit(
                        &|rows| data.features(all, rows),
                        &|rows| forest.score(rows),
                        &all.y,
                        &all.end,
                        &near,
                        &hard,
                    )
                })
            })
        },
    );
    report.stage("held_out_and_refit", started);
    report.held_out = report.substage("held_out", held_out)?;
    let (failure, validated) = match served.zip(all) {
        Some((served, all)) => {
            let served = report.substage("refit", served)?;
            report.refit_windows = Some((all.len() as u64, all.positives() as u64));
            (served, Some(failure))
        }
        None => (failure, None),
    };
    // The champion on the same windows, when it can be measured on them.
    let champion_logits = champion
        .filter(|c| c.schema == schema)
        .map(|c| c.validated_logits(validation_x.view()));
    report.champion = Some(compare(
        champion,
        &schema,
        champion_logits.as_deref(),
        &data.validation.y,
        report.failure.as_ref(),
    ));
    if !labels.is_empty() {
        let champion_probabilities: Option<Vec<f64>> =
            champion.zip(champion_logits).map(|(c, logits)| {
                logits
                    .iter()
                    .map(|&z| c.validated_failure().calibrate(z))
                    .collect()
            });
        report.feedback = Some(feedback_report(
            &data,
            &probabilities,
            champion_probabilities.as_deref(),
        ));
    }
    debug_assert_eq!(validation_x.len_of(Axis(1)), schema.len());

    let drift = crate::model::drift::Reference::of(
        &validation_x
            .columns()
            .into_iter()
            .map(|c| c.to_vec())
            .collect::<Vec<_>>(),
        &probabilities,
    );
    let contexts = data
        .assets
        .iter()
        .cloned()
        .zip(data.latest_contexts())
        .map(|(asset, pasts)| {
            let known = schema
                .metrics
                .iter()
                .zip(pasts)
                .filter_map(|(m, c)| Some((m.clone(), c?)))
                .collect();
            (asset, known)
        })
        .collect();
    Ok(Bundle {
        schema,
        horizon_secs: settings.horizon_secs,
        contexts,
        forest,
        failure,
        validated,
        diagnosis,
        time_to_failure,
        asset_classes: BTreeMap::new(),
        classes: BTreeMap::new(),
        params: training_params(settings),
        drift,
        alert_threshold,
        report,
    })
}

/// Of the negative windows of `part`: those a failure follows within
/// [`NEAR_FAILURE_HORIZONS`] (the hardest to tell from the positives, a share of the failure
/// model's sampled negatives), and those operators called false alarms (hard negatives,
/// weighted).
fn negative_kinds(part: &dataset::Part, settings: &TrainingSettings) -> (Vec<bool>, Vec<bool>) {
    let near_secs = (NEAR_FAILURE_HORIZONS * settings.horizon_secs) as f64;
    let cap = settings.ttf_cap_secs as f64;
    let near = part
        .ttf
        .iter()
        .zip(&part.y)
        .map(|(ttf, &y)| !y && ttf.is_some_and(|t| t <= near_secs && t < cap))
        .collect();
    let hard = part
        .labelled
        .iter()
        .zip(&part.y)
        .map(|(&labelled, &y)| labelled && !y)
        .collect();
    (near, hard)
}

/// An alert opened at most this many label horizons before a failure announced it, when a
/// bundle chooses its threshold by what its alerts cost (an early alarm is a true one).
const EARLY_ALARM_HORIZONS: i64 = 4;

/// The alert threshold a bundle proposes from its validation `probabilities`: the one whose
/// alerts cost least when replayed on the validation windows under `rule` (scoring's
/// hysteresis and the policy's costs), when they hold at least [`MIN_THRESHOLD_FAILURES`]
/// failures; else the best-F1 one when they hold at least [`MIN_THRESHOLD_POSITIVES`]
/// windows before failures; else none.
fn propose_threshold(
    probabilities: &[f64],
    validation: &dataset::Part,
    settings: &TrainingSettings,
    rule: &AlertRule,
) -> Option<crate::model::evaluation::ThresholdChoice> {
    // The asset's next failure after each window (its time to failure, when under the cap);
    // a window an operator called a true alarm without a recorded failure after it stands
    // for a failure of its own.
    let next_failure: Vec<Option<i64>> = (0..validation.len())
        .map(|i| match validation.ttf[i] {
            Some(t) if t < settings.ttf_cap_secs as f64 => {
                Some(validation.end[i] + t.round() as i64)
            }
            _ => validation.y[i].then_some(validation.end[i]),
        })
        .collect();
    let windows = EventWindows {
        asset: &validation.asset,
        end: &validation.end,
        positive: &validation.y,
        next_failure: &next_failure,
        lead_secs: EARLY_ALARM_HORIZONS * settings.horizon_secs,
        stride: settings.stride,
        step_secs: settings.step_secs,
    };
    best_event_threshold(probabilities, &windows, rule, MIN_THRESHOLD_FAILURES)
        .or_else(|| best_f1_threshold(probabilities, &validation.y, MIN_THRESHOLD_POSITIVES))
}

/// Trains the fleet-wide bundle ([`train`]) and, when the assets fall in two or more known
/// classes, one bundle per class on that class's assets and the metrics they report. A
/// class bundle is kept when its validation average precision is at least the fleet-wide
/// bundle's on the same class's validation windows; every class is reported, kept or not.
pub fn train_fleet(
    data: &TrainingData,
    settings: &TrainingSettings,
    rule: &AlertRule,
    champion: Option<&Bundle>,
    on_stage: &mut dyn FnMut(&str),
) -> Result<Bundle, TrainError> {
    let mut bundle = train_derived(
        data.metrics.clone(),
        data.inputs.clone(),
        &data.histories,
        Outcomes {
            failures: &data.failures,
            labels: &data.labels,
        },
        Rules {
            training: settings,
            alerts: rule,
        },
        champion,
        on_stage,
    )?;
    bundle.report.samples = data.samples;
    bundle.asset_classes = data
        .histories
        .iter()
        .filter_map(|h| Some((h.asset.clone(), data.classes.get(&h.asset)?.clone())))
        .collect();
    let mut classes: Vec<&String> = bundle.asset_classes.values().collect();
    classes.sort();
    classes.dedup();
    if classes.len() < 2 {
        return Ok(bundle);
    }
    let classes: Vec<String> = classes.into_iter().cloned().collect();
    for class in classes {
        on_stage(&format!("fit class {class}"));
        let (report, model) = train_class(data, &bundle, &class, settings, rule)?;
        if let Some(model) = model {
            bundle.classes.insert(class, model);
        }
        bundle.report.classes.push(report);
    }
    Ok(bundle)
}

/// Trains the bundle of one class and measures it against the fleet-wide `fleet`.
fn train_class(
    data: &TrainingData,
    fleet: &Bundle,
    class: &str,
    settings: &TrainingSettings,
    rule: &AlertRule,
) -> Result<(ClassReport, Option<Bundle>), TrainError> {
    let mine: Vec<&AssetHistory> = data
        .histories
        .iter()
        .filter(|h| {
            fleet
                .asset_classes
                .get(&h.asset)
                .is_some_and(|c| c == class)
        })
        .collect();
    let failures: Vec<Failure> = data
        .failures
        .iter()
        .filter(|f| mine.iter().any(|h| h.asset == f.asset))
        .cloned()
        .collect();
    let labels: Vec<Label> = data
        .labels
        .iter()
        .filter(|l| mine.iter().any(|h| h.asset == l.asset))
        .cloned()
        .collect();
    let outcomes = Outcomes {
        failures: &failures,
        labels: &labels,
    };
    // The class's metrics: those any of its assets reports.
    let reported: Vec<usize> = (0..data.metrics.len())
        .filter(|&m| mine.iter().any(|h| h.metrics[m].is_some()))
        .collect();
    let metrics: Vec<String> = reported.iter().map(|&m| data.metrics[m].clone()).collect();
    let mut report = ClassReport {
        class: class.to_owned(),
        assets: mine.len() as u64,
        metrics: metrics.clone(),
        class_average_precision: None,
        fleet_average_precision: None,
        used: false,
        reason: String::new(),
    };
    // The fleet-wide model on this class's validation windows.
    let windows = dataset::build_labelled(
        &fleet.schema,
        &mine,
        &failures,
        &labels,
        &dataset_params(settings),
    );
    report.fleet_average_precision = crate::model::evaluation::average_precision(
        &fleet.validated_logits(windows.all_features(&windows.validation).view()),
        &windows.validation.y,
    );
    let trained = if reported.len() == data.metrics.len() {
        train_derived(
            metrics,
            data.inputs.clone(),
            &mine,
            outcomes,
            Rules {
                training: settings,
                alerts: rule,
            },
            None,
            &mut |_| {},
        )
    } else {
        let subset: Vec<AssetHistory> = mine
            .iter()
            .map(|h| AssetHistory {
                asset: h.asset.clone(),
                metrics: reported.iter().map(|&m| h.metrics[m].clone()).collect(),
            })
            .collect();
        train_derived(
            metrics,
            data.inputs.clone(),
            &subset,
            outcomes,
            Rules {
                training: settings,
                alerts: rule,
            },
            None,
            &mut |_| {},
        )
    };
    let model = match trained {
        Ok(model) => model,
        Err(TrainError::NotEnoughData(why)) => {
            report.reason = format!("not trained: {why}");
            return Ok((report, None));
        }
        Err(e) => return Err(e),
    };
    report.class_average_precision = model
        .report
        .failure
        .as_ref()
        .and_then(|c| c.average_precision);
    (report.used, report.reason) = match (
        report.class_average_precision,
        report.fleet_average_precision,
    ) {
        (Some(own), Some(fleet)) if own >= fleet => (
            true,
            "at least as good as the fleet-wide model on this class's validation windows"
                .to_owned(),
        ),
        (Some(_), Some(_)) => (
            false,
            "worse than the fleet-wide model on this class's validation windows".to_owned(),
        ),
        (_, None) => (
            false,
            "no validation window before a failure to compare on".to_owned(),
        ),
        (None, Some(_)) => (false, "the class model could not be measured".to_owned()),
    };
    let used = report.used;
    Ok((report, used.then_some(model)))
}

/// A model with what it measured on the validation windows; `None` when the training data
/// cannot support it.
type Fitted<M, R> = Result<Option<(M, R)>, TrainError>;

/// Runs `f` and measures its wall time.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let started = Instant::now();
    let value = f();
    (value, started.elapsed().as_secs_f64())
}

/// At most `n` of `rows`, evenly spaced.
fn thin(rows: &[usize], n: usize) -> Vec<usize> {
    if rows.len() <= n {
        return rows.to_vec();
    }
    (0..n).map(|k| rows[k * rows.len() / n]).collect()
}

/// Fits the time-to-failure regression on the training windows whose target is known: all
/// those nearer than the cap to a failure (thinned evenly to half of `ttf_max_rows` when
/// more), and evenly spaced others up to `ttf_max_rows`. Measures it on the validation
/// windows with a known target. `None` when fewer than 100 training windows are nearer than
/// the cap to a failure.
fn fit_time_to_failure(
    settings: &TrainingSettings,
    data: &dataset::Dataset,
    validation_x: &Array2<f64>,
) -> Fitted<TimeToFailure, TtfReport> {
    let cap = settings.ttf_cap_secs as f64;
    let known = |part: &dataset::Part| -> (Vec<usize>, Vec<usize>) {
        (0..part.len())
            .filter(|&i| part.ttf[i].is_some())
            .partition(|&i| part.ttf[i].is_some_and(|t| t < cap))
    };
    let (near, far) = known(&data.train);
    if near.len() < 100 {
        return Ok(None);
    }
    let max_rows = settings.ttf_max_rows.max(200);
    let mut rows = thin(&near, max_rows / 2);
    rows.extend(thin(&far, max_rows - rows.len()));
    let x = data.features(&data.train, &rows);
    let y: Vec<f64> = rows.iter().filter_map(|&i| data.train.ttf[i]).collect();
    let model = GradientBoosting::params()
        .n_rounds(100)
        .learning_rate(0.1)
        .max_depth(5)
        .min_leaf(20)
        .seed(settings.seed)
        .check()?
        .fit(x.view(), &y)?;
    let ttf = TimeToFailure {
        model,
        cap_secs: settings.ttf_cap_secs,
    };
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let (near, far) = known(&data.validation);
    let error = |rows: &[usize], guess: &dyn Fn(usize) -> f64| -> Vec<f64> {
        rows.iter()
            .map(|&i| (guess(i) - data.validation.ttf[i].unwrap_or(cap)) / 60.0)
            .collect()
    };
    let estimates: Vec<f64> = (0..data.validation.len())
        .into_par_iter()
        .map(|i| ttf.estimate(validation_x.row(i)).secs)
        .collect();
    let predicted = |i: usize| estimates[i];
    let all: Vec<usize> = near.iter().chain(&far).copied().collect();
    let rmse = |e: Vec<f64>| {
        (!e.is_empty()).then(|| (e.iter().map(|v| v * v).sum::<f64>() / e.len() as f64).sqrt())
    };
    let mae = |e: Vec<f64>| {
        (!e.is_empty()).then(|| e.iter().map(|v| v.abs()).sum::<f64>() / e.len() as f64)
    };
    let horizon = settings.horizon_secs as f64;
    let within: Vec<usize> = near
        .iter()
        .copied()
        .filter(|&i| data.validation.ttf[i].is_some_and(|t| t <= horizon))
        .collect();
    let measured = TtfReport {
        train_rows: rows.len() as u64,
        validation_rows: all.len() as u64,
        rmse_minutes: rmse(error(&all, &predicted)),
        near_rows: within.len() as u64,
        near_mae_minutes: mae(error(&within, &predicted)),
        near_mae_minutes_of_mean: mae(error(&within, &|_| mean)),
        withheld: false,
    };
    Ok(Some((ttf, measured)))
}

/// Rows of a part that precede a failure of known kind, and those kinds.
fn kind_rows(part: &dataset::Part) -> (Vec<usize>, Vec<usize>) {
    part.kind
        .iter()
        .enumerate()
        .filter_map(|(i, k)| k.map(|k| (i, k as usize)))
        .unzip()
}

/// Fits the diagnosis tree on the training windows before failures and scores it on the
/// validation ones (`None` when it has none); `None` when fewer than 10 such training
/// windows exist.
fn fit_diagnosis(
    schema: &FeatureSchema,
    data: &dataset::Dataset,
    validation_x: &Array2<f64>,
) -> Fitted<Diagnosis, Option<Vec<KindScore>>> {
    let (rows, kinds) = kind_rows(&data.train);
    if rows.len() < 10 {
        return Ok(None);
    }
    let x = data.features(&data.train, &rows);
    let diagnosis =
        Diagnosis::params()
            .check()?
            .fit(x.view(), &kinds, &data.kinds, &schema.names())?;
    let (rows, kinds) = kind_rows(&data.validation);
    let scores = (!rows.is_empty()).then(|| {
        let x = validation_x.select(Axis(0), &rows);
        diagnosis.evaluate(x.view(), &kinds)
    });
    Ok(Some((diagnosis, scores)))
}

/// The champion's average precision on the validation windows `x` (labels `y`) against the
/// challenger's, and whether the challenger wins.
fn compare(
    champion: Option<&Bundle>,
    schema: &FeatureSchema,
    champion_logits: Option<&[f64]>,
    y: &[bool],
    challenger: Option<&Scorecard>,
) -> ChampionComparison {
    let challenger_ap = challenger.and_then(|c| c.average_precision);
    let (champion_ap, reason) = match (champion, champion_logits) {
        (None, _) => (None, "no active model: the first one becomes active".to_owned()),
        (Some(c), _) if c.schema != *schema => (
            None,
            "the active model has another feature schema: it cannot be measured on these windows, so the new one replaces it".to_owned(),
        ),
        (Some(_), logits) => {
            let ap = logits.and_then(|l| crate::model::evaluation::average_precision(l, y));
            (ap, "both measured on this run's validation windows".to_owned())
        }
    };
    let challenger_wins = match (champion_ap, challenger_ap) {
        (Some(old), Some(new)) => new >= old,
        (Some(_), None) => false,
        (None, _) => true,
    };
    ChampionComparison {
        champion_average_precision: champion_ap,
        challenger_average_precision: challenger_ap,
        challenger_wins,
        reason,
    }
}

/// What operators' labels did: how many were used where, and the mean probability of the
/// validation windows they labelled, under the new model and the champion.
fn feedback_report(
    data: &dataset::Dataset,
    probabilities: &[f64],
    champion: Option<&[f64]>,
) -> crate::model::bundle::FeedbackReport {
    let validation = &data.validation;
    let mean_of = |scores: &[f64], failure: bool| -> Option<f64> {
        let picked: Vec<f64> = (0..validation.len())
            .filter(|&i| validation.labelled[i] && validation.y[i] == failure)
            .filter_map(|i| scores.get(i).copied())
            .collect();
        (!picked.is_empty()).then(|| picked.iter().sum::<f64>() / picked.len() as f64)
    };
    crate::model::bundle::FeedbackReport {
        labels: data.labels,
        false_alarm_probability: mean_of(probabilities, false),
        champion_false_alarm_probability: champion.and_then(|c| mean_of(c, false)),
        true_alarm_probability: mean_of(probabilities, true),
        champion_true_alarm_probability: champion.and_then(|c| mean_of(c, true)),
    }
}

/// Training windows sampled for the training figures of [`HeldOutReport`].
const TRAINING_SAMPLE: usize = 20_000;

/// Fits the failure model again without one asset in [`HELD_OUT_EVERY`] (whole assets, in name
/// order) and scores it on those assets' validation windows; and scores `failure` on a sample
/// of its own training windows. `None` when no held-out asset has a validation window that a
/// failure follows, or no training asset is left with one.
fn held_out_check(
    data: &dataset::Dataset,
    failure: &FailureModel,
    params: &crate::model::failure::FailureModelValidParams,
    forest: &IsolationForest,
    near: &[bool],
    hard: &[bool],
) -> Result<Option<crate::model::bundle::HeldOutReport>, TrainError> {
    use crate::model::bundle::{HELD_OUT_EVERY, HeldOutReport};
    let mut order: Vec<usize> = (0..data.assets.len()).collect();
    order.sort_by(|&a, &b| data.assets[a].cmp(&data.assets[b]));
    let mut held = vec![false; data.assets.len()];
    for (rank, &asset) in order.iter().enumerate() {
        held[asset] = rank % HELD_OUT_EVERY == HELD_OUT_EVERY - 1;
    }
    let is_held = |part: &dataset::Part, i: usize| held[part.asset[i] as usize];
    let keep: Vec<usize> = (0..data.train.len())
        .filter(|&i| !is_held(&data.train, i))
        .collect();
    let test: Vec<usize> = (0..data.validation.len())
        .filter(|&i| is_held(&data.validation, i))
        .collect();
    let pick = |v: &[bool], rows: &[usize]| rows.iter().map(|&i| v[i]).collect::<Vec<bool>>();
    let y_keep = pick(&data.train.y, &keep);
    let y_test = pick(&data.validation.y, &test);
    // A sample of the training windows (evenly spaced), for the training figures.
    let step = (data.train.len() / TRAINING_SAMPLE).max(1);
    let sample: Vec<usize> = (0..data.train.len()).step_by(step).collect();
    let sample_x = data.features(&data.train, &sample);
    let sample_y = pick(&data.train.y, &sample);
    let card = |model: &FailureModel, x: &ndarray::Array2<f64>, y: &[bool]| {
        let anomaly = forest.score(x.view());
        Scorecard::ranking(&model.logits(x.view(), &anomaly), y)
    };
    let training = sample_y
        .contains(&true)
        .then(|| card(failure, &sample_x, &sample_y));
    let held_assets = held.iter().filter(|&&h| h).count() as u64;
    if !y_test.contains(&true) || !y_keep.contains(&true) {
        return Ok(Some(HeldOutReport {
            assets: held_assets,
            failure: None,
            training,
        }));
    }
    let rows = |rows: &[usize]| {
        let mapped: Vec<usize> = rows.iter().map(|&r| keep[r]).collect();
        data.features(&data.train, &mapped)
    };
    let ends: Vec<i64> = keep.iter().map(|&i| data.train.end[i]).collect();
    let model = params.fit(
        &rows,
        &|x| forest.score(x),
        &y_keep,
        &ends,
        &pick(near, &keep),
        &pick(hard, &keep),
    )?;
    let test_x = data.features(&data.validation, &test);
    Ok(Some(HeldOutReport {
        assets: held_assets,
        failure: Some(card(&model, &test_x, &y_test)),
        training,
    }))
}

/// Loads training data from the database: the samples of `[from, to)`, the incidents
/// that started in that range, and operators' feedback on the alerts opened in it.
pub async fn load_from_store(
    store: &Store,
    from: chrono::DateTime<Utc>,
    to: chrono::DateTime<Utc>,
    inputs: &crate::vocab::ModelInputs,
    settings: &TrainingSettings,
) -> Result<TrainingData, TrainError> {
    let dump = store.dump_samples(from, to).await?;
    let mut inputs = inputs.clone();
    inputs.counters.extend(store.counter_families().await?);
    inputs.counters.sort();
    inputs.counters.dedup();
    let samples = dump.samples();
    let keys: std::collections::HashMap<i32, crate::vocab::SeriesKey> = dump
        .metrics
        .iter()
        .map(|(&id, name)| {
            let key = crate::vocab::SeriesKey::parse(name)
                .unwrap_or_else(|_| crate::vocab::SeriesKey::plain(name));
            (id, key)
        })
        .collect();
    let lookback = settings.max_fill.max(1) as i64 * settings.step_secs;
    let mut derived: Vec<(String, BTreeMap<String, MetricHistory>)> = Vec::new();
    // The series come ordered by asset, so each asset's are consecutive.
    for asset in dump.series.chunk_by(|a, b| a.asset_id == b.asset_id) {
        let series: Vec<(&crate::vocab::SeriesKey, &MetricHistory)> = asset
            .iter()
            .map(|s| (&keys[&s.metric_id], &s.history))
            .collect();
        let first = series.iter().filter_map(|(_, h)| h.ts.first()).min();
        let last = series.iter().filter_map(|(_, h)| h.ts.last()).max();
        let (Some(&first), Some(&last)) = (first, last) else {
            continue;
        };
        let grid = derive::Grid::covering(first, last, settings.step_secs, lookback);
        derived.push((
            dump.assets[&asset[0].asset_id].clone(),
            derive::derive(&inputs, &series, &grid),
        ));
    }
    drop(dump);
    let metrics: Vec<String> = derived
        .iter()
        .flat_map(|(_, d)| d.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let histories: Vec<AssetHistory> = derived
        .into_iter()
        .map(|(asset, mut d)| AssetHistory {
            asset,
            metrics: metrics.iter().map(|m| d.remove(m)).collect(),
        })
        .collect();
    let incidents = store
        .list_incidents(&crate::store::incidents::IncidentFilter {
            from: Some(from),
            to: Some(to),
            limit: i64::MAX,
            ..Default::default()
        })
        .await?;
    let failures = incidents
        .into_iter()
        .map(|i| Failure {
            asset: i.asset,
            kind: i.kind,
            started: i.started_at.timestamp(),
            resolved: i.resolved_at.map(|t| t.timestamp()),
        })
        .collect();
    let labels = store
        .feedback_labels(from, to)
        .await?
        .into_iter()
        .map(|(asset, end, failure, kind)| Label {
            asset,
            end: end.timestamp(),
            failure,
            kind,
        })
        .collect();
    let classes = store
        .list_assets(&crate::store::assets::AssetFilter {
            limit: i64::MAX,
            ..Default::default()
        })
        .await?
        .into_iter()
        .map(|a| (a.name, a.class))
        .collect();
    Ok(TrainingData {
        metrics,
        histories,
        failures,
        labels,
        samples,
        classes,
        inputs: Some(inputs),
    })
}

pub use crate::model::bundle::BUNDLE_KIND;

/// What registering a trained bundle did.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The registry row.
    pub model: ModelRecord,
    /// Whether it became the active model.
    pub activated: bool,
    /// Whether it went into shadow beside the active model (`training.shadow_secs`).
    pub shadow: bool,
}

/// Reads a registered model's artifact ([`Store::model_artifact`]: from the database,
/// checked against its SHA-256) and checks that it parses as a bundle.
pub async fn load_bundle(store: &Store, record: &ModelRecord) -> Result<Bundle, TrainError> {
    let unloadable = |reason: String| TrainError::Unloadable {
        model_id: record.model_id,
        reason,
    };
    let bytes = store
        .model_artifact(record)
        .await
        .map_err(|e| unloadable(e.to_string()))?;
    Bundle::from_artifact(&bytes).map_err(|e| unloadable(format!("not a bundle: {e}")))
}

/// The active bundle and its registry row, if there is one and its artifact loads (one that
/// does not is logged and counts as none).
pub async fn active_bundle(store: &Store) -> Result<Option<(ModelRecord, Bundle)>, TrainError> {
    let Some(record) = store.active_model(BUNDLE_KIND, None).await? else {
        return Ok(None);
    };
    match load_bundle(store, &record).await {
        Ok(bundle) => Ok(Some((record, bundle))),
        Err(e) => {
            tracing::warn!("the active model cannot be compared: {e}");
            Ok(None)
        }
    }
}

/// Makes a registered model the active one, after checking that its artifact loads; a model
/// that could not serve is refused and the active one stays.
pub async fn activate(store: &Store, model_id: i64) -> Result<ModelRecord, TrainError> {
    let record = store.model(model_id).await?;
    load_bundle(store, &record).await?;
    Ok(store.activate_model(model_id).await?)
}

/// Activates the most recently retired model whose artifact loads, passing over broken ones;
/// `None` when there is none.
pub async fn rollback(store: &Store) -> Result<Option<ModelRecord>, TrainError> {
    for record in store.previous_active_models(BUNDLE_KIND, None).await? {
        match load_bundle(store, &record).await {
            Ok(_) => return Ok(Some(store.activate_model(record.model_id).await?)),
            Err(e) => tracing::warn!("rollback passes over a model: {e}"),
        }
    }
    Ok(None)
}

/// Registers a bundle as a new version and activates it when it is at least as good as the
/// champion (else it stays a candidate, with the reason in its metrics). The artifact is
/// stored with the row, in one transaction (`model_artifact`): no row is ever visible
/// without its artifact, and any replica loads it by id.
pub async fn register(
    store: &Store,
    bundle: &Bundle,
    range: (chrono::DateTime<Utc>, chrono::DateTime<Utc>),
) -> Result<Registration, TrainError> {
    register_for(store, bundle, range, 0).await
}

/// [`register`], but a winner over an active model goes into shadow beside it for
/// `shadow_secs` first (0: activated at once).
pub async fn register_for(
    store: &Store,
    bundle: &Bundle,
    range: (chrono::DateTime<Utc>, chrono::DateTime<Utc>),
    shadow_secs: i64,
) -> Result<Registration, TrainError> {
    let bytes = serde_json::to_vec(bundle).unwrap_or_default();
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    let decision = bundle.report.champion.clone();
    let wins = decision.as_ref().is_none_or(|d| d.challenger_wins);
    let mut metrics = serde_json::to_value(&bundle.report).unwrap_or_default();
    if let Some(map) = metrics.as_object_mut() {
        map.insert(
            "decision".to_owned(),
            serde_json::to_value(&decision).unwrap_or_default(),
        );
        map.insert(
            "alert_threshold".to_owned(),
            serde_json::to_value(bundle.alert_threshold).unwrap_or_default(),
        );
    }
    let new = NewModel {
        kind: BUNDLE_KIND.to_owned(),
        asset_class: None,
        params: serde_json::to_value(&bundle.params).unwrap_or_default(),
        seed: Some(bundle.params.seed as i64),
        feature_schema: serde_json::to_value(&bundle.schema).unwrap_or_default(),
        train_from: Some(range.0),
        train_to: Some(range.1),
        metrics,
        artifact_path: None,
        artifact_sha256: Some(sha),
        artifact: Some(bytes),
    };
    let record = store.register_model(&new).await?;
    let champion = match (wins, shadow_secs > 0) {
        (true, true) => store.active_model(BUNDLE_KIND, None).await?,
        _ => None,
    };
    if let Some(champion) = champion {
        let ends_at = Utc::now() + chrono::Duration::seconds(shadow_secs);
        store
            .start_shadow(record.model_id, champion.model_id, ends_at)
            .await?;
        let model = store.model(record.model_id).await?;
        return Ok(Registration {
            model,
            activated: false,
            shadow: true,
        });
    }
    let model = if wins {
        store.activate_model(record.model_id).await?
    } else {
        record
    };
    Ok(Registration {
        model,
        activated: wins,
        shadow: false,
    })
}

/// A small fleet with planted failures, for tests and try-outs: `assets` assets with
/// metrics cpu, mem, temp at one-minute steps for `days` days, noise around asset-specific
/// levels, and a failure about every 700 minutes per asset, each preceded by a 40-minute
/// ramp of the metric that announces its kind (`cpu_runaway`: cpu, `memory_leak`: mem,
/// `thermal_drift`: temp; kinds take turns). Timestamps start at 0 (1970), so use it in memory, not in a
/// database with timestamp bounds.
pub fn synthetic(assets: usize, days: usize, seed: u64) -> TrainingData {
    /// Kinds in the order of the metric that announces them.
    const KINDS: [&str; 3] = ["cpu_runaway", "memory_leak", "thermal_drift"];
    let metrics = vec!["cpu".to_string(), "mem".to_string(), "temp".to_string()];
    let mut rng = <rand08::rngs::SmallRng as rand08::SeedableRng>::seed_from_u64(seed);
    let mut noise = move || rand08::Rng::r#gen::<f64>(&mut rng) - 0.5;
    let minutes = days * 1440;
    let mut failures = Vec::new();
    let mut histories = Vec::new();
    for a in 0..assets {
        let asset = format!("asset-{a}");
        let fail_at: Vec<i64> = (0..)
            .map(|k| (200 + k * 700 + a * 37) as i64)
            .take_while(|&f| f < minutes as i64 - 60)
            .collect();
        let kind_of = |k: usize| (k + a) % KINDS.len();
        for (k, &f) in fail_at.iter().enumerate() {
            failures.push(Failure {
                asset: asset.clone(),
                kind: KINDS[kind_of(k)].into(),
                started: f * 60,
                resolved: Some(f * 60 + 120),
            });
        }
        let level = 10.0 * a as f64;
        let mut series = vec![MetricHistory::default(); metrics.len()];
        for t in 0..minutes as i64 {
            let mut ramp = [0.0; 3];
            for (k, &f) in fail_at.iter().enumerate() {
                if t < f && f - t <= 40 {
                    ramp[kind_of(k)] += (40 - (f - t)) as f64;
                }
            }
            for (m, s) in series.iter_mut().enumerate() {
                s.ts.push(t * 60);
                s.values.push(level + 5.0 * noise() + ramp[m]);
            }
        }
        histories.push(AssetHistory {
            asset,
            metrics: series.into_iter().map(Some).collect(),
        });
    }
    let samples = (assets * minutes * metrics.len()) as u64;
    TrainingData {
        metrics,
        histories,
        failures,
        labels: Vec::new(),
        samples,
        classes: BTreeMap::new(),
        inputs: None,
    }
}

/// What one scheduled or requested run did.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The trained bundle.
    pub bundle: Bundle,
    pub registration: Registration,
    /// The model that was active before, if any.
    pub champion_id: Option<i64>,
    /// Seconds spent loading from the database.
    pub load_secs: f64,
}

/// Name of the job in `job_run`.
pub const JOB: &str = "train";

/// What started a training run (recorded with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The schedule's tick at this time: one run per tick, whichever replica takes it.
    Schedule(chrono::DateTime<Utc>),
    /// Live data drifted from the active model's reference windows, in the drift period
    /// starting at this time: one run per period, whichever replica takes it.
    Drift(chrono::DateTime<Utc>),
    /// A person: `vigil train` or `POST /v1/models/train`.
    Manual,
}

impl Trigger {
    /// The name stored in `job_run.trigger`.
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Schedule(_) => "schedule",
            Trigger::Drift(_) => "drift",
            Trigger::Manual => "manual",
        }
    }
}

/// One training run on the database: loads the last `history_days`, trains against the
/// active model, registers the result, and records the run in `job_run` with its trigger.
/// Runs hold the training lock, so one runs at a time across replicas:
/// [`TrainError::Busy`] when another holds it, [`TrainError::TickTaken`] when another
/// replica already ran this schedule tick.
pub async fn run_once(
    store: &Store,
    settings: &crate::config::Settings,
    trigger: Trigger,
    on_stage: impl FnMut(&str) + Send + 'static,
) -> Result<RunOutcome, TrainError> {
    start(store, settings, trigger, |_| {}, on_stage).await
}

/// [`run_once`], calling `on_recorded` with the run's `job_run` id as soon as the run is
/// recorded (before it trains).
pub async fn start(
    store: &Store,
    settings: &crate::config::Settings,
    trigger: Trigger,
    on_recorded: impl FnOnce(i64),
    on_stage: impl FnMut(&str) + Send + 'static,
) -> Result<RunOutcome, TrainError> {
    let locked = with_train_lock(store, || async {
        let tick = match trigger {
            Trigger::Schedule(tick) | Trigger::Drift(tick) => Some(tick),
            Trigger::Manual => None,
        };
        let run_id = store
            .start_job_run(JOB, trigger.name(), tick)
            .await?
            .ok_or(TrainError::TickTaken)?;
        // Holding the lock, any other run still marked running was lost with its process.
        let lost = store.fail_lost_job_runs(JOB, run_id).await?;
        if lost > 0 {
            tracing::warn!(lost, "training runs whose process stopped are marked failed");
        }
        on_recorded(run_id);
        let result = run(store, settings, on_stage).await;
        let mut detail = match &result {
            Ok(outcome) => serde_json::json!({
                "model_id": outcome.registration.model.model_id,
                "version": outcome.registration.model.version,
                "activated": outcome.registration.activated,
                "shadow": outcome.registration.shadow,
                "validation_average_precision": outcome.bundle.report.failure.as_ref().and_then(|c| c.average_precision),
                "validation_roc_auc": outcome.bundle.report.failure.as_ref().and_then(|c| c.roc_auc),
                "decision": outcome.bundle.report.champion.as_ref().map(|c| c.reason.clone()),
            }),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        detail["trigger"] = trigger.name().into();
        detail["runner"] = super::runner().into();
        store
            .finish_job_run(run_id, result.is_ok(), &detail)
            .await
            .ok();
        result
    })
    .await?;
    locked.unwrap_or(Err(TrainError::Busy))
}

async fn run(
    store: &Store,
    settings: &crate::config::Settings,
    mut on_stage: impl FnMut(&str) + Send + 'static,
) -> Result<RunOutcome, TrainError> {
    let started = Instant::now();
    let to = Utc::now() + chrono::Duration::days(1);
    let from = Utc::now() - chrono::Duration::days(i64::from(settings.training.history_days));
    on_stage("loading samples from the database");
    let data = load_from_store(store, from, to, &settings.features, &settings.training).await?;
    if data.samples == 0 {
        return Err(TrainError::NotEnoughData(format!(
            "no samples in the last {} days (import some with `vigil import`)",
            settings.training.history_days
        )));
    }
    let load_secs = started.elapsed().as_secs_f64();
    // A champion that cannot be loaded is not measured, and the record says why the new
    // model replaces it (never "no active model").
    let (champion_id, champion, broken) = match store.active_model(BUNDLE_KIND, None).await? {
        None => (None, None, None),
        Some(record) => match load_bundle(store, &record).await {
            Ok(bundle) => (Some(record.model_id), Some(bundle), None),
            Err(e) => (Some(record.model_id), None, Some(e.to_string())),
        },
    };
    let training = settings.training.clone();
    let rule = alert_rule(settings);
    let mut bundle = tokio::task::spawn_blocking(move || {
        train_fleet(&data, &training, &rule, champion.as_ref(), &mut on_stage)
    })
    .await
    .map_err(|e| TrainError::Task(e.to_string()))??;
    if let Some(reason) = broken {
        let challenger = bundle.report.champion.as_ref();
        bundle.report.champion = Some(ChampionComparison {
            champion_average_precision: None,
            challenger_average_precision: challenger.and_then(|c| c.challenger_average_precision),
            challenger_wins: true,
            reason: format!("{reason}, so the new model replaces it"),
        });
    }
    let registration =
        register_for(store, &bundle, (from, to), settings.training.shadow_secs).await?;
    Ok(RunOutcome {
        bundle,
        registration,
        champion_id,
        load_secs,
    })
}

/// Key of the advisory lock that lets one replica at a time train.
const TRAIN_LOCK: i64 = 0x7669_6769_6c74_726e;

/// Retrains on `training.schedule` (cron, UTC) until the task is aborted. Each run takes
/// the training lock and records its tick, so that of several replicas exactly one trains
/// per tick; the others skip it.
pub fn spawn_schedule(
    store: Store,
    settings: crate::config::Settings,
) -> Option<tokio::task::JoinHandle<()>> {
    let expression = settings.training.schedule.trim().to_owned();
    if expression.is_empty() {
        return None;
    }
    let schedule: cron::Schedule = match expression.parse() {
        Ok(schedule) => schedule,
        Err(e) => {
            tracing::error!(
                "training.schedule {expression:?} does not parse ({e}); no scheduled training"
            );
            return None;
        }
    };
    Some(tokio::spawn(async move {
        // The next time is taken from now after every run, so a run longer than the
        // schedule's period skips the times it overran instead of running them back to back.
        while let Some(next) = schedule.upcoming(Utc).next() {
            let wait = (next - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            match run_once(&store, &settings, Trigger::Schedule(next), |_| {}).await {
                Ok(outcome) => tracing::info!(
                    model_id = outcome.registration.model.model_id,
                    activated = outcome.registration.activated,
                    "scheduled training done"
                ),
                Err(TrainError::Busy) => {
                    tracing::info!("scheduled training skipped: another run holds the lock")
                }
                Err(TrainError::TickTaken) => {
                    tracing::info!("scheduled training skipped: another replica ran this tick")
                }
                Err(e) => tracing::warn!("scheduled training failed: {e}"),
            }
        }
    }))
}

/// Runs `job` while holding the training advisory lock on one pooled connection; `None`
/// when another session holds it.
pub async fn with_train_lock<F, Fut, T>(
    store: &Store,
    job: F,
) -> Result<Option<T>, crate::store::Error>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    store.with_advisory_lock(TRAIN_LOCK, job).await
}

/// Default artifact path for a bundle trained now.
pub fn default_artifact_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("models").join(format!(
        "bundle-{}.json",
        Utc::now().format("%Y%m%dT%H%M%SZ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_model_ranks_pre_failure_windows_above_normal_ones() {
        let TrainingData {
            metrics,
            histories,
            failures,
            ..
        } = synthetic(6, 3, 12345);
        let settings = TrainingSettings {
            window: 20,
            horizon_secs: 30 * 60,
            stride: 2,
            n_trees: 50,
            ..TrainingSettings::default()
        };
        let bundle = train(
            metrics,
            &histories,
            &failures,
            &settings,
            &AlertRule::default(),
            None,
            &mut |_| {},
        )
        .unwrap();
        let card = bundle.report.failure.as_ref().unwrap();
        assert!(card.roc_auc.unwrap() > 0.9, "{card:?}");
        let diagnosis = bundle.report.diagnosis.as_ref().unwrap();
        let kinds: Vec<&str> = diagnosis.iter().map(|k| k.kind.as_str()).collect();
        assert_eq!(kinds, ["cpu_runaway", "memory_leak", "thermal_drift"]);
        for kind in diagnosis {
            assert!(
                kind.recall.unwrap() > 0.8 && kind.precision.unwrap() > 0.8,
                "{kind:?}"
            );
        }
        assert!(bundle.report.validation_windows.1 > 0);
        // Time to failure: within the horizon before a failure, clearly better than
        // predicting the mean.
        let ttf = bundle.report.time_to_failure.as_ref().unwrap();
        assert!(ttf.near_rows > 0, "{ttf:?}");
        assert!(
            ttf.near_mae_minutes.unwrap() < 0.5 * ttf.near_mae_minutes_of_mean.unwrap(),
            "{ttf:?}"
        );
        assert!(ttf.has_skill() && !ttf.withheld);
        assert!(bundle.time_to_failure.is_some());
        let json = serde_json::to_string(&bundle).unwrap();
        let back: Bundle = serde_json::from_str(&json).unwrap();
        assert_eq!(back.schema, bundle.schema);
    }

    #[test]
    fn classes_get_their_own_models_on_the_metrics_they_report() {
        let mut data = synthetic(8, 3, 12345);
        // Assets 0-3 are class "full"; 4-7 are class "lean" and never report the last metric.
        let dropped = data.metrics.len() - 1;
        for (i, history) in data.histories.iter_mut().enumerate() {
            let class = if i < 4 { "full" } else { "lean" };
            data.classes.insert(history.asset.clone(), class.to_owned());
            if i >= 4 {
                history.metrics[dropped] = None;
            }
        }
        let settings = TrainingSettings {
            window: 20,
            stride: 2,
            n_trees: 50,
            ..TrainingSettings::default()
        };
        let mut bundle =
            train_fleet(&data, &settings, &AlertRule::default(), None, &mut |_| {}).unwrap();
        let reports = &bundle.report.classes;
        assert_eq!(
            reports.iter().map(|r| r.class.as_str()).collect::<Vec<_>>(),
            ["full", "lean"]
        );
        let lean = &reports[1];
        assert_eq!(lean.assets, 4);
        assert_eq!(lean.metrics, data.metrics[..dropped].to_vec(), "{lean:?}");
        for r in reports {
            assert!(r.fleet_average_precision.is_some(), "{r:?}");
            assert_eq!(r.used, bundle.classes.contains_key(&r.class), "{r:?}");
            if r.used {
                assert!(r.class_average_precision >= r.fleet_average_precision);
                assert_eq!(bundle.classes[&r.class].schema.metrics, r.metrics);
            }
        }
        // Routing: an asset of a class with its own model is scored by it (whether or not
        // this run kept it, a lean-class model trained here answers for lean assets).
        let lean_model = train(
            lean.metrics.clone(),
            &data.histories[4..]
                .iter()
                .map(|h| AssetHistory {
                    asset: h.asset.clone(),
                    metrics: h.metrics[..dropped].to_vec(),
                })
                .collect::<Vec<_>>(),
            &data.failures,
            &settings,
            &AlertRule::default(),
            None,
            &mut |_| {},
        )
        .unwrap();
        bundle.classes.insert("lean".to_owned(), lean_model);
        let window: BTreeMap<String, Vec<f64>> = data
            .metrics
            .iter()
            .map(|m| (m.clone(), vec![1.0; 20]))
            .collect();
        let lean_asset = &data.histories[5].asset;
        let scored = bundle.score(lean_asset, None, &window, None, 3).unwrap();
        assert_eq!(scored.model_class.as_deref(), Some("lean"));
        assert_eq!(scored.ignored_metrics, [data.metrics[dropped].clone()]);
        let full = bundle
            .score(&data.histories[0].asset, None, &window, None, 3)
            .unwrap();
        assert_eq!(
            full.model_class.as_deref(),
            bundle.classes.contains_key("full").then_some("full")
        );
        let unknown = bundle.score("elsewhere", None, &window, None, 3).unwrap();
        assert_eq!(
            unknown.model_class, None,
            "an unknown asset gets the fleet model"
        );
        let by_class = bundle
            .score("elsewhere", Some("lean"), &window, None, 3)
            .unwrap();
        assert_eq!(by_class.model_class.as_deref(), Some("lean"));
    }

    #[test]
    fn training_without_failures_is_refused() {
        let TrainingData {
            metrics, histories, ..
        } = synthetic(6, 3, 12345);
        let err = train(
            metrics,
            &histories,
            &[],
            &TrainingSettings::default(),
            &AlertRule::default(),
            None,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(matches!(err, TrainError::NotEnoughData(_)), "{err}");
    }

    #[test]
    fn a_bundle_saved_with_the_whole_training_configuration_still_loads() {
        let data = synthetic(3, 2, 5);
        let settings = small_settings();
        let bundle = fit_small(&data, &settings);
        assert_eq!(bundle.params, training_params(&settings));
        // As bundles were saved before TrainingParams: the field named `settings`, holding
        // the configuration's struct, from before calibration_frac was a setting.
        let mut old = serde_json::to_value(&bundle).unwrap();
        let map = old.as_object_mut().unwrap();
        let mut saved = map.remove("params").unwrap();
        let fields = saved.as_object_mut().unwrap();
        fields.remove("calibration_frac");
        fields.insert("history_days".into(), 30.into());
        fields.insert("schedule".into(), "0 0 2 * * *".into());
        map.insert("settings".into(), saved);
        let loaded = Bundle::from_artifact(&serde_json::to_vec(&old).unwrap()).unwrap();
        assert_eq!(
            loaded.params.calibration_frac, 0.2,
            "the value it was trained with"
        );
        assert_eq!(loaded.params.window, settings.window);
        assert_eq!(loaded.schema, bundle.schema);
    }

    #[test]
    fn training_reports_held_out_assets_and_its_own_training_figures() {
        let data = synthetic(10, 3, 5);
        let bundle = fit_small(&data, &small_settings());
        let held = bundle.report.held_out.clone().unwrap();
        assert_eq!(held.assets, 2, "one asset in five");
        let on_held = held.failure.unwrap();
        let validation = bundle.report.failure.clone().unwrap();
        // Two whole assets' validation windows: fewer than all of them, some positive.
        assert!(on_held.n > 0 && on_held.n < validation.n, "{on_held:?}");
        assert!(on_held.positives > 0);
        // The planted fleet is easy: the model fitted without them still ranks them well.
        assert!(on_held.roc_auc.unwrap() > 0.9, "{on_held:?}");
        let training = held.training.unwrap();
        assert!(training.n > 0 && training.average_precision.is_some());
    }

    #[test]
    fn the_served_failure_model_is_fitted_again_on_all_windows_and_the_first_fit_is_kept() {
        let data = synthetic(4, 3, 5);
        let refit = TrainingSettings {
            refit: true,
            ..small_settings()
        };
        let bundle = fit_small(&data, &refit);
        let r = &bundle.report;
        assert_eq!(
            r.refit_windows,
            Some((
                r.train_windows.0 + r.validation_windows.0,
                r.train_windows.1 + r.validation_windows.1
            ))
        );
        let first = bundle.validated.as_ref().expect("the first fit is kept");
        // Two fits on different windows: the served one differs from the first.
        let params = dataset_params(&small_settings());
        let windows = dataset::build(&bundle.schema, &data.histories, &data.failures, &params);
        let x = windows.all_features(&windows.validation);
        let served = bundle.logits(x.view());
        let validated = bundle.validated_logits(x.view());
        assert_ne!(served, validated);
        let anomaly = bundle.forest.score(x.view());
        assert_eq!(validated, first.logits(x.view(), &anomaly));
        // The figures are the first fit's.
        let ap = crate::model::evaluation::average_precision(&validated, &windows.validation.y);
        assert_eq!(ap, r.failure.as_ref().unwrap().average_precision);
        // Both survive the artifact; without refit there is one fit.
        let close = |a: &[f64], b: &[f64]| {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-9)
        };
        let back = Bundle::from_artifact(&serde_json::to_vec(&bundle).unwrap()).unwrap();
        assert!(close(&back.validated_logits(x.view()), &validated));
        assert!(close(&back.logits(x.view()), &served));
        let once = fit_small(&data, &small_settings());
        assert!(once.validated.is_none() && once.report.refit_windows.is_none());
        assert_eq!(once.validated_logits(x.view()), once.logits(x.view()));
        assert!(
            close(&once.logits(x.view()), &validated),
            "the same first fit"
        );
    }

    #[test]
    fn a_bundle_of_another_feature_version_is_refused_with_a_request_to_retrain() {
        let data = synthetic(3, 2, 5);
        let bundle = fit_small(&data, &small_settings());
        assert_eq!(bundle.schema.version, crate::features::FEATURE_VERSION);
        let mut old = serde_json::to_value(&bundle).unwrap();
        old["schema"]["version"] = 1.into();
        let err = Bundle::from_artifact(&serde_json::to_vec(&old).unwrap()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("feature version 1") && message.contains("retrain"),
            "{message}"
        );
    }

    /// The fleet-wide bundle of `data`, no champion.
    fn fit_small(data: &TrainingData, settings: &TrainingSettings) -> Bundle {
        train(
            data.metrics.clone(),
            &data.histories,
            &data.failures,
            settings,
            &AlertRule::default(),
            None,
            &mut |_| {},
        )
        .unwrap()
    }

    fn small_settings() -> TrainingSettings {
        TrainingSettings {
            window: 20,
            stride: 3,
            n_trees: 30,
            ..TrainingSettings::default()
        }
    }

    #[test]
    fn a_worse_challenger_loses_and_a_better_one_wins() {
        let data = synthetic(4, 3, 7);
        let settings = small_settings();
        let champion = fit_small(&data, &settings);
        let params = dataset_params(&settings);
        let windows = dataset::build(&champion.schema, &data.histories, &data.failures, &params);
        let x = windows.all_features(&windows.validation);
        let logits = champion.logits(x.view());
        let y = &windows.validation.y;
        let card = |ap: f64| Scorecard {
            average_precision: Some(ap),
            ..Scorecard::ranking(&[], &[])
        };
        let worse = compare(
            Some(&champion),
            &champion.schema,
            Some(&logits),
            y,
            Some(&card(0.0)),
        );
        assert!(!worse.challenger_wins, "{worse:?}");
        assert!(worse.champion_average_precision.unwrap() > 0.5);
        let better = compare(
            Some(&champion),
            &champion.schema,
            Some(&logits),
            y,
            Some(&card(1.0)),
        );
        assert!(better.challenger_wins);
        let other_schema = FeatureSchema::new(vec!["cpu".into()], 20, 60, 10);
        assert!(
            compare(
                Some(&champion),
                &other_schema,
                Some(&logits),
                y,
                Some(&card(0.0))
            )
            .challenger_wins
        );
        assert!(compare(None, &champion.schema, None, y, None).challenger_wins);
    }
}
