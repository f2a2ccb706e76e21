//! `POST /api/v1/write`, fed requests encoded with the protocol's own message definitions
//! (`tests/fixtures/remote_write.proto`, compiled at run time), not with Vigil's structs.

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};

use crate::support::{TestApp, expect_error};

fn pool() -> DescriptorPool {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    protox::Compiler::new([dir])
        .unwrap()
        .open_file("remote_write.proto")
        .unwrap()
        .descriptor_pool()
}

fn message(pool: &DescriptorPool, name: &str) -> MessageDescriptor {
    pool.get_message_by_name(&format!("prometheus.{name}"))
        .unwrap()
}

fn label(pool: &DescriptorPool, name: &str, value: &str) -> Value {
    let mut label = DynamicMessage::new(message(pool, "Label"));
    label.set_field_by_name("name", Value::String(name.into()));
    label.set_field_by_name("value", Value::String(value.into()));
    Value::Message(label)
}

/// Two series as a Prometheus server sends them: sorted labels, a staleness marker at the
/// end of one, an exemplar, and metric metadata.
fn write_request() -> Vec<u8> {
    let pool = pool();
    let now_ms = chrono::Utc::now().timestamp_millis() / 1000 * 1000 - 600_000;
    let sample = |value: f64, ts: i64| {
        let mut s = DynamicMessage::new(message(&pool, "Sample"));
        s.set_field_by_name("value", Value::F64(value));
        s.set_field_by_name("timestamp", Value::I64(ts));
        Value::Message(s)
    };
    let mut up = DynamicMessage::new(message(&pool, "TimeSeries"));
    up.set_field_by_name(
        "labels",
        Value::List(vec![
            label(&pool, "__name__", "node_load1"),
            label(&pool, "instance", "web-1:9100"),
            label(&pool, "job", "node"),
        ]),
    );
    up.set_field_by_name(
        "samples",
        Value::List(vec![
            sample(0.5, now_ms),
            sample(0.7, now_ms + 15_000),
            sample(f64::from_bits(0x7ff0_0000_0000_0002), now_ms + 30_000),
        ]),
    );
    let mut exemplar = DynamicMessage::new(message(&pool, "Exemplar"));
    exemplar.set_field_by_name("labels", Value::List(vec![label(&pool, "trace_id", "abc")]));
    exemplar.set_field_by_name("value", Value::F64(0.5));
    exemplar.set_field_by_name("timestamp", Value::I64(now_ms));
    up.set_field_by_name("exemplars", Value::List(vec![Value::Message(exemplar)]));

    let mut mem = DynamicMessage::new(message(&pool, "TimeSeries"));
    mem.set_field_by_name(
        "labels",
        Value::List(vec![
            label(&pool, "__name__", "node_memory_Active_bytes"),
            label(&pool, "instance", "web-2:9100"),
            label(&pool, "job", "node"),
        ]),
    );
    mem.set_field_by_name(
        "samples",
        Value::List(vec![sample(1.0e9, now_ms), sample(1.1e9, now_ms + 15_000)]),
    );

    let mut metadata = DynamicMessage::new(message(&pool, "MetricMetadata"));
    metadata.set_field_by_name("type", Value::EnumNumber(2));
    metadata.set_field_by_name("metric_family_name", Value::String("node_load1".into()));
    metadata.set_field_by_name("help", Value::String("1m load average.".into()));

    let mut request = DynamicMessage::new(message(&pool, "WriteRequest"));
    request.set_field_by_name(
        "timeseries",
        Value::List(vec![Value::Message(up), Value::Message(mem)]),
    );
    request.set_field_by_name("metadata", Value::List(vec![Value::Message(metadata)]));
    request.encode_to_vec()
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

async fn send(app: &TestApp, body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/write"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_prometheus_write_request_is_stored() {
    let app = TestApp::spawn().await;
    let response = send(&app, snappy(&write_request())).await;
    assert_eq!(response.status(), 204);
    assert_eq!(response.headers()["x-vigil-samples-stored"], "4");
    assert_eq!(
        response.headers()["x-vigil-samples-skipped"],
        "1",
        "the staleness marker"
    );
    assert_eq!(app.db.count_samples().await, 4);
    let asset = app.db.store.asset_by_name("web-1:9100").await.unwrap();
    assert_eq!(
        asset.labels,
        serde_json::json!({ "job": "node" }),
        "job describes the asset; no other label goes on it"
    );
    let metrics = app
        .db
        .store
        .resolve_metric_ids(&["node_load1".into()])
        .await
        .unwrap();
    assert_eq!(metrics.len(), 1);
}

#[tokio::test]
async fn the_same_request_twice_stores_each_sample_once() {
    let app = TestApp::spawn().await;
    let body = snappy(&write_request());
    assert_eq!(send(&app, body.clone()).await.status(), 204);
    let again = send(&app, body).await;
    assert_eq!(again.status(), 204);
    assert_eq!(again.headers()["x-vigil-samples-stored"], "0");
    assert_eq!(app.db.count_samples().await, 4);
}

#[tokio::test]
async fn a_corrupted_snappy_body_is_a_400_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let mut body = snappy(&write_request());
    let middle = body.len() / 2;
    body.truncate(middle);
    expect_error(send(&app, body).await, 400, "invalid_snappy").await;
    expect_error(send(&app, write_request()).await, 400, "invalid_snappy").await;
    assert_eq!(app.db.count_samples().await, 0);
}

#[tokio::test]
async fn a_truncated_protobuf_is_a_400_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let raw = write_request();
    let body = snappy(&raw[..raw.len() - 7]);
    expect_error(send(&app, body).await, 400, "invalid_protobuf").await;
    assert_eq!(app.db.count_samples().await, 0);
}

