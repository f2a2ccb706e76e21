//! The real programs Vigil's users run beside it (Debian's `prometheus`,
//! `prometheus-node-exporter` and `prometheus-alertmanager`, installed by
//! `.ci/install-observability`), started on loopback ports against a running Vigil:
//! Prometheus scrapes node_exporter and remote-writes to Vigil, and a rule that always fires
//! reaches Vigil through Alertmanager's webhook as an incident. Where the programs are absent
//! the test says it skipped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::TestApp;

/// Three distinct free loopback ports (free when asked, all held until all are chosen; the
/// programs bind them right after).
fn free_ports() -> (u16, u16, u16) {
    let held: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let port = |i: usize| held[i].local_addr().unwrap().port();
    (port(0), port(1), port(2))
}

/// A started program, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(program: &str, args: &[String], log: &std::path::Path) -> Running {
    let log = std::fs::File::create(log).unwrap();
    Running(
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}")),
    )
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_remote_writes_node_exporter_and_alertmanager_opens_an_incident() {
    let programs = [
        "prometheus",
        "prometheus-node-exporter",
        "prometheus-alertmanager",
    ];
    if let Some(missing) = programs.iter().find(|p| !installed(p)) {
        eprintln!("skipped: {missing} is not installed (run .ci/install-observability)");
        return;
    }
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let (node, alertmanager, prometheus) = free_ports();

    let _node = start(
        "prometheus-node-exporter",
        &[format!("--web.listen-address=127.0.0.1:{node}")],
        &path("node.log"),
    );
    std::fs::write(
        path("alertmanager.yml"),
        format!(
            "route: {{receiver: vigil, group_wait: 1s, group_interval: 1s, repeat_interval: 1h}}\n\
             receivers:\n- name: vigil\n  webhook_configs:\n  - url: {}\n    send_resolved: true\n",
            app.url("/v1/alertmanager")
        ),
    )
    .unwrap();
    let _alertmanager = start(
        "prometheus-alertmanager",
        &[
            format!("--config.file={}", path("alertmanager.yml").display()),
            format!("--storage.path={}", path("am").display()),
            format!("--web.listen-address=127.0.0.1:{alertmanager}"),
            "--cluster.listen-address=".to_owned(),
        ],
        &path("alertmanager.log"),
    );
    std::fs::write(
        path("rules.yml"),
        "groups:\n- name: vigil-test\n  interval: 1s\n  rules:\n  - alert: VigilTestAlert\n    \
         expr: vector(1)\n    labels: {instance: am-test, severity: page}\n",
    )
    .unwrap();
    std::fs::write(
        path("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{rules}]\n\
             alerting:\n  alertmanagers:\n  - static_configs:\n    - targets: ['127.0.0.1:{alertmanager}']\n\
             scrape_configs:\n- job_name: node\n  static_configs:\n  - targets: ['127.0.0.1:{node}']\n\
             remote_write:\n- url: {write}\n  queue_config: {{batch_send_deadline: 1s}}\n",
            rules = path("rules.yml").display(),
            write = app.url("/api/v1/write"),
        ),
    )
    .unwrap();
    let _prometheus = start(
        "prometheus",
        &[
            format!("--config.file={}", path("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", path("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{prometheus}"),
            // Alerts go to Alertmanager within seconds, not the default minute.
            "--rules.alert.resend-delay=1s".to_owned(),
        ],
        &path("prometheus.log"),
    );

    // node_exporter's load average arrives as a series of the scraped instance, and the
    // always-firing rule as an incident of its `instance` label.
    let asset = format!("127.0.0.1:{node}");
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut load_samples, mut incidents) = (0i64, 0i64);
    while Instant::now() < deadline {
        load_samples = sqlx::query_scalar(
            "select count(*) from sample s join asset a using (asset_id) \
             join metric m using (metric_id) where a.name = $1 and m.name = 'node_load1'",
        )
        .bind(&asset)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        incidents = sqlx::query_scalar(
            "select count(*) from incident i join asset a using (asset_id) \
             where a.name = 'am-test' and i.kind = 'VigilTestAlert' and i.source = 'alertmanager'",
        )
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        if load_samples >= 3 && incidents == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let log = |name: &str| std::fs::read_to_string(path(name)).unwrap_or_default();
    assert!(
        load_samples >= 3,
        "{load_samples} samples of node_load1 from {asset}; prometheus log:\n{}",
        log("prometheus.log")
    );
    assert_eq!(
        incidents,
        1,
        "the firing rule is one incident; alertmanager log:\n{}",
        log("alertmanager.log")
    );
}
