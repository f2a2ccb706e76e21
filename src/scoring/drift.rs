//! Counting live windows for drift: every window a trained model scores adds its bins
//! ([`crate::model::drift::Reference::bins`]) to this replica's counts, which a task adds to
//! the database every `drift.flush_secs`; the drift check ([`crate::jobs::drift`]) sums what
//! every replica added.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::model::drift::{Reference, count};
use crate::store::Store;

/// Windows counted and their counts per bin.
type Counted = (u64, Vec<Vec<u64>>);

/// This replica's counts since the last flush, per (model id, asset class).
#[derive(Debug, Default)]
pub struct DriftCounts {
    counts: Mutex<HashMap<(i64, String), Counted>>,
}

impl DriftCounts {
    /// Counts one window of `model_id`'s bundle for `class` (`""`: fleet-wide).
    pub fn add(&self, model_id: i64, class: &str, reference: &Reference, bins: &[u16]) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let (windows, per_bin) = counts
            .entry((model_id, class.to_owned()))
            .or_insert_with(|| (0, reference.empty_counts()));
        *windows += 1;
        count(per_bin, bins);
    }

    /// Takes every count, leaving none.
    fn take(&self) -> HashMap<(i64, String), Counted> {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Adds the counts to the database every `every`, until aborted (what a failed write held is
/// dropped: drift is measured over hours, a lost half minute does not move it).
pub fn spawn_flush(
    store: Store,
    counts: std::sync::Arc<DriftCounts>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
        tick.tick().await;
        loop {
            tick.tick().await;
            for ((model_id, class), (windows, per_bin)) in counts.take() {
                let value = serde_json::to_value(&per_bin).unwrap_or_default();
                if let Err(e) = store
                    .add_drift_counts(model_id, &class, windows, &value)
                    .await
                {
                    tracing::warn!(model_id, "drift counts not stored: {e}");
                }
            }
        }
    })
}
