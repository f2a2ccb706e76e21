//! Shadow challengers decided: when a challenger's shadow period ends (or an admin decides
//! early), both models are compared on the live windows the challenger scored beside the
//! champion (a window is a failure window when a failure of its asset started within the
//! horizon after it) as well as on validation, and the challenger is promoted or dropped;
//! the decision is recorded with both sets of figures.

use std::time::Duration;

use serde_json::json;

use crate::model::evaluation::average_precision;
use crate::store::shadow::Shadow;
use crate::store::{self, Store};

/// The live comparison and the verdict it gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Promote (else drop).
    pub promote: bool,
    /// Why, in words.
    pub reason: String,
    /// Both models' figures, live and on validation.
    pub figures: serde_json::Value,
}

/// Compares the challenger `model_id` with the champion on its shadow windows.
pub async fn judge(store: &Store, model_id: i64, default_horizon: i64) -> store::Result<Verdict> {
    let record = store.model(model_id).await?;
    let horizon = record.params["horizon_secs"]
        .as_i64()
        .unwrap_or(default_horizon);
    let rows = store.shadow_outcomes(model_id, horizon).await?;
    let labels: Vec<bool> = rows.iter().map(|r| r.3).collect();
    let shadow: Vec<f64> = rows.iter().map(|r| r.0).collect();
    let champion: Vec<f64> = rows.iter().map(|r| r.1.unwrap_or(0.0)).collect();
    let positives = labels.iter().filter(|&&l| l).count();
    let alerts = |scores: &[f64]| scores.iter().zip(&rows).filter(|(p, r)| **p >= r.2).count();
    let (shadow_alerts, champion_alerts) = (alerts(&shadow), alerts(&champion));
    let (shadow_ap, champion_ap) = if positives > 0 {
        (
            average_precision(&shadow, &labels),
            average_precision(&champion, &labels),
        )
    } else {
        (None, None)
    };
    let decision = &record.metrics["decision"];
    let figures = json!({
        "live": {
            "windows": rows.len(),
            "failure_windows": positives,
            "challenger": { "average_precision": shadow_ap, "alerts": shadow_alerts },
            "champion": { "average_precision": champion_ap, "alerts": champion_alerts },
        },
        "validation": {
            "challenger_average_precision": decision["challenger_average_precision"],
            "champion_average_precision": decision["champion_average_precision"],
        },
    });
    let (promote, reason) = if rows.is_empty() {
        (
            true,
            "no live window was scored in shadow: promoted on validation alone".to_owned(),
        )
    } else if let (Some(new), Some(old)) = (shadow_ap, champion_ap) {
        (
            new >= old,
            format!(
                "on {} live windows ({positives} before a failure) its average precision was \
                 {new:.4} against the champion's {old:.4}",
                rows.len()
            ),
        )
    } else {
        (
            shadow_alerts <= champion_alerts,
            format!(
                "no failure followed any of {} live windows: it would have raised {shadow_alerts} \
                 alerting windows, the champion {champion_alerts}",
                rows.len()
            ),
        )
    };
    Ok(Verdict {
        promote,
        reason,
        figures,
    })
}

/// Decides `model_id` (in shadow): by the live comparison, or as `forced` says (an admin),
/// recorded as decided by `by`.
pub async fn decide(
    store: &Store,
    model_id: i64,
    forced: Option<bool>,
    by: &str,
    default_horizon: i64,
) -> store::Result<Shadow> {
    let verdict = judge(store, model_id, default_horizon).await?;
    let (promote, reason) = match forced {
        Some(promote) => (
            promote,
            format!(
                "{} early by {by}; the live comparison so far: {}",
                if promote { "promoted" } else { "dropped" },
                verdict.reason
            ),
        ),
        None => (verdict.promote, verdict.reason),
    };
    store
        .decide_shadow(model_id, promote, by, &reason, &verdict.figures)
        .await
}

/// Decides every shadow period that has ended, every `every`, until aborted.
pub fn spawn(store: Store, every: Duration, default_horizon: i64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every.max(Duration::from_secs(1))).await;
            let due = match store.due_shadows().await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!("cannot look for ended shadow periods: {e}");
                    continue;
                }
            };
            for shadow in due {
                match decide(&store, shadow.model_id, None, "schedule", default_horizon).await {
                    Ok(decided) => tracing::info!(
                        model_id = decided.model_id,
                        decision = decided.decision.as_deref().unwrap_or(""),
                        reason = decided.reason.as_deref().unwrap_or(""),
                        "shadow period decided"
                    ),
                    // Another replica decided it first.
                    Err(store::Error::Constraint { .. }) => {}
                    Err(e) => tracing::warn!(model_id = shadow.model_id, "shadow decision: {e}"),
                }
            }
        }
    })
}
