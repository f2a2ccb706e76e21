//! The real programs Vigil's users run beside it (Debian's `prometheus`,
//! `prometheus-node-exporter` and `prometheus-alertmanager`, installed by
//! `.ci/install-observability`), started on loopback ports against a running Vigil:
//! Prometheus scrapes node_exporter and remote-writes to Vigil, and a rule that always fires
//! reaches Vigil through Alertmanager's webhook as an incident. After about a minute of
//! scraping: each CPU series is its own stored series, the asset carries only `job`, stored
//! counters read as rates match Prometheus' own `rate()` within 1%, and the default
//! node_exporter inputs are derived and scored; an alert Vigil opens is pushed to
//! Alertmanager's API and resolves there when cleared. A second test cuts the database for
//! 20 s under remote-write and counts Prometheus' samples against the stored ones. Where the
//! programs are absent the tests say they skipped.

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

/// Prometheus with `dir/prometheus.yml`, its data and log in `dir`, on `port`.
fn start_prometheus(dir: &std::path::Path, port: u16) -> Running {
    start(
        "prometheus",
        &[
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            // Alerts go to Alertmanager within seconds, not the default minute.
            "--rules.alert.resend-delay=1s".to_owned(),
        ],
        &dir.join("prometheus.log"),
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
async fn prometheus_node_exporter_and_alertmanager_work_with_vigil_both_ways() {
    let programs = [
        "prometheus",
        "prometheus-node-exporter",
        "prometheus-alertmanager",
    ];
    if let Some(missing) = programs.iter().find(|p| !installed(p)) {
        eprintln!("skipped: {missing} is not installed (run .ci/install-observability)");
        return;
    }
    let (node, alertmanager, prometheus) = free_ports();
    // A one-second grid, so that a minute of scraping is a window the cold-start detector
    // scores; Vigil's own alerts pushed to the Alertmanager every second.
    let app = TestApp::spawn_with(|s| {
        s.training.step_secs = 1;
        s.alertmanager.push_urls = vec![format!("http://127.0.0.1:{alertmanager}")];
        s.alertmanager.push_interval_secs = 1;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);

    let _node = start(
        "prometheus-node-exporter",
        &[format!("--web.listen-address=127.0.0.1:{node}")],
        &path("node.log"),
    );
    std::fs::write(
        path("alertmanager.yml"),
        format!(
            "route:\n  receiver: vigil\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             \x20 routes:\n  - receiver: nowhere\n    matchers: ['source=\"vigil\"']\n\
             receivers:\n- name: nowhere\n- name: vigil\n  webhook_configs:\n  - url: {}\n    send_resolved: true\n",
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
             - job_name: vigil\n  static_configs:\n  - targets: ['{vigil}']\n\
             remote_write:\n- url: {write}\n  queue_config: {{batch_send_deadline: 1s}}\n",
            vigil = app.addr,
            rules = path("rules.yml").display(),
            write = app.url("/api/v1/write"),
        ),
    )
    .unwrap();
    let _prometheus = start_prometheus(dir.path(), prometheus);

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

    // About a minute of scraping.
    let span = |app: &TestApp| {
        let pool = app.db.pool.clone();
        let asset = asset.clone();
        async move {
            sqlx::query_scalar::<_, Option<f64>>(
                "select extract(epoch from max(ts) - min(ts))::float8 from sample s \
                 join asset a using (asset_id) join metric m using (metric_id) \
                 where a.name = $1 and m.name = 'node_load1'",
            )
            .bind(&asset)
            .fetch_one(&pool)
            .await
            .unwrap()
            .unwrap_or(0.0)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while span(&app).await < 60.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let asset_path = asset.replace(':', "%3A");
    series_are_kept_apart(&app, &asset, &asset_path, prometheus).await;
    rates_match_prometheus(&app, &asset, &asset_path, prometheus).await;
    node_inputs_are_scored(&app, &asset_path).await;
    alerts_reach_alertmanager(&app, alertmanager, prometheus).await;
}

/// Vigil's alert with `asset` as Alertmanager lists it (active ones only), if there.
async fn listed_in_alertmanager(
    app: &TestApp,
    port: u16,
    asset: &str,
) -> Option<serde_json::Value> {
    let filter = [("filter", "source=\"vigil\"".to_owned())];
    let listed = get_json(&app.client, port, "/api/v2/alerts", &filter).await;
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["asset"] == asset)
        .cloned()
}

/// An alert Vigil opens appears in Alertmanager with its labels and annotations, and
/// resolves there once cleared.
async fn alerts_reach_alertmanager(app: &TestApp, port: u16, prometheus: u16) {
    let asset = "pump-17";
    let opened = app
        .db
        .store
        .open_alert(&vigil::store::scores::NewScore {
            asset: asset.to_owned(),
            model_id: None,
            model_version: "bundle/v1".to_owned(),
            window_end: chrono::Utc::now(),
            probability: Some(0.95),
            anomaly_score: 0.8,
            threshold: 0.5,
            is_alert: true,
            failure_kind: Some("bearing".to_owned()),
            kind_confidence: Some(0.8),
            explanation: serde_json::json!({
                "drivers": [{"text": "vibration mean 4.1 sd above training"}],
                "time_to_failure": {"secs": 3600.0, "cap_secs": 21600},
            }),
        })
        .await
        .unwrap();
    assert!(opened.is_some());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = None;
    while seen.is_none() && Instant::now() < deadline {
        seen = listed_in_alertmanager(app, port, asset).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let seen = seen.expect("Vigil's alert reaches Alertmanager within 30 s");
    assert_eq!(seen["labels"]["alertname"], "VigilFailureRisk", "{seen}");
    assert_eq!(seen["labels"]["severity"], "critical", "{seen}");
    assert_eq!(seen["labels"]["failure_kind"], "bearing", "{seen}");
    assert_eq!(seen["annotations"]["time_to_failure"], "60 min", "{seen}");
    assert_eq!(
        seen["annotations"]["drivers"], "vibration mean 4.1 sd above training",
        "{seen}"
    );
    assert_eq!(seen["status"]["state"], "active", "{seen}");

    // While the alert is open: every query of the Grafana dashboard has data in the real
    // Prometheus that scrapes Vigil.
    dashboard_queries_return_data(app, prometheus).await;

    app.db
        .store
        .clear_alert(asset, chrono::Utc::now())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while listed_in_alertmanager(app, port, asset).await.is_some() {
        assert!(
            Instant::now() < deadline,
            "the cleared alert still active in Alertmanager"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        !metrics.contains("vigil_alertmanager_pushes_total{outcome=\"ok\"} 0\n"),
        "pushes are counted"
    );
}

/// Runs every query of `deploy/grafana/vigil.json` against Prometheus (after a few scrapes
/// of Vigil) and asserts that each returns data.
async fn dashboard_queries_return_data(app: &TestApp, prometheus: u16) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/vigil.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 15, "{} queries", exprs.len());
    let mut empty = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        empty.clear();
        for expr in &exprs {
            let query = expr
                .replace("$__rate_interval", "30s")
                .replace("$job", "vigil");
            let result = prometheus_query(
                &app.client,
                prometheus,
                "/api/v1/query",
                &[("query", query)],
            )
            .await;
            if result.is_empty() {
                empty.push(expr.clone());
            }
        }
        if empty.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data: {empty:#?}"
    );
}

/// A JSON answer of a program on a loopback port.
async fn get_json(
    client: &reqwest::Client,
    port: u16,
    path: &str,
    params: &[(&str, String)],
) -> serde_json::Value {
    client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .query(params)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A query's result from the real Prometheus.
async fn prometheus_query(
    client: &reqwest::Client,
    port: u16,
    path: &str,
    params: &[(&str, String)],
) -> Vec<serde_json::Value> {
    let answer = get_json(client, port, path, params).await;
    assert_eq!(answer["status"], "success", "{answer}");
    answer["data"]["result"].as_array().unwrap().clone()
}

/// Each of node_exporter's CPU series is its own stored series, and the asset's labels hold
/// only `job`.
async fn series_are_kept_apart(app: &TestApp, asset: &str, asset_path: &str, prometheus: u16) {
    let listed: serde_json::Value = app
        .get_value(&format!("/v1/assets/{asset_path}/series"))
        .await;
    let cpu: Vec<&serde_json::Value> = listed["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["family"] == "node_cpu_seconds_total")
        .collect();
    let in_prometheus = prometheus_query(
        &app.client,
        prometheus,
        "/api/v1/query",
        &[(
            "query",
            format!("node_cpu_seconds_total{{instance=\"{asset}\"}}"),
        )],
    )
    .await;
    assert!(in_prometheus.len() >= 2, "{in_prometheus:?}");
    assert_eq!(
        cpu.len(),
        in_prometheus.len(),
        "one stored series per Prometheus series"
    );
    for s in &cpu {
        let labels = s["labels"].as_object().unwrap();
        let keys: Vec<&str> = labels.keys().map(String::as_str).collect();
        assert_eq!(keys, vec!["cpu", "mode"], "{s}");
    }
    assert_eq!(
        cpu.iter().filter(|s| s["kind"] == "counter").count(),
        cpu.len(),
        "metadata types the family"
    );
    let described: serde_json::Value = app.get_value(&format!("/v1/assets/{asset_path}")).await;
    assert_eq!(
        described["labels"],
        serde_json::json!({"job": "node"}),
        "{described}"
    );
}

/// A stored counter's rates match Prometheus' own `rate()` over the same range and times
/// within 1%.
async fn rates_match_prometheus(app: &TestApp, asset: &str, asset_path: &str, prometheus: u16) {
    let newest: f64 = sqlx::query_scalar(
        "select extract(epoch from max(ts))::float8 from sample s join asset a using (asset_id) \
         join metric m using (metric_id) where a.name = $1 and m.family = 'node_context_switches_total'",
    )
    .bind(asset)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    // Between scrapes (half a second after one), so that no sample sits on a range's edge.
    let (end, start) = (newest - 2.5, newest - 32.5);
    let mut compared = 0;
    for (family, selector) in [
        ("node_context_switches_total", String::new()),
        ("node_cpu_seconds_total", ",mode=\"idle\"".to_owned()),
    ] {
        let theirs = prometheus_query(
            &app.client,
            prometheus,
            "/api/v1/query_range",
            &[
                (
                    "query",
                    format!("rate({family}{{instance=\"{asset}\"{selector}}}[10s])"),
                ),
                ("start", format!("{start:.3}")),
                ("end", format!("{end:.3}")),
                ("step", "5".to_owned()),
            ],
        )
        .await;
        let ours: serde_json::Value = app
            .get_value(&format!(
                "/v1/assets/{asset_path}/samples?family={family}&rate=10s&step=5s&from={start:.3}&to={end:.3}"
            ))
            .await;
        assert!(!theirs.is_empty(), "{family}: Prometheus has no rates");
        for series in &theirs {
            let metric = &series["metric"];
            let ours = ours["series"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| {
                    let key = s["metric"].as_str().unwrap();
                    ["cpu", "mode"].iter().all(|l| match metric[l].as_str() {
                        Some(v) => key.contains(&format!("{l}=\"{v}\"")),
                        None => !key.contains(&format!("{l}=")),
                    })
                })
                .unwrap_or_else(|| panic!("{family}: no stored series for {metric}"));
            let points: Vec<(f64, f64)> = series["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_f64().unwrap(),
                        p[1].as_str().unwrap().parse().unwrap(),
                    )
                })
                .collect();
            assert!(points.len() >= 5, "{family}: {points:?}");
            for (t, theirs) in points {
                let k = ours["timestamps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .position(|u| (u.as_f64().unwrap() - t).abs() < 1e-3)
                    .unwrap_or_else(|| panic!("{family}: no rate of ours at {t}: {ours}"));
                let mine = ours["values"][k].as_f64().unwrap();
                assert!(
                    (mine - theirs).abs() <= 0.01 * theirs.abs().max(1e-9),
                    "{family} {metric} at {t}: ours {mine}, Prometheus {theirs}"
                );
                compared += 1;
            }
        }
    }
    assert!(compared >= 10, "{compared} rates compared");
}

/// The default node_exporter inputs are derived and the window scored.
async fn node_inputs_are_scored(app: &TestApp, asset_path: &str) {
    let response = app.get(&format!("/v1/assets/{asset_path}/score")).await;
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    let cold = &answer["cold_start"];
    let scored: Vec<&str> = cold["metrics"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for input in [
        "cpu_busy_fraction",
        "memory_available_fraction",
        "load1_per_core",
    ] {
        assert!(scored.contains(&input), "{input} not scored: {answer}");
    }
    assert!(
        !scored.iter().any(|m| m.starts_with("node_")),
        "only derived inputs are model inputs: {scored:?}"
    );
    let score = cold["anomaly_score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score), "{answer}");
}

/// A TCP proxy to the test server that the test can cut: while down it drops every open
/// connection and refuses new ones, as a database outage looks to Vigil.
struct Proxy {
    port: u16,
    up: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(db: &crate::support::TestDb) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, watch) = tokio::sync::watch::channel(true);
        let (socket, host, server_port) = db.server_address();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*watch.borrow() {
                    continue;
                }
                let mut watch = watch.clone();
                let (socket, host) = (socket.clone(), host.clone());
                tokio::spawn(async move {
                    let forward = async {
                        match &socket {
                            Some(path) => {
                                let mut server = tokio::net::UnixStream::connect(path).await?;
                                tokio::io::copy_bidirectional(&mut client, &mut server).await?;
                            }
                            None => {
                                let mut server =
                                    tokio::net::TcpStream::connect((host.as_str(), server_port))
                                        .await?;
                                tokio::io::copy_bidirectional(&mut client, &mut server).await?;
                            }
                        }
                        Ok::<_, std::io::Error>(())
                    };
                    tokio::select! {
                        _ = forward => {}
                        _ = watch.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { port, up, task }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Samples of `node_load1` stored for `asset` with timestamps in `(from, to]` (Unix seconds).
async fn stored_between(app: &TestApp, asset: &str, from: f64, to: f64) -> i64 {
    sqlx::query_scalar(
        "select count(*) from sample s join asset a using (asset_id) join metric m \
         using (metric_id) where a.name = $1 and m.name = 'node_load1' \
         and ts > to_timestamp($2) and ts <= to_timestamp($3)",
    )
    .bind(asset)
    .bind(from)
    .bind(to)
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

/// The first and newest stored `node_load1` sample times of `asset`, Unix seconds.
async fn stored_range(app: &TestApp, asset: &str) -> (f64, f64) {
    sqlx::query_as::<_, (Option<f64>, Option<f64>)>(
        "select extract(epoch from min(ts))::float8, extract(epoch from max(ts))::float8 \
         from sample s join asset a using (asset_id) join metric m using (metric_id) \
         where a.name = $1 and m.name = 'node_load1'",
    )
    .bind(asset)
    .fetch_one(&app.db.pool)
    .await
    .map(|(a, b)| (a.unwrap_or(0.0), b.unwrap_or(0.0)))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_under_remote_write_loses_nothing() {
    if let Some(missing) = ["prometheus", "prometheus-node-exporter"]
        .iter()
        .find(|p| !installed(p))
    {
        eprintln!("skipped: {missing} is not installed (run .ci/install-observability)");
        return;
    }
    let db = std::sync::Arc::new(crate::support::TestDb::migrated().await);
    let proxy = Proxy::start(&db).await;
    let store = vigil::store::Store::connect(
        db.options_via(proxy.port),
        &vigil::config::Settings::default(),
    )
    .await
    .unwrap();
    let app = TestApp::spawn_over(db, store, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let (node, prometheus, _) = free_ports();
    let _node = start(
        "prometheus-node-exporter",
        &[format!("--web.listen-address=127.0.0.1:{node}")],
        &path("node.log"),
    );
    std::fs::write(
        path("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s}}\n\
             scrape_configs:\n- job_name: node\n  static_configs:\n  - targets: ['127.0.0.1:{node}']\n\
             remote_write:\n- url: {write}\n  queue_config: {{batch_send_deadline: 1s}}\n",
            write = app.url("/api/v1/write"),
        ),
    )
    .unwrap();
    let _prometheus = start_prometheus(dir.path(), prometheus);
    let asset = format!("127.0.0.1:{node}");
    let log = || std::fs::read_to_string(path("prometheus.log")).unwrap_or_default();
    let wait_for = |what: &'static str, secs: u64, done: f64| {
        let app = &app;
        let asset = asset.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(secs);
            loop {
                let (first, newest) = stored_range(app, &asset).await;
                if first > 0.0 && newest >= done.max(first + 10.0) {
                    return (first, newest);
                }
                assert!(Instant::now() < deadline, "{what}: newest sample {newest}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    wait_for("ten seconds before the outage", 60, 0.0).await;

    // The database is unreachable for 20 s.
    proxy.up.send_replace(false);
    let cut = chrono::Utc::now().timestamp() as f64;
    tokio::time::sleep(Duration::from_secs(20)).await;
    proxy.up.send_replace(true);
    let restored = chrono::Utc::now().timestamp() as f64;
    let (first, newest) = wait_for("ten seconds after it", 90, restored + 10.0).await;
    assert!(
        stored_between(&app, &asset, cut + 2.0, restored - 2.0).await >= 10,
        "what was scraped during the outage arrived after it"
    );

    // Everything Prometheus scraped from the first stored sample to a second before the
    // newest: the same count stored (boundaries half a scrape from any sample).
    let (from, to) = (first + 0.5, newest - 1.5);
    let range_ms = ((to - from) * 1000.0).round() as i64;
    let theirs = prometheus_query(
        &app.client,
        prometheus,
        "/api/v1/query",
        &[
            (
                "query",
                format!("count_over_time(node_load1{{instance=\"{asset}\"}}[{range_ms}ms])"),
            ),
            ("time", format!("{to:.3}")),
        ],
    )
    .await;
    let theirs: i64 = theirs[0]["value"][1].as_str().unwrap().parse().unwrap();
    let ours = stored_between(&app, &asset, to - range_ms as f64 / 1000.0, to).await;
    assert_eq!(
        ours, theirs,
        "samples stored against scraped across the outage"
    );
    assert!(
        theirs >= 30,
        "{theirs} samples scraped; prometheus log:\n{}",
        log()
    );
    assert!(
        cut > from && restored < to,
        "the outage lies inside the compared range"
    );
    let retried = get_text(prometheus, "/metrics")
        .await
        .lines()
        .filter(|l| l.starts_with("prometheus_remote_storage_samples_retried_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert!(retried > 0.0, "Prometheus retried during the outage");
}

/// A text answer of a program on a loopback port.
async fn get_text(port: u16, path: &str) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
