//! What Vigil did, counted for `GET /metrics` in the Prometheus text format: HTTP requests
//! and their latency, samples received, stored and skipped, scores answered (by a trained
//! model or the cold-start detector), stored, left out by the storage policy or dropped,
//! alerts opened and cleared, alert pushes, scoring on ingest's queue. Recorded with the
//! `metrics` crate into a `metrics-exporter-prometheus` recorder that belongs to one app
//! (never the global one), so that several apps in one process (the tests) keep separate
//! counts; its handles are atomics, registered once. No IO.

use std::collections::HashMap;
use std::sync::RwLock;

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, SharedString,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

/// Where Vigil's metrics come from, for the recorder.
static METADATA: Metadata<'static> = Metadata::new("vigil", Level::INFO, Some("vigil"));

/// The HTTP latency histogram's name.
const HTTP_DURATION: &str = "vigil_http_request_duration_seconds";

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS_SECS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A request's route, method and status.
type RequestKey = (String, String, u16);

/// The counters (each only goes up) and the one gauge, with the recorder they live in.
pub struct Counters {
    recorder: PrometheusRecorder,
    /// The request counter and latency histogram of each (route, method, status) seen, so
    /// that a request costs a map lookup, not a registration.
    requests: RwLock<HashMap<RequestKey, (Counter, Histogram)>>,
    /// Samples in ingest requests that were stored (POST /v1/samples, remote-write).
    pub samples_received: Counter,
    /// Of those, the ones that were new (the rest were stored before).
    pub samples_stored: Counter,
    /// Remote-write samples skipped as non-finite (staleness markers).
    pub samples_skipped_non_finite: Counter,
    /// Remote-write samples skipped for want of the asset label.
    pub samples_skipped_unnamed: Counter,
    /// Remote-write samples skipped: their series could not be keyed (label limits, NUL).
    pub samples_skipped_invalid_series: Counter,
    /// Remote-write exemplars (not stored).
    pub exemplars_skipped: Counter,
    /// Remote-write native histogram samples (not stored).
    pub histograms_skipped: Counter,
    /// Remote-write metadata entries of an unknown type.
    pub metadata_skipped: Counter,
    /// Windows scored by a trained model.
    pub scores_trained: Counter,
    /// Windows scored by the cold-start detector.
    pub scores_cold_start: Counter,
    /// Scores written to the database.
    pub scores_stored: Counter,
    /// Scores the storage policy left out (one per asset, grid step and alert state).
    pub scores_not_kept: Counter,
    /// Scores that could not be stored (database refused them, or down past the retries).
    pub scores_dropped: Counter,
    /// Alerts opened.
    pub alerts_opened: Counter,
    /// Alerts cleared.
    pub alerts_cleared: Counter,
    /// Grid points scoring on ingest left unscored: more than
    /// `scoring::on_ingest::CATCH_UP_POINTS` behind an asset's newest sample.
    pub on_ingest_skipped: Counter,
    /// Events of stored batches waiting for the ingest scorer.
    pub on_ingest_queue: Gauge,
    /// Pushes of the alert list to an Alertmanager that it accepted.
    pub alert_pushes_ok: Counter,
    /// Pushes that failed (unreachable, or not a 2xx).
    pub alert_pushes_failed: Counter,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters").finish_non_exhaustive()
    }
}

/// Adds `n` to `counter`.
pub fn add(counter: &Counter, n: u64) {
    counter.increment(n);
}

impl Default for Counters {
    fn default() -> Self {
        Self::new()
    }
}

