//! Incidents over REST and the Alertmanager webhook receiver.

use serde_json::{Value, json};

use crate::support::{TestApp, expect_error};

#[tokio::test]
async fn incidents_are_created_listed_and_resolved() {
    let app = TestApp::spawn().await;
    let body = json!({
        "asset": "pump-3", "kind": "bearing_wear", "severity": "critical",
        "started_at": "2026-11-20T08:00:00Z", "fingerprint": "ticket-17"
    });
    let response = app.post_json("/v1/incidents", &body).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["asset"], "pump-3");
    assert_eq!(created["source"], "api");
    assert_eq!(created["resolved_at"], Value::Null);

    let again = app.post_json("/v1/incidents", &body).await;
    assert_eq!(
        again.status(),
        200,
        "the same fingerprint and start is the same incident"
    );
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["incident_id"], created["incident_id"]);

    let other = json!({ "asset": "pump-4", "kind": "leak", "started_at": 1_795_000_000 });
    assert_eq!(app.post_json("/v1/incidents", &other).await.status(), 201);

    let open: Value = app.get_value("/v1/incidents?state=open&asset=pump-3").await;
    assert_eq!(open["incidents"].as_array().unwrap().len(), 1);
    let id = created["incident_id"].as_i64().unwrap();
    let resolved = app
        .post_json(
            &format!("/v1/incidents/{id}/resolve"),
            &json!({ "root_cause": "worn bearing" }),
        )
        .await;
    assert_eq!(resolved.status(), 200);
    let resolved: Value = resolved.json().await.unwrap();
    assert!(resolved["resolved_at"].is_string());
    assert_eq!(resolved["root_cause"], "worn bearing");
    let open: Value = app.get_value("/v1/incidents?state=open").await;
    assert_eq!(open["incidents"].as_array().unwrap().len(), 1);
    let page: Value = app.get_value("/v1/incidents?limit=1").await;
    assert_eq!(page["incidents"].as_array().unwrap().len(), 1);
    assert!(page["next"].is_i64());

    let missing = app
        .post_json("/v1/incidents/999999/resolve", &json!({}))
        .await;
    expect_error(missing, 404, "not_found").await;
}

#[tokio::test]
async fn bad_incidents_are_refused() {
    let app = TestApp::spawn().await;
    let base = json!({ "asset": "pump-3", "kind": "leak", "started_at": "2026-11-20T08:00:00Z" });
    let cases = [
        ("/severity", json!("apocalyptic"), "invalid_value"),
        ("/started_at", json!("someday"), "invalid_value"),
        ("/asset", json!("pump 3"), "invalid_value"),
    ];
    for (pointer, value, code) in cases {
        let mut body = base.clone();
        match body.pointer_mut(pointer) {
            Some(slot) => *slot = value,
            None => {
                body[&pointer[1..]] = value;
            }
        }
        expect_error(app.post_json("/v1/incidents", &body).await, 422, code).await;
    }
    let mut early = base.clone();
    early["resolved_at"] = json!("2026-11-19T08:00:00Z");
    expect_error(
        app.post_json("/v1/incidents", &early).await,
        422,
        "invalid_value",
    )
    .await;
    expect_error(
        app.get("/v1/incidents?state=maybe").await,
        422,
        "invalid_value",
    )
    .await;
}

fn alert(status: &str, instance: Option<&str>, ends_at: &str) -> Value {
    let mut labels = json!({ "alertname": "HighMemory", "severity": "warning", "job": "node" });
    if let Some(instance) = instance {
        labels["instance"] = json!(instance);
    }
    json!({
        "status": status,
        "labels": labels,
        "annotations": { "summary": "memory above 90%" },
        "startsAt": "2026-11-26T10:00:00.000Z",
        "endsAt": ends_at,
        "generatorURL": "http://prometheus/graph",
        "fingerprint": format!("fp-{}", instance.unwrap_or("none")),
    })
}

