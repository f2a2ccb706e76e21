//! Vigil's own alerts out to Alertmanager (API v2, `POST <url>/api/v2/alerts`), so that
//! existing routes carry them to Slack, PagerDuty or email.
//!
//! Every `alertmanager.push_interval_secs` the whole list is sent to each configured URL:
//! every open alert with `endsAt` a few intervals ahead (re-sent while open; should Vigil
//! stop, Alertmanager resolves it by itself), and every alert cleared within
//! `push_resolved_secs` with `endsAt` its clearing time (resolved). Labels: `alertname`
//! (`VigilFailureRisk`, or `VigilAnomaly` from the cold-start detector), `asset`, `class`,
//! `failure_kind`, `severity` (from the probability), `source="vigil"`; annotations: a
//! summary, the top drivers, the time to failure and the recommended action. Replicas all
//! push the same list: Alertmanager deduplicates by labels.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::config::AlertmanagerSettings;
use crate::counters::{self, Counters};
use crate::store::Store;
use crate::store::alerts::{AlertFilter, AlertRow};

/// Most alerts one push carries.
const MAX_ALERTS: i64 = 10_000;

/// Open alerts end this many intervals after a push unless re-sent.
const ENDS_AFTER_INTERVALS: i64 = 4;

/// `critical` from probability 0.9, `warning` from 0.7, else `info`; the cold-start
/// detector's alerts (no probability) are `warning`.
pub fn severity(alert: &AlertRow) -> &'static str {
    match alert.probability {
        Some(p) if p >= 0.9 => "critical",
        Some(p) if p >= 0.7 => "warning",
        Some(_) => "info",
        None => "warning",
    }
}

/// One alert in Alertmanager's API v2 form.
pub fn to_alertmanager(alert: &AlertRow, now: DateTime<Utc>, interval_secs: u64) -> Value {
    let name = if alert.probability.is_some() {
        "VigilFailureRisk"
    } else {
        "VigilAnomaly"
    };
    let mut labels = json!({
        "alertname": name,
        "asset": alert.asset,
        "class": alert.asset_class,
        "severity": severity(alert),
        "source": "vigil",
    });
    if let Some(kind) = &alert.failure_kind {
        labels["failure_kind"] = json!(kind);
    }
    let level = alert.probability.or(alert.anomaly_score).unwrap_or(0.0);
    let what = if alert.probability.is_some() {
        "failure probability"
    } else {
        "anomaly score"
    };
    let mut annotations = json!({
        "summary": format!("{}: {what} {level:.2} (threshold {:.2})", alert.asset, alert.threshold),
        "vigil_alert_id": alert.alert_id.to_string(),
        "model": alert.model_version,
    });
    let explanation = &alert.explanation;
    if let Some(drivers) = explanation["drivers"].as_array() {
        let text: Vec<&str> = drivers
            .iter()
            .take(3)
            .filter_map(|d| d["text"].as_str())
            .collect();
        if !text.is_empty() {
            annotations["drivers"] = json!(text.join("; "));
        }
    } else if let Some(metrics) = explanation["cold_start"]["metrics"].as_object() {
        let mut top: Vec<(&String, f64)> = metrics
            .iter()
            .filter_map(|(m, v)| Some((m, v.as_f64()?)))
            .collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        let text: Vec<String> = top
            .iter()
            .take(3)
            .map(|(m, v)| format!("{m} {v:.2}"))
            .collect();
        annotations["drivers"] = json!(text.join("; "));
    }
    if let Some(secs) = explanation["time_to_failure"]["secs"].as_f64() {
        annotations["time_to_failure"] = json!(format!("{:.0} min", secs / 60.0));
    }
    if let Some(action) = explanation["recommended_action"]["action"].as_str() {
        annotations["recommended_action"] = json!(action);
    }
    let ends_at = match alert.cleared_at {
        Some(cleared) => cleared,
        None => now + chrono::Duration::seconds(ENDS_AFTER_INTERVALS * interval_secs as i64),
    };
    json!({
        "labels": labels,
        "annotations": annotations,
        "startsAt": alert.opened_at.to_rfc3339(),
        "endsAt": ends_at.to_rfc3339(),
    })
}

/// What one push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Alerts sent (open and resolved).
    pub alerts: usize,
    /// Alertmanagers that accepted them.
    pub accepted: usize,
    /// Alertmanagers that did not, with why.
    pub failed: Vec<String>,
}

