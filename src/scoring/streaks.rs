//! The shared alert hysteresis, batched: every scored window is counted in PostgreSQL
//! ([`Store::alert_windows`]) before its answer goes out, so that replicas alert exactly as
//! one process would; the windows scored while one batch is in the database go together in
//! the next, so a busy replica makes one round trip for many requests instead of one each.

use tokio::sync::{mpsc, oneshot};

use crate::store::scores::Transition;
use crate::store::{self, Store};

/// Most windows in one statement.
const MAX_BATCH: usize = 1024;

/// One window waiting for its decision.
struct Pending {
    window: (String, bool, bool, u32),
    reply: oneshot::Sender<Result<Transition, store::Error>>,
}

/// Hands windows to the batching task.
#[derive(Debug, Clone)]
pub struct Streaks {
    sender: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("window", &self.window)
            .finish()
    }
}

impl Streaks {
    /// Counts one window of `asset` (see [`Store::alert_windows`]) and says what it does to
    /// the asset's alert, once the database has decided.
    pub async fn observe(
        &self,
        asset: &str,
        above: bool,
        calm: bool,
        fire_windows: u32,
    ) -> Result<Transition, store::Error> {
        let (reply, decided) = oneshot::channel();
        let pending = Pending {
            window: (asset.to_owned(), above, calm, fire_windows),
            reply,
        };
        if self.sender.send(pending).await.is_err() {
            return Err(stopped());
        }
        decided.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// The error of a window whose batch never ran (the task stopped).
fn stopped() -> store::Error {
    store::Error::unavailable("the alert hysteresis task stopped")
}

/// Starts the batching task; it ends when every [`Streaks`] is dropped.
pub fn spawn(store: Store) -> (Streaks, tokio::task::JoinHandle<()>) {
    let (sender, mut receiver) = mpsc::channel::<Pending>(4 * MAX_BATCH);
    let task = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let (windows, replies): (Vec<_>, Vec<_>) =
                batch.drain(..).map(|p| (p.window, p.reply)).unzip();
            match store.alert_windows(&windows).await {
                Ok(decisions) => {
                    for (reply, decision) in replies.into_iter().zip(decisions) {
                        let _ = reply.send(Ok(decision));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.repeat()));
                    }
                }
            }
        }
    });
    (Streaks { sender }, task)
}
