//! `POST /v1/samples` and `GET /v1/assets/{name}/samples`.

use serde_json::{Value, json};

use crate::support::{TestApp, expect_error};

/// Unix seconds of the first sample: recent enough for the default timestamp bounds.
fn t0() -> i64 {
    (chrono::Utc::now().timestamp() / 3600 - 24) * 3600
}

fn batch() -> Value {
    let t0 = t0();
    let timestamps: Vec<i64> = (0..60).map(|i| t0 + i * 60).collect();
    json!({
        "series": [
            { "asset": "web-01", "metric": "cpu", "timestamps": timestamps, "values": (0..60).map(f64::from).collect::<Vec<_>>() },
            { "asset": "web-02", "metric": "mem", "timestamps": timestamps, "values": vec![1.5; 60] },
        ],
        "rows": [
            { "asset": "web-01", "metric": "mem", "ts": t0, "value": 7 },
            { "asset": "web-01", "metric": "mem", "ts": chrono::DateTime::from_timestamp(t0 + 60, 0).unwrap().to_rfc3339(), "value": 8 },
        ],
    })
}

#[tokio::test]
async fn posted_samples_are_stored_and_unknown_assets_created() {
    let app = TestApp::spawn().await;
    let response = app.post_json("/v1/samples", &batch()).await;
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(
        report,
        json!({ "received": 122, "stored": 122, "assets": 2, "metrics": 2 })
    );
    assert_eq!(app.db.count_samples().await, 122);
    let created = app.db.store.asset_by_name("web-02").await.unwrap();
    assert_eq!(created.class, "default");
}

#[tokio::test]
async fn resending_a_batch_stores_nothing_twice() {
    let app = TestApp::spawn().await;
    assert_eq!(app.post_json("/v1/samples", &batch()).await.status(), 200);
    let response = app.post_json("/v1/samples", &batch()).await;
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["stored"], 0);
    assert_eq!(app.db.count_samples().await, 122);
}

#[tokio::test]
async fn a_nan_token_is_refused_and_nothing_of_the_batch_is_stored() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_string(&batch())
        .unwrap()
        .replacen("59.0", "NaN", 1);
    assert!(body.contains("NaN"));
    let response = app
        .post_raw("/v1/samples", "application/json", body.into_bytes())
        .await;
    expect_error(response, 422, "non_finite_value").await;
    assert_eq!(app.db.count_samples().await, 0);
}

#[tokio::test]
async fn non_finite_strings_are_refused_with_their_position() {
    let app = TestApp::spawn().await;
    for bad in ["NaN", "Infinity", "-Inf"] {
        let mut body = batch();
        body["series"][1]["values"][7] = json!(bad);
        let response = app.post_json("/v1/samples", &body).await;
        assert_eq!(response.status(), 422);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["code"], "non_finite_value");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("series[1].values[7]"),
            "{error}"
        );
    }
    assert_eq!(app.db.count_samples().await, 0);
}

#[tokio::test]
async fn bad_samples_get_their_own_codes_and_store_nothing() {
    let app = TestApp::spawn().await;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/series/0/timestamps/3",
            json!(100),
            "timestamp_out_of_range",
        ),
        (
            "/series/0/timestamps/3",
            json!(4_000_000_000i64),
            "timestamp_out_of_range",
        ),
        (
            "/series/0/timestamps/3",
            json!("next tuesday"),
            "invalid_timestamp",
        ),
        ("/series/1/asset", json!("web 02"), "invalid_name"),
        ("/rows/0/metric", json!(""), "invalid_name"),
        ("/series/0/values", json!([1, 2, 3]), "length_mismatch"),
    ];
    for (pointer, value, code) in cases {
        let mut body = batch();
        *body.pointer_mut(pointer).unwrap() = value;
        let response = app.post_json("/v1/samples", &body).await;
        expect_error(response, 422, code).await;
    }
    assert_eq!(app.db.count_samples().await, 0);
}

