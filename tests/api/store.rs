use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use serde_json::json;
use sqlx::postgres::PgListener;
use vigil::store::Error;
use vigil::store::assets::NewAsset;
use vigil::store::incidents::NewIncident;
use vigil::store::models::{ACTIVATION_CHANNEL, NewModel};

use crate::support::TestDb;

fn asset(name: &str) -> NewAsset {
    NewAsset {
        name: name.into(),
        class: "web".into(),
        labels: json!({ "dc": "east" }),
    }
}

#[tokio::test]
async fn a_duplicate_asset_is_a_typed_duplicate() {
    let db = TestDb::migrated().await;
    db.store.create_asset(&asset("web-01")).await.unwrap();
    let err = db.store.create_asset(&asset("web-01")).await.unwrap_err();
    assert!(
        matches!(err, Error::Duplicate { ref constraint } if constraint == "asset_name_key"),
        "{err:?}"
    );
}

#[tokio::test]
async fn unknown_assets_and_metrics_are_created_once_on_first_sight() {
    let db = TestDb::migrated().await;
    db.store.create_asset(&asset("known")).await.unwrap();
    let names: Vec<String> = ["known", "new-1", "new-2", "new-1"]
        .map(String::from)
        .to_vec();
    let first = db.store.resolve_asset_ids(&names).await.unwrap();
    assert_eq!(first.len(), 3);
    let second = db.store.resolve_asset_ids(&names).await.unwrap();
    assert_eq!(first, second);
    let created = db.store.asset_by_name("new-2").await.unwrap();
    assert_eq!(created.class, "default");
    let metrics = db
        .store
        .resolve_metric_ids(&["cpu".into(), "mem".into()])
        .await
        .unwrap();
    assert_eq!(metrics.len(), 2);
    assert_ne!(metrics["cpu"], metrics["mem"]);
}

#[tokio::test]
async fn concurrent_first_sight_of_the_same_names_agrees_on_ids() {
    let db = TestDb::migrated().await;
    let names: Vec<String> = (0..50).map(|i| format!("host-{i}")).collect();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = db.store.clone();
            let names = names.clone();
            tokio::spawn(async move { store.resolve_asset_ids(&names).await.unwrap() })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    for result in &results {
        assert_eq!(result.len(), 50);
        assert_eq!(result, &results[0]);
    }
}

fn incident(asset_id: i64, fingerprint: Option<&str>) -> NewIncident {
    NewIncident {
        asset_id,
        kind: "memory_leak".into(),
        severity: "major".into(),
        started_at: Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0).unwrap(),
        detected_at: None,
        resolved_at: None,
        root_cause: None,
        source: "alertmanager".into(),
        fingerprint: fingerprint.map(String::from),
        labels: json!({}),
    }
}

