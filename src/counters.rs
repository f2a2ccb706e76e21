//! What Vigil did, counted for `GET /metrics` in the Prometheus text format: samples
//! received, stored and skipped, scores answered (by a trained model or the cold-start
//! detector), stored, left out by the storage policy or dropped, and alerts opened and
//! cleared. One set per app, so that several apps in one process (the tests) keep separate
//! counts; no IO.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// The counters; each only goes up.
#[derive(Debug, Default)]
pub struct Counters {
    /// Samples in ingest requests that were stored (POST /v1/samples, remote-write).
    pub samples_received: AtomicU64,
    /// Of those, the ones that were new (the rest were stored before).
    pub samples_stored: AtomicU64,
    /// Remote-write samples skipped as non-finite (staleness markers).
    pub samples_skipped_non_finite: AtomicU64,
    /// Remote-write samples skipped for want of the asset label.
    pub samples_skipped_unnamed: AtomicU64,
    /// Remote-write samples skipped: their series could not be keyed (label limits, NUL).
    pub samples_skipped_invalid_series: AtomicU64,
    /// Remote-write exemplars (not stored).
    pub exemplars_skipped: AtomicU64,
    /// Remote-write native histogram samples (not stored).
    pub histograms_skipped: AtomicU64,
    /// Remote-write metadata entries of an unknown type.
    pub metadata_skipped: AtomicU64,
    /// Windows scored by a trained model.
    pub scores_trained: AtomicU64,
    /// Windows scored by the cold-start detector.
    pub scores_cold_start: AtomicU64,
    /// Scores written to the database.
    pub scores_stored: AtomicU64,
    /// Scores the storage policy left out (one per asset, grid step and alert state).
    pub scores_not_kept: AtomicU64,
    /// Scores that could not be stored (database refused them, or down past the retries).
    pub scores_dropped: AtomicU64,
    /// Alerts opened.
    pub alerts_opened: AtomicU64,
    /// Alerts cleared.
    pub alerts_cleared: AtomicU64,
    /// Windows scoring on ingest passed over because the asset was still being scored (a
    /// later batch scores it again).
    pub on_ingest_skipped: AtomicU64,
    /// Events of stored batches waiting for the ingest scorer (a gauge).
    pub on_ingest_queue: AtomicU64,
    /// Pushes of the alert list to an Alertmanager that it accepted.
    pub alert_pushes_ok: AtomicU64,
    /// Pushes that failed (unreachable, or not a 2xx).
    pub alert_pushes_failed: AtomicU64,
}

/// Adds `n` to `counter`.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// Writes every counter family.
    pub fn render_into(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        family(
            out,
            "vigil_samples_received_total",
            "Samples in ingest requests that were stored (new or repeated).",
            &[("", get(&self.samples_received))],
        );
        family(
            out,
            "vigil_samples_stored_total",
            "Samples stored that were new.",
            &[("", get(&self.samples_stored))],
        );
        family(
            out,
            "vigil_samples_skipped_total",
            "Remote-write samples skipped, by reason.",
            &[
                (
                    "reason=\"non_finite\"",
                    get(&self.samples_skipped_non_finite),
                ),
                (
                    "reason=\"no_asset_label\"",
                    get(&self.samples_skipped_unnamed),
                ),
                (
                    "reason=\"invalid_series\"",
                    get(&self.samples_skipped_invalid_series),
                ),
            ],
        );
        family(
            out,
            "vigil_remote_write_skipped_total",
            "Remote-write parts that are not samples and were not stored, by kind.",
            &[
                ("kind=\"exemplar\"", get(&self.exemplars_skipped)),
                ("kind=\"histogram\"", get(&self.histograms_skipped)),
                ("kind=\"metadata\"", get(&self.metadata_skipped)),
            ],
        );
        family(
            out,
            "vigil_scores_total",
            "Windows scored, by what answered.",
            &[
                ("model=\"trained\"", get(&self.scores_trained)),
                ("model=\"cold_start\"", get(&self.scores_cold_start)),
            ],
        );
        family(
            out,
            "vigil_scores_written_total",
            "Scores by what the writer did with them.",
            &[
                ("outcome=\"stored\"", get(&self.scores_stored)),
                ("outcome=\"not_kept\"", get(&self.scores_not_kept)),
                ("outcome=\"dropped\"", get(&self.scores_dropped)),
            ],
        );
        family(
            out,
            "vigil_alerts_total",
            "Alerts, by transition.",
            &[
                ("transition=\"opened\"", get(&self.alerts_opened)),
                ("transition=\"cleared\"", get(&self.alerts_cleared)),
            ],
        );
        family(
            out,
            "vigil_scoring_on_ingest_skipped_total",
            "Assets scoring on ingest passed over while their previous scoring ran.",
            &[("", get(&self.on_ingest_skipped))],
        );
        let _ = writeln!(
            out,
            "# HELP vigil_scoring_on_ingest_queue Stored batches waiting for scoring on ingest.\n\
             # TYPE vigil_scoring_on_ingest_queue gauge\nvigil_scoring_on_ingest_queue {}",
            get(&self.on_ingest_queue)
        );
        family(
            out,
            "vigil_alertmanager_pushes_total",
            "Pushes of Vigil's alerts to Alertmanager's API, by outcome.",
            &[
                ("outcome=\"ok\"", get(&self.alert_pushes_ok)),
                ("outcome=\"failed\"", get(&self.alert_pushes_failed)),
            ],
        );
    }
}

/// One counter family: HELP, TYPE and a line per label set (`""`: none).
fn family(out: &mut String, name: &str, help: &str, series: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    for (labels, value) in series {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_as_prometheus_counters() {
        let counters = Counters::default();
        add(&counters.samples_received, 3);
        add(&counters.scores_cold_start, 2);
        let mut out = String::new();
        counters.render_into(&mut out);
        assert!(out.contains("# TYPE vigil_samples_received_total counter\n"));
        assert!(out.contains("\nvigil_samples_received_total 3\n"));
        assert!(out.contains("vigil_scores_total{model=\"cold_start\"} 2\n"));
        assert!(out.contains("vigil_scores_total{model=\"trained\"} 0\n"));
    }
}