#[tokio::test]
async fn malformed_json_and_wrong_content_type_are_refused() {
    let app = TestApp::spawn().await;
    let response = app
        .post_raw(
            "/v1/samples",
            "application/json",
            b"{\"series\": [".to_vec(),
        )
        .await;
    expect_error(response, 400, "malformed_json").await;
    let body = serde_json::to_vec(&batch()).unwrap();
    let response = app.post_raw("/v1/samples", "text/csv", body).await;
    expect_error(response, 415, "unsupported_media_type").await;
    let response = app
        .post_json("/v1/samples", &json!({ "samples": [] }))
        .await;
    expect_error(response, 422, "invalid_body").await;
    assert_eq!(app.db.count_samples().await, 0);
}

#[tokio::test]
async fn oversized_batches_are_refused() {
    let app = TestApp::spawn_with(|s| s.ingest.max_batch_samples = 100).await;
    let response = app.post_json("/v1/samples", &batch()).await;
    expect_error(response, 413, "batch_too_large").await;
    // Refused while parsing, once the samples' elements pass the limit: the tail of this
    // body, broken JSON far past the limit, is never read (else: 400 malformed_json), so
    // an oversized batch never sits whole in memory.
    let zeros = vec!["0"; 100_000].join(",");
    let body = format!(
        r#"{{"series":[{{"asset":"a","metric":"m","timestamps":[{zeros}],"values":[{zeros}, oops"#
    );
    let response = app
        .post_raw("/v1/samples", "application/json", body.into_bytes())
        .await;
    expect_error(response, 413, "batch_too_large").await;
    let app = TestApp::spawn_with(|s| s.http.body_limit_bytes = 1024).await;
    let response = app.post_json("/v1/samples", &batch()).await;
    expect_error(response, 413, "payload_too_large").await;
    assert_eq!(app.db.count_samples().await, 0);
}

#[tokio::test]
async fn an_unreachable_database_is_a_retryable_503() {
    let app = TestApp::spawn().await;
    app.db.store.close().await;
    let response = app.post_json("/v1/samples", &batch()).await;
    expect_error(response, 503, "database_unavailable").await;
}

#[tokio::test]
async fn history_reads_raw_and_downsampled() {
    let app = TestApp::spawn().await;
    assert_eq!(app.post_json("/v1/samples", &batch()).await.status(), 200);
    let t0 = t0();
    let window = format!("from={t0}&to={}", t0 + 3600);
    let raw: Value = app
        .get_value(&format!("/v1/assets/web-01/samples?metric=cpu&{window}"))
        .await;
    assert_eq!(raw["series"][0]["metric"], "cpu");
    assert_eq!(raw["series"][0]["values"].as_array().unwrap().len(), 60);
    assert_eq!(raw["series"][0]["timestamps"][0], t0 as f64);

    let down: Value = app
        .get_value(&format!(
            "/v1/assets/web-01/samples?metric=cpu&step=10m&{window}"
        ))
        .await;
    let values: Vec<f64> = serde_json::from_value(down["series"][0]["values"].clone()).unwrap();
    assert_eq!(values, vec![4.5, 14.5, 24.5, 34.5, 44.5, 54.5]);
    let max: Value = app
        .get_value(&format!(
            "/v1/assets/web-01/samples?metric=cpu&step=30m&agg=max&{window}"
        ))
        .await;
    assert_eq!(max["series"][0]["values"], json!([29.0, 59.0]));

    let all: Value = app
        .get_value(&format!("/v1/assets/web-01/samples?{window}"))
        .await;
    let metrics: Vec<&str> = all["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metric"].as_str().unwrap())
        .collect();
    assert_eq!(metrics, vec!["cpu", "mem"]);

    expect_error(
        app.get("/v1/assets/web-01/samples?step=5w").await,
        422,
        "invalid_value",
    )
    .await;
    expect_error(app.get("/v1/assets/nobody/samples").await, 404, "not_found").await;
}

