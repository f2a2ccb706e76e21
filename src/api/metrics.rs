//! `GET /metrics` in the Prometheus text format: what the service did, from the app's own
//! recorder ([`crate::counters`]: requests and latency by route, method and status, samples,
//! scores, alerts), then what is read at scrape time: the active model, the last training
//! run, the database's operations snapshot, pool gauges, build info and `process_*`. The
//! recorder belongs to one [`App`](super::App) rather than to the process, so that several
//! apps in one process (the tests) keep separate counts.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::counters::Counters;

/// Route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Per-app HTTP request metrics, recorded into the app's [`Counters`].
#[derive(Debug)]
pub struct HttpMetrics {
    counters: Arc<Counters>,
}

impl HttpMetrics {
    /// Records into `counters`.
    pub fn new(counters: Arc<Counters>) -> Self {
        Self { counters }
    }

    /// Records one finished request.
    pub fn record(&self, route: &str, method: &str, status: u16, secs: f64) {
        self.counters.record_request(route, method, status, secs);
    }
}

/// A label value with `\`, `"` and newlines escaped.
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
    // What the database knows (all replicas), when it answers: a scrape never waits on it
    // long, and without it the process's own figures are still served.
    let db = std::time::Duration::from_secs(2);
    let last =
        tokio::time::timeout(db, state.store.job_runs(Some(crate::jobs::train::JOB), 1)).await;
    if let Ok(Ok(runs)) = last
        && let Some(run) = runs.first()
    {
        let line = format!(
            "vigil_training_last_run_timestamp_seconds{{status=\"{}\"}} {}",
            run.status,
            run.started_at.timestamp()
        );
        gauge(
            &mut out,
            "vigil_training_last_run_timestamp_seconds",
            "When the last training run started, by its status.",
            &[line],
        );
    }
    if let Some(model) = state.scoring.model().current()
        && let Ok(Ok(Some(drift))) =
            tokio::time::timeout(db, state.store.latest_drift(model.model_id)).await
    {
        render_drift(&mut out, &drift);
    }
    let snapshot =
        tokio::time::timeout(db, state.store.operations_snapshot(crate::jobs::train::JOB)).await;
    if let Ok(Ok(snapshot)) = snapshot {
        render_operations(&mut out, &snapshot);
    }
    render_process(&mut out);
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

/// One gauge family: HELP, TYPE and its lines.
fn gauge(out: &mut String, name: &str, help: &str, lines: &[String]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
}

/// The active model's latest drift check (any replica's).
fn render_drift(out: &mut String, d: &crate::store::drift::DriftCheck) {
    let id = d.measured.model_id;
    let m = &d.measured;
    let mut psi = Vec::new();
    if let Some(v) = m.score_psi {
        psi.push(format!(
            "vigil_model_drift_psi{{model_id=\"{id}\",of=\"probability\"}} {v}"
        ));
    }
    if let Some(v) = m.max_feature_psi {
        psi.push(format!(
            "vigil_model_drift_psi{{model_id=\"{id}\",of=\"feature_max\"}} {v}"
        ));
    }
    gauge(
        out,
        "vigil_model_drift_psi",
        "Population stability index of the active model's live windows against its reference \
         windows: of the probability, and the largest of any feature (latest check).",
        &psi,
    );
    gauge(
        out,
        "vigil_model_drift_windows",
        "Live windows the latest drift check measured.",
        &[format!(
            "vigil_model_drift_windows{{model_id=\"{id}\"}} {}",
            m.windows
        )],
    );
    gauge(
        out,
        "vigil_model_drift_over_threshold",
        "1 when the latest drift check was over drift.psi_threshold.",
        &[format!(
            "vigil_model_drift_over_threshold{{model_id=\"{id}\"}} {}",
            u8::from(m.over_threshold)
        )],
    );
    gauge(
        out,
        "vigil_model_drift_checked_timestamp_seconds",
        "When the latest drift check ran.",
        &[format!(
            "vigil_model_drift_checked_timestamp_seconds{{model_id=\"{id}\"}} {}",
            d.checked_at.timestamp()
        )],
    );
}

