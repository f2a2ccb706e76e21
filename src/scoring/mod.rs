//! The scoring service: the failure probability of an asset's window within the active
//! model's horizon, its anomaly score, the threshold in force and whether it alerts, with an
//! explanation (the inputs that pushed the score most, the diagnosed failure kind).
//!
//! [`Scoring`] owns the state that takes: the active model and its hot swap ([`slot`]), the
//! cold-start detector for when no trained model can answer ([`cold_start`]), the cached
//! policy ([`policy_cache`]), the score writer ([`writer`]), scoring on ingest
//! ([`on_ingest`]) and the hand-off of opened alerts to [`crate::actions`]. The alert
//! hysteresis is counted in the database ([`streaks`], in batches), so that replicas behind
//! a load balancer alert exactly as one would. HTTP handlers, commands and
//! jobs all score through it.

pub mod cold_start;
pub mod context_cache;
pub mod drift;
pub mod on_ingest;
pub mod policy_cache;
pub mod shadow;
pub mod slot;
pub mod streaks;
pub mod writer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use self::cold_start::{ColdStartScore, cold_start, cold_start_min_points};
use self::policy_cache::{PolicyCache, Recommendation};
use self::slot::{ActiveModel, ModelSlot};
use self::writer::ScoreSender;
use crate::actions::Actions;
use crate::config::Settings;
use crate::counters::{self, Counters};
use crate::features::{FeatureSchema, WindowError};
use crate::ingest::Ingested;
use crate::model::bundle::WindowScore;
use crate::store::Store;
use crate::store::scores::Transition;

