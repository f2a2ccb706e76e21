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

/// This replica's counts since the last flush, per model id and asset class.
#[derive(Debug, Default)]
pub struct DriftCounts {
    counts: Mutex<HashMap<i64, HashMap<String, Counted>>>,
}

impl DriftCounts {
    /// Counts one window of `model_id`'s bundle for `class` (`""`: fleet-wide); allocates
    /// only for the first window of a model and class since the last flush.
    pub fn add(&self, model_id: i64, class: &str, reference: &Reference, bins: &[u16]) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let classes = counts.entry(model_id).or_default();
        if !classes.contains_key(class) {
            classes.insert(class.to_owned(), (0, reference.empty_counts()));
        }
        if let Some((windows, per_bin)) = classes.get_mut(class) {
            *windows += 1;
            count(per_bin, bins);
        }
    }

    /// Takes every count, leaving none.
    fn take(&self) -> HashMap<i64, HashMap<String, Counted>> {
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
            let taken = counts.take().into_iter().flat_map(|(model_id, classes)| {
                classes
                    .into_iter()
                    .map(move |(class, c)| (model_id, class, c))
            });
            for (model_id, class, (windows, per_bin)) in taken {
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
