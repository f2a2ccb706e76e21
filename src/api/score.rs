//! `POST /v1/score` (scope `score`): the failure probability of one asset's window within the
//! active model's horizon, its anomaly score, the threshold in force and whether it alerts,
//! the model version, and an explanation (the inputs that pushed the score most, and the
//! diagnosed failure kind with its rule path).
//!
//! The active model is held in memory and swapped when any replica activates another one:
//! [`spawn_model_listener`] listens on PostgreSQL's `vigil_model_activated` channel. A request
//! takes the model it starts with, so no request mixes versions.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;

use super::AppState;
use super::error::ApiError;
use super::input::{json_body, parse_json};
use crate::features::{FeatureSchema, WindowError};
use crate::jobs::train::{self, Bundle};
use crate::model::bundle::WindowScore;
use crate::model::streaming::{StreamingDetector, StreamingParams};
use crate::store::Store;
use crate::store::models::ACTIVATION_CHANNEL;

mod fast;

/// The model answering scoring requests.
#[derive(Debug)]
pub struct ActiveModel {
    /// Registry id.
    pub model_id: i64,
    /// Version.
    pub version: i32,
    /// The trained bundle.
    pub bundle: Bundle,
}

/// The slot holding the active model, shared by all requests.
#[derive(Debug, Default)]
pub struct ModelSlot(RwLock<Option<Arc<ActiveModel>>>);

impl ModelSlot {
    /// The model now (cheap: an `Arc` clone).
    pub fn current(&self) -> Option<Arc<ActiveModel>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, model: Option<ActiveModel>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = model.map(Arc::new);
    }

    /// Loads the registry's active bundle into the slot.
    pub async fn reload(&self, store: &Store) -> Result<(), train::TrainError> {
        let model = train::active_bundle(store)
            .await?
            .map(|(record, bundle)| ActiveModel {
                model_id: record.model_id,
                version: record.version,
                bundle,
            });
        match &model {
            Some(m) => tracing::info!(model_id = m.model_id, version = m.version, "serving model"),
            None => tracing::info!("no active model: scoring answers 503 until one is trained"),
        }
        self.set(model);
        Ok(())
    }
}

/// Loads the active model, then reloads it whenever an activation is announced, until
/// aborted. Reconnects after database errors.
pub fn spawn_model_listener(store: Store, slot: Arc<ModelSlot>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let listener = async {
                let mut listener = PgListener::connect_with(store.pool()).await?;
                listener.listen(ACTIVATION_CHANNEL).await?;
                // Load after listening, so no activation falls between the two.
                if let Err(e) = slot.reload(&store).await {
                    tracing::warn!("cannot load the active model: {e}");
                }
                loop {
                    listener.recv().await?;
                    if let Err(e) = slot.reload(&store).await {
                        tracing::warn!("cannot load the newly active model: {e}");
                    }
                }
                #[allow(unreachable_code)]
                Ok::<(), sqlx::Error>(())
            };
            if let Err(e) = listener.await {
                tracing::warn!("model activation listener stopped ({e}); reconnecting");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// What a window did to an asset's alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changes.
    Stay,
    /// Enough consecutive windows at or above the threshold: open an alert.
    Fire,
    /// Below the clear threshold while an alert may be open: clear it.
    Clear,
}

/// What this process knows of an asset's alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AlertState {
    /// Not known since the start (another replica or an earlier run may have opened one).
    Unknown,
    /// Opened (or found open) by this process.
    Open,
    /// Cleared, or known not to be open.
    Closed,
}

/// Per-asset hysteresis: an alert fires after `fire_windows` consecutive windows at or
/// above the threshold, and clears at the first window below the (lower) clear threshold.
/// Counts live in memory, the open alert in the database; the database is only touched on a
/// transition, so steady risky or calm windows cost no query.
#[derive(Debug, Default)]
pub struct Hysteresis {
    state: std::sync::Mutex<std::collections::HashMap<String, (u32, AlertState)>>,
}

