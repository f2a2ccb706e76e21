//! The score writer: scores are derived data, queued off the request path and stored in
//! batches by one task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::counters::{self, Counters};
use crate::store::Store;
use crate::store::scores::NewScore;

/// Capacity of the queue of scores waiting to be written.
const SCORE_QUEUE: usize = 10_000;

/// Sends scores to the background writer.
pub type ScoreSender = tokio::sync::mpsc::Sender<NewScore>;

/// Writes queued scores in batches (up to 500, or what arrived within 100 ms) until every
/// sender is gone. A batch is sent again while the database is unavailable (a restart), for
/// about 15 seconds, then logged and dropped. A batch the database refuses is sent again one
/// score at a time, so that only the refused ones are dropped; none is retried forever.
///
/// With `step_secs`, a score is stored only when its window ends in another grid step than
/// the last stored score of its asset with the same alert state: scoring one asset again and
/// again within a step stores one calm and one alerting row at most, so the table grows with
/// the fleet and time, not with the request rate. (An opened alert keeps its own copy of the
/// score and explanation in `alert`.)
pub fn spawn_score_writer(
    store: Store,
    step_secs: Option<i64>,
    counters: Arc<Counters>,
) -> (ScoreSender, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(SCORE_QUEUE);
    let task = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(500);
        let mut last = LastSteps::default();
        while rx.recv_many(&mut batch, 500).await > 0 {
            let deadline = tokio::time::sleep(Duration::from_millis(100));
            tokio::pin!(deadline);
            while batch.len() < 500 {
                tokio::select! {
                    () = &mut deadline => break,
                    n = rx.recv_many(&mut batch, 500) => if n == 0 { break },
                }
            }
            if let Some(step) = step_secs {
                let before = batch.len();
                batch.retain(|score| last.keep(score, step));
                counters::add(&counters.scores_not_kept, (before - batch.len()) as u64);
                if batch.is_empty() {
                    continue;
                }
            }
            let what = format!("store {} scores", batch.len());
            // Six retries wait 0.25 + 0.5 + 1 + 2 + 4 + 8 s.
            match crate::store::retry_unavailable(&what, 6, || store.insert_scores(&batch)).await {
                Ok(_) => counters::add(&counters.scores_stored, batch.len() as u64),
                Err(e @ crate::store::Error::Unavailable(_)) => {
                    tracing::warn!(scores = batch.len(), "cannot store scores: {e}");
                    counters::add(&counters.scores_dropped, batch.len() as u64);
                }
                // The database refused the batch: one bad row must not cost the others, so
                // each is sent alone and only a refused one is dropped.
                Err(e) => {
                    tracing::warn!(
                        scores = batch.len(),
                        "score batch refused ({e}); storing one by one"
                    );
                    for score in &batch {
                        match store.insert_scores(std::slice::from_ref(score)).await {
                            Ok(_) => counters::add(&counters.scores_stored, 1),
                            Err(e) => {
                                tracing::warn!(asset = %score.asset, "cannot store a score: {e}");
                                counters::add(&counters.scores_dropped, 1);
                            }
                        }
                    }
                }
            }
            batch.clear();
        }
    });
    (tx, task)
}

/// Per asset, the grid step of the last stored calm and alerting score (indexed by
/// `is_alert`). Looked up by name without allocating; a name is copied only when an asset
/// is first seen.
#[derive(Debug, Default)]
struct LastSteps(HashMap<String, [Option<i64>; 2]>);

impl LastSteps {
    /// Whether `score` is stored: only in another step than the last stored score of its
    /// asset with the same alert state (which it then becomes).
    fn keep(&mut self, score: &NewScore, step_secs: i64) -> bool {
        let point = score.window_end.timestamp().div_euclid(step_secs.max(1));
        let last = match self.0.get_mut(score.asset.as_str()) {
            Some(steps) => &mut steps[usize::from(score.is_alert)],
            None => {
                let steps = self.0.entry(score.asset.clone()).or_default();
                &mut steps[usize::from(score.is_alert)]
            }
        };
        if *last == Some(point) {
            return false;
        }
        *last = Some(point);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(asset: &str, secs: i64, is_alert: bool) -> NewScore {
        NewScore {
            asset: asset.to_owned(),
            model_id: None,
            model_version: "test".to_owned(),
            window_end: chrono::DateTime::from_timestamp(secs, 0).unwrap(),
            probability: Some(0.1),
            anomaly_score: 0.1,
            threshold: 0.5,
            is_alert,
            failure_kind: None,
            kind_confidence: None,
            explanation: serde_json::json!({}),
        }
    }

    #[test]
    fn one_score_is_kept_per_asset_step_and_alert_state() {
        let mut steps = LastSteps::default();
        let kept: Vec<bool> = [
            score("a", 600, false),
            score("a", 630, false),
            score("b", 630, false),
            score("a", 640, true),
            score("a", 650, true),
            score("a", 660, false),
            score("a", 600, false),
        ]
        .iter()
        .map(|s| steps.keep(s, 60))
        .collect();
        // The last one is in an earlier step than the one before it: a backfill, stored.
        assert_eq!(kept, [true, false, true, true, false, true, true]);
    }
}