/// Why a window was not scored. Callers map these to their own terms (HTTP codes in
/// `api::error`).
#[derive(Debug, thiserror::Error)]
pub enum ScoringError {
    /// A field's value is not acceptable (a bad name, a window no detector can score).
    #[error("{field}: {reason}")]
    Invalid {
        /// The offending field.
        field: String,
        /// Why, in words for people; clients branch on the code, never on this.
        reason: String,
    },
    /// The asset, or its samples, do not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// An asset class no stored asset has.
    #[error("unknown asset class {0:?}: no asset has it (set one with PUT /v1/assets/{{name}})")]
    UnknownClass(String),
    /// The window does not fit the model.
    #[error(transparent)]
    Window(#[from] WindowError),
    /// The window's end is outside the range samples are accepted in.
    #[error(transparent)]
    Timestamp(#[from] crate::ingest::IngestError),
    /// The database refused or is unavailable.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

impl ScoringError {
    fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Checks a name sent by a client against [`crate::vocab::is_valid_name`].
fn check_name(field: &str, name: &str) -> Result<(), ScoringError> {
    if crate::vocab::is_valid_name(name) {
        Ok(())
    } else {
        Err(ScoringError::invalid(field, crate::vocab::name_rule(name)))
    }
}

/// Which model answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelRef {
    /// A trained, registered bundle.
    Trained {
        /// Its id in the model registry.
        model_id: i64,
        /// Its version in the registry.
        version: i32,
    },
    /// No trained model could answer: the streaming detector scored each metric from the
    /// series' own past.
    ColdStart,
}

/// One scored window.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ScoreAnswer {
    asset: String,
    model: ModelRef,
    /// The threshold in force: on the failure probability (trained model) or on the
    /// cold-start anomaly score.
    threshold: f64,
    alert: bool,
    /// The asset's alert opened by this window (after `scoring.fire_windows` in a row).
    #[serde(skip_serializing_if = "Option::is_none")]
    alert_opened: Option<i64>,
    /// Where an open alert clears.
    #[serde(skip)]
    clear_threshold: f64,
    #[serde(flatten)]
    score: Option<WindowScore>,
    /// The action the policy recommends for the diagnosed failure kind on this asset class
    /// (the best posterior mean among applicable catalog actions); absent without a
    /// diagnosis or an applicable action.
    #[serde(skip_serializing_if = "Option::is_none")]
    recommended_action: Option<Recommendation>,
    /// The cold-start detector's answer: the whole answer when no trained model could score
    /// the window, else the scores of the metrics the model does not know.
    #[serde(skip_serializing_if = "Option::is_none")]
    cold_start: Option<ColdStartScore>,
}

impl ScoreAnswer {
    /// Where an open alert of this asset clears.
    pub fn clear_threshold(&self) -> f64 {
        self.clear_threshold
    }

    /// What the alert threshold is compared with: the failure probability, or the cold-start
    /// anomaly score when no trained model answered.
    pub fn level(&self) -> f64 {
        match (&self.score, &self.cold_start) {
            (Some(score), _) => score.probability,
            (None, Some(cold)) => cold.anomaly_score,
            (None, None) => 0.0,
        }
    }
}

/// A window sent for scoring.
#[derive(Debug, Clone)]
pub struct Window {
    /// The asset's name.
    pub asset: String,
    /// The asset's class: its threshold applies (else the global one), and its class model
    /// answers when the bundle has one. It must be the class of some stored asset.
    pub class: Option<String>,
    /// Values per metric on the model's grid, oldest first.
    pub values: BTreeMap<String, Vec<f64>>,
    /// The window's end, when the request dated it: the past it is compared with is the
    /// day before it (else before now).
    pub end: Option<DateTime<Utc>>,
}

/// The scoring service. Cloning it is cheap (shared parts); the clone that
/// [`Scoring::start`] returns also stores the scores it makes.
#[derive(Debug, Clone)]
pub struct Scoring {
    store: Store,
    settings: Arc<Settings>,
    model: Arc<ModelSlot>,
    policy: Arc<PolicyCache>,
    actions: Arc<Actions>,
    scores: Option<ScoreSender>,
    /// The batched shared hysteresis, once started (before: one statement per window).
    streaks: Option<streaks::Streaks>,
    /// Live windows counted for drift.
    drift: Arc<drift::DriftCounts>,
    /// The writer of the challenger-in-shadow's scores, once started.
    shadow_scores: Option<shadow::ShadowSender>,
    /// Each asset's past, read from its stored samples once an hour...
    pasts: Arc<context_cache::ContextCache<context_cache::Past>>,
    /// ...and its week, once a day.
    weeks: Arc<context_cache::ContextCache<context_cache::Week>>,
    counters: Arc<Counters>,
}

/// The background tasks of a started [`Scoring`].
#[derive(Debug)]
pub struct ScoringTasks {
    listener: tokio::task::JoinHandle<()>,
    policy_refresh: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
    streaks: tokio::task::JoinHandle<()>,
    shadow_writer: tokio::task::JoinHandle<()>,
    drift_flush: Option<tokio::task::JoinHandle<()>>,
    on_ingest: Option<tokio::task::JoinHandle<()>>,
}

impl ScoringTasks {
    /// Stops the listener and the policy refresh, lets the ingest scorer finish its queue and
    /// the writer store what it holds (5 s each at most). Call it once every other holder of
    /// the started service (the router, the action sweeper) is gone: the writer ends when the
    /// last of them is.
    pub async fn finish(self) {
        self.listener.abort();
        self.policy_refresh.abort();
        if let Some(flush) = self.drift_flush {
            flush.abort();
        }
        if let Some(task) = self.on_ingest {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.writer).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.streaks).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.shadow_writer).await;
    }
}