impl Hysteresis {
    /// Records one window's probability and says what to do.
    pub fn observe(
        &self,
        asset: &str,
        probability: f64,
        threshold: f64,
        clear_threshold: f64,
        fire_windows: u32,
    ) -> Transition {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (above, alert) = state
            .entry(asset.to_owned())
            .or_insert((0, AlertState::Unknown));
        if probability >= threshold {
            *above = above.saturating_add(1);
            if *above >= fire_windows.max(1) && *alert != AlertState::Open {
                *alert = AlertState::Open;
                return Transition::Fire;
            }
        } else {
            *above = 0;
            if probability < clear_threshold && *alert != AlertState::Closed {
                *alert = AlertState::Closed;
                return Transition::Clear;
            }
        }
        Transition::Stay
    }
}

/// Capacity of the queue of scores waiting to be written.
const SCORE_QUEUE: usize = 10_000;

/// Sends scores to the background writer.
pub type ScoreSender = tokio::sync::mpsc::Sender<crate::store::scores::NewScore>;

/// Writes queued scores in batches (up to 500, or what arrived within 100 ms) until every
/// sender is gone. A batch is sent again while the database is unavailable (a restart), for
/// about 15 seconds; scores are derived data, so a batch refused after that, or for another
/// reason, is logged and dropped, never retried forever.
pub fn spawn_score_writer(store: Store) -> (ScoreSender, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(SCORE_QUEUE);
    let task = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(500);
        while rx.recv_many(&mut batch, 500).await > 0 {
            let deadline = tokio::time::sleep(Duration::from_millis(100));
            tokio::pin!(deadline);
            while batch.len() < 500 {
                tokio::select! {
                    () = &mut deadline => break,
                    n = rx.recv_many(&mut batch, 500) => if n == 0 { break },
                }
            }
            let what = format!("store {} scores", batch.len());
            // Six retries wait 0.25 + 0.5 + 1 + 2 + 4 + 8 s.
            if let Err(e) =
                crate::store::retry_unavailable(&what, 6, || store.insert_scores(&batch)).await
            {
                tracing::warn!(scores = batch.len(), "cannot store scores: {e}");
            }
            batch.clear();
        }
    });
    (tx, task)
}

/// Body of `POST /v1/score`, the same as the seed-baseline service takes.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    asset: String,
    /// Values per metric on the model's grid, oldest first.
    window: BTreeMap<String, Vec<f64>>,
    /// The window's timestamps; the last one dates the stored score (else: now). The window
    /// is taken as already on the grid.
    #[serde(default)]
    timestamps: Option<Vec<super::input::Timestamp>>,
    /// The asset's class: its threshold applies (else the global one), and its class model
    /// answers when the bundle has one (else the fleet-wide model). It must be the class of
    /// some stored asset.
    #[serde(default)]
    asset_class: Option<String>,
}

impl ScoreRequest {
    /// Parses a body with the error mapping of [`ApiJson`](super::input::ApiJson); the usual
    /// shape takes a fast path that gives the same request.
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        parse_with(bytes, fast::parse)
    }
}

/// Parses `bytes` with `fast`, or where it gives `None`, with serde_json and the error mapping
/// of [`ApiJson`](super::input::ApiJson).
fn parse_with<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    fast: fn(&[u8]) -> Option<T>,
) -> Result<T, ApiError> {
    fast(bytes).map_or_else(|| parse_json(bytes), Ok)
}

/// The body of `POST /v1/score`, read as [`ApiJson`](super::input::ApiJson) reads it and parsed
/// by [`ScoreRequest::parse`].
#[derive(Debug)]
pub struct ScoreBody(pub ScoreRequest);

impl<S: Send + Sync> axum::extract::FromRequest<S> for ScoreBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        ScoreRequest::parse(&json_body(req, state).await?).map(Self)
    }
}

/// Which model answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelRef {
    /// A trained, registered bundle.
    Trained {
        /// Registry id.
        model_id: i64,
        /// Version.
        version: i32,
    },
    /// No trained model could answer: the streaming detector scored each metric from the
    /// series' own past.
    ColdStart,
}

/// The cold-start detector's scores: each metric's series scored from its own past only.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ColdStartScore {
    /// The largest metric score, in [0, 1].
    pub anomaly_score: f64,
    /// Per metric: its highest score over the last few points.
    pub metrics: BTreeMap<String, f64>,
    /// Metrics too short to learn from (fewer than `min_points`).
    pub too_short: Vec<String>,
    /// Points a metric needs.
    pub min_points: usize,
}

