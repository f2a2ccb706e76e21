//! A simulated history in the database: the fleet's assets, samples, failures as incidents
//! and the operators' records of what healed them. `vigil simulate` and `vigil demo` both
//! store their history through [`store_history`].

use chrono::{DateTime, Utc};
use indicatif::ProgressBar;

use crate::config::Settings;
use crate::ingest::{self, Limits, NamedBatch};
use crate::sim::fleet::{Fleet, METRICS, Scenario};
use crate::store::Store;
use crate::store::actions::NewOutcome;
use crate::store::assets::NewAsset;
use crate::store::incidents::{ExternalEvent, NewIncident};

/// Stores the fleet's assets (with classes), samples (one transaction per simulated day),
/// failures (as incidents from source `simulator`, idempotent) and, for `operator_share` of
/// the failures, the operator's record of what healed it (incident outcomes, idempotent) in
/// the database. Returns how many outcomes were recorded.
pub async fn store_history(
    store: &Store,
    settings: &Settings,
    fleet: &Fleet,
    operator_share: f64,
    show_progress: bool,
) -> anyhow::Result<usize> {
    for (a, name) in fleet.assets.iter().enumerate() {
        store
            .upsert_asset(&NewAsset {
                name: name.clone(),
                class: fleet.class(a).to_owned(),
                labels: serde_json::json!({ "simulated": true }),
            })
            .await?;
    }
    let total = (fleet.times().count() * fleet.assets.len() * METRICS.len()) as u64;
    let progress = if show_progress {
        crate::progress::counter(total, "storing history")
    } else {
        ProgressBar::hidden()
    };
    let limits = Limits::new(&settings.ingest, Utc::now()).unbounded_batch();
    let none = |_| None;
    let times: Vec<i64> = fleet.times().collect();
    for day in times.chunks(1440) {
        let mut batch = NamedBatch::new(limits);
        batch.reserve(day.len() * fleet.assets.len() * METRICS.len());
        for (a, asset) in fleet.assets.iter().enumerate() {
            let ai = batch.asset(asset, String::new)?;
            for (m, metric) in METRICS.iter().enumerate() {
                let mi = batch.metric(metric, String::new)?;
                for &ts in day {
                    batch.push(
                        ai,
                        mi,
                        ts * 1_000_000,
                        fleet.value(a, m, ts, &none),
                        String::new,
                    )?;
                }
            }
        }
        let n = batch.len() as u64;
        ingest::store_batch(store, batch, &mut |_| {}).await?;
        progress.inc(n);
    }
    progress.finish_and_clear();
    let asset_ids = store.resolve_asset_ids(&fleet.assets).await?;
    let events: Vec<ExternalEvent> = fleet
        .failures()
        .into_iter()
        .map(|f| {
            let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap_or_default();
            let incident = NewIncident {
                asset_id: asset_ids[&f.asset],
                kind: f.kind.clone(),
                severity: "major".to_owned(),
                started_at: at(f.started),
                detected_at: None,
                resolved_at: None,
                root_cause: None,
                source: "simulator".to_owned(),
                fingerprint: Some(format!("sim-{}-{}", f.asset, f.started)),
                labels: serde_json::json!({}),
            };
            ExternalEvent::Resolved(incident, at(f.resolved.unwrap_or(f.started)))
        })
        .collect();
    store.record_external(&events).await?;
    let incidents = store.incident_ids_by_fingerprint("simulator").await?;
    let mut recorded = 0;
    for (i, s) in fleet.scenarios.iter().enumerate() {
        let Some(tried) = fleet.operator_record(i, operator_share) else {
            continue;
        };
        let asset = &fleet.assets[s.asset];
        let Some(&incident_id) = incidents.get(&format!("sim-{asset}-{}", s.fail_at)) else {
            continue;
        };
        store
            .record_outcome(&NewOutcome {
                incident_id,
                root_cause: Some(s.fault.kind().to_owned()),
                healed_by: tried.last().map(|a| (*a).to_owned()),
                actions_tried: tried.into_iter().map(str::to_owned).collect(),
                time_to_recover_secs: Some(Scenario::DOWN_SECS as f64),
                client_key: format!("sim-outcome-{asset}-{}", s.fail_at),
                author: "simulated operator".to_owned(),
                horizon_secs: settings.training.horizon_secs,
            })
            .await?;
        recorded += 1;
    }
    Ok(recorded)
}
