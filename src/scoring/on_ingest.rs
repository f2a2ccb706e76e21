//! Scoring on ingest: the watcher of [`Ingested`] events. Every grid point an asset's newest
//! sample passes is scored once, in order, from the stored samples: a batch that spans five
//! grid points scores five windows, a burst of batches within one step scores one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::{Scoring, ScoringError};
use crate::ingest::{INGESTED_QUEUE, Ingested};

/// Most grid points one scoring catches up on: when an asset's newest sample is further
/// ahead of the last point scored (a batch spanning more than this, a backfill, a scorer
/// that fell behind), the latest this many are scored and the others counted as skipped.
pub const CATCH_UP_POINTS: i64 = 60;

/// What the ingest scorer has scored and is scoring.
#[derive(Debug, Default)]
struct Progress {
    /// Per asset, the last grid point scored.
    scored_until: HashMap<String, i64>,
    /// Assets being scored now.
    in_flight: HashSet<String>,
    /// Per asset being scored, the newest sample time (microseconds) announced meanwhile:
    /// its scoring goes on to it before it ends.
    pending: HashMap<String, i64>,
}

impl Progress {
    fn lock(progress: &Mutex<Progress>) -> std::sync::MutexGuard<'_, Progress> {
        progress.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Receives the events of stored batches and scores their assets. Assets are scored
/// concurrently (up to half the pool's connections), one scoring per asset at a time; what
/// arrives for an asset while it is scored is scored by that same scoring before it ends.
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
                {
                    let mut p = Progress::lock(&progress);
                    if p.in_flight.contains(&name) {
                        let next = p.pending.entry(name).or_insert(latest);
                        *next = (*next).max(latest);
                        continue;
                    }
                    p.in_flight.insert(name.clone());
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let (scoring, progress) = (scoring.clone(), progress.clone());
                running.spawn(async move {
                    let mut latest = latest;
                    loop {
                        score_new_points(&scoring, &progress, &name, latest).await;
                        let mut p = Progress::lock(&progress);
                        match p.pending.remove(&name) {
                            Some(next) => latest = next,
                            None => {
                                p.in_flight.remove(&name);
                                break;
                            }
                        }
                    }
                    drop(permit);
                });
            }
            while running.try_join_next().is_some() {}
        }
        while running.join_next().await.is_some() {}
    })
}

/// Scores each grid point after the last one scored for `name`, up to the one at or before
/// `latest_micros` (the last [`CATCH_UP_POINTS`] of them; the others are counted as skipped).
/// An asset seen for the first time is scored at its newest point only.
async fn score_new_points(
    scoring: &Scoring,
    progress: &Mutex<Progress>,
    name: &str,
    latest_micros: i64,
) {
    let step = match scoring.model.current() {
        Some(m) => m.bundle.schema.step_secs,
        None => scoring.settings.training.step_secs,
    }
    .max(1);
    let end = latest_micros.div_euclid(1_000_000).div_euclid(step) * step;
    let from = {
        let mut p = Progress::lock(progress);
        let from = match p.scored_until.get(name) {
            Some(&done) if done >= end => return,
            Some(&done) => done + step,
            None => end,
        };
        p.scored_until.insert(name.to_owned(), end);
        from
    };
    let first = from.max(end - (CATCH_UP_POINTS - 1) * step);
    let skipped = (first - from) / step;
    if skipped > 0 {
        crate::counters::add(&scoring.counters.on_ingest_skipped, skipped as u64);
    }
    // The points before the newest read the samples up to each point; the newest reads
    // up to the newest sample, as `GET /v1/assets/{name}/score` would.
    let points = (first..end).step_by(step as usize).map(|t| t * 1_000_000);
    for at in points.chain([latest_micros]) {
        if let Err(e) = score_at(scoring, name, at).await {
            tracing::debug!("scoring on ingest: {name} at {at}: {e}");
        }
    }
}

async fn score_at(scoring: &Scoring, name: &str, at_micros: i64) -> Result<(), ScoringError> {
    let at = chrono::DateTime::from_timestamp_micros(at_micros);
    scoring
        .score_stored_at(name.to_owned(), at)
        .await
        .map(|_| ())
}
