//! Training: from metric histories and incidents to a model bundle (feature schema,
//! per-asset baselines, isolation forest, calibrated failure model) with its validation
//! measures and stage timings.
//!
//! [`train`] is pure computation on histories already in memory; [`histories_from_files`]
//! loads them from CSV/Parquet (the offline path, no database). Training from the database
//! and the registry's champion/challenger step are not built yet.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use chrono::Utc;
use ndarray::Axis;
use serde::{Deserialize, Serialize};

use crate::config::TrainingSettings;
use crate::features::dataset::{self, AssetHistory, DatasetParams, Failure, MetricHistory};
use crate::features::{Baseline, FeatureSchema};
use crate::ingest::files::{self, FileError, Layout, Rejections};
use crate::ingest::{Limits, NamedBatch};
use crate::model::evaluation::{Scorecard, brier, reliability};
use crate::model::{FailureModel, FitError, IsolationForest, ParamsError};

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
    /// A hyperparameter in config is unusable.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// A model could not be fitted.
    #[error(transparent)]
    Fit(#[from] FitError),
}

/// Everything scoring needs, saved as one artifact.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bundle {
    /// Feature names, order and window shape.
    pub schema: FeatureSchema,
    /// Label horizon in seconds: the probability is of a failure within it.
    pub horizon_secs: i64,
    /// Each known asset's baselines, per schema metric.
    pub baselines: BTreeMap<String, Vec<Option<Baseline>>>,
    /// Anomaly model.
    pub forest: IsolationForest,
    /// Failure-probability model.
    pub failure: FailureModel,
    /// Training settings used.
    pub settings: TrainingSettings,
    /// Validation measures.
    pub report: TrainReport,
}

/// What a run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainReport {
    /// Seconds per stage, in order.
    pub stages: Vec<(String, f64)>,
    /// Samples read.
    pub samples: u64,
    /// Assets.
    pub assets: u64,
    /// Failures known.
    pub failures: u64,
    /// Train/validation cutoff, Unix seconds.
    pub cutoff: i64,
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
}

impl TrainReport {
    fn stage(&mut self, name: &str, started: Instant) {
        self.stages
            .push((name.to_owned(), started.elapsed().as_secs_f64()));
    }

    /// Total seconds of all stages.
    pub fn total_secs(&self) -> f64 {
        self.stages.iter().map(|(_, s)| s).sum()
    }
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
    /// Samples read.
    pub samples: u64,
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
        samples: n_samples,
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
    let mut grouped: Vec<Vec<MetricHistory>> =
        vec![vec![MetricHistory::default(); metrics.len()]; parts.assets.len()];
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
                .map(|mut m| {
                    if m.ts.is_empty() {
                        return None;
                    }
                    if !m.ts.is_sorted() {
                        let mut order: Vec<usize> = (0..m.ts.len()).collect();
                        order.sort_by_key(|&k| m.ts[k]);
                        m = MetricHistory {
                            ts: order.iter().map(|&k| m.ts[k]).collect(),
                            values: order.iter().map(|&k| m.values[k]).collect(),
                        };
                    }
                    Some(m)
                })
                .collect(),
        })
        .collect();
    (metrics, histories)
}