#[tokio::test]
async fn labelled_series_are_kept_apart_listed_and_read_by_key_and_as_rates() {
    let app = TestApp::spawn().await;
    let t0 = t0();
    let ts: Vec<i64> = (0..13).map(|k| t0 + 10 * k).collect();
    // A counter at 2/s on cpu 0 that resets once (after the 7th sample), and 1/s on cpu 1.
    let cpu0: Vec<f64> = (0..13)
        .map(|k| {
            if k < 7 {
                100.0 + 20.0 * k as f64
            } else {
                20.0 * (k - 6) as f64
            }
        })
        .collect();
    let cpu1: Vec<f64> = (0..13).map(|k| 10.0 * k as f64).collect();
    let body = json!({
        "series": [
            {"asset": "h", "metric": "cpu_seconds_total", "labels": {"mode": "user", "cpu": "0"},
             "timestamps": ts, "values": cpu0},
            {"asset": "h", "metric": "cpu_seconds_total{cpu=\"1\",mode=\"user\"}",
             "timestamps": ts, "values": cpu1}
        ],
        "rows": [
            {"asset": "h", "metric": "cpu_seconds_total{mode=\"user\",cpu=\"1\"}", "ts": t0 + 130, "value": 130.0},
            {"asset": "h", "metric": "load1", "ts": t0, "value": 0.5}
        ]
    });
    let response = app.post_json("/v1/samples", &body).await;
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["stored"], 28);
    assert_eq!(report["metrics"], 3, "{report}");

    let (listed, keys) = app.series_keys("h").await;
    assert_eq!(
        keys,
        vec![
            r#"cpu_seconds_total{cpu="0",mode="user"}"#,
            r#"cpu_seconds_total{cpu="1",mode="user"}"#,
            "load1"
        ]
    );
    assert_eq!(listed["series"][0]["family"], "cpu_seconds_total");
    assert_eq!(
        listed["series"][0]["labels"],
        json!({"cpu": "0", "mode": "user"})
    );
    assert!(listed["series"][2]["first_ts"].is_string());

    // One series by its key in another label order; a family's series together.
    let window = format!("from={t0}&to={}", t0 + 200);
    let one: Value = app
        .get_value(&format!(
            "/v1/assets/h/samples?metric=cpu_seconds_total%7Bmode%3D%22user%22%2Ccpu%3D%221%22%7D&{window}"
        ))
        .await;
    assert_eq!(one["series"].as_array().unwrap().len(), 1);
    assert_eq!(one["series"][0]["values"].as_array().unwrap().len(), 14);
    let family: Value = app
        .get_value(&format!(
            "/v1/assets/h/samples?family=cpu_seconds_total&{window}"
        ))
        .await;
    assert_eq!(family["series"].as_array().unwrap().len(), 2);

    // Rates over 60 s every 30 s: cpu 0 is 2/s through its reset, cpu 1 1/s.
    let rates: Value = app
        .get_value(&format!(
            "/v1/assets/h/samples?family=cpu_seconds_total&rate=60s&step=30s&from={}&to={}",
            t0 + 65,
            t0 + 125
        ))
        .await;
    for (series, expected) in rates["series"].as_array().unwrap().iter().zip([2.0, 1.0]) {
        let values: Vec<f64> = serde_json::from_value(series["values"].clone()).unwrap();
        assert_eq!(values.len(), 3, "{series}");
        // Samples 10 s apart within 60 s: 5 s to each range end, extrapolated exactly.
        for v in values {
            assert!((v - expected).abs() < 1e-9, "{series}");
        }
    }
    expect_error(
        app.get("/v1/assets/h/samples?family=cpu_seconds_total&rate=60s")
            .await,
        422,
        "invalid_value",
    )
    .await;
    let bad = json!({"rows": [{"asset": "h", "metric": "m", "labels": {"bad label": "x"}, "ts": t0, "value": 1}]});
    expect_error(
        app.post_json("/v1/samples", &bad).await,
        422,
        "invalid_value",
    )
    .await;
    let bad = json!({"rows": [{"asset": "h", "metric": "m{a=\"x\"", "ts": t0, "value": 1}]});
    expect_error(
        app.post_json("/v1/samples", &bad).await,
        422,
        "invalid_value",
    )
    .await;
}