/// Sends the current list once to every configured Alertmanager.
pub async fn run_once(
    store: &Store,
    client: &reqwest::Client,
    settings: &AlertmanagerSettings,
    counters: &Counters,
) -> Result<PushReport, crate::store::Error> {
    let now = Utc::now();
    let alerts = store
        .list_alerts(&AlertFilter {
            open_or_cleared_since: Some(
                now - chrono::Duration::seconds(settings.push_resolved_secs as i64),
            ),
            limit: MAX_ALERTS,
            ..Default::default()
        })
        .await?;
    let body: Vec<Value> = alerts
        .iter()
        .map(|a| to_alertmanager(a, now, settings.push_interval_secs))
        .collect();
    let mut report = PushReport {
        alerts: body.len(),
        ..Default::default()
    };
    if body.is_empty() {
        return Ok(report);
    }
    for url in &settings.push_urls {
        let target = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
        let outcome = match client.post(&target).json(&body).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("{target}: {}", r.status())),
            Err(e) => Err(format!("{target}: {e}")),
        };
        match outcome {
            Ok(()) => {
                report.accepted += 1;
                counters::add(&counters.alert_pushes_ok, 1);
            }
            Err(e) => {
                counters::add(&counters.alert_pushes_failed, 1);
                report.failed.push(e);
            }
        }
    }
    Ok(report)
}

/// Pushes every `push_interval_secs`; `None` when no URL is configured.
pub fn spawn(
    store: Store,
    settings: AlertmanagerSettings,
    counters: Arc<Counters>,
) -> Option<tokio::task::JoinHandle<()>> {
    if settings.push_urls.is_empty() {
        return None;
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .ok()?;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(settings.push_interval_secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match run_once(&store, &client, &settings, &counters).await {
                Ok(report) => {
                    for failure in &report.failed {
                        tracing::warn!("alert push failed: {failure}");
                    }
                }
                Err(e) => tracing::warn!("alert push: cannot read alerts: {e}"),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(probability: Option<f64>, cleared: bool) -> AlertRow {
        let opened = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        AlertRow {
            alert_id: 7,
            asset: "pump-3".into(),
            asset_class: "pump".into(),
            state: if cleared { "cleared" } else { "open" }.into(),
            opened_at: opened,
            cleared_at: cleared.then(|| opened + chrono::Duration::minutes(20)),
            probability,
            anomaly_score: Some(0.8),
            threshold: 0.5,
            model_version: "bundle/v2".into(),
            failure_kind: probability.map(|_| "bearing".to_owned()),
            explanation: json!({
                "drivers": probability.map(|_| json!([
                    {"text": "vibration mean 4.1 sd above training"},
                    {"text": "temp slope 2.0 sd above training"}
                ])),
                "time_to_failure": {"secs": 5400.0, "cap_secs": 21600},
                "recommended_action": {"action": "restart", "mode": "approve"},
                "cold_start": probability.is_none().then(|| json!({"metrics": {"a": 0.2, "b": 0.9}})),
            }),
            incident_id: None,
            feedback: None,
        }
    }

    #[test]
    fn an_open_alert_carries_labels_annotations_and_a_near_end() {
        let now = DateTime::from_timestamp(1_800_000_600, 0).unwrap();
        let out = to_alertmanager(&alert(Some(0.93), false), now, 30);
        assert_eq!(out["labels"]["alertname"], "VigilFailureRisk");
        assert_eq!(out["labels"]["asset"], "pump-3");
        assert_eq!(out["labels"]["class"], "pump");
        assert_eq!(out["labels"]["failure_kind"], "bearing");
        assert_eq!(out["labels"]["severity"], "critical");
        assert_eq!(
            out["annotations"]["drivers"],
            "vibration mean 4.1 sd above training; temp slope 2.0 sd above training"
        );
        assert_eq!(out["annotations"]["time_to_failure"], "90 min");
        assert_eq!(out["annotations"]["recommended_action"], "restart");
        assert_eq!(out["startsAt"], "2027-01-15T08:00:00+00:00");
        assert_eq!(out["endsAt"], "2027-01-15T08:12:00+00:00");
    }

    #[test]
    fn a_cleared_alert_ends_when_it_cleared_and_cold_start_alerts_name_their_metrics() {
        let now = DateTime::from_timestamp(1_800_003_600, 0).unwrap();
        let out = to_alertmanager(&alert(Some(0.75), true), now, 30);
        assert_eq!(out["labels"]["severity"], "warning");
        assert_eq!(out["endsAt"], "2027-01-15T08:20:00+00:00");
        let cold = to_alertmanager(&alert(None, false), now, 30);
        assert_eq!(cold["labels"]["alertname"], "VigilAnomaly");
        assert!(cold["labels"].get("failure_kind").is_none());
        assert_eq!(cold["annotations"]["drivers"], "b 0.90; a 0.20");
        assert_eq!(severity(&alert(Some(0.6), false)), "info");
    }
}
