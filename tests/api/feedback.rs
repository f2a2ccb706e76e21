//! Feedback on alerts: idempotent by key, and feeding the per-class thresholds that scoring
//! then uses; admins pin and revert thresholds.

use serde_json::{Value, json};
use vigil::store::scores::NewScore;

use crate::score::{app_with_model, window};
use crate::support::{TestApp, expect_error, score_at};

/// Opens an alert on `asset` at probability `p` straight in the store.
async fn alert(app: &TestApp, asset: &str, p: f64) -> i64 {
    let score = NewScore {
        probability: Some(p),
        anomaly_score: 0.5,
        ..score_at(asset, chrono::Utc::now(), true)
    };
    app.db.store.open_alert(&score).await.unwrap().unwrap()
}

async fn feedback(app: &TestApp, alert_id: i64, label: &str, key: &str) -> reqwest::Response {
    app.post_json(
        &format!("/v1/alerts/{alert_id}/feedback"),
        &json!({ "label": label, "client_key": key, "note": "checked the host" }),
    )
    .await
}

#[tokio::test]
async fn feedback_counts_once_and_false_alarms_raise_the_class_threshold() {
    // The configured 0.5 in force to start from, not the model's proposed threshold.
    let app = app_with_model(|s| {
        s.policy.min_labels = 6;
        s.policy.max_step = 0.1;
        s.scoring.model_threshold = false;
    })
    .await;
    // Six web assets: four false alarms at 0.52-0.58, two true ones at 0.9.
    let mut alerts = Vec::new();
    for (i, p) in [0.52, 0.54, 0.56, 0.58, 0.9, 0.92].into_iter().enumerate() {
        let asset = format!("web-{i}");
        let put = app
            .put_json(&format!("/v1/assets/{asset}"), &json!({ "class": "web" }))
            .await;
        assert_eq!(put.status(), 201);
        alerts.push((alert(&app, &asset, p).await, p));
    }
    let queue: Value = app.get_value("/v1/alerts?feedback=none").await;
    assert_eq!(queue["alerts"].as_array().unwrap().len(), 6);

    // The same feedback twice counts once; a key reused for other feedback is refused.
    let first = feedback(&app, alerts[0].0, "false_alarm", "k0").await;
    assert_eq!(first.status(), 201);
    let again = feedback(&app, alerts[0].0, "false_alarm", "k0").await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["duplicate"], true);
    expect_error(
        feedback(&app, alerts[1].0, "true_alarm", "k0").await,
        409,
        "conflict",
    )
    .await;
    // The same key and label with another note is other feedback too.
    let renoted = app
        .post_json(
            &format!("/v1/alerts/{}/feedback", alerts[0].0),
            &json!({ "label": "false_alarm", "client_key": "k0", "note": "another note" }),
        )
        .await;
    expect_error(renoted, 409, "conflict").await;
    let rows: i64 = sqlx::query_scalar("select count(*) from alert_feedback")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    expect_error(
        feedback(&app, alerts[1].0, "maybe", "k1").await,
        422,
        "invalid_value",
    )
    .await;
    expect_error(
        feedback(&app, 999_999, "true_alarm", "k1").await,
        404,
        "not_found",
    )
    .await;

    let mut last = Value::Null;
    for (i, &(id, p)) in alerts.iter().enumerate().skip(1) {
        let label = if p > 0.8 { "true_alarm" } else { "false_alarm" };
        let response = feedback(&app, id, label, &format!("k{i}")).await;
        assert_eq!(response.status(), 201);
        last = response.json().await.unwrap();
    }
    // With six labels the web threshold moves up by at most one step, past some false
    // alarms and below every true one; the change is recorded with its evidence.
    let web = last["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["asset_class"] == "web")
        .unwrap();
    assert_eq!(web["moved"], true, "{last}");
    let fire_at = web["fire_at"].as_f64().unwrap();
    assert!(fire_at > 0.52 && fire_at <= 0.6 + 1e-9, "{fire_at}");
    let policy: Value = app.get_value("/v1/policy/thresholds").await;
    let change = policy["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["asset_class"] == "web")
        .unwrap();
    assert_eq!(change["actor"], "adapter");
    assert_eq!(
        change["old_fire_at"],
        Value::Null,
        "the default was in force before"
    );
    assert_eq!(change["evidence"]["labels"], 6);
    assert!(change["reason"].as_str().unwrap().contains("false alarms"));
    assert!(
        app.get_value("/v1/alerts?feedback=none").await["alerts"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Scoring an asset of the class uses its threshold; an unknown class is refused.
    let mut body = window(550);
    body["asset_class"] = json!("web");
    let scored: Value = app.post_value("/v1/score", &body).await;
    assert_eq!(scored["threshold"].as_f64().unwrap(), fire_at, "{scored}");
    body["asset_class"] = json!("no-such-class");
    expect_error(
        app.post_json("/v1/score", &body).await,
        422,
        "unknown_asset_class",
    )
    .await;

    // An admin pins a value; the adapter then leaves it alone; a revert undoes the pin.
    let pinned = app
        .put_json("/v1/policy/thresholds/web", &json!({ "fire_at": 0.7 }))
        .await;
    assert_eq!(pinned.status(), 200);
    let pinned: Value = pinned.json().await.unwrap();
    assert_eq!(
        (pinned["fire_at"].as_f64(), pinned["pinned"].as_bool()),
        (Some(0.7), Some(true))
    );
    app.put_json("/v1/assets/web-6", &json!({ "class": "web" }))
        .await;
    let more = alert(&app, "web-6", 0.75).await;
    let answer: Value = feedback(&app, more, "false_alarm", "k-more")
        .await
        .json()
        .await
        .unwrap();
    let web = &answer["thresholds"][0];
    assert_eq!(
        (web["moved"].as_bool(), web["fire_at"].as_f64()),
        (Some(false), Some(0.7))
    );
    let reverted: Value = app
        .post_value("/v1/policy/thresholds/web/revert", &json!({}))
        .await;
    assert_eq!(reverted["threshold"]["fire_at"].as_f64().unwrap(), fire_at);
    expect_error(
        app.put_json(
            "/v1/policy/thresholds/web",
            &json!({ "fire_at": 0.4, "clear_at": 0.6 }),
        )
        .await,
        422,
        "invalid_value",
    )
    .await;
}
