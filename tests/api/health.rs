use crate::support::{TestApp, TestDb, expect_error, score_at};

#[tokio::test]
async fn healthz_answers_while_the_process_runs() {
    let app = TestApp::spawn().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_is_ready_when_migrations_are_applied() {
    let app = TestApp::spawn().await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["schema_version"], 7);
}

#[tokio::test]
async fn readyz_is_not_ready_with_migrations_pending() {
    let app = TestApp::spawn_on(TestDb::empty().await, |_| {}).await;
    let response = app.get("/readyz").await;
    expect_error(response, 503, "not_ready").await;
}

#[tokio::test]
async fn readyz_is_not_ready_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    app.db.store.close().await;
    let response = app.get("/readyz").await;
    expect_error(response, 503, "not_ready").await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_and_show_pool_and_build() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        assert_eq!(app.get("/healthz").await.status(), 200);
    }
    assert_eq!(app.get("/v1/assets/missing-one").await.status(), 404);
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains(r#"vigil_http_requests_total{route="/healthz",method="GET",status="200"} 3"#),
        "{text}"
    );
    assert!(text.contains(
        r#"vigil_http_requests_total{route="/v1/assets/{name}",method="GET",status="404"} 1"#
    ));
    assert!(text.contains(
        r#"vigil_http_request_duration_seconds_count{route="/healthz",method="GET",status="200"} 3"#
    ));
    assert!(text.contains("vigil_db_pool_connections "));
    assert!(text.contains("vigil_db_pool_max_connections 16"));
    assert!(text.contains(&format!(
        "vigil_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
}

#[tokio::test]
async fn a_database_that_stays_down_makes_healthz_fail_and_scoring_refuse() {
    let app = TestApp::spawn_with(|s| s.database.unhealthy_after_secs = 1).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.db.store.close().await;
    let window: Vec<f64> = (0..40).map(|i| f64::from(i % 5)).collect();
    let body = serde_json::json!({ "asset": "pump-1", "window": { "temp": window } });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if app.get("/healthz").await.status() == 503 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "healthz still answers 200 30 s after the database went away"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    expect_error(app.get("/healthz").await, 503, "database_down").await;
    expect_error(
        app.post_json("/v1/score", &body).await,
        503,
        "database_unavailable",
    )
    .await;
}

#[tokio::test]
async fn serve_applies_retention_to_samples_and_scores_by_itself() {
    let db = TestDb::migrated().await;
    let now = chrono::Utc::now();
    let (asset, metric) = db.asset_and_metric("pump-1", "temp").await;
    let mut batch = vigil::store::samples::SampleColumns::default();
    for days_ago in [10, 1] {
        let ts = now - chrono::Duration::days(days_ago);
        batch.push_micros(asset, metric, ts.timestamp_micros(), 1.0);
    }
    db.store.insert_samples(&batch).await.unwrap();
    let score = |days_ago: i64, is_alert: bool| {
        score_at("pump-1", now - chrono::Duration::days(days_ago), is_alert)
    };
    db.store
        .insert_scores(&[score(40, false), score(40, true), score(1, false)])
        .await
        .unwrap();
    // Serve with retention on; its first run comes at start, with no command from anyone.
    let app = TestApp::spawn_on(db, |s| {
        s.retention.samples_days = 5;
        s.retention.scores_days = 30;
    })
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let scores: i64 = sqlx::query_scalar("select count(*) from score")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        if app.db.count_samples().await == 1 && scores == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "retention did not run within 30 s: {} samples, {scores} scores",
            app.db.count_samples().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let kept: Vec<bool> = sqlx::query_scalar(
        "select is_alert from score_alerting union all select is_alert from score",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        kept,
        [true, false],
        "the old alerting score (moved to score_alerting) and the recent calm one stay"
    );
    // The run is recorded as finished just after its partitions are dropped.
    loop {
        let runs = app.db.store.job_runs(Some("retention"), 5).await.unwrap();
        if runs.iter().any(|r| r.status == "succeeded") {
            assert!(
                runs.iter()
                    .all(|r| r.trigger.as_deref() == Some("schedule")),
                "{runs:?}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{runs:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