impl Counters {
    /// A fresh recorder with every counter registered at 0.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), &BUCKETS_SECS)
            .expect("the latency buckets are not empty")
            .build_recorder();
        let describe = |name: &'static str, help: &'static str| {
            recorder.describe_counter(
                KeyName::from_const_str(name),
                None,
                SharedString::const_str(help),
            );
        };
        describe(
            "vigil_http_requests_total",
            "HTTP requests answered, by route, method and status.",
        );
        recorder.describe_histogram(
            KeyName::from_const_str(HTTP_DURATION),
            None,
            SharedString::const_str(
                "HTTP request latency in seconds, by route, method and status.",
            ),
        );
        describe(
            "vigil_samples_received_total",
            "Samples in ingest requests that were stored (new or repeated).",
        );
        describe(
            "vigil_samples_stored_total",
            "Samples stored that were new.",
        );
        describe(
            "vigil_samples_skipped_total",
            "Remote-write samples skipped, by reason.",
        );
        describe(
            "vigil_remote_write_skipped_total",
            "Remote-write parts that are not samples and were not stored, by kind.",
        );
        describe("vigil_scores_total", "Windows scored, by what answered.");
        describe(
            "vigil_scores_written_total",
            "Scores by what the writer did with them.",
        );
        describe("vigil_alerts_total", "Alerts, by transition.");
        describe(
            "vigil_scoring_on_ingest_skipped_total",
            "Grid points scoring on ingest left unscored (too far behind the newest sample).",
        );
        recorder.describe_gauge(
            KeyName::from_const_str("vigil_scoring_on_ingest_queue"),
            None,
            SharedString::const_str("Stored batches waiting for scoring on ingest."),
        );
        describe(
            "vigil_alertmanager_pushes_total",
            "Pushes of Vigil's alerts to Alertmanager's API, by outcome.",
        );
        let counter = |name: &'static str, label: Option<(&'static str, &'static str)>| {
            let labels: Vec<Label> = label.map(|(k, v)| Label::new(k, v)).into_iter().collect();
            let counter = recorder.register_counter(&Key::from_parts(name, labels), &METADATA);
            counter.increment(0);
            counter
        };
        let skipped = |reason| counter("vigil_samples_skipped_total", Some(("reason", reason)));
        let part = |kind| counter("vigil_remote_write_skipped_total", Some(("kind", kind)));
        let written = |outcome| counter("vigil_scores_written_total", Some(("outcome", outcome)));
        let pushes = |outcome| {
            counter(
                "vigil_alertmanager_pushes_total",
                Some(("outcome", outcome)),
            )
        };
        let counters = Self {
            samples_received: counter("vigil_samples_received_total", None),
            samples_stored: counter("vigil_samples_stored_total", None),
            samples_skipped_non_finite: skipped("non_finite"),
            samples_skipped_unnamed: skipped("no_asset_label"),
            samples_skipped_invalid_series: skipped("invalid_series"),
            exemplars_skipped: part("exemplar"),
            histograms_skipped: part("histogram"),
            metadata_skipped: part("metadata"),
            scores_trained: counter("vigil_scores_total", Some(("model", "trained"))),
            scores_cold_start: counter("vigil_scores_total", Some(("model", "cold_start"))),
            scores_stored: written("stored"),
            scores_not_kept: written("not_kept"),
            scores_dropped: written("dropped"),
            alerts_opened: counter("vigil_alerts_total", Some(("transition", "opened"))),
            alerts_cleared: counter("vigil_alerts_total", Some(("transition", "cleared"))),
            on_ingest_skipped: counter("vigil_scoring_on_ingest_skipped_total", None),
            on_ingest_queue: recorder.register_gauge(
                &Key::from_static_name("vigil_scoring_on_ingest_queue"),
                &METADATA,
            ),
            alert_pushes_ok: pushes("ok"),
            alert_pushes_failed: pushes("failed"),
            recorder,
            requests: RwLock::default(),
        };
        counters.on_ingest_queue.set(0.0);
        counters
    }

    /// Records one answered HTTP request.
    pub fn record_request(&self, route: &str, method: &str, status: u16, secs: f64) {
        let key = (route.to_owned(), method.to_owned(), status);
        if let Some((requests, latency)) = self
            .requests
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            requests.increment(1);
            latency.record(secs);
            return;
        }
        let labels = vec![
            Label::new("route", key.0.clone()),
            Label::new("method", key.1.clone()),
            Label::new("status", status.to_string()),
        ];
        let requests = self.recorder.register_counter(
            &Key::from_parts("vigil_http_requests_total", labels.clone()),
            &METADATA,
        );
        let latency = self
            .recorder
            .register_histogram(&Key::from_parts(HTTP_DURATION, labels), &METADATA);
        requests.increment(1);
        latency.record(secs);
        self.requests
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (requests, latency));
    }

    /// Folds the latency samples recorded since the last call into the histogram's buckets:
    /// the jobs of `serve` call it every 5 s, so that memory stays bounded when nobody
    /// scrapes.
    pub fn run_upkeep(&self) {
        self.recorder.handle().run_upkeep();
    }

    /// Writes every family in the Prometheus text format.
    pub fn render_into(&self, out: &mut String) {
        out.push_str(&self.recorder.handle().render());
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
        counters.on_ingest_queue.set(4.0);
        let mut out = String::new();
        counters.render_into(&mut out);
        assert!(out.contains("# TYPE vigil_samples_received_total counter\n"));
        assert!(out.contains("\nvigil_samples_received_total 3\n"));
        assert!(out.contains("vigil_scores_total{model=\"cold_start\"} 2\n"));
        assert!(out.contains("vigil_scores_total{model=\"trained\"} 0\n"));
        assert!(out.contains("\nvigil_scoring_on_ingest_queue 4\n"), "{out}");
        // Another app's counters are its own.
        let other = Counters::default();
        let mut theirs = String::new();
        other.render_into(&mut theirs);
        assert!(theirs.contains("\nvigil_samples_received_total 0\n"));
    }

    #[test]
    fn request_latency_is_a_histogram_with_cumulative_buckets() {
        let counters = Counters::default();
        counters.record_request("/healthz", "GET", 200, 0.003);
        counters.record_request("/healthz", "GET", 200, 0.2);
        let mut out = String::new();
        counters.render_into(&mut out);
        assert!(out.contains(
            r#"vigil_http_requests_total{route="/healthz",method="GET",status="200"} 2"#
        ));
        let bucket = |le: &str| {
            format!(
                r#"vigil_http_request_duration_seconds_bucket{{route="/healthz",method="GET",status="200",le="{le}"}}"#
            )
        };
        assert!(out.contains(&format!("{} 0\n", bucket("0.0025"))), "{out}");
        assert!(out.contains(&format!("{} 1\n", bucket("0.005"))), "{out}");
        assert!(out.contains(&format!("{} 2\n", bucket("0.25"))), "{out}");
        assert!(out.contains(&format!("{} 2\n", bucket("+Inf"))), "{out}");
    }
}