/// Points a series needs before the cold-start detector's score means anything: its warm-up
/// and the warm-up of its likelihood stage.
pub fn cold_start_min_points() -> usize {
    2 * StreamingParams::default().warmup
}

/// Scores each series of `window` (or those `wanted`) with a fresh streaming detector that
/// learns from the series' own earlier values; a metric's score is its highest over the
/// last `recent` points (the likelihood stage's averaging span). `None` when no metric is
/// long enough.
pub fn cold_start(
    window: &BTreeMap<String, Vec<f64>>,
    wanted: impl Fn(&str) -> bool,
) -> Option<ColdStartScore> {
    let params = StreamingParams::default();
    let min_points = cold_start_min_points();
    let mut metrics = BTreeMap::new();
    let mut too_short = Vec::new();
    for (name, values) in window.iter().filter(|(name, _)| wanted(name)) {
        if values.len() < min_points {
            too_short.push(name.clone());
            continue;
        }
        let Ok(scores) = StreamingDetector::score_series(params.clone(), values) else {
            continue;
        };
        let tail = &scores[scores.len().saturating_sub(params.recent)..];
        metrics.insert(name.clone(), tail.iter().copied().fold(0.0, f64::max));
    }
    let anomaly_score = metrics
        .values()
        .copied()
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))?;
    Some(ColdStartScore {
        anomaly_score,
        metrics,
        too_short,
        min_points,
    })
}

/// Answer of `POST /v1/score`.
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
    recommended_action: Option<super::policy::Recommendation>,
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

    /// What the alert threshold is compared with.
    pub fn level(&self) -> f64 {
        match (&self.score, &self.cold_start) {
            (Some(score), _) => score.probability,
            (None, Some(cold)) => cold.anomaly_score,
            (None, None) => 0.0,
        }
    }
}