/// Trains a bundle. `on_stage` is told each stage as it starts.
pub fn train(
    metrics: Vec<String>,
    histories: &[AssetHistory],
    failures: &[Failure],
    settings: &TrainingSettings,
    on_stage: &mut dyn FnMut(&str),
) -> Result<Bundle, TrainError> {
    let mut report = TrainReport {
        assets: histories.len() as u64,
        failures: failures.len() as u64,
        ..TrainReport::default()
    };
    let schema = FeatureSchema::new(
        metrics,
        settings.window,
        settings.step_secs,
        settings.max_fill,
    );
    on_stage("features");
    let started = Instant::now();
    let params = DatasetParams {
        horizon_secs: settings.horizon_secs,
        stride: settings.stride,
        train_frac: settings.train_frac,
    };
    let data = dataset::build(&schema, histories, failures, &params);
    report.stage("features", started);
    report.cutoff = data.cutoff;
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
        .fit(data.train.x.view())?;
    report.stage("fit_if", started);

    on_stage("score isolation forest");
    let started = Instant::now();
    let train_anomaly = forest.score(data.train.x.view());
    let validation_anomaly = forest.score(data.validation.x.view());
    report.stage("score_if", started);

    on_stage("fit failure model");
    let started = Instant::now();
    let failure = FailureModel::params().seed(settings.seed).check()?.fit(
        data.train.x.view(),
        &train_anomaly,
        &data.train.y,
        &data.train.end,
    )?;
    report.stage("fit_failure", started);

    on_stage("score validation");
    let started = Instant::now();
    if !data.validation.is_empty() {
        let logits = failure.logits(data.validation.x.view(), &validation_anomaly);
        let probabilities: Vec<f64> = logits.iter().map(|z| 1.0 / (1.0 + (-z).exp())).collect();
        let y = &data.validation.y;
        report.anomaly = Some(Scorecard::ranking(&validation_anomaly, y));
        report.failure = Some(Scorecard {
            brier: Some(brier(&probabilities, y)),
            reliability: reliability(&probabilities, y, 10),
            ..Scorecard::ranking(&logits, y)
        });
    }
    report.stage("score_validation", started);
    debug_assert_eq!(data.validation.x.len_of(Axis(1)), schema.len());

    let baselines = data.assets.iter().cloned().zip(data.baselines).collect();
    Ok(Bundle {
        schema,
        horizon_secs: settings.horizon_secs,
        baselines,
        forest,
        failure,
        settings: settings.clone(),
        report,
    })
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

    /// 6 assets x 3 metrics x 3 days at one-minute steps; before each planted failure,
    /// `mem` ramps up over 40 minutes. The rest is noise around asset-specific levels.
    fn planted() -> (Vec<String>, Vec<AssetHistory>, Vec<Failure>) {
        let metrics = vec!["cpu".to_string(), "mem".to_string(), "temp".to_string()];
        let mut state = 12345u64;
        let mut noise = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let minutes = 3 * 1440;
        let mut failures = Vec::new();
        let mut histories = Vec::new();
        for a in 0..6 {
            let asset = format!("asset-{a}");
            let fail_at: Vec<i64> = (0..6).map(|k| (200 + k * 700 + a * 37) as i64).collect();
            for &f in &fail_at {
                failures.push(Failure {
                    asset: asset.clone(),
                    kind: "memory_leak".into(),
                    started: f * 60,
                    resolved: Some(f * 60 + 120),
                });
            }
            let level = 10.0 * a as f64;
            let mut series = vec![
                MetricHistory::default(),
                MetricHistory::default(),
                MetricHistory::default(),
            ];
            for t in 0..minutes as i64 {
                let ramp = fail_at
                    .iter()
                    .map(|&f| {
                        if t < f && f - t <= 40 {
                            (40 - (f - t)) as f64
                        } else {
                            0.0
                        }
                    })
                    .sum::<f64>();
                for (m, s) in series.iter_mut().enumerate() {
                    s.ts.push(t * 60);
                    let extra = if m == 1 { ramp } else { 0.0 };
                    s.values.push(level + 5.0 * noise() + extra);
                }
            }
            histories.push(AssetHistory {
                asset,
                metrics: series.into_iter().map(Some).collect(),
            });
        }
        (metrics, histories, failures)
    }

    #[test]
    fn the_failure_model_ranks_pre_failure_windows_above_normal_ones() {
        let (metrics, histories, failures) = planted();
        let settings = TrainingSettings {
            window: 20,
            horizon_secs: 30 * 60,
            stride: 2,
            n_trees: 50,
            ..TrainingSettings::default()
        };
        let bundle = train(metrics, &histories, &failures, &settings, &mut |_| {}).unwrap();
        let card = bundle.report.failure.as_ref().unwrap();
        assert!(card.roc_auc.unwrap() > 0.9, "{card:?}");
        assert!(bundle.report.validation_windows.1 > 0);
        let json = serde_json::to_string(&bundle).unwrap();
        let back: Bundle = serde_json::from_str(&json).unwrap();
        assert_eq!(back.schema, bundle.schema);
    }

    #[test]
    fn training_without_failures_is_refused() {
        let (metrics, histories, _) = planted();
        let err = train(
            metrics,
            &histories,
            &[],
            &TrainingSettings::default(),
            &mut |_| {},
        )
        .unwrap_err();
        assert!(matches!(err, TrainError::NotEnoughData(_)), "{err}");
    }
}