#[tokio::test]
async fn incidents_are_unique_by_fingerprint_and_start_and_resolve_once() {
    let db = TestDb::migrated().await;
    let asset = db.store.create_asset(&asset("web-01")).await.unwrap();
    let created = db
        .store
        .create_incident(&incident(asset.asset_id, Some("abc")))
        .await
        .unwrap();
    let err = db
        .store
        .create_incident(&incident(asset.asset_id, Some("abc")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Duplicate { .. }), "{err:?}");
    // Without a fingerprint, two reports are two incidents.
    db.store
        .create_incident(&incident(asset.asset_id, None))
        .await
        .unwrap();
    db.store
        .create_incident(&incident(asset.asset_id, None))
        .await
        .unwrap();

    let first = Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap();
    let resolved = db
        .store
        .resolve_incident(created.incident_id, first, Some("leak in v2"))
        .await
        .unwrap();
    assert_eq!(resolved.resolved_at, Some(first));
    let again = db
        .store
        .resolve_incident(
            created.incident_id,
            first + chrono::Duration::hours(1),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        again.resolved_at,
        Some(first),
        "the first resolution time is kept"
    );
    assert_eq!(again.root_cause.as_deref(), Some("leak in v2"));
    assert!(matches!(
        db.store.incident(999_999).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn an_incident_with_an_unknown_severity_is_rejected_by_a_constraint() {
    let db = TestDb::migrated().await;
    let asset = db.store.create_asset(&asset("web-01")).await.unwrap();
    let mut bad = incident(asset.asset_id, None);
    bad.severity = "apocalyptic".into();
    let err = db.store.create_incident(&bad).await.unwrap_err();
    assert!(matches!(err, Error::Constraint { .. }), "{err:?}");
}

fn model(kind: &str) -> NewModel {
    NewModel {
        kind: kind.into(),
        asset_class: None,
        params: json!({ "n_trees": 100 }),
        seed: Some(0),
        feature_schema: json!({ "version": 1, "names": ["cpu_mean"] }),
        train_from: None,
        train_to: None,
        metrics: json!({}),
        artifact_path: None,
        artifact: None,
        artifact_sha256: None,
    }
}

#[tokio::test]
async fn model_versions_count_per_kind_and_class() {
    let db = TestDb::migrated().await;
    let a = db
        .store
        .register_model(&model("isolation_forest"))
        .await
        .unwrap();
    let b = db
        .store
        .register_model(&model("isolation_forest"))
        .await
        .unwrap();
    let c = db.store.register_model(&model("diagnosis")).await.unwrap();
    let mut per_class = model("isolation_forest");
    per_class.asset_class = Some("pump".into());
    let d = db.store.register_model(&per_class).await.unwrap();
    assert_eq!((a.version, b.version, c.version, d.version), (1, 2, 1, 1));
    assert_eq!(a.status, "candidate");
}

#[tokio::test]
async fn activation_retires_the_previous_model_and_notifies_replicas() {
    let db = TestDb::migrated().await;
    let mut listener = PgListener::connect_with(&db.pool).await.unwrap();
    listener.listen(ACTIVATION_CHANNEL).await.unwrap();

    let v1 = db.store.register_model(&model("bundle")).await.unwrap();
    let v2 = db.store.register_model(&model("bundle")).await.unwrap();
    db.store.activate_model(v1.model_id).await.unwrap();
    let note = listener.recv().await.unwrap();
    assert_eq!(note.payload(), v1.model_id.to_string());

    db.store.activate_model(v2.model_id).await.unwrap();
    let note = listener.recv().await.unwrap();
    assert_eq!(note.payload(), v2.model_id.to_string());

    let active = db
        .store
        .active_model("bundle", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(active.model_id, v2.model_id);
    let all = db.store.list_models().await.unwrap();
    let old = all.iter().find(|m| m.model_id == v1.model_id).unwrap();
    assert_eq!(old.status, "retired");
    assert!(matches!(
        db.store.activate_model(424_242).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn resolving_known_names_does_not_use_up_identity_values() {
    let db = TestDb::migrated().await;
    let first = db.store.resolve_metric_ids(&["cpu".into()]).await.unwrap();
    // A second process (no cache) asks for the known name many times, then a new one.
    let other = vigil::store::Store::new(db.pool.clone());
    for _ in 0..20 {
        other.resolve_metric_ids(&["cpu".into()]).await.unwrap();
    }
    let both = other
        .resolve_metric_ids(&["cpu".into(), "mem".into()])
        .await
        .unwrap();
    assert_eq!(both["cpu"], first["cpu"]);
    assert_eq!(
        both["mem"],
        first["cpu"] + 1,
        "no identity value was burnt on known names"
    );
}

#[tokio::test]
async fn stored_scores_keep_every_field_and_nulls_and_a_bad_batch_stores_nothing() {
    use vigil::store::scores::NewScore;
    let db = TestDb::migrated().await;
    let end = Utc.with_ymd_and_hms(2026, 3, 1, 12, 30, 0).unwrap()
        + chrono::Duration::microseconds(123_456);
    let trained = NewScore {
        asset: "pump-1".into(),
        model_id: Some(7),
        model_version: "bundle/v3".into(),
        window_end: end,
        probability: Some(0.8125),
        anomaly_score: 0.5,
        threshold: 0.25,
        is_alert: true,
        failure_kind: Some("memory_leak".into()),
        kind_confidence: Some(0.75),
        explanation: json!({ "drivers": [{ "feature": "mem_slope", "sd": 2.1 }], "note": "é" }),
    };
    let cold = NewScore {
        asset: "pump-2".into(),
        model_id: None,
        model_version: "cold_start/streaming".into(),
        probability: None,
        is_alert: false,
        failure_kind: None,
        kind_confidence: None,
        explanation: json!({}),
        ..trained.clone()
    };
    assert_eq!(
        db.store
            .insert_scores(&[trained.clone(), cold.clone()])
            .await
            .unwrap(),
        2
    );
    type Row = (
        String,
        Option<i64>,
        String,
        chrono::DateTime<Utc>,
        Option<f64>,
        f64,
        f64,
        bool,
        Option<String>,
        Option<f64>,
        serde_json::Value,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "select a.name, model_id, model_version, window_end, probability, anomaly_score, \
         threshold, is_alert, failure_kind, kind_confidence, explanation \
         from score join asset a using (asset_id) order by a.name",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let expected: Vec<Row> = [trained.clone(), cold]
        .into_iter()
        .map(|s| {
            (
                s.asset,
                s.model_id,
                s.model_version,
                s.window_end,
                s.probability,
                s.anomaly_score,
                s.threshold,
                s.is_alert,
                s.failure_kind,
                s.kind_confidence,
                s.explanation,
            )
        })
        .collect();
    assert_eq!(rows, expected);

    // A probability out of range breaks a constraint: the whole batch is refused.
    let bad = NewScore {
        probability: Some(1.5),
        ..trained.clone()
    };
    let err = db.store.insert_scores(&[trained, bad]).await.unwrap_err();
    assert!(matches!(err, Error::Constraint { .. }), "{err:?}");
    let count: i64 = sqlx::query_scalar("select count(*) from score")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 2);
}

#[tokio::test]
async fn a_dump_for_training_holds_every_sample_of_the_range_in_series_order() {
    let db = TestDb::migrated().await;
    let assets = db
        .store
        .resolve_asset_ids(&["b-host".into(), "a-host".into()])
        .await
        .unwrap();
    let metrics = db
        .store
        .resolve_metric_ids(&["mem".into(), "cpu".into()])
        .await
        .unwrap();
    // Three days (three partitions), stored newest day first and metrics interleaved, with
    // one sample on a half second (rounded up) and one just outside each end of the range.
    let day0 = Utc
        .with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .unwrap()
        .timestamp();
    let mut batch = vigil::store::samples::SampleColumns::default();
    let mut expected: Vec<(i64, i32, Vec<i64>, Vec<f64>)> = Vec::new();
    for asset in ["a-host", "b-host"] {
        for metric in ["cpu", "mem"] {
            let (a, m) = (assets[asset], metrics[metric]);
            let ts: Vec<i64> = (0..3).map(|d| day0 + d * 86_400 + 60).collect();
            let values: Vec<f64> = ts.iter().map(|&t| (t % 1000) as f64 + a as f64).collect();
            for d in (0..3).rev() {
                batch.asset_ids.push(a);
                batch.metric_ids.push(m);
                batch.ts_micros.push(ts[d] * 1_000_000);
                batch.values.push(values[d]);
            }
            expected.push((a, m, ts, values));
        }
    }
    let a = assets["a-host"];
    let cpu = metrics["cpu"];
    batch.asset_ids.extend([a, a, a]);
    batch.metric_ids.extend([cpu, cpu, cpu]);
    batch.ts_micros.extend([
        (day0 + 30) * 1_000_000 + 500_000,
        (day0 - 1) * 1_000_000,
        (day0 + 3 * 86_400) * 1_000_000,
    ]);
    batch.values.extend([7.0, 8.0, 9.0]);
    let series = expected
        .iter_mut()
        .find(|s| s.0 == a && s.1 == cpu)
        .unwrap();
    series.2.insert(0, day0 + 31);
    series.3.insert(0, 7.0);
    expected.sort_by_key(|s| (s.0, s.1));
    db.store.insert_samples(&batch).await.unwrap();

    let from = Utc.timestamp_opt(day0, 0).unwrap();
    let to = Utc.timestamp_opt(day0 + 3 * 86_400, 0).unwrap();
    let dump = db.store.dump_samples(from, to).await.unwrap();
    assert_eq!(dump.samples(), 13);
    let got: Vec<(i64, i32, Vec<i64>, Vec<f64>)> = dump
        .series
        .into_iter()
        .map(|s| (s.asset_id, s.metric_id, s.history.ts, s.history.values))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(dump.assets[&a], "a-host");
    assert_eq!(dump.metrics[&cpu], "cpu");
}

#[tokio::test]
async fn alerts_open_and_clear_at_the_ends_of_their_windows_never_later_than_now() {
    let db = TestDb::migrated().await;
    let store = &db.store;
    let pool = &db.pool;
    let times = |id: i64| async move {
        sqlx::query_as::<_, (DateTime<Utc>, Option<DateTime<Utc>>)>(
            "select opened_at, cleared_at from alert where alert_id = $1",
        )
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
    };
    let hour = chrono::Duration::hours(1);
    let opened_at = (Utc::now() - hour * 2).trunc_subsecs(0);
    // Replayed samples: opened and cleared at their windows' ends.
    let score = crate::support::score_at("a", opened_at, true);
    let id = store.open_alert(&score).await.unwrap().unwrap();
    assert_eq!(times(id).await.0, opened_at);
    store
        .clear_alert("a", opened_at + hour)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(times(id).await, (opened_at, Some(opened_at + hour)));
    // A window end before the opening clears at the opening; one in the future, now.
    let id = store.open_alert(&score).await.unwrap().unwrap();
    store
        .clear_alert("a", opened_at - hour)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(times(id).await.1, Some(opened_at));
    let id = store.open_alert(&score).await.unwrap().unwrap();
    let before = Utc::now();
    store
        .clear_alert("a", before + hour * 24)
        .await
        .unwrap()
        .unwrap();
    let cleared = times(id).await.1.unwrap();
    assert!(
        cleared >= before - chrono::Duration::seconds(1) && cleared <= Utc::now(),
        "{cleared}"
    );
}

#[tokio::test]
async fn the_shared_hysteresis_fires_after_n_windows_and_clears_below_the_lower_threshold() {
    use vigil::store::scores::Transition::{Clear, Fire, Stay};
    let db = TestDb::migrated().await;
    let store = &db.store;
    // Levels against fire at 0.5, clear below 0.3, three windows to fire.
    let observe = |level: f64| async move {
        let t = store
            .alert_windows(&[("a".to_owned(), level >= 0.5, level < 0.3, 3)])
            .await
            .unwrap()[0];
        // What the scoring service does on a transition.
        match t {
            Fire => {
                store
                    .open_alert(&crate::support::score_at("a", Utc::now(), true))
                    .await
                    .unwrap()
                    .unwrap();
            }
            Clear => {
                store.clear_alert("a", Utc::now()).await.unwrap().unwrap();
            }
            Stay => {}
        }
        t
    };
    assert_eq!(observe(0.1).await, Stay, "calm and nothing open");
    assert_eq!(observe(0.6).await, Stay);
    assert_eq!(observe(0.7).await, Stay);
    assert_eq!(
        observe(0.4).await,
        Stay,
        "a dip resets the count but does not clear"
    );
    assert_eq!(observe(0.6).await, Stay);
    assert_eq!(observe(0.6).await, Stay);
    assert_eq!(observe(0.9).await, Fire);
    assert_eq!(observe(0.9).await, Stay, "open already");
    assert_eq!(
        observe(0.4).await,
        Stay,
        "between the thresholds the alert holds"
    );
    assert_eq!(observe(0.2).await, Clear);
    assert_eq!(observe(0.2).await, Stay, "cleared once");
    // An alert some other way opened (not by a streak) is cleared by a calm window too.
    store
        .open_alert(&crate::support::score_at("a", Utc::now(), true))
        .await
        .unwrap();
    assert_eq!(observe(0.1).await, Clear);

    // Many windows in one statement decide as one by one would, each asset's in order.
    let w = |asset: &str, above: bool| (asset.to_owned(), above, !above, 2);
    let decided = store
        .alert_windows(&[
            w("z", true),
            w("b", true),
            w("z", true),
            w("b", false),
            w("b", true),
            w("z", true),
        ])
        .await
        .unwrap();
    assert_eq!(decided, [Stay, Stay, Fire, Stay, Stay, Fire]);
    assert_eq!(store.alert_windows(&[]).await.unwrap(), []);
}
