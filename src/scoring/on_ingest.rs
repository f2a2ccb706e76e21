//! Scoring on ingest: the watcher of [`Ingested`] events. Each asset's latest stored window
//! is scored whenever its newest sample reaches a grid point not scored yet, so a burst of
//! batches within one step scores once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::{Scoring, ScoringError};
use crate::ingest::{INGESTED_QUEUE, Ingested};

/// What the ingest scorer has scored and is scoring.
#[derive(Debug, Default)]
struct Progress {
    /// Per asset, the last grid point scored.
    scored_until: HashMap<String, i64>,
    /// Assets being scored now.
    in_flight: HashSet<String>,
}

/// Receives the events of stored batches and scores their assets. Assets are scored
/// concurrently (up to half the pool's connections), one scoring per asset at a time; an
/// asset still being scored when its next batch arrives is scored again with a later one.
/// Runs until every sender of `events` is gone, then finishes the scorings under way.
pub fn spawn_ingest_scorer(
    scoring: Scoring,
    mut events: tokio::sync::mpsc::Receiver<Ingested>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let progress: Arc<Mutex<Progress>> = Arc::default();
        let limit = (scoring.settings.database.max_connections as usize / 2).max(1);
        let permits = Arc::new(tokio::sync::Semaphore::new(limit));
        let mut running = tokio::task::JoinSet::new();
        let mut received = Vec::new();
        // Take everything queued at once: when scoring lags, each asset jumps to its newest
        // window instead of working through stale ones.
        while events.recv_many(&mut received, INGESTED_QUEUE).await > 0 {
            scoring.counters.on_ingest_queue.set(events.len() as f64);
            let mut assets: BTreeMap<String, i64> = BTreeMap::new();
            for (name, ts) in received.drain(..).flat_map(|e| e.assets) {
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
                    crate::counters::add(&scoring.counters.on_ingest_skipped, 1);
                    continue;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let (scoring, progress) = (scoring.clone(), progress.clone());
                running.spawn(async move {
                    if let Err(e) = score_if_new(&scoring, &progress, &name, latest).await {
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
    })
}

async fn score_if_new(
    scoring: &Scoring,
    progress: &Mutex<Progress>,
    name: &str,
    latest_micros: i64,
) -> Result<(), ScoringError> {
    let step = match scoring.model.current() {
        Some(m) => m.bundle.schema.step_secs,
        None => scoring.settings.training.step_secs,
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
    scoring
        .score_stored_at(name.to_owned(), latest)
        .await
        .map(|_| ())
}
