use crate::support::{TestApp, error_code, expect_error};

#[tokio::test]
async fn malformed_json_is_a_400_with_a_code() {
    let app = TestApp::spawn().await;
    let response = app
        .put_raw("/v1/assets/web-01", "application/json", "{\"class\": ")
        .await;
    expect_error(response, 400, "malformed_json").await;
}

#[tokio::test]
async fn wrong_content_type_is_a_415() {
    let app = TestApp::spawn().await;
    let response = app.put_raw("/v1/assets/web-01", "text/plain", "{}").await;
    expect_error(response, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn body_over_the_limit_is_a_413() {
    let app = TestApp::spawn_with(|s| s.http.body_limit_bytes = 64).await;
    let labels: serde_json::Map<String, serde_json::Value> = (0..20)
        .map(|i| (format!("k{i}"), "v".repeat(10).into()))
        .collect();
    let response = app
        .put_json(
            "/v1/assets/web-01",
            &serde_json::json!({ "labels": labels }),
        )
        .await;
    expect_error(response, 413, "payload_too_large").await;
    assert_eq!(app.asset_count().await, 0);
}

#[tokio::test]
async fn unknown_field_is_a_422() {
    let app = TestApp::spawn().await;
    let response = app
        .put_json("/v1/assets/web-01", &serde_json::json!({ "klass": "web" }))
        .await;
    expect_error(response, 422, "invalid_body").await;
}

#[tokio::test]
async fn invalid_name_and_labels_are_422_and_store_nothing() {
    let app = TestApp::spawn().await;
    let response = app
        .put_json("/v1/assets/bad%20name", &serde_json::json!({}))
        .await;
    expect_error(response, 422, "invalid_value").await;
    let response = app
        .put_json(
            "/v1/assets/web-01",
            &serde_json::json!({ "labels": { "dc": 3 } }),
        )
        .await;
    expect_error(response, 422, "invalid_value").await;
    assert_eq!(app.asset_count().await, 0);
}

#[tokio::test]
async fn bad_query_is_a_400() {
    let app = TestApp::spawn().await;
    let response = app.get("/v1/assets?limit=many").await;
    expect_error(response, 400, "invalid_query").await;
    let response = app.get("/v1/assets?limit=0").await;
    expect_error(response, 422, "invalid_value").await;
}

#[tokio::test]
async fn unknown_path_and_method_get_json_errors() {
    let app = TestApp::spawn().await;
    let response = app.get("/v2/nothing").await;
    expect_error(response, 404, "no_route").await;
    let response = app.client.delete(app.url("/healthz")).send().await.unwrap();
    expect_error(response, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn unknown_asset_is_a_404() {
    let app = TestApp::spawn().await;
    let response = app.get("/v1/assets/nobody").await;
    expect_error(response, 404, "not_found").await;
}

#[tokio::test]
async fn unreachable_database_is_a_503_not_a_500() {
    let app = TestApp::spawn().await;
    app.db.store.close().await;
    let response = app.get("/v1/assets").await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(error_code(response).await, "database_unavailable");
}

#[tokio::test]
async fn asset_put_creates_then_updates() {
    let app = TestApp::spawn().await;
    let body = serde_json::json!({ "class": "web", "labels": { "dc": "east" } });
    let response = app.put_json("/v1/assets/web-01", &body).await;
    assert_eq!(response.status(), 201);
    let body = serde_json::json!({ "class": "db" });
    let response = app.put_json("/v1/assets/web-01", &body).await;
    assert_eq!(response.status(), 200);
    let asset: serde_json::Value = app.get_value("/v1/assets/web-01").await;
    assert_eq!(asset["class"], "db");
    assert_eq!(asset["labels"], serde_json::json!({}));
}

#[tokio::test]
async fn asset_list_pages_by_name() {
    let app = TestApp::spawn().await;
    for name in ["a-1", "a-2", "a-3"] {
        let response = app
            .client
            .put(app.url(&format!("/v1/assets/{name}")))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let page: serde_json::Value = app.get_value("/v1/assets?limit=2").await;
    assert_eq!(page["assets"].as_array().unwrap().len(), 2);
    assert_eq!(page["next"], "a-2");
    let page: serde_json::Value = app.get_value("/v1/assets?limit=2&after=a-2").await;
    assert_eq!(page["assets"][0]["name"], "a-3");
    assert_eq!(page["next"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_non_numeric_id_in_a_path_is_a_json_400() {
    let app = TestApp::spawn().await;
    for path in ["/v1/alerts/abc", "/v1/actions/x"] {
        expect_error(app.get(path).await, 400, "invalid_path").await;
    }
    let resolve = app
        .post_json("/v1/incidents/1.5/resolve", &serde_json::json!({}))
        .await;
    expect_error(resolve, 400, "invalid_path").await;
}

#[tokio::test]
async fn incident_times_are_held_to_the_sample_range() {
    let app = TestApp::spawn().await;
    for started_at in [
        serde_json::json!(-6_000_000_000_000_i64),
        serde_json::json!("9999-01-01T00:00:00Z"),
    ] {
        let body = serde_json::json!({
            "asset": "pump-3", "kind": "bearing_wear", "started_at": started_at,
        });
        expect_error(
            app.post_json("/v1/incidents", &body).await,
            422,
            "timestamp_out_of_range",
        )
        .await;
    }
    let listed: serde_json::Value = app.get_value("/v1/incidents").await;
    assert_eq!(listed["incidents"].as_array().unwrap().len(), 0);
}