impl Scoring {
    /// A service that scores but neither stores scores nor follows activations until
    /// [`Scoring::start`].
    pub fn new(
        store: Store,
        settings: Arc<Settings>,
        actions: Arc<Actions>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            store,
            settings,
            model: Arc::default(),
            policy: Arc::default(),
            actions,
            scores: None,
            streaks: None,
            drift: Arc::default(),
            shadow_scores: None,
            pasts: Arc::default(),
            weeks: Arc::default(),
            counters,
        }
    }

    /// Starts the background work: the model listener (loads the active model now, then on
    /// every activation), the policy refresh (every 5 s), the score writer, and, given the
    /// events of an [`crate::ingest::Ingestor`], scoring on ingest. Returns the service that
    /// stores its scores, and the tasks.
    pub fn start(
        &self,
        ingested: Option<tokio::sync::mpsc::Receiver<Ingested>>,
    ) -> (Scoring, ScoringTasks) {
        let listener = slot::spawn_model_listener(self.store.clone(), self.model.clone());
        let policy_refresh = policy_cache::spawn_policy_refresh(
            self.store.clone(),
            self.policy.clone(),
            Duration::from_secs(5),
        );
        let step = (!self.settings.scoring.every_score).then_some(self.settings.training.step_secs);
        let (sender, writer) =
            writer::spawn_score_writer(self.store.clone(), step, self.counters.clone());
        let (streaks, streaks_task) = streaks::spawn(self.store.clone());
        let (shadow_scores, shadow_writer) = shadow::spawn_writer(self.store.clone());
        let drift_flush = self.settings.drift.enabled.then(|| {
            drift::spawn_flush(
                self.store.clone(),
                self.drift.clone(),
                Duration::from_secs(self.settings.drift.flush_secs),
            )
        });
        let started = Scoring {
            scores: Some(sender),
            streaks: Some(streaks),
            shadow_scores: Some(shadow_scores),
            ..self.clone()
        };
        let on_ingest =
            ingested.map(|events| on_ingest::spawn_ingest_scorer(started.clone(), events));
        let tasks = ScoringTasks {
            listener,
            policy_refresh,
            writer,
            streaks: streaks_task,
            shadow_writer,
            drift_flush,
            on_ingest,
        };
        (started, tasks)
    }

    /// The slot of the active model.
    pub fn model(&self) -> &Arc<ModelSlot> {
        &self.model
    }

    /// The cached policy (thresholds, classes, learned action outcomes).
    pub fn policy(&self) -> &Arc<PolicyCache> {
        &self.policy
    }

    /// Scores `window`, stores the score (queued) and applies the alert hysteresis; an
    /// opened alert is durable before this returns and is handed to the action runner.
    /// `window_end` dates the stored score.
    pub async fn score(
        &self,
        window: &Window,
        window_end: DateTime<Utc>,
    ) -> Result<ScoreAnswer, ScoringError> {
        // A score that cannot be stored is not answered as if it were: while the database
        // is known down, refuse (503) rather than answer and drop the score.
        if let Some(down) = self.store.down_for() {
            return Err(ScoringError::Store(crate::store::Error::Down(
                down.as_secs(),
            )));
        }
        let model = self.model.current();
        // A score row outside the range the database takes would fail the writer's whole
        // batch, other clients' scores with it: refuse it here, as ingestion refuses samples.
        crate::ingest::Limits::new(&self.settings.ingest, Utc::now())
            .check_time(window_end.timestamp_micros(), || "timestamps".to_owned())?;
        if let Some(class) = &window.class {
            self.check_class(class).await?;
        }
        check_name("asset", &window.asset)?;
        let past = self
            .past_by_name(model.as_deref(), &window.asset, window_end.timestamp())
            .await?;
        let mut answer = self.evaluate(
            model.as_deref(),
            window.asset.clone(),
            window.class.as_deref(),
            &window.values,
            past.as_deref(),
        )?;
        self.score_in_shadow(
            &answer,
            window.class.as_deref(),
            &window.values,
            past.as_deref(),
            window_end,
        );
        self.record(&mut answer, window_end).await?;
        Ok(answer)
    }

    /// Scores many windows with one model version, storing nothing; a bad window fails alone.
    pub async fn score_many(&self, windows: &[Window]) -> Vec<Result<ScoreAnswer, ScoringError>> {
        let model = self.model.current();
        let now = Utc::now();
        let mut answers = Vec::with_capacity(windows.len());
        for w in windows {
            // Each window is CPU work without a wait: let the runtime's other tasks (and
            // this request's timeout) in between.
            tokio::task::yield_now().await;
            let answer = async {
                if let Some(c) = &w.class {
                    self.check_class(c).await?;
                }
                check_name("asset", &w.asset)?;
                let end = w.end.unwrap_or(now).timestamp();
                let past = self.past_by_name(model.as_deref(), &w.asset, end).await?;
                self.evaluate(
                    model.as_deref(),
                    w.asset.clone(),
                    w.class.as_deref(),
                    &w.values,
                    past.as_deref(),
                )
            }
            .await;
            answers.push(answer);
        }
        answers
    }

    /// Refuses an asset class that no stored asset has.
    async fn check_class(&self, class: &str) -> Result<(), ScoringError> {
        check_name("asset_class", class)?;
        if self.policy.knows_class(&self.store, class).await? {
            Ok(())
        } else {
            Err(ScoringError::UnknownClass(class.to_owned()))
        }
    }

    /// Scores one window with `model`, or with the cold-start detector when there is none or
    /// it knows none of the window's metrics.
    fn evaluate(
        &self,
        model: Option<&ActiveModel>,
        asset: String,
        class: Option<&str>,
        window: &BTreeMap<String, Vec<f64>>,
        past: Option<&BTreeMap<String, crate::features::Context>>,
    ) -> Result<ScoreAnswer, ScoringError> {
        check_name("asset", &asset)?;
        let settings = &self.settings.scoring;
        let history = settings.cold_start_history;
        // The trained model's score, or else the cold-start detector's (computed once).
        let scored = match model {
            Some(model) => {
                match model
                    .bundle
                    .score(&asset, class, window, past, settings.top_drivers)
                {
                    Ok(score) => Ok((model, score)),
                    Err(WindowError::NothingUsable(reason)) => {
                        match cold_start(window, |_| true, history) {
                            Some(cold) => Err(cold),
                            None => return Err(WindowError::NothingUsable(reason).into()),
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => Err(cold_start(window, |_| true, history).ok_or_else(|| {
                ScoringError::invalid(
                    "window",
                    format!(
                        "no trained model can score this window, and the cold-start detector \
                         needs at least {} values of a metric",
                        cold_start_min_points()
                    ),
                )
            })?),
        };
        counters::add(
            if scored.is_ok() {
                &self.counters.scores_trained
            } else {
                &self.counters.scores_cold_start
            },
            1,
        );
        let answer = match scored {
            Ok((model, score)) => {
                self.count_drift(model, &score);
                let ignored = score.ignored_metrics.clone();
                let proposed = model
                    .bundle
                    .proposed_threshold(score.model_class.as_deref());
                let (fire_at, clear_at) =
                    self.policy.threshold_for(class, &self.settings, proposed);
                let recommended_action = score.diagnosis.as_ref().and_then(|d| {
                    self.policy
                        .recommend(&self.settings, &d.kind, class.unwrap_or("default"))
                });
                ScoreAnswer {
                    asset,
                    model: ModelRef::Trained {
                        model_id: model.model_id,
                        version: model.version,
                    },
                    threshold: fire_at,
                    alert: score.probability >= fire_at,
                    alert_opened: None,
                    clear_threshold: clear_at,
                    recommended_action,
                    cold_start: cold_start(
                        window,
                        |name| ignored.iter().any(|m| m == name),
                        history,
                    ),
                    score: Some(score),
                }
            }
            Err(cold) => ScoreAnswer {
                asset,
                model: ModelRef::ColdStart,
                threshold: settings.cold_start_threshold,
                alert: cold.anomaly_score >= settings.cold_start_threshold,
                alert_opened: None,
                clear_threshold: settings.cold_start_clear_threshold,
                recommended_action: None,
                score: None,
                cold_start: Some(cold),
            },
        };
        Ok(answer)
    }

    /// Counts a trained model's window for drift, under the bundle that answered.
    fn count_drift(&self, model: &ActiveModel, score: &crate::model::bundle::WindowScore) {
        if !self.settings.drift.enabled || score.drift_bins.is_empty() {
            return;
        }
        let class = score.model_class.as_deref().unwrap_or("");
        let bundle = match score.model_class.as_ref() {
            Some(c) => model.bundle.classes.get(c),
            None => Some(&model.bundle),
        };
        if let Some(reference) = bundle.and_then(|b| b.drift.as_ref()) {
            self.drift
                .add(model.model_id, class, reference, &score.drift_bins);
        }
    }

    /// Stores the score (queued, off the request path) and applies the alert hysteresis: an
    /// alert is written before the answer goes out, so it is durable before anyone acts on it.
    async fn record(
        &self,
        answer: &mut ScoreAnswer,
        window_end: DateTime<Utc>,
    ) -> Result<(), ScoringError> {
        let settings = &self.settings.scoring;
        let (model_id, model_version) = match answer.model {
            ModelRef::Trained { model_id, version } => {
                (Some(model_id), format!("bundle/v{version}"))
            }
            ModelRef::ColdStart => (None, "cold_start/streaming".to_owned()),
        };
        let diagnosis = answer.score.as_ref().and_then(|s| s.diagnosis.as_ref());
        let record = crate::store::scores::NewScore {
            asset: answer.asset.clone(),
            model_id,
            model_version,
            window_end,
            probability: answer.score.as_ref().map(|s| s.probability),
            anomaly_score: match (&answer.score, &answer.cold_start) {
                (Some(score), _) => score.anomaly_score,
                (None, Some(cold)) => cold.anomaly_score,
                (None, None) => 0.0,
            },
            threshold: answer.threshold,
            is_alert: answer.alert,
            failure_kind: diagnosis.map(|d| d.kind.clone()),
            kind_confidence: diagnosis.map(|d| d.confidence),
            // The explanation is kept for alerting windows, where people read it; a calm
            // window's row stays small.
            explanation: if answer.alert {
                serde_json::json!({
                    "drivers": answer.score.as_ref().map(|s| &s.drivers),
                    "diagnosis": diagnosis,
                    "time_to_failure": answer.score.as_ref().map(|s| &s.time_to_failure),
                    "recommended_action": answer.recommended_action,
                    "cold_start": answer.cold_start,
                })
            } else {
                serde_json::json!({})
            },
        };
        let level = answer.level();
        let (above, calm) = (level >= answer.threshold, level < answer.clear_threshold);
        let transition = match &self.streaks {
            Some(streaks) => {
                streaks
                    .observe(&answer.asset, above, calm, settings.fire_windows)
                    .await?
            }
            None => {
                let window = (answer.asset.clone(), above, calm, settings.fire_windows);
                self.store.alert_windows(&[window]).await?[0]
            }
        };
        match transition {
            Transition::Fire => {
                answer.alert_opened = self.store.open_alert(&record).await?;
                if answer.alert_opened.is_some() {
                    counters::add(&self.counters.alerts_opened, 1);
                }
                // The alert is durable now; acting on it happens off the request path.
                if let Some(alert_id) = answer.alert_opened
                    && !self.settings.actions.is_empty()
                {
                    let kind = record
                        .failure_kind
                        .clone()
                        .unwrap_or_else(|| "unknown".to_owned());
                    tokio::spawn(act_on_alert(
                        self.clone(),
                        alert_id,
                        record.asset.clone(),
                        kind,
                    ));
                }
            }
            Transition::Clear => {
                if self
                    .store
                    .clear_alert(&answer.asset, record.window_end)
                    .await?
                    .is_some()
                {
                    counters::add(&self.counters.alerts_cleared, 1);
                }
            }
            Transition::Stay => {}
        }
        if let (true, Some(writer)) = (settings.store_scores, &self.scores) {
            // Back-pressure rather than loss when the writer falls behind.
            let _ = writer.send(record).await;
        }
        Ok(())
    }

    /// Scores an asset's latest stored window, put on the grid from its stored samples (gaps
    /// within `max_fill` steps are carried forward; a metric with a longer gap is scored as
    /// missing), stores the score and applies the alert hysteresis. With a trained model the
    /// window is the model's; without one, the cold-start detector learns from the last
    /// `scoring.cold_start_history` grid points.
    pub async fn score_stored(&self, name: String) -> Result<ScoreAnswer, ScoringError> {
        check_name("name", &name)?;
        self.score_stored_at(name, None).await
    }

    /// [`Scoring::score_stored`] for a window ending at the sample time `latest` (`None`: the
    /// asset's newest stored sample, looked up).
    async fn score_stored_at(
        &self,
        name: String,
        latest: Option<DateTime<Utc>>,
    ) -> Result<ScoreAnswer, ScoringError> {
        let model = self.model.current();
        let asset = match self.store.asset_by_name(&name).await {
            Ok(asset) => asset,
            Err(crate::store::Error::NotFound(_)) => {
                return Err(ScoringError::NotFound(format!("asset {name}")));
            }
            Err(e) => return Err(e.into()),
        };
        let latest = match latest {
            Some(t) => t,
            None => self
                .store
                .latest_sample_time(asset.asset_id)
                .await?
                .ok_or_else(|| ScoringError::NotFound(format!("samples of asset {name}")))?,
        };
        let training = &self.settings.training;
        let cold_history = self.settings.scoring.cold_start_history;
        let mut schema = match &model {
            Some(m) => m.bundle.schema.clone(),
            None => FeatureSchema::new(
                Vec::new(),
                cold_history,
                training.step_secs,
                training.max_fill,
            ),
        };
        // A trained model derives its inputs as it was trained to; the cold-start detector
        // as configured now.
        let inputs = match &model {
            Some(m) => m.bundle.schema.inputs.clone(),
            None => Some(self.settings.features.clone()),
        };
        let step = schema.step_secs;
        let grid_span = (schema.window + schema.max_fill) as i64 * step;
        let end = latest.timestamp().div_euclid(step) * step;
        let series = self
            .stored_series(
                asset.asset_id,
                inputs.as_ref(),
                (end - grid_span, end),
                step,
                schema.max_fill,
                latest + chrono::Duration::microseconds(1),
            )
            .await?;
        let past = match &model {
            Some(m) => self.past(m, asset.asset_id, &asset.name, end).await?,
            None => None,
        };
        let mut window = BTreeMap::new();
        for (metric, history) in series {
            let ts = history.ts;
            if model.is_none() {
                // The cold-start detector takes what history there is, from the first grid
                // point that has a sample.
                schema.window = cold_history;
                if let Some(first) = ts.first() {
                    let points = (end - first).div_euclid(step) + 1;
                    schema.window = schema.window.min(points.max(1) as usize);
                }
            }
            if let Ok(values) =
                crate::features::resample(&metric, &ts, &history.values, end, &schema)
            {
                window.insert(metric, values);
            }
        }
        let mut answer = self.evaluate(
            model.as_deref(),
            name,
            Some(&asset.class),
            &window,
            past.as_deref(),
        )?;
        let window_end = DateTime::from_timestamp(end, 0).unwrap_or(latest);
        self.score_in_shadow(
            &answer,
            Some(&asset.class),
            &window,
            past.as_deref(),
            window_end,
        );
        self.record(&mut answer, window_end).await?;
        Ok(answer)
    }

    /// An asset's series on the grid `grid` = (first, last point) of step `step`: as `inputs`
    /// derive them ([`crate::features::derive::derive`]), or as stored without inputs. Samples
    /// are read from as far before the grid as a rate or a carried-forward value reaches, to
    /// `to` (exclusive).
    async fn stored_series(
        &self,
        asset_id: i64,
        inputs: Option<&crate::vocab::ModelInputs>,
        grid: (i64, i64),
        step: i64,
        max_fill: usize,
        to: DateTime<Utc>,
    ) -> Result<Vec<(String, crate::vocab::MetricHistory)>, ScoringError> {
        let lookback = max_fill.max(1) as i64 * step;
        let reach = inputs.map_or(lookback, |i| {
            crate::features::derive::rate_range(i, step).max(lookback)
        });
        let from = DateTime::from_timestamp(grid.0 - reach, 0).unwrap_or_default();
        let query = crate::store::samples::SampleQuery {
            asset_id,
            metric: None,
            family: None,
            from,
            to,
            step_secs: None,
            aggregate: crate::store::samples::Aggregate::Last,
            max_points: 1_000_000,
        };
        let stored = self.store.read_samples(&query).await?;
        let stored = stored.into_iter().map(|s| {
            let ts = s
                .ts_micros
                .iter()
                .map(|t| t.div_euclid(1_000_000))
                .collect();
            let history = crate::vocab::MetricHistory {
                ts,
                values: s.values,
            };
            (s.metric, history)
        });
        Ok(match inputs {
            None => stored.collect(),
            Some(inputs) => {
                let stored: Vec<(crate::vocab::SeriesKey, crate::vocab::MetricHistory)> = stored
                    .map(|(name, h)| {
                        let key = crate::vocab::SeriesKey::parse(&name)
                            .unwrap_or_else(|_| crate::vocab::SeriesKey::plain(&name));
                        (key, h)
                    })
                    .collect();
                let refs: Vec<_> = stored.iter().map(|(k, h)| (k, h)).collect();
                let grid = crate::features::derive::Grid {
                    start: grid.0,
                    end: grid.1,
                    step,
                    lookback,
                };
                crate::features::derive::derive(inputs, &refs, &grid)
                    .into_iter()
                    .collect()
            }
        })
    }

    /// The past of asset `name` that a window of `model` ending at `end` (Unix seconds) is
    /// compared with, from its stored samples: `None` without a model, for an asset not
    /// stored, or without samples in the day before the window's hour.
    async fn past_by_name(
        &self,
        model: Option<&ActiveModel>,
        name: &str,
        end: i64,
    ) -> Result<context_cache::Past, ScoringError> {
        let Some(model) = model else {
            return Ok(None);
        };
        let block = context_cache::window_block(&model.bundle.schema, end);
        if let Some(past) = self.pasts.get(name, model.model_id, block) {
            return Ok(past);
        }
        match self.store.asset_by_name(name).await {
            Ok(asset) => self.past(model, asset.asset_id, name, end).await,
            Err(crate::store::Error::NotFound(_)) => {
                self.pasts.put(name, model.model_id, block, None);
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// [`Scoring::past_by_name`] for a stored asset, read once per asset and hour.
    async fn past(
        &self,
        model: &ActiveModel,
        asset_id: i64,
        name: &str,
        end: i64,
    ) -> Result<context_cache::Past, ScoringError> {
        let schema = &model.bundle.schema;
        let block = context_cache::window_block(schema, end);
        if let Some(past) = self.pasts.get(name, model.model_id, block) {
            return Ok(past);
        }
        let day = context_cache::window_day(schema, end);
        let week = match self.weeks.get(name, model.model_id, day) {
            Some(week) => week,
            None => {
                let grid = context_cache::week_read_grid(day, schema.step_secs, schema.max_fill);
                let series = self.past_series(asset_id, schema, grid).await?;
                let week = context_cache::week_of(&series, day, schema);
                self.weeks.put(name, model.model_id, day, week.clone());
                week
            }
        };
        let grid = context_cache::past_read_grid(block, schema.step_secs, schema.max_fill);
        let series = self.past_series(asset_id, schema, grid).await?;
        let past = context_cache::past_of(&series, block, &week, schema);
        self.pasts.put(name, model.model_id, block, past.clone());
        Ok(past)
    }

    /// An asset's series on the grid `grid` (first and last point) of a model's schema, as
    /// the past is read.
    async fn past_series(
        &self,
        asset_id: i64,
        schema: &FeatureSchema,
        grid: (i64, i64),
    ) -> Result<Vec<(String, crate::vocab::MetricHistory)>, ScoringError> {
        let to = DateTime::from_timestamp(grid.1 + 1, 0).unwrap_or_default();
        self.stored_series(
            asset_id,
            schema.inputs.as_ref(),
            grid,
            schema.step_secs,
            schema.max_fill,
            to,
        )
        .await
    }

    /// The re-scoring callback the action runner verifies healing with: an asset's latest
    /// stored window, as (level, clear threshold).
    pub fn rescore(&self) -> crate::actions::Rescore {
        let scoring = self.clone();
        Arc::new(move |asset| {
            let scoring = scoring.clone();
            Box::pin(async move {
                scoring
                    .score_stored(asset)
                    .await
                    .map(|answer| (answer.level(), answer.clear_threshold()))
                    .map_err(|e| e.to_string())
            })
        })
    }
}

/// Chooses and runs (behind the guard) an action for a newly opened alert.
async fn act_on_alert(scoring: Scoring, alert_id: i64, asset: String, kind: String) {
    let result = async {
        let class = scoring
            .store
            .asset_by_name(&asset)
            .await
            .map_err(crate::actions::ActionError::from)?
            .class;
        let alert = crate::actions::AlertContext {
            alert_id,
            asset,
            class,
            kind,
        };
        scoring.actions.on_alert(&alert).await
    }
    .await;
    match result {
        Ok(Some(action)) => tracing::info!(
            alert_id,
            action_id = action.action_id,
            action = %action.name,
            state = %action.state,
            "action for alert"
        ),
        Ok(None) => {}
        Err(e) => tracing::warn!(alert_id, "cannot act on alert: {e}"),
    }
}
