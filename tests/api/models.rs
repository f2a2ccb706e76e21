//! The model registry: champion/challenger on registration, rollback, and the HTTP routes.

use serde_json::Value;
use vigil::config::TrainingSettings;
use vigil::jobs::train::{self, BUNDLE_KIND, ChampionComparison, synthetic};

use crate::support::{TestApp, expect_error};

fn trained() -> train::Bundle {
    let data = synthetic(4, 3, 7);
    let settings = TrainingSettings {
        window: 20,
        stride: 3,
        n_trees: 30,
        ..TrainingSettings::default()
    };
    train::train(
        data.metrics,
        &data.histories,
        &data.failures,
        &settings,
        None,
        &mut |_| {},
    )
    .unwrap()
}

fn decided(bundle: &train::Bundle, challenger_wins: bool) -> train::Bundle {
    let mut bundle = bundle.clone();
    bundle.report.champion = Some(ChampionComparison {
        champion_average_precision: Some(0.8),
        challenger_average_precision: Some(if challenger_wins { 0.9 } else { 0.1 }),
        challenger_wins,
        reason: "both measured on this run's validation windows".into(),
    });
    bundle
}

#[tokio::test]
async fn a_worse_challenger_stays_a_candidate_and_rollback_restores_the_previous_version() {
    let app = TestApp::spawn().await;
    let store = &app.db.store;
    let dir = tempfile::tempdir().unwrap();
    let range = (
        chrono::Utc::now() - chrono::Duration::days(3),
        chrono::Utc::now(),
    );
    let bundle = tokio::task::spawn_blocking(trained).await.unwrap();

    let first = train::register(store, &bundle, dir.path(), range)
        .await
        .unwrap();
    assert!(first.activated, "the first model becomes active");
    assert!(first.artifact.is_file());
    let reloaded = train::active_bundle(store).await.unwrap().unwrap();
    assert_eq!(reloaded.0.model_id, first.model.model_id);
    assert_eq!(reloaded.1.schema, bundle.schema);

    let worse = train::register(store, &decided(&bundle, false), dir.path(), range)
        .await
        .unwrap();
    assert!(!worse.activated);
    assert_eq!(worse.model.status, "candidate");
    assert_eq!(worse.model.metrics["decision"]["challenger_wins"], false);
    let active = store
        .active_model(BUNDLE_KIND, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        active.model_id, first.model.model_id,
        "the champion stays active"
    );

    let better = train::register(store, &decided(&bundle, true), dir.path(), range)
        .await
        .unwrap();
    assert!(better.activated);
    assert_eq!(better.model.version, 3);

    let previous = store
        .previous_active_model(BUNDLE_KIND, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        previous.model_id, first.model.model_id,
        "rollback skips the never-active candidate"
    );
    store.activate_model(previous.model_id).await.unwrap();
    let active = store
        .active_model(BUNDLE_KIND, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(active.model_id, first.model.model_id);

    let listed: Value = app.get("/v1/models").await.json().await.unwrap();
    assert_eq!(listed["models"].as_array().unwrap().len(), 3);
    let id = better.model.model_id;
    let response = app
        .client
        .post(app.url(&format!("/v1/models/{id}/activate")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let activated: Value = response.json().await.unwrap();
    assert_eq!(activated["status"], "active");
    let response = app
        .client
        .post(app.url("/v1/models/424242/activate"))
        .send()
        .await
        .unwrap();
    expect_error(response, 404, "not_found").await;
}
