//! Ingestion benchmark: loads the same samples into the same empty `sample` table four ways,
//! in one run, and prints samples per second and the ratio to `psql \copy`:
//!
//! (a) `psql \copy` of a CSV that already holds asset and metric ids (the floor: PostgreSQL's
//!     own bulk load, no names to resolve), (b) `vigil import` of the same rows with names,
//!     (c) `POST /v1/samples` JSON batches, (d) Prometheus remote-write requests.
//!
//! Run it with `bench/ingest.sh` (release build). Uses `DATABASE_URL` (a user who may create
//! databases) or starts a private cluster like Vigil's embedded default.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};
use vigil::config::Settings;
use vigil::ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest};
use vigil::store::{EmbeddedPostgres, Store};
use vigil::vocab::SeriesKey;

struct Args {
    samples: usize,
    assets: usize,
    metrics: usize,
    vigil: PathBuf,
    json_batch: usize,
    rw_batch: usize,
    concurrency: usize,
    labelled: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        samples: 4_000_000,
        assets: 50,
        metrics: 8,
        vigil: PathBuf::from("target/release/vigil"),
        json_batch: 50_000,
        rw_batch: 10_000,
        concurrency: 4,
        labelled: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--samples" => args.samples = value().parse().expect("--samples N"),
            "--assets" => args.assets = value().parse().expect("--assets N"),
            "--metrics" => args.metrics = value().parse().expect("--metrics N"),
            "--vigil" => args.vigil = PathBuf::from(value()),
            "--json-batch" => args.json_batch = value().parse().expect("--json-batch N"),
            "--rw-batch" => args.rw_batch = value().parse().expect("--rw-batch N"),
            "--concurrency" => args.concurrency = value().parse().expect("--concurrency N"),
            "--labelled" => args.labelled = true,
            "--help" | "-h" => {
                println!(
                    "ingest_bench [--samples N=4000000] [--assets 50] [--metrics 8] [--vigil PATH]\n\
                     \x20            [--json-batch 50000] [--rw-batch 10000] [--concurrency 4]\n\
                     \x20            [--labelled]   (node_exporter-shaped series: node_cpu_seconds_total{{cpu,mode}})"
                );
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// The generated data set, in columnar form: sample i is asset `asset[i]`, metric
/// `metric[i]`, at `ts[i]` Unix seconds.
struct Data {
    assets: Vec<String>,
    metrics: Vec<String>,
    asset: Vec<u32>,
    metric: Vec<u32>,
    ts: Vec<i64>,
    values: Vec<f64>,
}

fn generate(args: &Args) -> Data {
    let per_series = args.samples.div_ceil(args.assets * args.metrics);
    let end = (chrono::Utc::now().timestamp() / 60 - 60) * 60;
    let start = end - per_series as i64 * 60;
    let mut data = Data {
        assets: (0..args.assets).map(|a| format!("bench-{a:04}")).collect(),
        metrics: [
            "cpu",
            "mem",
            "latency_ms",
            "error_rate",
            "disk_io",
            "temp",
            "net_in",
            "queue_depth",
        ]
        .iter()
        .cycle()
        .take(args.metrics)
        .enumerate()
        .map(|(i, m)| {
            if args.labelled {
                let modes = [
                    "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice",
                ];
                format!(
                    "node_cpu_seconds_total{{cpu=\"{}\",mode=\"{}\"}}",
                    i / 8,
                    modes[i % 8]
                )
            } else if i < 8 {
                m.to_string()
            } else {
                format!("{m}_{i}")
            }
        })
        .collect(),
        asset: Vec::with_capacity(args.samples),
        metric: Vec::with_capacity(args.samples),
        ts: Vec::with_capacity(args.samples),
        values: Vec::with_capacity(args.samples),
    };
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    'outer: for a in 0..args.assets {
        for m in 0..args.metrics {
            for k in 0..per_series {
                if data.values.len() == args.samples {
                    break 'outer;
                }
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let noise = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                let daily = (k as f64 / 1440.0 * std::f64::consts::TAU).sin();
                let value = 50.0 + 20.0 * daily + 5.0 * noise + m as f64;
                data.asset.push(a as u32);
                data.metric.push(m as u32);
                data.ts.push(start + k as i64 * 60);
                data.values.push((value * 1000.0).round() / 1000.0);
            }
        }
    }
    data
}

fn database_url(options: &PgConnectOptions, database: &str) -> String {
    let user = options.get_username();
    match options.get_socket() {
        Some(dir) => format!(
            "postgres://{user}@localhost:{}/{database}?host={}",
            options.get_port(),
            dir.display()
        ),
        None => format!(
            "postgres://{user}@{}:{}/{database}",
            options.get_host(),
            options.get_port()
        ),
    }
}

async fn reset_table(store: &Store, pool: &sqlx::PgPool) {
    let partitions = store.sample_partitions().await.unwrap();
    for name in partitions {
        pool.execute(sqlx::AssertSqlSafe(format!("drop table {name}")))
            .await
            .unwrap();
    }
    pool.execute("checkpoint").await.unwrap();
}

async fn count(store: &Store) -> i64 {
    store.count_samples(None).await.unwrap()
}

struct Row {
    method: &'static str,
    secs: f64,
    stored: i64,
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("vigil serve did not become ready");
}

/// Sends pre-encoded bodies with `concurrency` workers; returns the elapsed seconds.
async fn send_all(
    client: &reqwest::Client,
    url: String,
    content_type: &'static str,
    bodies: Vec<Vec<u8>>,
    concurrency: usize,
) -> f64 {
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let queue = queue.clone();
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                loop {
                    let body = queue.lock().unwrap().pop();
                    let Some(body) = body else { break };
                    let response = client
                        .post(&url)
                        .header("content-type", content_type)
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert!(
                        response.status().is_success(),
                        "{url}: {}",
                        response.status()
                    );
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    started.elapsed().as_secs_f64()
}

fn json_bodies(data: &Data, batch: usize) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    let mut start = 0;
    while start < data.values.len() {
        let end = (start + batch).min(data.values.len());
        let mut series = Vec::new();
        let mut s = start;
        while s < end {
            let mut e = s;
            while e < end && data.asset[e] == data.asset[s] && data.metric[e] == data.metric[s] {
                e += 1;
            }
            series.push(serde_json::json!({
                "asset": data.assets[data.asset[s] as usize],
                "metric": data.metrics[data.metric[s] as usize],
                "timestamps": &data.ts[s..e],
                "values": &data.values[s..e],
            }));
            s = e;
        }
        bodies.push(serde_json::to_vec(&serde_json::json!({ "series": series })).unwrap());
        start = end;
    }
    bodies
}

fn remote_write_bodies(data: &Data, batch: usize) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    let mut start = 0;
    let label = |name: &str, value: &str| Label {
        name: name.to_owned(),
        value: value.to_owned(),
    };
    while start < data.values.len() {
        let end = (start + batch).min(data.values.len());
        let mut request = WriteRequest::default();
        let mut s = start;
        while s < end {
            let mut e = s;
            while e < end && data.asset[e] == data.asset[s] && data.metric[e] == data.metric[s] {
                e += 1;
            }
            let key = SeriesKey::parse(&data.metrics[data.metric[s] as usize]).unwrap();
            let mut labels = vec![
                label("__name__", &key.family),
                label("instance", &data.assets[data.asset[s] as usize]),
                label("job", "bench"),
            ];
            labels.extend(key.labels.iter().map(|(k, v)| label(k, v)));
            request.timeseries.push(TimeSeries {
                labels,
                samples: (s..e)
                    .map(|i| Sample {
                        value: data.values[i],
                        timestamp: data.ts[i] * 1000,
                    })
                    .collect(),
                ..TimeSeries::default()
            });
            s = e;
        }
        bodies.push(
            snap::raw::Encoder::new()
                .compress_vec(&request.encode_to_vec())
                .unwrap(),
        );
        start = end;
    }
    bodies
}

