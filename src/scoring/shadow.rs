//! Scoring in shadow: the challenger in shadow (see [`super::slot::ModelSlot::shadow`])
//! scores each recorded window beside the champion; its scores are stored with its id and
//! the champion's probability (table `shadow_score`), never alert and never act.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::store::Store;
use crate::store::shadow::ShadowScore;

/// Most rows in one insert.
const MAX_BATCH: usize = 1024;

/// Queues shadow scores to their writer; a full queue drops the row (evidence, not state).
#[derive(Debug, Clone)]
pub struct ShadowSender(mpsc::Sender<ShadowScore>);

impl ShadowSender {
    fn send(&self, row: ShadowScore) {
        let _ = self.0.try_send(row);
    }
}

/// Starts the writer; it ends when every sender is dropped.
pub fn spawn_writer(store: Store) -> (ShadowSender, tokio::task::JoinHandle<()>) {
    let (sender, mut receiver) = mpsc::channel(8 * MAX_BATCH);
    let task = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
            if let Err(e) = store.insert_shadow_scores(&batch).await {
                tracing::warn!(rows = batch.len(), "shadow scores not stored: {e}");
            }
            batch.clear();
        }
    });
    (ShadowSender(sender), task)
}

impl super::Scoring {
    /// Scores `window` with the challenger in shadow, if any, beside the answer the
    /// champion gave, and queues the row.
    pub(super) fn score_in_shadow(
        &self,
        answer: &super::ScoreAnswer,
        class: Option<&str>,
        window: &BTreeMap<String, Vec<f64>>,
        past: Option<&BTreeMap<String, crate::features::Context>>,
        window_end: DateTime<Utc>,
    ) {
        let (Some(writer), Some(shadow)) = (&self.shadow_scores, self.model().shadow()) else {
            return;
        };
        let Ok(score) = shadow.bundle.score(&answer.asset, class, window, past, 0) else {
            return;
        };
        let champion_id = match answer.model {
            super::ModelRef::Trained { model_id, .. } => Some(model_id),
            super::ModelRef::ColdStart => None,
        };
        writer.send(ShadowScore {
            model_id: shadow.model_id,
            champion_id,
            asset: answer.asset.clone(),
            window_end,
            probability: score.probability,
            champion_probability: answer.score.as_ref().map(|s| s.probability),
            threshold: answer.threshold,
        });
    }
}
