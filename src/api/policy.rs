//! Thresholds in force (cached per replica, refreshed every few seconds and after a local
//! change), their adaptation to feedback, and the policy routes:
//! `GET /v1/policy/thresholds`, `PUT /v1/policy/thresholds/{class}` (set or pin, admin),
//! `POST /v1/policy/thresholds/{class}/revert` (admin).

use axum::extract::State;
use axum::{Extension, Json};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Principal;
use super::error::ApiError;
use super::input::{ApiJson, ApiPath, check_name};
use crate::policy::threshold::{self, Decision};
use crate::scoring::policy_cache::{clear_below, unstored_threshold};
use crate::store::thresholds::{GLOBAL_CLASS, NewThreshold, Threshold, ThresholdChange};

/// What one adaptation did for one class.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Adaptation {
    /// The class (`*`: global).
    pub asset_class: String,
    /// Whether the threshold moved.
    pub moved: bool,
    /// The threshold in force afterwards.
    pub fire_at: f64,
    /// Why it moved or stayed.
    pub reason: String,
}

/// Adapts the thresholds of `class` (if any) and the global one to the labelled history,
/// recording every move. Pinned thresholds stay.
pub async fn adapt(state: &AppState, class: Option<&str>) -> Result<Vec<Adaptation>, ApiError> {
    let settings = &state.settings;
    if !settings.policy.adapt_thresholds {
        return Ok(Vec::new());
    }
    let costs = costs(&settings.policy);
    let mut out = Vec::new();
    for c in class.into_iter().chain([GLOBAL_CLASS]) {
        let (current, _) =
            state
                .scoring
                .policy()
                .threshold_for(Some(c), settings, proposed_threshold(state, c));
        let cases = state
            .store
            .labelled_cases(
                (c != GLOBAL_CLASS).then_some(c),
                settings.training.horizon_secs,
                (current - costs.max_step, current),
            )
            .await?;
        let adaptation = match threshold::adapt(&cases, current, &costs) {
            Decision::Move { fire_at, evidence } => {
                let reason = format!(
                    "adapted to {} labelled cases: expected cost {:.2} -> {:.2} \
                     ({} -> {} false alarms, {} -> {} missed failures)",
                    evidence.labels,
                    evidence.before.cost,
                    evidence.after.cost,
                    evidence.before.false_alarms,
                    evidence.after.false_alarms,
                    evidence.before.missed,
                    evidence.after.missed
                );
                let stored = state
                    .store
                    .set_threshold(
                        &NewThreshold {
                            asset_class: c,
                            fire_at,
                            clear_at: clear_below(settings, fire_at),
                            pinned: None,
                            reason: &reason,
                            evidence: serde_json::to_value(&evidence).unwrap_or_default(),
                            actor: "adapter",
                        },
                        true,
                    )
                    .await?;
                match stored {
                    Some(t) => Adaptation {
                        asset_class: c.to_owned(),
                        moved: true,
                        fire_at: t.fire_at,
                        reason,
                    },
                    None => Adaptation {
                        asset_class: c.to_owned(),
                        moved: false,
                        fire_at: current,
                        reason: "pinned by an admin".to_owned(),
                    },
                }
            }
            Decision::Stay(reason) => Adaptation {
                asset_class: c.to_owned(),
                moved: false,
                fire_at: current,
                reason: reason.to_owned(),
            },
        };
        out.push(adaptation);
    }
    if out.iter().any(|a| a.moved) {
        state.scoring.policy().reload(&state.store).await?;
    }
    Ok(out)
}

/// The threshold the active model proposes for `class` (`*`: its fleet-wide one).
fn proposed_threshold(state: &AppState, class: &str) -> Option<f64> {
    let model = state.scoring.model().current()?;
    model
        .bundle
        .proposed_threshold((class != GLOBAL_CLASS).then_some(class))
}

/// Answer of `GET /v1/policy/thresholds`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ThresholdsAnswer {
    /// The default (used where no class and no global threshold is stored): the active
    /// model's fleet-wide proposed threshold when `scoring.model_threshold`, else the
    /// configured `scoring.alert_threshold` and `scoring.clear_threshold`.
    default: ThresholdPair,
    /// Where the default comes from: `model` or `config`.
    default_source: &'static str,
    /// The thresholds the active model proposes (chosen on its validation windows), by the
    /// class its per-class models score (`*`: the fleet-wide model's); used for a class
    /// where nothing is stored, when `scoring.model_threshold`.
    proposed: BTreeMap<String, f64>,
    /// Thresholds in force by class (`*`: global).
    thresholds: Vec<Threshold>,
    /// The latest changes, newest first.
    history: Vec<ThresholdChange>,
}