fn delivery(status: &str, alerts: Vec<Value>) -> Value {
    json!({
        "version": "4", "groupKey": "{}:{alertname=\"HighMemory\"}", "truncatedAlerts": 0,
        "status": status, "receiver": "vigil", "groupLabels": {}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://alertmanager", "alerts": alerts,
    })
}

#[tokio::test]
async fn alertmanager_firing_opens_and_resolved_resolves_idempotently() {
    let app = TestApp::spawn().await;
    let firing = delivery(
        "firing",
        vec![
            alert("firing", Some("web-1:9100"), "0001-01-01T00:00:00Z"),
            alert("firing", None, "0001-01-01T00:00:00Z"),
        ],
    );
    let answer: Value = app.post_value("/v1/alertmanager", &firing).await;
    assert_eq!(
        answer,
        json!({ "opened": 1, "resolved": 0, "unchanged": 0, "skipped": 1 })
    );
    let answer: Value = app.post_value("/v1/alertmanager", &firing).await;
    assert_eq!(
        answer["unchanged"], 1,
        "a repeated delivery changes nothing"
    );

    let list: Value = app.get_value("/v1/incidents?asset=web-1:9100").await;
    let incident = &list["incidents"][0];
    assert_eq!(incident["kind"], "HighMemory");
    assert_eq!(incident["severity"], "warning");
    assert_eq!(incident["source"], "alertmanager");

    let resolved = delivery(
        "resolved",
        vec![alert(
            "resolved",
            Some("web-1:9100"),
            "2026-11-26T10:30:00Z",
        )],
    );
    let answer: Value = app.post_value("/v1/alertmanager", &resolved).await;
    assert_eq!(answer["resolved"], 1);
    let answer: Value = app.post_value("/v1/alertmanager", &resolved).await;
    assert_eq!(answer["unchanged"], 1);
    let list: Value = app.get_value("/v1/incidents?asset=web-1:9100").await;
    assert_eq!(list["incidents"].as_array().unwrap().len(), 1);
    assert_eq!(list["incidents"][0]["resolved_at"], "2026-11-26T10:30:00Z");
}

#[tokio::test]
async fn a_resolved_alert_never_seen_firing_is_recorded_resolved() {
    let app = TestApp::spawn().await;
    let resolved = delivery(
        "resolved",
        vec![alert("resolved", Some("db-1"), "2026-11-26T11:00:00Z")],
    );
    let answer: Value = app.post_value("/v1/alertmanager", &resolved).await;
    assert_eq!(answer["resolved"], 1);
    let list: Value = app.get_value("/v1/incidents?state=resolved").await;
    assert_eq!(list["incidents"][0]["asset"], "db-1");
}

