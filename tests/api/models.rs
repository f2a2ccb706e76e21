//! The model registry: champion/challenger on registration, rollback, and the HTTP routes.

use serde_json::Value;
use vigil::config::TrainingSettings;
use vigil::jobs::train::{self, BUNDLE_KIND, ChampionComparison, synthetic};

use crate::support::{TestApp, expect_error, last_days, trained};

pub fn decided(bundle: &train::Bundle, challenger_wins: bool) -> train::Bundle {
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
    let range = last_days(3);
    let bundle = tokio::task::spawn_blocking(trained).await.unwrap();

    let first = train::register(store, &bundle, range).await.unwrap();
    assert!(first.activated, "the first model becomes active");
    assert_eq!(
        artifact_size(&app, first.model.model_id).await,
        Some(serde_json::to_vec(&bundle).unwrap().len() as i64)
    );
    assert!(
        first.model.artifact_path.is_none(),
        "no file: the database holds it"
    );
    let reloaded = train::active_bundle(store).await.unwrap().unwrap();
    assert_eq!(reloaded.0.model_id, first.model.model_id);
    assert_eq!(reloaded.1.schema, bundle.schema);

    let worse = train::register(store, &decided(&bundle, false), range)
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

    let better = train::register(store, &decided(&bundle, true), range)
        .await
        .unwrap();
    assert!(better.activated);
    assert_eq!(better.model.version, 3);

    let previous = store
        .previous_active_models(BUNDLE_KIND, None)
        .await
        .unwrap()
        .remove(0);
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

    let listed: Value = app.get_value("/v1/models").await;
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

/// Stores the synthetic fleet in the database, moved to end an hour before today (UTC).
async fn store_synthetic(store: &vigil::store::Store) {
    store_data(store, &synthetic(3, 3, 11), 3).await;
}

/// Seconds added to the synthetic fleet's times (which start at 0) to store them: `days`
/// days moved to end an hour before today's midnight (UTC), so that every run puts its
/// hours at the same times of day (each window's past is the day before its hour) and a
/// test that calls this twice gets the same answer (unless midnight passes between).
fn shift(days: i64) -> i64 {
    chrono::Utc::now().timestamp() / 86_400 * 86_400 - days * 86_400 - 3600
}

/// Stores a `days`-day synthetic fleet's samples and failures, moved by [`shift`].
async fn store_data(store: &vigil::store::Store, data: &train::TrainingData, days: i64) {
    let shift = shift(days);
    let names: Vec<String> = data.histories.iter().map(|h| h.asset.clone()).collect();
    let assets = store.resolve_asset_ids(&names).await.unwrap();
    let metrics = store.resolve_metric_ids(&data.metrics).await.unwrap();
    let mut batch = vigil::store::samples::SampleColumns::default();
    for history in &data.histories {
        for (m, series) in history.metrics.iter().enumerate() {
            let series = series.as_ref().unwrap();
            for (&t, &v) in series.ts.iter().zip(&series.values) {
                batch.push_micros(
                    assets[&history.asset],
                    metrics[&data.metrics[m]],
                    (t + shift) * 1_000_000,
                    v,
                );
            }
        }
    }
    store.insert_samples(&batch).await.unwrap();
    for failure in &data.failures {
        let at = |t: i64| chrono::DateTime::from_timestamp(t + shift, 0).unwrap();
        store
            .create_incident(&vigil::store::incidents::NewIncident {
                asset_id: assets[&failure.asset],
                kind: failure.kind.clone(),
                severity: "major".into(),
                started_at: at(failure.started),
                detected_at: None,
                resolved_at: failure.resolved.map(at),
                root_cause: None,
                source: "simulator".into(),
                fingerprint: None,
                labels: serde_json::json!({}),
            })
            .await
            .unwrap();
    }
}

/// Plants decoys in the synthetic fleet: halfway between two failures of an asset, cpu
/// ramps exactly as it does before a `cpu_runaway` while temp dips a little
/// ([`TEMP_FALL`]), and no failure follows. Returns each decoy's asset and the minute its ramp peaks.
/// How fast temp falls during a decoy, against cpu's rise: a dip of at most 4, within the
/// noise's range (5 wide), so only the windows' shape tells a decoy from a failure.
const TEMP_FALL: f64 = 0.1;

fn plant_decoys(data: &mut train::TrainingData) -> Vec<(String, i64)> {
    let by_asset: Vec<(String, Vec<i64>)> = data
        .histories
        .iter()
        .map(|h| {
            let starts = data
                .failures
                .iter()
                .filter(|f| f.asset == h.asset)
                .map(|f| f.started / 60)
                .collect();
            (h.asset.clone(), starts)
        })
        .collect();
    let mut decoys = Vec::new();
    for (history, (asset, starts)) in data.histories.iter_mut().zip(by_asset) {
        for pair in starts.windows(2) {
            let peak = (pair[0] + pair[1]) / 2;
            for t in peak - 40..=peak {
                let rise = (40 - (peak - t)) as f64;
                history.metrics[0].as_mut().unwrap().values[t as usize] += rise;
                history.metrics[2].as_mut().unwrap().values[t as usize] -= TEMP_FALL * rise;
            }
            decoys.push((asset.clone(), peak));
        }
    }
    decoys
}

const SEED: u64 = 11;
const DAYS: i64 = 3;

#[tokio::test]
async fn false_alarm_feedback_lowers_the_scores_of_such_windows_in_the_next_model() {
    let app = TestApp::spawn().await;
    let store = &app.db.store;
    let mut data = synthetic(4, DAYS as usize, SEED);
    let decoys = plant_decoys(&mut data);
    store_data(store, &data, DAYS).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = small_training(dir.path());
    let before = train::run_once(store, &settings, train::Trigger::Manual, |_| {})
        .await
        .unwrap();
    assert!(before.bundle.report.feedback.is_none(), "no feedback yet");

    // Operators called the alerts on the decoys false alarms.
    let shift = shift(DAYS);
    for (n, (asset, peak)) in decoys.iter().enumerate() {
        let at = chrono::DateTime::from_timestamp(peak * 60 + shift, 0).unwrap();
        let alert_id = store
            .open_alert(&crate::support::score_at(asset, at, true))
            .await
            .unwrap()
            .unwrap();
        store.clear_alert(asset, chrono::Utc::now()).await.unwrap();
        store
            .insert_feedback(&vigil::store::alerts::NewFeedback {
                alert_id,
                label: "false_alarm".into(),
                failure_kind: None,
                note: None,
                client_key: format!("decoy-{n}"),
                author: "test".into(),
            })
            .await
            .unwrap();
    }
    let after = train::run_once(store, &settings, train::Trigger::Manual, |_| {})
        .await
        .unwrap();
    let feedback = after.bundle.report.feedback.clone().unwrap();
    assert_eq!(
        feedback.labels.train.1 + feedback.labels.validation.1 + feedback.labels.skipped,
        decoys.len() as u64,
        "{feedback:?}"
    );
    assert!(feedback.labels.train.1 >= 5, "{feedback:?}");
    assert!(feedback.labels.validation.1 >= 2, "{feedback:?}");
    assert_eq!(
        (feedback.labels.train.0, feedback.labels.validation.0),
        (0, 0)
    );
    // On the decoys of the validation period (labelled, never fitted on), the new model
    // scores lower than the one trained without feedback did. (Feature version 1, seeds 11
    // to 16 with 3 and 4 days: lower in 10 of 12, by half or more in 9; higher in 2. Version
    // 2, seed 11: to 0.57 of before in one run, under half in another: the synthetic fleet
    // ends now, so where its hours fall, and each window's past, moves from run to run.)
    let new = feedback.false_alarm_probability.unwrap();
    let old = feedback.champion_false_alarm_probability.unwrap();
    assert!(new < 0.8 * old, "new {new}, before {old}: {feedback:?}");
    // And it still ranks the validation windows about as well: the decoys look like
    // cpu_runaway's precursors, so teaching the model to doubt them may cost a little average
    // precision (seeds 11 to 16, 3 and 4 days: -0.002 to +0.009).
    let validation = after.bundle.report.failure.as_ref().unwrap();
    let earlier = before.bundle.report.failure.as_ref().unwrap();
    assert!(validation.roc_auc.unwrap() > 0.9, "{validation:?}");
    assert!(
        validation.average_precision.unwrap() >= earlier.average_precision.unwrap() - 0.05,
        "after {validation:?}, before {earlier:?}"
    );
    eprintln!(
        "feedback: false alarms' mean probability {old:.4} -> {new:.4}, validation AP {:.4} -> {:.4}",
        earlier.average_precision.unwrap(),
        validation.average_precision.unwrap()
    );
}

/// Settings that train quickly on the synthetic fleet, with artifacts under `data_dir`.
fn small_training(data_dir: &std::path::Path) -> vigil::config::Settings {
    let mut settings = vigil::config::Settings {
        data_dir: data_dir.to_owned(),
        ..Default::default()
    };
    settings.training = small_training_settings();
    settings
}

/// Training settings small enough for the synthetic fleet.
fn small_training_settings() -> TrainingSettings {
    TrainingSettings {
        window: 20,
        stride: 3,
        n_trees: 30,
        ..TrainingSettings::default()
    }
}

#[tokio::test]
async fn training_from_the_database_registers_and_measures_the_champion() {
    let app = TestApp::spawn().await;
    let store = &app.db.store;
    store_synthetic(store).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = small_training(dir.path());
    let first = train::run_once(store, &settings, train::Trigger::Manual, |_| {})
        .await
        .unwrap();
    assert!(first.registration.activated);
    assert!(
        first
            .bundle
            .report
            .failure
            .as_ref()
            .unwrap()
            .roc_auc
            .unwrap()
            > 0.9
    );
    assert!(
        artifact_size(&app, first.registration.model.model_id)
            .await
            .is_some(),
        "the artifact is stored with its row"
    );
    assert!(
        !dir.path().join("models").exists(),
        "nothing is written under the data directory"
    );

    let second = train::run_once(store, &settings, train::Trigger::Manual, |_| {})
        .await
        .unwrap();
    let decision = second.bundle.report.champion.as_ref().unwrap();
    assert!(
        decision.champion_average_precision.is_some(),
        "the champion was measured: {decision:?}"
    );
    assert_eq!(
        decision.champion_average_precision, decision.challenger_average_precision,
        "the same data and seed train the same model"
    );
    assert!(second.registration.activated, "an equal challenger wins");
    let runs: i64 = sqlx::query_scalar(
        "select count(*) from job_run where job = 'train' and status = 'succeeded'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(runs, 2);
}

#[tokio::test]
async fn a_training_run_started_over_the_api_is_recorded_and_listed_with_its_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(|settings| {
        let small = small_training(dir.path());
        settings.training = small.training;
    })
    .await;
    let store = &app.db.store;
    store_synthetic(store).await;
    // A run that a stopped process left `running` is marked lost by the next run.
    let orphan = store
        .start_job_run(train::JOB, "manual", None)
        .await
        .unwrap()
        .unwrap();

    let started = app
        .post_json("/v1/models/train", &serde_json::json!({}))
        .await;
    assert_eq!(started.status(), 202);
    let started: Value = started.json().await.unwrap();
    let id = started["job_run_id"].as_i64().unwrap();
    assert_eq!(started["status"], "running");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let run = loop {
        let run: Value = app.get_value(&format!("/v1/jobs/{id}")).await;
        if run["status"] != "running" {
            break run;
        }
        assert!(std::time::Instant::now() < deadline, "still running: {run}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["trigger"], "manual");
    assert!(run["finished_at"].is_string());
    assert!(
        run["detail"]["validation_average_precision"]
            .as_f64()
            .unwrap()
            > 0.5,
        "{run}"
    );
    let model_id = run["detail"]["model_id"].as_i64().unwrap();
    assert_eq!(
        store
            .active_model(BUNDLE_KIND, None)
            .await
            .unwrap()
            .unwrap()
            .model_id,
        model_id
    );

    let listed: Value = app.get_value("/v1/jobs?job=train").await;
    let runs = listed["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{listed}");
    assert_eq!(runs[0]["job_run_id"], id, "newest first");
    let lost = &runs[1];
    assert_eq!(lost["job_run_id"], orphan);
    assert_eq!(lost["status"], "failed");
    assert_eq!(lost["detail"]["lost"], true, "{lost}");

    // While the lock is held (another replica training), a new run is refused.
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let holder = {
        let store = store.clone();
        tokio::spawn(async move {
            train::with_train_lock(&store, || async {
                let _ = held.await;
            })
            .await
            .unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    expect_error(
        app.post_json("/v1/models/train", &serde_json::json!({}))
            .await,
        409,
        "conflict",
    )
    .await;
    release.send(()).unwrap();
    holder.await.unwrap().unwrap();
    expect_error(app.get("/v1/jobs?job=nightly").await, 400, "invalid_query").await;
    expect_error(app.get("/v1/jobs/999999").await, 404, "not_found").await;
}

#[tokio::test]
async fn only_one_replica_trains_at_a_time() {
    let app = TestApp::spawn().await;
    let store = app.db.store.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let holder = {
        let store = store.clone();
        tokio::spawn(async move {
            train::with_train_lock(&store, || async {
                let _ = rx.await;
                "trained"
            })
            .await
            .unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let second = train::with_train_lock(&store, || async { "trained too" })
        .await
        .unwrap();
    assert_eq!(
        second, None,
        "the second replica skips while the first holds the lock"
    );
    tx.send(()).unwrap();
    assert_eq!(holder.await.unwrap(), Some("trained"));
    let third = train::with_train_lock(&store, || async { "next night" })
        .await
        .unwrap();
    assert_eq!(third, Some("next night"));
}

#[tokio::test]
async fn serve_retrains_on_its_schedule_and_serves_the_new_model() {
    let db = crate::support::TestDb::migrated().await;
    store_synthetic(&db.store).await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_owned();
    let app = TestApp::spawn_on(db, move |settings| {
        settings.data_dir = data_dir;
        settings.training = TrainingSettings {
            schedule: "*/2 * * * * *".into(),
            ..small_training_settings()
        };
    })
    .await;
    let store = &app.db.store;
    assert!(
        store
            .active_model(BUNDLE_KIND, None)
            .await
            .unwrap()
            .is_none(),
        "no model before the schedule runs"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let active = loop {
        if let Some(model) = store.active_model(BUNDLE_KIND, None).await.unwrap() {
            break model;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the schedule trained no model in 300 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert_eq!(active.status, "active");
    assert!(
        artifact_size(&app, active.model_id).await.is_some(),
        "{active:?}"
    );
    let runs = store.job_runs(Some(train::JOB), 10).await.unwrap();
    assert!(
        runs.iter().any(|r| r.status == "succeeded"
            && r.trigger.as_deref() == Some("schedule")
            && r.scheduled_for.is_some()),
        "the scheduled run is recorded with its trigger and tick: {runs:?}"
    );
    // The serving process picks the new model up (activation is announced) and scores
    // stored windows with it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let scored: Value = app.get_value("/v1/assets/asset-0/score").await;
        if scored["model"]["kind"] == "trained" {
            assert!(scored["probability"].as_f64().is_some(), "{scored}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the served model is still {scored}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The bundle with a champion decision whose reason names `tag`, so that its artifact differs
/// from every other version's.
fn tagged(bundle: &train::Bundle, tag: &str) -> train::Bundle {
    let mut bundle = decided(bundle, true);
    bundle.report.champion.as_mut().unwrap().reason = format!("version {tag}");
    bundle
}

#[tokio::test]
async fn no_model_row_is_visible_without_its_artifact() {
    let app = TestApp::spawn().await;
    let store = &app.db.store;
    let bundle = tokio::task::spawn_blocking(trained).await.unwrap();
    let range = last_days(1);
    // The artifact cannot be stored (a constraint the test adds refuses it): the row is not
    // kept either.
    sqlx::query("alter table model_artifact add constraint test_refuses check (size < 0)")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let err = train::register(store, &bundle, range).await.unwrap_err();
    assert!(matches!(err, train::TrainError::Store(_)), "{err}");
    assert!(
        store.list_models().await.unwrap().is_empty(),
        "no row without its artifact"
    );
    sqlx::query("alter table model_artifact drop constraint test_refuses")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let registered = train::register(store, &bundle, range).await.unwrap();
    let record = &registered.model;
    assert!(artifact_size(&app, record.model_id).await.is_some());
    assert_eq!(record.artifact_sha256.as_deref().unwrap().len(), 64);
    assert_eq!(
        record.metrics["decision"]["challenger_wins"], true,
        "stored with the row"
    );
    // Exported, the artifact is the bundle's JSON.
    let bytes = store.model_artifact(record).await.unwrap();
    let exported: train::Bundle = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(exported.schema, bundle.schema);
}

/// The uncompressed size of a model's artifact in the database, if it has one there.
async fn artifact_size(app: &TestApp, model_id: i64) -> Option<i64> {
    sqlx::query_scalar("select size from model_artifact where model_id = $1")
        .bind(model_id)
        .fetch_optional(&app.db.pool)
        .await
        .unwrap()
}

/// Removes a model's artifact (`None`) or replaces it with other bytes.
async fn tamper(app: &TestApp, model_id: i64, bytes: Option<&[u8]>) {
    match bytes {
        None => sqlx::query("delete from model_artifact where model_id = $1")
            .bind(model_id)
            .execute(&app.db.pool)
            .await
            .unwrap(),
        Some(bytes) => sqlx::query("update model_artifact set bytes = $2 where model_id = $1")
            .bind(model_id)
            .bind(snap::raw::Encoder::new().compress_vec(bytes).unwrap())
            .execute(&app.db.pool)
            .await
            .unwrap(),
    };
}

#[tokio::test]
async fn a_model_that_cannot_load_is_never_activated_and_rollback_passes_over_it() {
    let app = TestApp::spawn().await;
    let store = &app.db.store;
    let range = last_days(1);
    let bundle = tokio::task::spawn_blocking(trained).await.unwrap();
    let mut versions = Vec::new();
    for tag in ["1", "2", "3"] {
        let registration = train::register(store, &tagged(&bundle, tag), range)
            .await
            .unwrap();
        assert!(registration.activated);
        versions.push(registration.model);
    }
    let (v1, v2, v3) = (&versions[0], &versions[1], &versions[2]);
    // v2's artifact goes missing; v1's is altered.
    tamper(&app, v2.model_id, None).await;
    let response = app
        .client
        .post(app.url(&format!("/v1/models/{}/activate", v2.model_id)))
        .send()
        .await
        .unwrap();
    expect_error(response, 409, "model_unloadable").await;
    let active = store
        .active_model(BUNDLE_KIND, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        active.model_id, v3.model_id,
        "the working model stays active"
    );

    // Rollback from v3 passes over the missing v2 to v1.
    let back = train::rollback(store).await.unwrap().unwrap();
    assert_eq!(back.model_id, v1.model_id);
    // Now v1 is active and v3, v2 retired; v1's file altered, activation refuses it too.
    tamper(&app, v1.model_id, Some(b"{}")).await;
    let err = train::activate(store, v1.model_id).await.unwrap_err();
    assert!(matches!(err, train::TrainError::Unloadable { .. }), "{err}");
}

#[tokio::test]
async fn training_over_a_broken_champion_says_so_and_replaces_it() {
    let app = TestApp::spawn().await;
    let store = &app.db.store;
    store_synthetic(store).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = small_training(dir.path());
    let first = train::run_once(store, &settings, train::Trigger::Manual, |_| {})
        .await
        .unwrap();
    tamper(&app, first.registration.model.model_id, None).await;
    let second = train::run_once(store, &settings, train::Trigger::Manual, |_| {})
        .await
        .unwrap();
    let decision = second.bundle.report.champion.as_ref().unwrap();
    assert!(second.registration.activated);
    assert!(decision.reason.contains("cannot be loaded"), "{decision:?}");
    assert_eq!(second.champion_id, Some(first.registration.model.model_id));
}