/// A pair of thresholds.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ThresholdPair {
    /// Fire at or above.
    fire_at: f64,
    /// Clear below.
    clear_at: f64,
}

/// `GET /v1/policy/thresholds`.
pub async fn thresholds(State(state): State<AppState>) -> Result<Json<ThresholdsAnswer>, ApiError> {
    let settings = &state.settings;
    let mut proposed = BTreeMap::new();
    if let Some(model) = state.scoring.model().current() {
        let bundle = &model.bundle;
        let classes = bundle.classes.keys().map(|c| Some(c.as_str()));
        for class in std::iter::once(None).chain(classes) {
            if let Some(t) = bundle.proposed_threshold(class) {
                proposed.insert(class.unwrap_or(GLOBAL_CLASS).to_owned(), t);
            }
        }
    }
    // For a class that nothing is stored for and no class model scores.
    let fleet = proposed.get(GLOBAL_CLASS).copied();
    let (fire_at, clear_at) = unstored_threshold(settings, fleet);
    let from_model = settings.scoring.model_threshold && fleet.is_some();
    Ok(Json(ThresholdsAnswer {
        default: ThresholdPair { fire_at, clear_at },
        default_source: if from_model { "model" } else { "config" },
        proposed,
        thresholds: state.store.thresholds().await?,
        history: state.store.threshold_changes(None, 100).await?,
    }))
}

/// Body of `PUT /v1/policy/thresholds/{class}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetThreshold {
    /// Fire at or above, in [0, 1].
    fire_at: f64,
    /// Clear below, in [0, fire_at] (default: policy.clear_gap below fire_at, or 0.6 of it
    /// (scoring.clear_threshold / scoring.alert_threshold), whichever is higher).
    #[serde(default)]
    clear_at: Option<f64>,
    /// Pin it so the adapter leaves it alone (default: true).
    #[serde(default)]
    pinned: Option<bool>,
    /// Why (recorded).
    #[serde(default)]
    reason: Option<String>,
}

fn check_class(class: &str) -> Result<(), ApiError> {
    if class == GLOBAL_CLASS {
        Ok(())
    } else {
        check_name("class", class)
    }
}

/// `PUT /v1/policy/thresholds/{class}`: an admin sets (and by default pins) a threshold.
pub async fn set_threshold(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(class): ApiPath<String>,
    ApiJson(body): ApiJson<SetThreshold>,
) -> Result<Json<Threshold>, ApiError> {
    check_class(&class)?;
    let clear_at = body
        .clear_at
        .unwrap_or_else(|| clear_below(&state.settings, body.fire_at));
    if !(0.0..=1.0).contains(&body.fire_at) {
        return Err(ApiError::invalid("fire_at", "must be in [0, 1]"));
    }
    if !(0.0..=body.fire_at).contains(&clear_at) {
        return Err(ApiError::invalid("clear_at", "must be in [0, fire_at]"));
    }
    let reason = body.reason.unwrap_or_else(|| "set by an admin".to_owned());
    let stored = state
        .store
        .set_threshold(
            &NewThreshold {
                asset_class: &class,
                fire_at: body.fire_at,
                clear_at,
                pinned: Some(body.pinned.unwrap_or(true)),
                reason: &reason,
                evidence: serde_json::json!({}),
                actor: &principal.name,
            },
            false,
        )
        .await?
        .ok_or_else(|| ApiError::Internal("threshold not stored".to_owned()))?;
    state.scoring.policy().reload(&state.store).await?;
    Ok(Json(stored))
}

/// Answer of `POST /v1/policy/thresholds/{class}/revert`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Reverted {
    asset_class: String,
    /// The threshold now stored (`None`: the fallback is in force again).
    threshold: Option<Threshold>,
}

/// `POST /v1/policy/thresholds/{class}/revert`: undo the class's latest change.
pub async fn revert_threshold(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(class): ApiPath<String>,
) -> Result<Json<Reverted>, ApiError> {
    check_class(&class)?;
    let threshold = state
        .store
        .revert_threshold(&class, &principal.name)
        .await?;
    state.scoring.policy().reload(&state.store).await?;
    Ok(Json(Reverted {
        asset_class: class,
        threshold,
    }))
}

/// The adapter's costs and limits, from `policy.*`.
fn costs(settings: &crate::config::PolicySettings) -> threshold::Costs {
    threshold::Costs {
        false_alarm: settings.false_alarm_cost,
        missed_failure: settings.missed_failure_cost,
        min_precision: settings.min_precision,
        min_labels: settings.min_labels,
        max_step: settings.max_step,
        min_gain: settings.min_gain,
        bounds: (settings.min_threshold, settings.max_threshold),
    }
}
