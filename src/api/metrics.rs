//! `GET /metrics` in the Prometheus text format: request counts and latency histograms by
//! route, method and status, what the service did ([`crate::counters`]: samples, scores,
//! alerts), the active model, the last training run, database pool gauges, and build info. The registry belongs to
//! one [`App`](super::App) rather than to the process, so that several apps in one process
//! (the tests) keep separate counts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS_SECS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SeriesKey {
    route: String,
    method: String,
    status: u16,
}

#[derive(Debug, Clone, Default)]
struct Series {
    count: u64,
    sum_secs: f64,
    buckets: [u64; BUCKETS_SECS.len()],
}

/// Per-app HTTP request metrics.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    series: Mutex<BTreeMap<SeriesKey, Series>>,
}

impl HttpMetrics {
    /// Records one finished request.
    pub fn record(&self, route: &str, method: &str, status: u16, secs: f64) {
        let key = SeriesKey {
            route: route.to_owned(),
            method: method.to_owned(),
            status,
        };
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let entry = series.entry(key).or_default();
        entry.count += 1;
        entry.sum_secs += secs;
        for (bucket, bound) in entry.buckets.iter_mut().zip(BUCKETS_SECS) {
            if secs <= bound {
                *bucket += 1;
            }
        }
    }

    /// Total requests recorded for a route and status (for tests and diagnostics).
    pub fn count(&self, route: &str, status: u16) -> u64 {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series
            .iter()
            .filter(|(k, _)| k.route == route && k.status == status)
            .map(|(_, s)| s.count)
            .sum()
    }

    fn render_into(&self, out: &mut String) {
        let series = self
            .series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        out.push_str("# HELP vigil_http_requests_total HTTP requests answered, by route, method and status.\n");
        out.push_str("# TYPE vigil_http_requests_total counter\n");
        for (key, s) in &series {
            let _ = writeln!(
                out,
                "vigil_http_requests_total{{{}}} {}",
                labels(key),
                s.count
            );
        }
        out.push_str("# HELP vigil_http_request_duration_seconds Time to answer HTTP requests.\n");
        out.push_str("# TYPE vigil_http_request_duration_seconds histogram\n");
        for (key, s) in &series {
            let labels = labels(key);
            for (bound, n) in BUCKETS_SECS.iter().zip(s.buckets) {
                let _ = writeln!(
                    out,
                    "vigil_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "vigil_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "vigil_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum_secs
            );
            let _ = writeln!(
                out,
                "vigil_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
    }
}

fn labels(key: &SeriesKey) -> String {
    format!(
        "route=\"{}\",method=\"{}\",status=\"{}\"",
        escape(&key.route),
        escape(&key.method),
        key.status
    )
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Route-layer middleware that times every matched request.
pub async fn track(State(metrics): State<Arc<HttpMetrics>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let method = req.method().as_str().to_owned();
    let response = next.run(req).await;
    metrics.record(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::with_capacity(4096);
    state.metrics.render_into(&mut out);
    state.counters.render_into(&mut out);
    out.push_str(
        "# HELP vigil_model_active The model that answers scores (0: the cold-start detector).
",
    );
    out.push_str(
        "# TYPE vigil_model_active gauge
",
    );
    match state.scoring.model().current() {
        Some(model) => {
            let _ = writeln!(
                out,
                "vigil_model_active{{model_id=\"{}\",version=\"{}\"}} 1",
                model.model_id, model.version
            );
        }
        None => out.push_str("vigil_model_active 0\n"),
    }
    // The last training run, when the database answers (a scrape never waits on it long).
    let last = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        state.store.job_runs(crate::jobs::train::JOB, 1),
    )
    .await;
    if let Ok(Ok(runs)) = last
        && let Some(run) = runs.first()
    {
        out.push_str("# HELP vigil_training_last_run_timestamp_seconds When the last training run started, by its status.\n");
        out.push_str("# TYPE vigil_training_last_run_timestamp_seconds gauge\n");
        let _ = writeln!(
            out,
            "vigil_training_last_run_timestamp_seconds{{status=\"{}\"}} {}",
            run.status,
            run.started_at.timestamp()
        );
    }
    let (size, idle) = state.store.pool_stats();
    let max = state.settings.database.max_connections;
    out.push_str("# HELP vigil_db_pool_connections Open database connections.\n");
    out.push_str("# TYPE vigil_db_pool_connections gauge\n");
    let _ = writeln!(out, "vigil_db_pool_connections {size}");
    out.push_str("# HELP vigil_db_pool_idle_connections Open database connections not in use.\n");
    out.push_str("# TYPE vigil_db_pool_idle_connections gauge\n");
    let _ = writeln!(out, "vigil_db_pool_idle_connections {idle}");
    out.push_str("# HELP vigil_db_pool_max_connections Configured pool size.\n");
    out.push_str("# TYPE vigil_db_pool_max_connections gauge\n");
    let _ = writeln!(out, "vigil_db_pool_max_connections {max}");
    out.push_str("# HELP vigil_build_info Build of the running Vigil.\n");
    out.push_str("# TYPE vigil_build_info gauge\n");
    let _ = writeln!(
        out,
        "vigil_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    out.push_str("# HELP vigil_uptime_seconds Seconds since the service started.\n");
    out.push_str("# TYPE vigil_uptime_seconds gauge\n");
    let _ = writeln!(
        out,
        "vigil_uptime_seconds {}",
        state.started.elapsed().as_secs_f64()
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = HttpMetrics::default();
        metrics.record("/healthz", "GET", 200, 0.003);
        metrics.record("/healthz", "GET", 200, 0.2);
        let mut out = String::new();
        metrics.render_into(&mut out);
        assert!(out.contains(
            r#"vigil_http_requests_total{route="/healthz",method="GET",status="200"} 2"#
        ));
        assert!(out.contains(r#"le="0.0025"} 0"#));
        assert!(out.contains(r#"le="0.005"} 1"#));
        assert!(out.contains(r#"le="0.25"} 2"#));
        assert!(out.contains(r#"le="+Inf"} 2"#));
        assert_eq!(metrics.count("/healthz", 200), 2);
    }
}
