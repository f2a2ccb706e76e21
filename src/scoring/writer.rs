//! The score writer: scores are derived data, queued off the request path and stored in
//! batches by one task.

use std::time::Duration;

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
            match crate::store::retry_unavailable(&what, 6, || store.insert_scores(&batch)).await {
                Ok(_) => {}
                Err(e @ crate::store::Error::Unavailable(_)) => {
                    tracing::warn!(scores = batch.len(), "cannot store scores: {e}");
                }
                // The database refused the batch: one bad row must not cost the others, so
                // each is sent alone and only a refused one is dropped.
                Err(e) => {
                    tracing::warn!(
                        scores = batch.len(),
                        "score batch refused ({e}); storing one by one"
                    );
                    for score in &batch {
                        if let Err(e) = store.insert_scores(std::slice::from_ref(score)).await {
                            tracing::warn!(asset = %score.asset, "cannot store a score: {e}");
                        }
                    }
                }
            }
            batch.clear();
        }
    });
    (tx, task)
}