/// Alerts open by class, actions by state, guard blocks by rule, training runs, thresholds.
fn render_operations(out: &mut String, s: &crate::store::jobs::OperationsSnapshot) {
    let by = |name: &str, label: &str, rows: &[(String, i64)]| -> Vec<String> {
        rows.iter()
            .map(|(v, n)| format!("{name}{{{label}=\"{}\"}} {n}", escape(v)))
            .collect()
    };
    gauge(
        out,
        "vigil_alerts_open",
        "Open alerts, by asset class (all replicas).",
        &by("vigil_alerts_open", "class", &s.open_alerts),
    );
    gauge(
        out,
        "vigil_actions",
        "Actions, by state (all replicas).",
        &by("vigil_actions", "state", &s.actions),
    );
    gauge(
        out,
        "vigil_guard_blocks",
        "Actions the safety guard refused, by the rule that refused (all replicas).",
        &by("vigil_guard_blocks", "rule", &s.guard_blocks),
    );
    gauge(
        out,
        "vigil_training_runs",
        "Training runs, by status (all replicas).",
        &s.training_runs
            .iter()
            .map(|(status, n, _)| {
                format!("vigil_training_runs{{status=\"{}\"}} {n}", escape(status))
            })
            .collect::<Vec<_>>(),
    );
    gauge(
        out,
        "vigil_training_run_seconds_sum",
        "Summed duration of finished training runs, by status.",
        &s.training_runs
            .iter()
            .map(|(status, _, secs)| {
                format!(
                    "vigil_training_run_seconds_sum{{status=\"{}\"}} {secs}",
                    escape(status)
                )
            })
            .collect::<Vec<_>>(),
    );
    if let Some(secs) = s.last_training_secs {
        gauge(
            out,
            "vigil_training_last_run_seconds",
            "Duration of the latest finished training run.",
            &[format!("vigil_training_last_run_seconds {secs}")],
        );
    }
    let thresholds: Vec<String> = s
        .thresholds
        .iter()
        .flat_map(|(class, fire, clear)| {
            let class = escape(class);
            [
                format!("vigil_threshold{{class=\"{class}\",edge=\"fire\"}} {fire}"),
                format!("vigil_threshold{{class=\"{class}\",edge=\"clear\"}} {clear}"),
            ]
        })
        .collect();
    gauge(
        out,
        "vigil_threshold",
        "Alert thresholds per asset class (fire at, clear below).",
        &thresholds,
    );
}

/// The standard `process_*` metrics from `/proc/self` (Linux; absent elsewhere).
fn render_process(out: &mut String) {
    // Clock ticks per second and page size of Linux on the platforms Vigil is built for.
    const TICKS: f64 = 100.0;
    const PAGE: f64 = 4096.0;
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let Some(fields) = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split(' ').collect::<Vec<_>>())
    else {
        return;
    };
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())
    });
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}",
            (utime + stime) / TICKS
        );
    }
    if let Some(vsize) = field(23) {
        gauge(
            out,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            &[format!("process_virtual_memory_bytes {vsize}")],
        );
    }
    if let Some(rss) = field(24) {
        gauge(
            out,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            &[format!("process_resident_memory_bytes {}", rss * PAGE)],
        );
    }
    if let (Some(start), Some(boot)) = (field(22), boot) {
        gauge(
            out,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            &[format!(
                "process_start_time_seconds {}",
                boot + start / TICKS
            )],
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            out,
            "process_open_fds",
            "Number of open file descriptors.",
            &[format!("process_open_fds {}", fds.count())],
        );
    }
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|line| line.starts_with("Max open files"))?
                .split_whitespace()
                .nth(3)?
                .parse::<f64>()
                .ok()
        });
    if let Some(max) = max_fds {
        gauge(
            out,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            &[format!("process_max_fds {max}")],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_come_from_proc_self() {
        let mut out = String::new();
        render_process(&mut out);
        if !std::path::Path::new("/proc/self/stat").exists() {
            assert!(out.is_empty());
            return;
        }
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            let value: f64 = out
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} missing in {out}"))
                .parse()
                .unwrap();
            // A fresh test process may not have used a clock tick of CPU yet.
            assert!(
                value > 0.0 || name.starts_with("process_cpu"),
                "{name}{value}"
            );
        }
    }

    #[test]
    fn operations_render_as_labelled_gauges() {
        let snapshot = crate::store::jobs::OperationsSnapshot {
            open_alerts: vec![("pump".into(), 2)],
            guard_blocks: vec![("cooldown".into(), 3)],
            thresholds: vec![("pump".into(), 0.6, 0.4)],
            training_runs: vec![("succeeded".into(), 4, 12.5)],
            ..Default::default()
        };
        let mut out = String::new();
        render_operations(&mut out, &snapshot);
        assert!(out.contains("vigil_alerts_open{class=\"pump\"} 2\n"));
        assert!(out.contains("vigil_guard_blocks{rule=\"cooldown\"} 3\n"));
        assert!(out.contains("vigil_threshold{class=\"pump\",edge=\"fire\"} 0.6\n"));
        assert!(out.contains("vigil_training_runs{status=\"succeeded\"} 4\n"));
        assert!(out.contains("vigil_training_run_seconds_sum{status=\"succeeded\"} 12.5\n"));
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}