/// A CSV field, quoted when it holds a comma or a quote.
fn csv_field(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains([',', '"']) {
        format!("\"{}\"", text.replace('"', "\"\"")).into()
    } else {
        text.into()
    }
}

fn write_csvs(
    data: &Data,
    dir: &Path,
    asset_ids: &[i64],
    metric_ids: &[i32],
) -> (PathBuf, PathBuf) {
    use std::io::Write;
    let names = dir.join("samples.csv");
    let ids = dir.join("samples-ids.csv");
    let mut named = std::io::BufWriter::new(std::fs::File::create(&names).unwrap());
    let mut by_id = std::io::BufWriter::new(std::fs::File::create(&ids).unwrap());
    writeln!(named, "asset,metric,ts,value").unwrap();
    for i in 0..data.values.len() {
        let (a, m) = (data.asset[i] as usize, data.metric[i] as usize);
        writeln!(
            named,
            "{},{},{},{}",
            data.assets[a],
            csv_field(&data.metrics[m]),
            data.ts[i],
            data.values[i]
        )
        .unwrap();
        let ts = chrono::DateTime::from_timestamp(data.ts[i], 0)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S+00");
        writeln!(
            by_id,
            "{},{},{},{}",
            asset_ids[a], metric_ids[m], ts, data.values[i]
        )
        .unwrap();
    }
    named.flush().unwrap();
    by_id.flush().unwrap();
    (names, ids)
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    assert!(
        args.vigil.is_file(),
        "{} missing: build it with cargo build --release",
        args.vigil.display()
    );
    let work = tempfile::Builder::new()
        .prefix("vigil-bench-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let (admin, cluster) = match std::env::var("DATABASE_URL") {
        Ok(url) => (url.parse::<PgConnectOptions>().unwrap(), None),
        Err(_) => {
            let cluster = EmbeddedPostgres::start(&work.path().join("pg"), "postgres")
                .await
                .unwrap();
            (cluster.options_for("postgres"), Some(cluster))
        }
    };
    let mut conn = admin.connect().await.unwrap();
    conn.execute("drop database if exists vigil_bench")
        .await
        .unwrap();
    conn.execute("create database vigil_bench").await.unwrap();
    conn.close().await.unwrap();
    let url = database_url(&admin, "vigil_bench");
    let store = Store::connect(admin.clone().database("vigil_bench"), &Settings::default())
        .await
        .unwrap();
    // The bench's own pool, for the DDL between runs (the store keeps its pool to itself).
    let pool = sqlx::PgPool::connect_with(admin.clone().database("vigil_bench"))
        .await
        .unwrap();
    store.migrate().await.unwrap();

    eprintln!(
        "generating {} samples ({} assets x {} metrics)...",
        args.samples, args.assets, args.metrics
    );
    let data = generate(&args);
    let n = data.values.len() as i64;
    let asset_ids = store.resolve_asset_ids(&data.assets).await.unwrap();
    let metric_ids = store.resolve_metric_ids(&data.metrics).await.unwrap();
    let asset_ids: Vec<i64> = data.assets.iter().map(|a| asset_ids[a]).collect();
    let metric_ids: Vec<i32> = data.metrics.iter().map(|m| metric_ids[m]).collect();
    let (names_csv, ids_csv) = write_csvs(&data, work.path(), &asset_ids, &metric_ids);
    let mut rows = Vec::new();

    // (a) psql \copy into the partitioned table, partitions created beforehand (untimed).
    reset_table(&store, &pool).await;
    let days: Vec<chrono::NaiveDate> = {
        let mut days: Vec<_> = data
            .ts
            .iter()
            .map(|&t| chrono::DateTime::from_timestamp(t, 0).unwrap().date_naive())
            .collect();
        days.dedup();
        days.sort();
        days.dedup();
        days
    };
    store.ensure_sample_partitions(&days).await.unwrap();
    eprintln!("(a) psql \\copy ...");
    let started = Instant::now();
    let status = std::process::Command::new("psql")
        .arg(&url)
        .arg("-qc")
        .arg(format!(
            "\\copy sample (asset_id, metric_id, ts, value) from '{}' with (format csv)",
            ids_csv.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    rows.push(Row {
        method: "psql \\copy (ids, CSV)",
        secs: started.elapsed().as_secs_f64(),
        stored: count(&store).await,
    });

    // (b) vigil import of the named CSV.
    reset_table(&store, &pool).await;
    eprintln!("(b) vigil import ...");
    let started = Instant::now();
    let output = std::process::Command::new(&args.vigil)
        .env("DATABASE_URL", &url)
        .env("VIGIL_RETENTION__SAMPLES_DAYS", "0")
        .arg("import")
        .arg(&names_csv)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(output.status.success());
    rows.push(Row {
        method: "vigil import (names, CSV)",
        secs: started.elapsed().as_secs_f64(),
        stored: count(&store).await,
    });

    // (c) and (d) through a running server.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = tokio::process::Command::new(&args.vigil)
        .env("DATABASE_URL", &url)
        .env("VIGIL_RETENTION__SAMPLES_DAYS", "0")
        .env("VIGIL_HTTP__BODY_LIMIT_BYTES", (256u64 << 20).to_string())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_ready(&client, &base).await;

    let bodies = json_bodies(&data, args.json_batch);
    reset_table(&store, &pool).await;
    eprintln!(
        "(c) POST /v1/samples: {} requests of {} samples, {} connections ...",
        bodies.len(),
        args.json_batch,
        args.concurrency
    );
    let secs = send_all(
        &client,
        format!("{base}/v1/samples"),
        "application/json",
        bodies,
        args.concurrency,
    )
    .await;
    rows.push(Row {
        method: "POST /v1/samples (JSON)",
        secs,
        stored: count(&store).await,
    });

    let bodies = remote_write_bodies(&data, args.rw_batch);
    reset_table(&store, &pool).await;
    eprintln!(
        "(d) remote-write: {} requests of {} samples, {} connections ...",
        bodies.len(),
        args.rw_batch,
        args.concurrency
    );
    let secs = send_all(
        &client,
        format!("{base}/api/v1/write"),
        "application/x-protobuf",
        bodies,
        args.concurrency,
    )
    .await;
    rows.push(Row {
        method: "POST /api/v1/write (remote-write)",
        secs,
        stored: count(&store).await,
    });

    let _ = std::process::Command::new("kill")
        .arg(server.id().unwrap().to_string())
        .status();
    let _ = server.wait().await;
    store.close().await;
    if let Some(cluster) = cluster {
        cluster.stop().await.unwrap();
    }

    let base_rate = n as f64 / rows[0].secs;
    println!(
        "\n{n} samples, same empty table each time ({} cores)",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    println!(
        "{:<36} {:>10} {:>9} {:>13} {:>9}",
        "method", "stored", "seconds", "samples/s", "vs psql"
    );
    for row in &rows {
        let rate = n as f64 / row.secs;
        println!(
            "{:<36} {:>10} {:>9.2} {:>13.0} {:>8.2}x",
            row.method,
            row.stored,
            row.secs,
            rate,
            rate / base_rate
        );
        assert_eq!(row.stored, n, "{} stored every sample once", row.method);
    }
}