/// Scores one window with `model`, or with the cold-start detector when there is none or
/// it knows none of the window's metrics.
fn score_with(
    state: &AppState,
    model: Option<&ActiveModel>,
    asset: String,
    class: Option<&str>,
    window: &BTreeMap<String, Vec<f64>>,
) -> Result<ScoreAnswer, ApiError> {
    super::input::check_name("asset", &asset)?;
    let settings = &state.settings.scoring;
    // The trained model's score, or else the cold-start detector's (computed once).
    let scored = match model {
        Some(model) => match model
            .bundle
            .score(&asset, class, window, settings.top_drivers)
        {
            Ok(score) => Ok((model, score)),
            Err(WindowError::NothingUsable(reason)) => match cold_start(window, |_| true) {
                Some(cold) => Err(cold),
                None => return Err(WindowError::NothingUsable(reason).into()),
            },
            Err(e) => return Err(e.into()),
        },
        None => Err(cold_start(window, |_| true).ok_or_else(|| {
            ApiError::invalid(
                "window",
                format!(
                    "no trained model can score this window, and the cold-start detector \
                     needs at least {} values of a metric",
                    cold_start_min_points()
                ),
            )
        })?),
    };
    let answer = match scored {
        Ok((model, score)) => {
            let ignored = score.ignored_metrics.clone();
            let (fire_at, clear_at) = state.policy.threshold_for(class, &state.settings);
            let recommended_action = score.diagnosis.as_ref().and_then(|d| {
                state
                    .policy
                    .recommend(&state.settings, &d.kind, class.unwrap_or("default"))
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
                cold_start: cold_start(window, |name| ignored.iter().any(|m| m == name)),
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

/// Stores the score (queued, off the request path) and applies the alert hysteresis: an
/// alert is written before the answer goes out, so it is durable before anyone acts on it.
async fn record(
    state: &AppState,
    answer: &mut ScoreAnswer,
    window_end: chrono::DateTime<chrono::Utc>,
) -> Result<(), ApiError> {
    let settings = &state.settings.scoring;
    let clear_threshold = answer.clear_threshold;
    let (model_id, model_version) = match answer.model {
        ModelRef::Trained { model_id, version } => (Some(model_id), format!("bundle/v{version}")),
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
                "cold_start": answer.cold_start,
            })
        } else {
            serde_json::json!({})
        },
    };
    match state.hysteresis.observe(
        &answer.asset,
        answer.level(),
        answer.threshold,
        clear_threshold,
        settings.fire_windows,
    ) {
        Transition::Fire => {
            answer.alert_opened = state.store.open_alert(&record).await?;
            // The alert is durable now; acting on it happens off the request path.
            if let Some(alert_id) = answer.alert_opened
                && !state.settings.actions.is_empty()
            {
                let kind = record
                    .failure_kind
                    .clone()
                    .unwrap_or_else(|| "unknown".to_owned());
                tokio::spawn(act_on_alert(
                    state.clone(),
                    alert_id,
                    record.asset.clone(),
                    kind,
                ));
            }
        }
        Transition::Clear => {
            state.store.clear_alert(&answer.asset).await?;
        }
        Transition::Stay => {}
    }
    if let (true, Some(writer)) = (settings.store_scores, &state.scores) {
        // Back-pressure rather than loss when the writer falls behind.
        let _ = writer.send(record).await;
    }
    Ok(())
}

/// Chooses and runs (behind the guard) an action for a newly opened alert.
async fn act_on_alert(state: AppState, alert_id: i64, asset: String, kind: String) {
    let result = async {
        let class = state
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
        state.actions.on_alert(&alert).await
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

/// `POST /v1/score`.
pub async fn score(
    State(state): State<AppState>,
    ScoreBody(request): ScoreBody,
) -> Result<Json<ScoreAnswer>, ApiError> {
    let model = state.model.current();
    let window_end = request
        .timestamps
        .as_ref()
        .and_then(|t| t.last())
        .map(|t| t.required("timestamps"))
        .transpose()?
        .unwrap_or_else(chrono::Utc::now);
    if let Some(class) = &request.asset_class {
        check_class(&state, class).await?;
    }
    let mut answer = score_with(
        &state,
        model.as_deref(),
        request.asset,
        request.asset_class.as_deref(),
        &request.window,
    )?;
    record(&state, &mut answer, window_end).await?;
    Ok(Json(answer))
}

/// Refuses an asset class that no stored asset has (422 `unknown_asset_class`).
async fn check_class(state: &AppState, class: &str) -> Result<(), ApiError> {
    super::input::check_name("asset_class", class)?;
    if state.policy.knows_class(&state.store, class).await? {
        Ok(())
    } else {
        Err(ApiError::UnknownClass(class.to_owned()))
    }
}

/// Most windows in one `POST /v1/score/batch`.
pub const MAX_BATCH_WINDOWS: usize = 1000;

/// Body of `POST /v1/score/batch`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    windows: Vec<ScoreRequest>,
}

/// One item of a batch answer: a score, or the error of that window alone.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum BatchItem {
    /// Scored.
    Scored(Box<ScoreAnswer>),
    /// Refused, with the same code and message a single request would get.
    Failed {
        /// The error.
        error: super::error::ErrorBody,
    },
}

/// Answer of `POST /v1/score/batch`, in request order.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BatchAnswer {
    scores: Vec<BatchItem>,
}

/// The body of `POST /v1/score/batch`, read as [`ApiJson`](super::input::ApiJson) reads it,
/// with the fast path of [`ScoreRequest::parse`] for the usual shape.
#[derive(Debug)]
pub struct BatchBody(pub BatchRequest);

impl<S: Send + Sync> axum::extract::FromRequest<S> for BatchBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        parse_with(&json_body(req, state).await?, fast::parse_batch).map(Self)
    }
}

/// `POST /v1/score/batch`: many windows with one model version; a bad window fails alone.
pub async fn score_batch(
    State(state): State<AppState>,
    BatchBody(request): BatchBody,
) -> Result<Json<BatchAnswer>, ApiError> {
    if request.windows.len() > MAX_BATCH_WINDOWS {
        return Err(ApiError::invalid(
            "windows",
            format!("at most {MAX_BATCH_WINDOWS} windows per batch"),
        ));
    }
    let model = state.model.current();
    let mut scores = Vec::with_capacity(request.windows.len());
    for w in request.windows {
        let class = w.asset_class.as_deref();
        let answer = match class {
            Some(c) => check_class(&state, c).await,
            None => Ok(()),
        }
        .and_then(|()| score_with(&state, model.as_deref(), w.asset, class, &w.window));
        scores.push(match answer {
            Ok(answer) => BatchItem::Scored(Box::new(answer)),
            Err(e) => BatchItem::Failed { error: e.body() },
        });
    }
    Ok(Json(BatchAnswer { scores }))
}

