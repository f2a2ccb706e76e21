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
use super::input::ApiJson;
use crate::jobs::train::{self, Bundle};
use crate::model::bundle::WindowScore;
use crate::store::Store;
use crate::store::models::ACTIVATION_CHANNEL;

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
/// sender is gone. Scores are derived data: a batch the database refuses is logged and
/// dropped, never retried forever.
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
            if let Err(e) = store.insert_scores(&batch).await {
                tracing::warn!(scores = batch.len(), "cannot store scores: {e}");
            }
            batch.clear();
        }
    });
    (tx, task)
}

/// Body of `POST /v1/score`, the same as the seed-baseline service takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    asset: String,
    /// Values per metric on the model's grid, oldest first.
    window: BTreeMap<String, Vec<f64>>,
    /// The window's timestamps; the last one dates the stored score (else: now). The window
    /// is taken as already on the grid.
    #[serde(default)]
    timestamps: Option<Vec<super::input::Timestamp>>,
    /// Accepted; per-class models are not built yet, so the fleet-wide model answers.
    #[serde(default)]
    #[allow(dead_code)]
    asset_class: Option<String>,
}

/// Which model answered.
#[derive(Debug, Serialize)]
pub struct ModelRef {
    model_id: i64,
    version: i32,
}

/// Answer of `POST /v1/score`.
#[derive(Debug, Serialize)]
pub struct ScoreAnswer {
    asset: String,
    model: ModelRef,
    threshold: f64,
    alert: bool,
    /// The asset's alert opened by this window (after `scoring.fire_windows` in a row).
    #[serde(skip_serializing_if = "Option::is_none")]
    alert_opened: Option<i64>,
    #[serde(flatten)]
    score: WindowScore,
}

/// Scores one window with `model`.
fn score_with(
    state: &AppState,
    model: &ActiveModel,
    asset: String,
    window: &BTreeMap<String, Vec<f64>>,
) -> Result<ScoreAnswer, ApiError> {
    super::input::check_name("asset", &asset)?;
    let score = model
        .bundle
        .score(&asset, window, state.settings.scoring.top_drivers)?;
    let threshold = state.settings.scoring.alert_threshold;
    Ok(ScoreAnswer {
        asset,
        model: ModelRef {
            model_id: model.model_id,
            version: model.version,
        },
        threshold,
        alert: score.probability >= threshold,
        alert_opened: None,
        score,
    })
}

/// Stores the score (queued, off the request path) and applies the alert hysteresis: an
/// alert is written before the answer goes out, so it is durable before anyone acts on it.
async fn record(
    state: &AppState,
    answer: &mut ScoreAnswer,
    window_end: chrono::DateTime<chrono::Utc>,
) -> Result<(), ApiError> {
    let settings = &state.settings.scoring;
    let record = crate::store::scores::NewScore {
        asset: answer.asset.clone(),
        model_id: Some(answer.model.model_id),
        model_version: format!("bundle/v{}", answer.model.version),
        window_end,
        probability: answer.score.probability,
        anomaly_score: answer.score.anomaly_score,
        threshold: answer.threshold,
        is_alert: answer.alert,
        failure_kind: answer.score.diagnosis.as_ref().map(|d| d.kind.clone()),
        kind_confidence: answer.score.diagnosis.as_ref().map(|d| d.confidence),
        // The explanation is kept for alerting windows, where people read it; a calm
        // window's row stays small.
        explanation: if answer.alert {
            serde_json::json!({
                "drivers": answer.score.drivers,
                "diagnosis": answer.score.diagnosis,
            })
        } else {
            serde_json::json!({})
        },
    };
    match state.hysteresis.observe(
        &answer.asset,
        answer.score.probability,
        answer.threshold,
        settings.clear_threshold,
        settings.fire_windows,
    ) {
        Transition::Fire => answer.alert_opened = state.store.open_alert(&record).await?,
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

/// `POST /v1/score`.
pub async fn score(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<ScoreRequest>,
) -> Result<Json<ScoreAnswer>, ApiError> {
    let model = state.model.current().ok_or(ApiError::NoModel)?;
    let window_end = request
        .timestamps
        .as_ref()
        .and_then(|t| t.last())
        .map(|t| t.required("timestamps"))
        .transpose()?
        .unwrap_or_else(chrono::Utc::now);
    let mut answer = score_with(&state, &model, request.asset, &request.window)?;
    record(&state, &mut answer, window_end).await?;
    Ok(Json(answer))
}

/// Most windows in one `POST /v1/score/batch`.
pub const MAX_BATCH_WINDOWS: usize = 1000;

/// Body of `POST /v1/score/batch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    windows: Vec<ScoreRequest>,
}

/// One item of a batch answer: a score, or the error of that window alone.
#[derive(Debug, Serialize)]
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
#[derive(Debug, Serialize)]
pub struct BatchAnswer {
    scores: Vec<BatchItem>,
}

/// `POST /v1/score/batch`: many windows with one model version; a bad window fails alone.
pub async fn score_batch(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<BatchRequest>,
) -> Result<Json<BatchAnswer>, ApiError> {
    if request.windows.len() > MAX_BATCH_WINDOWS {
        return Err(ApiError::invalid(
            "windows",
            format!("at most {MAX_BATCH_WINDOWS} windows per batch"),
        ));
    }
    let model = state.model.current().ok_or(ApiError::NoModel)?;
    let scores = request
        .windows
        .into_iter()
        .map(|w| match score_with(&state, &model, w.asset, &w.window) {
            Ok(answer) => BatchItem::Scored(Box::new(answer)),
            Err(e) => BatchItem::Failed { error: e.body() },
        })
        .collect();
    Ok(Json(BatchAnswer { scores }))
}

/// `GET /v1/assets/{name}/score`: scores the asset's latest stored window, put on the model's
/// grid from its stored samples (gaps within `max_fill` steps are carried forward; a metric
/// with a longer gap is scored as missing).
pub async fn score_asset(
    State(state): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<ScoreAnswer>, ApiError> {
    super::input::check_name("name", &name)?;
    let model = state.model.current().ok_or(ApiError::NoModel)?;
    let asset = match state.store.asset_by_name(&name).await {
        Ok(asset) => asset,
        Err(crate::store::Error::NotFound(_)) => {
            return Err(ApiError::NotFound(format!("asset {name}")));
        }
        Err(e) => return Err(e.into()),
    };
    let schema = &model.bundle.schema;
    let latest = state
        .store
        .latest_sample_time(asset.asset_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("samples of asset {name}")))?;
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
        if let Ok(values) = crate::features::resample(&s.metric, &ts, &s.values, end, schema) {
            window.insert(s.metric, values);
        }
    }
    let mut answer = score_with(&state, &model, name, &window)?;
    let window_end = chrono::DateTime::from_timestamp(end, 0).unwrap_or(latest);
    record(&state, &mut answer, window_end).await?;
    Ok(Json(answer))
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