#[tokio::test]
async fn a_malformed_delivery_stores_nothing() {
    let app = TestApp::spawn().await;
    let mut bad = delivery(
        "firing",
        vec![alert("firing", Some("web-1"), "0001-01-01T00:00:00Z")],
    );
    bad["alerts"][0]["startsAt"] = json!("yesterday");
    expect_error(
        app.post_json("/v1/alertmanager", &bad).await,
        422,
        "invalid_body",
    )
    .await;
    let mut bad_status = delivery(
        "firing",
        vec![alert("firing", Some("web-1"), "0001-01-01T00:00:00Z")],
    );
    bad_status["alerts"][0]["status"] = json!("pending");
    expect_error(
        app.post_json("/v1/alertmanager", &bad_status).await,
        422,
        "invalid_value",
    )
    .await;
    let list: Value = app.get_value("/v1/incidents").await;
    assert!(list["incidents"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_nul_character_in_any_free_text_is_a_422_not_a_500() {
    let app = TestApp::spawn().await;
    let incident = |field: &str| {
        let mut body = json!({
            "asset": "pump-3", "kind": "bearing_wear", "started_at": "2026-11-20T08:00:00Z",
        });
        body[field] = json!("a\u{0}b");
        body
    };
    for field in ["root_cause", "fingerprint", "severity"] {
        expect_error(
            app.post_json("/v1/incidents", &incident(field)).await,
            422,
            "invalid_value",
        )
        .await;
    }
    let mut labelled = incident("root_cause");
    labelled["root_cause"] = json!("fine");
    labelled["labels"] = json!({ "team": "a\u{0}" });
    expect_error(
        app.post_json("/v1/incidents", &labelled).await,
        422,
        "invalid_value",
    )
    .await;
    let mut nul_alert = alert("firing", Some("web-1:9100"), "0001-01-01T00:00:00Z");
    nul_alert["fingerprint"] = json!("fp\u{0}");
    expect_error(
        app.post_json("/v1/alertmanager", &delivery("firing", vec![nul_alert]))
            .await,
        422,
        "invalid_value",
    )
    .await;
    expect_error(
        app.put_json(
            "/v1/assets/pump-3",
            &json!({ "labels": { "site": "\u{0}" } }),
        )
        .await,
        422,
        "invalid_value",
    )
    .await;
    // A literal backslash followed by u0000 is text, not NUL: stored as sent.
    let mut literal = incident("root_cause");
    literal["root_cause"] = json!("path \\u0000 in a log line");
    let response = app.post_json("/v1/incidents", &literal).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["root_cause"], "path \\u0000 in a log line");
    let listed: Value = app.get_value("/v1/incidents").await;
    assert_eq!(listed["incidents"].as_array().unwrap().len(), 1, "{listed}");
}

#[tokio::test]
async fn an_outcome_listing_a_million_actions_is_refused_before_the_database() {
    let app = TestApp::spawn().await;
    let created: Value = app
        .post_json(
            "/v1/incidents",
            &json!({ "asset": "pump-3", "kind": "bearing_wear", "started_at": "2026-11-20T08:00:00Z" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/v1/incidents/{}/outcome", created["incident_id"]);
    // A million entries (10 MB) pass the small routes' body limit.
    let many = json!({ "client_key": "k", "actions_tried": vec!["restart"; 1_000_000] });
    expect_error(app.post_json(&path, &many).await, 413, "payload_too_large").await;
    let over = json!({ "client_key": "k", "actions_tried": vec!["restart"; 101] });
    expect_error(app.post_json(&path, &over).await, 422, "invalid_value").await;
    let hundred = json!({ "client_key": "k", "actions_tried": vec!["restart"; 100] });
    assert_eq!(app.post_json(&path, &hundred).await.status(), 201);
    assert_eq!(
        app.post_json(&path, &hundred).await.status(),
        200,
        "the same outcome again is a repeat"
    );
    let other = json!({ "client_key": "k", "actions_tried": ["restart"], "root_cause": "x" });
    expect_error(app.post_json(&path, &other).await, 409, "conflict").await;
}

#[tokio::test]
async fn an_overlong_fingerprint_is_a_422_and_leaves_no_asset_behind() {
    let app = TestApp::spawn().await;
    let long = "f".repeat(2_700);
    let body = json!({
        "asset": "pump-9", "kind": "bearing_wear", "started_at": "2026-11-20T08:00:00Z",
        "fingerprint": long,
    });
    expect_error(
        app.post_json("/v1/incidents", &body).await,
        422,
        "invalid_value",
    )
    .await;
    let mut am = alert("firing", Some("web-9:9100"), "0001-01-01T00:00:00Z");
    am["fingerprint"] = json!(long);
    expect_error(
        app.post_json("/v1/alertmanager", &delivery("firing", vec![am]))
            .await,
        422,
        "invalid_value",
    )
    .await;
    let assets: Value = app.get_value("/v1/assets").await;
    assert_eq!(assets["assets"].as_array().unwrap().len(), 0, "{assets}");
}
