//! Shadow challengers: a new model that beat the champion on validation scores live windows
//! beside it (its scores stored with its id, no alerts), then is promoted or dropped, early
//! by an admin or when its period ends, with both models' figures recorded.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vigil::jobs::train;

use crate::models::decided;
use crate::score::{app_with_model, window};
use crate::support::{TestApp, expect_error, last_days, trained};

async fn count(app: &TestApp, sql: &'static str, id: i64) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

/// Posts `body` until the app answers with model `id`.
async fn wait_for_active(app: &TestApp, id: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer: Value = app.post_value("/v1/score", &window(550)).await;
        if answer["model"]["model_id"] == id {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "model {id} never answered: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_challenger_scores_in_shadow_without_alerting_then_is_promoted_or_dropped() {
    let app = app_with_model(|s| {
        s.scoring.fire_windows = 1;
        s.training.shadow_check_secs = 1;
    })
    .await;
    let store = &app.db.store;
    let champion = store
        .active_model(train::BUNDLE_KIND, None)
        .await
        .unwrap()
        .unwrap()
        .model_id;
    let bundle = tokio::task::spawn_blocking(trained).await.unwrap();

    // A challenger that won on validation goes into shadow for an hour.
    let challenger = train::register_for(store, &decided(&bundle, true), last_days(3), 3600)
        .await
        .unwrap();
    assert!(challenger.shadow && !challenger.activated);
    assert_eq!(challenger.model.status, "shadow");
    let id = challenger.model.model_id;

    // Risky windows: the champion answers and alerts; the challenger scores beside it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let answer: Value = app.post_value("/v1/score", &window(195)).await;
        let shadowed = count(
            &app,
            "select count(*) from shadow_score where model_id = $1",
            id,
        )
        .await;
        if shadowed > 0 {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "the challenger never scored in shadow"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(answer["model"]["model_id"], champion, "{answer}");
    assert_eq!(answer["alert"], true, "{answer}");
    let (champion_id, champion_probability): (Option<i64>, Option<f64>) = sqlx::query_as(
        "select champion_id, champion_probability from shadow_score where model_id = $1 \
         order by scored_at desc limit 1",
    )
    .bind(id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(champion_id, Some(champion));
    assert!(champion_probability.unwrap() > 0.5);
    assert!(
        count(
            &app,
            "select count(*) from alert where model_id = $1",
            champion
        )
        .await
            >= 1,
        "the champion alerts"
    );
    assert_eq!(
        count(&app, "select count(*) from alert where model_id = $1", id).await,
        0,
        "a model in shadow never alerts"
    );

    // GET shows the shadow period, undecided.
    let shown: Value = app.get_value(&format!("/v1/models/{id}")).await;
    assert_eq!(shown["status"], "shadow");
    assert_eq!(shown["shadow"]["champion_id"], champion);
    assert_eq!(shown["shadow"]["decision"], Value::Null);

    // An admin promotes it early: the decision carries both models' live figures.
    let promoted: Value = app
        .post_value(&format!("/v1/models/{id}/promote"), &json!({}))
        .await;
    assert_eq!(promoted["decision"], "promoted", "{promoted}");
    assert_eq!(promoted["decided_by"], "anonymous");
    let live = &promoted["figures"]["live"];
    assert!(live["windows"].as_i64().unwrap() >= 1, "{promoted}");
    assert!(
        live["challenger"]["alerts"].as_i64().unwrap() >= 1,
        "{promoted}"
    );
    assert!(
        live["champion"]["alerts"].as_i64().unwrap() >= 1,
        "{promoted}"
    );
    assert!(
        promoted["figures"]["validation"]["challenger_average_precision"].is_number(),
        "{promoted}"
    );
    wait_for_active(&app, id).await;
    let retired: Value = app.get_value(&format!("/v1/models/{champion}")).await;
    assert_eq!(retired["status"], "retired");
    expect_error(
        app.post_json(&format!("/v1/models/{id}/drop"), &json!({}))
            .await,
        409,
        "conflict",
    )
    .await;

    // A second challenger is dropped early: the champion (the promoted one) stays.
    let second = train::register_for(store, &decided(&bundle, true), last_days(3), 3600)
        .await
        .unwrap();
    let second_id = second.model.model_id;
    let dropped: Value = app
        .post_value(&format!("/v1/models/{second_id}/drop"), &json!({}))
        .await;
    assert_eq!(dropped["decision"], "dropped", "{dropped}");
    let shown: Value = app.get_value(&format!("/v1/models/{second_id}")).await;
    assert_eq!(shown["status"], "candidate");
    wait_for_active(&app, id).await;

    // A third one's period is one second: the schedule decides it on the live figures.
    let third = train::register_for(store, &decided(&bundle, true), last_days(3), 1)
        .await
        .unwrap();
    let third_id = third.model.model_id;
    let deadline = Instant::now() + Duration::from_secs(30);
    let decided_row = loop {
        let shown: Value = app.get_value(&format!("/v1/models/{third_id}")).await;
        if shown["shadow"]["decision"].is_string() {
            break shown;
        }
        assert!(Instant::now() < deadline, "never decided: {shown}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        decided_row["shadow"]["decided_by"], "schedule",
        "{decided_row}"
    );
    assert!(
        decided_row["shadow"]["reason"].as_str().unwrap().len() > 10,
        "{decided_row}"
    );
    // The same bundle as the champion raises no more alerts than it: promoted.
    assert_eq!(
        decided_row["shadow"]["decision"], "promoted",
        "{decided_row}"
    );
    assert_eq!(decided_row["status"], "active");
}