#[tokio::test]
async fn a_json_body_is_a_415() {
    let app = TestApp::spawn().await;
    let response = app
        .post_raw("/api/v1/write", "application/json", b"{}".to_vec())
        .await;
    expect_error(response, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn an_unreachable_database_is_a_503_so_prometheus_retries() {
    let app = TestApp::spawn().await;
    app.db.store.close().await;
    expect_error(
        send(&app, snappy(&write_request())).await,
        503,
        "database_unavailable",
    )
    .await;
}

#[tokio::test]
async fn an_oversized_request_is_a_413() {
    let app = TestApp::spawn_with(|s| s.ingest.max_batch_samples = 2).await;
    expect_error(
        send(&app, snappy(&write_request())).await,
        413,
        "batch_too_large",
    )
    .await;
    assert_eq!(app.db.count_samples().await, 0);
}

#[tokio::test]
async fn a_decompression_bomb_of_empty_series_is_a_413_and_vigil_stays_ready() {
    let app = TestApp::spawn().await;
    // 32 MiB of empty TimeSeries (`0a 00`): a body of about 1.5 MiB that would decode to
    // 16 million structs of 48 bytes or more.
    let bomb = [0x0a_u8, 0x00].repeat(16 << 20);
    let body = snappy(&bomb[..(32 << 20) - 16]);
    assert!(body.len() < 4 << 20, "{} bytes", body.len());
    expect_error(send(&app, body).await, 413, "payload_too_large").await;
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(app.db.count_samples().await, 0);
}

#[tokio::test]
async fn odd_series_metadata_exemplars_and_histograms_are_skipped_and_counted_never_refused() {
    let app = TestApp::spawn().await;
    let pool = pool();
    let now_ms = chrono::Utc::now().timestamp_millis() / 1000 * 1000 - 600_000;
    let series = |labels: Vec<Value>, n: i64| {
        let mut ts = DynamicMessage::new(message(&pool, "TimeSeries"));
        ts.set_field_by_name("labels", Value::List(labels));
        let samples = (0..n)
            .map(|k| {
                let mut s = DynamicMessage::new(message(&pool, "Sample"));
                s.set_field_by_name("value", Value::F64(100.0 + k as f64));
                s.set_field_by_name("timestamp", Value::I64(now_ms + 15_000 * k));
                Value::Message(s)
            })
            .collect();
        ts.set_field_by_name("samples", Value::List(samples));
        ts
    };
    let base = |cpu: &str| {
        vec![
            label(&pool, "__name__", "node_cpu_seconds_total"),
            label(&pool, "cpu", cpu),
            label(&pool, "instance", "db-1:9100"),
            label(&pool, "job", "node"),
            label(&pool, "mode", "idle"),
        ]
    };
    let cpu0 = series(base("0"), 2);
    let mut cpu1 = series(base("1"), 2);
    let mut histogram = DynamicMessage::new(message(&pool, "Histogram"));
    histogram.set_field_by_name("count_int", Value::U64(3));
    histogram.set_field_by_name("sum", Value::F64(1.5));
    histogram.set_field_by_name("timestamp", Value::I64(now_ms));
    cpu1.set_field_by_name("histograms", Value::List(vec![Value::Message(histogram)]));
    // 40 labels, over the limit of 32; a value that makes the key longer than 1,000 bytes.
    let mut many = base("2");
    many.extend((0..40).map(|i| label(&pool, &format!("l{i:02}"), "x")));
    let too_many = series(many, 3);
    let mut long = base("3");
    long.push(label(&pool, "path", &"p".repeat(1100)));
    let too_long = series(long, 4);
    let mut metadata = DynamicMessage::new(message(&pool, "MetricMetadata"));
    metadata.set_field_by_name("type", Value::EnumNumber(42));
    metadata.set_field_by_name("metric_family_name", Value::String("node_weird".into()));
    let mut counter = DynamicMessage::new(message(&pool, "MetricMetadata"));
    counter.set_field_by_name("type", Value::EnumNumber(1));
    counter.set_field_by_name(
        "metric_family_name",
        Value::String("node_cpu_seconds_total".into()),
    );
    let mut request = DynamicMessage::new(message(&pool, "WriteRequest"));
    request.set_field_by_name(
        "timeseries",
        Value::List(
            [cpu0, cpu1, too_many, too_long]
                .into_iter()
                .map(Value::Message)
                .collect(),
        ),
    );
    request.set_field_by_name(
        "metadata",
        Value::List(vec![Value::Message(metadata), Value::Message(counter)]),
    );
    let response = send(&app, snappy(&request.encode_to_vec())).await;
    assert_eq!(response.status(), 204, "odd parts never fail the batch");
    assert_eq!(response.headers()["x-vigil-samples-stored"], "4");
    assert_eq!(response.headers()["x-vigil-samples-skipped"], "7");

    let (listed, keys) = app.series_keys("db-1:9100").await;
    assert_eq!(
        keys,
        vec![
            r#"node_cpu_seconds_total{cpu="0",mode="idle"}"#,
            r#"node_cpu_seconds_total{cpu="1",mode="idle"}"#
        ]
    );
    assert_eq!(
        listed["series"][0]["kind"], "counter",
        "metadata types the family"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for line in [
        "vigil_samples_skipped_total{reason=\"invalid_series\"} 7",
        "vigil_remote_write_skipped_total{kind=\"histogram\"} 1",
        "vigil_remote_write_skipped_total{kind=\"metadata\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}