/// `GET /v1/assets/{name}/score`: scores the asset's latest stored window.
pub async fn score_asset(
    State(state): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<ScoreAnswer>, ApiError> {
    super::input::check_name("name", &name)?;
    Ok(Json(score_stored(&state, name).await?))
}

/// Scores an asset's latest stored window, put on the grid from its stored samples (gaps
/// within `max_fill` steps are carried forward; a metric with a longer gap is scored as
/// missing), stores the score and applies the alert hysteresis. With a trained model the
/// window is the model's; without one, the cold-start detector learns from the last
/// `scoring.cold_start_history` grid points.
pub async fn score_stored(state: &AppState, name: String) -> Result<ScoreAnswer, ApiError> {
    score_stored_at(state, name, None).await
}

/// [`score_stored`] for a window ending at the sample time `latest` (`None`: the asset's
/// newest stored sample, looked up).
async fn score_stored_at(
    state: &AppState,
    name: String,
    latest: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<ScoreAnswer, ApiError> {
    let model = state.model.current();
    let asset = match state.store.asset_by_name(&name).await {
        Ok(asset) => asset,
        Err(crate::store::Error::NotFound(_)) => {
            return Err(ApiError::NotFound(format!("asset {name}")));
        }
        Err(e) => return Err(e.into()),
    };
    let latest = match latest {
        Some(t) => t,
        None => state
            .store
            .latest_sample_time(asset.asset_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("samples of asset {name}")))?,
    };
    let training = &state.settings.training;
    let mut schema = match &model {
        Some(m) => m.bundle.schema.clone(),
        None => FeatureSchema::new(
            Vec::new(),
            state.settings.scoring.cold_start_history,
            training.step_secs,
            training.max_fill,
        ),
    };
    let span = (schema.window + schema.max_fill) as i64 * schema.step_secs;
    let query = crate::store::samples::SampleQuery {
        asset_id: asset.asset_id,
        metric: None,
        from: latest - chrono::Duration::seconds(span),
        to: latest + chrono::Duration::microseconds(1),
        step_secs: None,
        aggregate: crate::store::samples::Aggregate::Last,
        max_points: 1_000_000,
    };
    let series = state.store.read_samples(&query).await?;
    let end = latest.timestamp().div_euclid(schema.step_secs) * schema.step_secs;
    let mut window = BTreeMap::new();
    for s in series {
        let ts: Vec<i64> = s
            .ts_micros
            .iter()
            .map(|t| t.div_euclid(1_000_000))
            .collect();
        if model.is_none() {
            // The cold-start detector takes what history there is, from the first grid point
            // that has a sample.
            schema.window = state.settings.scoring.cold_start_history;
            if let Some(first) = ts.first() {
                let points = (end - first).div_euclid(schema.step_secs) + 1;
                schema.window = schema.window.min(points.max(1) as usize);
            }
        }
        if let Ok(values) = crate::features::resample(&s.metric, &ts, &s.values, end, &schema) {
            window.insert(s.metric, values);
        }
    }
    let mut answer = score_with(state, model.as_deref(), name, Some(&asset.class), &window)?;
    let window_end = chrono::DateTime::from_timestamp(end, 0).unwrap_or(latest);
    record(state, &mut answer, window_end).await?;
    Ok(answer)
}

/// Capacity of the queue of ingested batches waiting to be scored.
const INGEST_QUEUE: usize = 1024;

/// Sends the assets of a stored batch, each with its newest sample time (microseconds), to
/// the ingest scorer.
pub type IngestSender = tokio::sync::mpsc::Sender<Vec<(String, i64)>>;

/// Scoring on ingest: receives the assets of each stored batch and scores an asset's latest
/// window whenever its newest sample reaches a grid point not scored yet (so a burst of
/// batches within one step scores once). Assets are scored concurrently (up to half the
/// pool's connections), one scoring per asset at a time; an asset still being scored when
/// its next batch arrives is scored again with a later one. Runs until every sender is gone,
/// then finishes the scorings under way. Under overload a batch is dropped from the queue
/// rather than slowing ingestion (its asset is scored with the next batch).
pub fn spawn_ingest_scorer(state: AppState) -> (IngestSender, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(String, i64)>>(INGEST_QUEUE);
    let task = tokio::spawn(async move {
        let progress: Arc<std::sync::Mutex<IngestProgress>> = Arc::default();
        let limit = (state.settings.database.max_connections as usize / 2).max(1);
        let permits = Arc::new(tokio::sync::Semaphore::new(limit));
        let mut running = tokio::task::JoinSet::new();
        let mut received = Vec::new();
        // Take everything queued at once: when scoring lags, each asset jumps to its newest
        // window instead of working through stale ones.
        while rx.recv_many(&mut received, INGEST_QUEUE).await > 0 {
            let mut assets: std::collections::BTreeMap<String, i64> = Default::default();
            for (name, ts) in received.drain(..).flatten() {
                let slot = assets.entry(name).or_insert(ts);
                *slot = (*slot).max(ts);
            }
            for (name, latest) in assets {
                if !progress
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .in_flight
                    .insert(name.clone())
                {
                    continue;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let (state, progress) = (state.clone(), progress.clone());
                running.spawn(async move {
                    if let Err(e) = score_if_new(&state, &progress, &name, latest).await {
                        tracing::debug!("scoring on ingest: {e}");
                    }
                    progress
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .in_flight
                        .remove(&name);
                    drop(permit);
                });
            }
            while running.try_join_next().is_some() {}
        }
        while running.join_next().await.is_some() {}
    });
    (tx, task)
}

/// What the ingest scorer has scored and is scoring.
#[derive(Debug, Default)]
struct IngestProgress {
    /// Per asset, the last grid point scored.
    scored_until: std::collections::HashMap<String, i64>,
    /// Assets being scored now.
    in_flight: std::collections::HashSet<String>,
}

async fn score_if_new(
    state: &AppState,
    progress: &std::sync::Mutex<IngestProgress>,
    name: &str,
    latest_micros: i64,
) -> Result<(), ApiError> {
    let step = match state.model.current() {
        Some(m) => m.bundle.schema.step_secs,
        None => state.settings.training.step_secs,
    };
    let end = latest_micros.div_euclid(1_000_000).div_euclid(step) * step;
    {
        let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
        if p.scored_until.get(name).is_some_and(|&done| done >= end) {
            return Ok(());
        }
        p.scored_until.insert(name.to_owned(), end);
    }
    let latest = chrono::DateTime::from_timestamp_micros(latest_micros);
    score_stored_at(state, name.to_owned(), latest)
        .await
        .map(|_| ())
}

/// Hands a stored batch's assets to the ingest scorer, if it runs; never waits.
pub fn after_ingest(state: &AppState, assets: Vec<(String, i64)>) {
    if let Some(tx) = &state.ingest
        && tx.try_send(assets).is_err()
    {
        tracing::debug!("ingest scorer busy: batch not scored");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_fires_after_n_windows_and_clears_below_the_lower_threshold() {
        let h = Hysteresis::default();
        let observe = |p: f64| h.observe("a", p, 0.5, 0.3, 3);
        // Unknown state after a start: the first calm window checks for an open alert.
        assert_eq!(observe(0.1), Transition::Clear);
        assert_eq!(observe(0.6), Transition::Stay);
        assert_eq!(observe(0.7), Transition::Stay);
        assert_eq!(
            observe(0.4),
            Transition::Stay,
            "a dip resets the count but does not clear"
        );
        assert_eq!(observe(0.6), Transition::Stay);
        assert_eq!(observe(0.6), Transition::Stay);
        assert_eq!(observe(0.9), Transition::Fire);
        assert_eq!(
            observe(0.4),
            Transition::Stay,
            "between the thresholds the alert holds"
        );
        assert_eq!(observe(0.2), Transition::Clear);
        assert_eq!(observe(0.2), Transition::Stay, "cleared once");
    }
}
