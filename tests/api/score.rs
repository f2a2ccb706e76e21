//! `POST /v1/score`: scoring with the active model, hot swap on activation, bad windows.

use std::time::Duration;

use serde_json::{Value, json};
use vigil::jobs::train::{self, synthetic};

use crate::support::{TestApp, expect_error, last_days, trained};

/// The synthetic fleet's asset-0 window of 20 minutes ending at `end_minute`.
pub fn window(end_minute: usize) -> Value {
    let data = synthetic(4, 3, 7);
    let history = &data.histories[0];
    let mut window = serde_json::Map::new();
    for (name, series) in data.metrics.iter().zip(&history.metrics) {
        let values = &series.as_ref().unwrap().values[end_minute + 1 - 20..=end_minute];
        window.insert(name.clone(), json!(values));
    }
    json!({ "asset": "asset-0", "window": window })
}

/// The synthetic fleet's asset-0 window of `len` minutes ending at `end_minute`.
fn long_window(len: usize, end_minute: usize) -> Value {
    let data = synthetic(4, 3, 7);
    let mut window = serde_json::Map::new();
    for (name, series) in data.metrics.iter().zip(&data.histories[0].metrics) {
        let values = &series.as_ref().unwrap().values[end_minute + 1 - len..=end_minute];
        window.insert(name.clone(), json!(values));
    }
    json!({ "asset": "asset-0", "window": window })
}

/// An app whose database has the trained bundle registered (artifact and all) and active,
/// once the app serves it.
pub async fn app_with_model(tweak: impl FnOnce(&mut vigil::config::Settings)) -> TestApp {
    let app = TestApp::spawn_with(tweak).await;
    let bundle = tokio::task::spawn_blocking(trained).await.unwrap();
    let range = last_days(3);
    train::register(&app.db.store, &bundle, range)
        .await
        .unwrap();
    wait_for_model(&app, &window(550)).await;
    app
}

/// Posts `body` until a trained model answers it; returns that answer.
async fn wait_for_model(app: &TestApp, body: &Value) -> Value {
    for _ in 0..100 {
        let response = app.post_json("/v1/score", body).await;
        if response.status() == 200 {
            let answer: Value = response.json().await.unwrap();
            if answer["model"]["kind"] == "trained" {
                return answer;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the activated model never reached the app");
}

#[tokio::test]
async fn an_activated_model_reaches_the_app_and_scores_with_an_explanation() {
    let app = TestApp::spawn().await;
    // asset-0 fails at minute 200 (cpu ramps from minute 160) and next at minute 900.
    let before_failure = window(195);
    let normal = window(550);
    // No model yet: the cold-start detector answers windows long enough to learn from.
    expect_error(
        app.post_json("/v1/score", &normal).await,
        422,
        "invalid_value",
    )
    .await;
    let cold: Value = app.post_value("/v1/score", &long_window(100, 300)).await;
    assert_eq!(cold["model"], json!({ "kind": "cold_start" }), "{cold}");
    assert!(cold.get("probability").is_none(), "no probability is faked");
    assert_eq!(cold["threshold"], 0.5);
    let metrics = cold["cold_start"]["metrics"].as_object().unwrap();
    assert_eq!(
        metrics.len(),
        normal["window"].as_object().unwrap().len(),
        "{cold}"
    );
    let top = metrics
        .values()
        .map(|v| v.as_f64().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(cold["cold_start"]["anomaly_score"].as_f64().unwrap(), top);
    assert!((0.0..=1.0).contains(&top));
    assert_eq!(cold["alert"], top >= 0.5);

    let bundle = tokio::task::spawn_blocking(trained).await.unwrap();
    let range = last_days(3);
    let registration = train::register(&app.db.store, &bundle, range)
        .await
        .unwrap();

    let risky = wait_for_model(&app, &before_failure).await;
    assert_eq!(risky["model"]["model_id"], registration.model.model_id);
    assert_eq!(risky["model"]["kind"], "trained");
    assert!(
        risky.get("cold_start").is_none(),
        "the model knows every metric"
    );
    assert_eq!(risky["horizon_secs"], 1800);
    // Nothing is stored for the class: the threshold is the one the model chose on its
    // validation windows (within the policy's bounds), not the configured 0.5.
    let proposed = bundle
        .alert_threshold
        .expect("the synthetic fleet proposes one");
    let fire_at = proposed.fire_at.clamp(0.05, 0.95);
    assert!(
        proposed.f1 > 0.0 && proposed.positives >= 10,
        "{proposed:?}"
    );
    assert_eq!(risky["threshold"].as_f64(), Some(fire_at), "{risky}");
    let policy: Value = app.get_value("/v1/policy/thresholds").await;
    assert_eq!(policy["default_source"], "model", "{policy}");
    assert_eq!(policy["default"]["fire_at"].as_f64(), Some(fire_at));
    let clear_at = (fire_at - 0.2).max(fire_at * 0.6);
    assert_eq!(policy["default"]["clear_at"].as_f64(), Some(clear_at));
    assert_eq!(policy["proposed"]["*"].as_f64(), Some(proposed.fire_at));
    let id = registration.model.model_id;
    let detail: Value = app.get_value(&format!("/v1/models/{id}")).await;
    let recorded = &detail["metrics"]["alert_threshold"];
    assert_eq!(
        recorded["fire_at"].as_f64(),
        Some(proposed.fire_at),
        "{detail}"
    );
    assert_eq!(recorded["positives"].as_u64(), Some(proposed.positives));
    assert!(risky["alert"].is_boolean());
    assert!(risky["anomaly_score"].as_f64().unwrap() > 0.0);
    let drivers = risky["drivers"].as_array().unwrap();
    assert_eq!(drivers.len(), 5);
    assert!(
        drivers
            .iter()
            .all(|d| d["text"].as_str().is_some_and(|t| t.contains("risk")))
    );
    assert_eq!(risky["diagnosis"]["kind"], "cpu_runaway", "{risky}");
    assert!(!risky["diagnosis"]["rules"].as_array().unwrap().is_empty());

    let calm: Value = app.post_value("/v1/score", &normal).await;
    assert!(
        risky["probability"].as_f64().unwrap() > calm["probability"].as_f64().unwrap(),
        "{} vs {}",
        risky["probability"],
        calm["probability"]
    );
    assert_eq!(risky["alert"], true);
    assert_eq!(calm["alert"], false);
    let ttf = |v: &Value| v["time_to_failure"]["secs"].as_f64().unwrap();
    assert_eq!(risky["time_to_failure"]["cap_secs"], 21_600);
    assert!(
        ttf(&risky) < ttf(&calm),
        "a window before a failure is nearer to it: {} vs {}",
        risky["time_to_failure"],
        calm["time_to_failure"]
    );
}

#[tokio::test]
async fn bad_windows_get_clear_errors_and_missing_metrics_are_named() {
    let app = app_with_model(|_| {}).await;
    let good = window(550);
    wait_for_model(&app, &good).await;

    let mut missing = good.clone();
    missing["window"].as_object_mut().unwrap().remove("temp");
    missing["window"]["disk"] = json!(vec![1.0; 20]);
    let answer: Value = app.post_value("/v1/score", &missing).await;
    assert_eq!(answer["missing_metrics"], json!(["temp"]));
    assert_eq!(answer["ignored_metrics"], json!(["disk"]));

    let mut short = good.clone();
    short["window"]["cpu"] = json!([1.0, 2.0]);
    expect_error(
        app.post_json("/v1/score", &short).await,
        422,
        "wrong_window_length",
    )
    .await;

    let text = serde_json::to_string(&good).unwrap();
    let cpu_at = text.find("\"cpu\":[").unwrap() + 7;
    let nan_body = format!("{}NaN,{}", &text[..cpu_at], &text[cpu_at..]);
    let response = app
        .post_raw("/v1/score", "application/json", nan_body.into_bytes())
        .await;
    expect_error(response, 422, "non_finite_value").await;

    let nothing = json!({ "asset": "asset-0", "window": { "disk": vec![1.0; 20] } });
    expect_error(
        app.post_json("/v1/score", &nothing).await,
        422,
        "no_usable_metric",
    )
    .await;
    let bad_asset = json!({ "asset": "no such asset!", "window": good["window"] });
    expect_error(
        app.post_json("/v1/score", &bad_asset).await,
        422,
        "invalid_value",
    )
    .await;
}

#[tokio::test]
async fn batches_score_each_window_and_stored_history_scores_like_a_posted_window() {
    let app = app_with_model(|_| {}).await;
    let posted = window(195);
    let single = wait_for_model(&app, &posted).await;

    let mut short = posted.clone();
    short["window"]["cpu"] = json!([1.0]);
    let batch: Value = app
        .post_value("/v1/score/batch", &json!({ "windows": [posted, short] }))
        .await;
    assert_eq!(batch["scores"][0]["probability"], single["probability"]);
    assert_eq!(batch["scores"][1]["error"]["code"], "wrong_window_length");

    expect_error(app.get("/v1/assets/asset-0/score").await, 404, "not_found").await;
    // Store the same 20 minutes as samples ending at the last whole minute.
    let end = chrono::Utc::now().timestamp() / 60 * 60;
    let series: Vec<Value> = posted["window"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(metric, values)| {
            let timestamps: Vec<i64> = (0..20).map(|k| end - (19 - k) * 60).collect();
            json!({ "asset": "asset-0", "metric": metric, "timestamps": timestamps, "values": values })
        })
        .collect();
    assert_eq!(
        app.post_json("/v1/samples", &json!({ "series": series }))
            .await
            .status(),
        200
    );
    let stored: Value = app.get_value("/v1/assets/asset-0/score").await;
    assert_eq!(stored["probability"], single["probability"], "{stored}");
    assert_eq!(stored["missing_metrics"], json!([]));
}

#[tokio::test]
async fn scores_are_stored_and_alerts_open_with_hysteresis_and_clear() {
    let app = app_with_model(|s| {
        s.scoring.fire_windows = 2;
        s.scoring.every_score = true;
    })
    .await;
    let risky = window(195);
    let calm = window(550);
    wait_for_model(&app, &calm).await;

    let first: Value = app.post_value("/v1/score", &risky).await;
    assert_eq!(first["alert"], true);
    assert!(
        first.get("alert_opened").is_none(),
        "one risky window is not enough"
    );
    let second: Value = app.post_value("/v1/score", &risky).await;
    let alert_id = second["alert_opened"]
        .as_i64()
        .expect("the second risky window opens an alert");
    // The alert is durable before the answer: it is in the database now.
    assert_eq!(
        app.db.store.open_alert_id("asset-0").await.unwrap(),
        Some(alert_id)
    );
    let third: Value = app.post_value("/v1/score", &risky).await;
    assert!(
        third.get("alert_opened").is_none(),
        "an open alert is not opened again"
    );

    let _: Value = app.post_value("/v1/score", &calm).await;
    assert_eq!(
        app.db.store.open_alert_id("asset-0").await.unwrap(),
        None,
        "a calm window clears it"
    );

    // Scores are written off the request path, shortly after.
    let mut stored = 0;
    for _ in 0..50 {
        stored = sqlx::query_scalar::<_, i64>("select count(*) from score")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        if stored >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stored >= 5, "{stored} scores stored");
    let kinds: Vec<Option<String>> =
        sqlx::query_scalar("select failure_kind from score where is_alert")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert!(
        kinds.iter().all(|k| k.as_deref() == Some("cpu_runaway")),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn an_activation_on_one_replica_reaches_another_sharing_the_database() {
    let first = app_with_model(|_| {}).await;
    let second = first.replica().await;
    let body = window(550);
    let before = wait_for_model(&second, &body).await;
    let v1 = before["model"]["model_id"].as_i64().unwrap();

    // Register a second version through the first replica's store; both must switch.
    let bundle = tokio::task::spawn_blocking(trained).await.unwrap();
    let range = last_days(3);
    let v2 = train::register(&first.db.store, &bundle, range)
        .await
        .unwrap();
    assert!(v2.activated, "an equal challenger wins");
    for app in [&first, &second] {
        let mut seen = v1;
        for _ in 0..50 {
            let answer: Value = app.post_value("/v1/score", &body).await;
            seen = answer["model"]["model_id"].as_i64().unwrap();
            if seen == v2.model.model_id {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            seen, v2.model.model_id,
            "the replica serves the new version within 5 s"
        );
    }
}

/// Stores asset-0's synthetic minutes `minutes` as samples, minute m at `base + 60 m`.
pub async fn post_minutes(app: &TestApp, base: i64, minutes: std::ops::RangeInclusive<usize>) {
    let data = synthetic(4, 3, 7);
    let series: Vec<Value> = data
        .metrics
        .iter()
        .zip(&data.histories[0].metrics)
        .map(|(metric, s)| {
            let values = &s.as_ref().unwrap().values[minutes.clone()];
            let timestamps: Vec<i64> = minutes.clone().map(|m| base + 60 * m as i64).collect();
            json!({ "asset": "asset-0", "metric": metric, "timestamps": timestamps, "values": values })
        })
        .collect();
    let response = app
        .post_json("/v1/samples", &json!({ "series": series }))
        .await;
    assert_eq!(response.status(), 200);
}

/// Waits until `n` scores of ingested windows are stored (the model's test window, scored
/// at `now`, is left out); returns the newest one's alert flag.
async fn wait_for_scores(app: &TestApp, n: i64) -> bool {
    for _ in 0..100 {
        let row: (i64, Option<bool>) = sqlx::query_as(
            "select count(*), (array_agg(is_alert order by window_end desc))[1] from score \
             where window_end < now() - interval '30 minutes'",
        )
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        if row.0 >= n {
            assert_eq!(row.0, n, "each new grid point is scored once");
            return row.1.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("ingested samples were not scored");
}

#[tokio::test]
async fn scoring_on_ingest_opens_and_clears_alerts_with_hysteresis() {
    let app = app_with_model(|s| s.scoring.fire_windows = 2).await;
    let _: Value = app.post_value("/v1/score", &window(550)).await; // one calm score
    sqlx::query("delete from score")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let base = (chrono::Utc::now().timestamp() / 60 - 600) * 60;

    // asset-0's cpu ramps from minute 160 to its failure at minute 200. Push it minute by
    // minute, as a collector would: each batch completes one new grid point.
    post_minutes(&app, base, 150..=185).await;
    let mut scored = 1;
    let mut alerting_in_a_row = u32::from(wait_for_scores(&app, scored).await);
    let mut opened_at = None;
    for minute in 186..=199 {
        post_minutes(&app, base, minute..=minute).await;
        scored += 1;
        let alerting = wait_for_scores(&app, scored).await;
        alerting_in_a_row = if alerting { alerting_in_a_row + 1 } else { 0 };
        let open = app.db.store.open_alert_id("asset-0").await.unwrap();
        if alerting_in_a_row < 2 && opened_at.is_none() {
            assert_eq!(
                open, None,
                "minute {minute}: opened before 2 alerting windows"
            );
        }
        if alerting_in_a_row >= 2 && opened_at.is_none() {
            assert!(
                open.is_some(),
                "minute {minute}: 2 alerting windows and no alert"
            );
            opened_at = Some(minute);
        }
        // Re-sending the same minute completes nothing new: no second score.
        post_minutes(&app, base, minute..=minute).await;
    }
    assert!(
        opened_at.is_some(),
        "the ramp before the failure never opened an alert"
    );

    // A calm stretch long after the failure clears it (scoring on ingest catches up on
    // its last grid points, in order).
    post_minutes(&app, base, 520..=550).await;
    for _ in 0..100 {
        if app
            .db
            .store
            .open_alert_id("asset-0")
            .await
            .unwrap()
            .is_none()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the calm window did not clear the alert");
}

#[tokio::test]
async fn scoring_on_ingest_scores_every_grid_point_a_batch_spans_and_counts_what_it_skips() {
    let app = app_with_model(|_| {}).await;
    sqlx::query("delete from score")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let base = (chrono::Utc::now().timestamp() / 60 - 600) * 60;
    let skipped = "vigil_scoring_on_ingest_skipped_total";
    // First sight of the asset: its newest point only.
    post_minutes(&app, base, 100..=170).await;
    wait_for_scores(&app, 1).await;
    // One batch of five minutes: five windows, one per grid point.
    post_minutes(&app, base, 171..=175).await;
    wait_for_scores(&app, 6).await;
    let ends: Vec<i64> = sqlx::query_scalar(
        "select extract(epoch from window_end)::bigint from score \
         where window_end < now() - interval '30 minutes' order by window_end",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    let minutes: Vec<i64> = ends.iter().map(|e| (e - base) / 60).collect();
    assert_eq!(minutes, vec![170, 171, 172, 173, 174, 175]);
    assert_eq!(metric(&app, skipped).await, 0.0);
    // A batch 100 points ahead: the last CATCH_UP_POINTS are scored, the rest counted.
    post_minutes(&app, base, 176..=275).await;
    let catch_up = vigil::scoring::on_ingest::CATCH_UP_POINTS;
    wait_for_scores(&app, 6 + catch_up).await;
    assert_eq!(metric(&app, skipped).await, (100 - catch_up) as f64);
    let last: i64 = sqlx::query_scalar(
        "select extract(epoch from max(window_end))::bigint from score \
         where window_end < now() - interval '30 minutes'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!((last - base) / 60, 275);
}

#[tokio::test]
async fn a_score_dated_out_of_range_is_refused_and_costs_no_other_score() {
    let app = app_with_model(|s| s.scoring.every_score = true).await;
    let marked = chrono::Utc::now() - chrono::Duration::hours(1);
    let mut good = window(550);
    good["timestamps"] = json!([marked.timestamp()]);
    let mut bad = window(550);
    bad["timestamps"] = json!([-6_000_000_000_000_i64]);
    let (bad_answer, good_answers) = tokio::join!(
        app.post_json("/v1/score", &bad),
        futures_util::future::join_all((0..20).map(|_| app.post_json("/v1/score", &good))),
    );
    expect_error(bad_answer, 422, "timestamp_out_of_range").await;
    assert!(good_answers.iter().all(|r| r.status() == 200));
    let mut stored = 0;
    for _ in 0..100 {
        stored = sqlx::query_scalar::<_, i64>("select count(*) from score where window_end = $1")
            .bind(chrono::DateTime::from_timestamp(marked.timestamp(), 0).unwrap())
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        if stored >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored, 20, "every good score is stored");
}

#[tokio::test]
async fn scores_are_stored_once_per_step_and_alert_state_and_old_days_dropped() {
    let app = app_with_model(|s| s.scoring.fire_windows = 1).await;
    let marked = chrono::Utc::now() - chrono::Duration::hours(2);
    let mut calm = window(550);
    calm["timestamps"] = json!([marked.timestamp()]);
    let mut risky = window(195);
    risky["timestamps"] = json!([marked.timestamp()]);
    for _ in 0..30 {
        let answer: Value = app.post_value("/v1/score", &calm).await;
        assert_eq!(answer["alert"], false);
    }
    for _ in 0..3 {
        let answer: Value = app.post_value("/v1/score", &risky).await;
        assert_eq!(answer["alert"], true);
    }
    let count = |alerting: bool| {
        let pool = app.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "select count(*) from score where window_end = $1 and is_alert = $2",
            )
            .bind(chrono::DateTime::from_timestamp(marked.timestamp(), 0).unwrap())
            .bind(alerting)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    for _ in 0..100 {
        if count(true).await >= 1 && count(false).await >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        count(true).await,
        1,
        "3 alerting scores of one step are stored once"
    );
    assert_eq!(
        count(false).await,
        1,
        "30 calm scores of one step are stored once"
    );
    assert!(
        app.db
            .store
            .open_alert_id("asset-0")
            .await
            .unwrap()
            .is_some(),
        "the alert keeps its own record"
    );

    // Retention drops the day partitions older than its cutoff, and keeps their alerting
    // scores in score_alerting.
    let settings = vigil::config::RetentionSettings {
        scores_days: 1,
        ..Default::default()
    };
    let later = chrono::Utc::now() + chrono::Duration::days(2);
    let dropped = vigil::jobs::retention::prune_scores(&app.db.store, &settings, later)
        .await
        .unwrap();
    let day = format!("score_p{}", marked.format("%Y%m%d"));
    assert!(dropped.contains(&day), "{dropped:?}");
    assert_eq!(count(false).await, 0);
    assert_eq!(count(true).await, 0);
    let kept: Vec<(bool, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("select is_alert, window_end from score_alerting")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(
        kept,
        vec![(
            true,
            chrono::DateTime::from_timestamp(marked.timestamp(), 0).unwrap()
        )],
        "the alerting score is kept"
    );
}

#[tokio::test]
async fn a_score_batch_over_its_values_is_refused_while_parsed() {
    let app = TestApp::spawn().await;
    let zeros = vec!["0"; vigil::api::score::MAX_BATCH_VALUES + 1].join(",");
    // The fast parser's shape, and one it leaves to serde_json (`timestamps` first).
    for extra in ["", r#""timestamps":[1],"#] {
        let body = format!(r#"{{"windows":[{{"asset":"a",{extra}"window":{{"m":[{zeros}]}}}}]}}"#);
        let response = app
            .post_raw("/v1/score/batch", "application/json", body.into_bytes())
            .await;
        expect_error(response, 413, "batch_too_large").await;
    }
}

/// The value of the `/metrics` line that starts with `series` (name and labels).
async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {text}"))
}

#[tokio::test]
async fn metrics_count_scores_alerts_samples_and_show_the_model() {
    let app = app_with_model(|s| {
        s.scoring.fire_windows = 2;
        s.scoring.every_score = true;
    })
    .await;
    let trained = r#"vigil_scores_total{model="trained"}"#;
    let before = metric(&app, trained).await;
    for body in [window(195), window(195)] {
        let _: Value = app.post_value("/v1/score", &body).await;
    }
    // The open alert as the database counts it, and the process' own figures.
    let text = app.get("/metrics").await.text().await.unwrap();
    let open: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("vigil_alerts_open{class="))
        .and_then(|rest| rest.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no vigil_alerts_open: {text}"));
    assert_eq!(open, 1.0);
    assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
    assert!(text.contains("\nvigil_scoring_on_ingest_queue "), "{text}");
    let _: Value = app.post_value("/v1/score", &window(550)).await;
    assert_eq!(metric(&app, trained).await, before + 3.0);
    assert_eq!(
        metric(&app, r#"vigil_alerts_total{transition="opened"}"#).await,
        1.0
    );
    assert_eq!(
        metric(&app, r#"vigil_alerts_total{transition="cleared"}"#).await,
        1.0
    );
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(r#"vigil_model_active{model_id="1",version="1"} 1"#),
        "{text}"
    );
    // The writer stores them shortly after.
    let stored = r#"vigil_scores_written_total{outcome="stored"}"#;
    let mut written = 0.0;
    for _ in 0..50 {
        written = metric(&app, stored).await;
        if written >= before + 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(written >= before + 3.0, "{written} stored");

    let t0 = chrono::Utc::now().timestamp() - 600;
    let samples = json!({ "rows": [
        { "asset": "pump-1", "metric": "temp", "ts": t0, "value": 1.0 },
        { "asset": "pump-1", "metric": "temp", "ts": t0 + 60, "value": 2.0 },
    ]});
    for _ in 0..2 {
        assert_eq!(app.post_json("/v1/samples", &samples).await.status(), 200);
    }
    assert_eq!(metric(&app, "vigil_samples_received_total").await, 4.0);
    assert_eq!(
        metric(&app, "vigil_samples_stored_total").await,
        2.0,
        "a repeat stores nothing"
    );
}

#[tokio::test]
async fn each_window_is_compared_with_the_past_it_has_and_the_answer_says_which() {
    let app = app_with_model(|_| {}).await;
    let with_asset = |asset: &str| {
        let mut body = window(550);
        body["asset"] = json!(asset);
        body
    };
    // A training asset with nothing stored: the past its training saw last.
    let answer = app.post_value("/v1/score", &with_asset("asset-0")).await;
    assert_eq!(answer["context"], "training", "{answer}");
    // An asset nobody has seen: no past, scored on the window's own shape.
    let answer = app.post_value("/v1/score", &with_asset("nobody")).await;
    assert_eq!(answer["context"], "none", "{answer}");
    assert_eq!(answer["model"]["kind"], "trained");

    // Five hours of asset-0's calm minutes stored for a new asset, up to now.
    let data = synthetic(4, 3, 7);
    let now = chrono::Utc::now().timestamp().div_euclid(60) * 60;
    let mut series = Vec::new();
    for (name, history) in data.metrics.iter().zip(&data.histories[0].metrics) {
        let values = &history.as_ref().unwrap().values[300..600];
        let timestamps: Vec<i64> = (0..values.len() as i64)
            .map(|k| now - (values.len() as i64 - 1 - k) * 60)
            .collect();
        series.push(
            json!({ "asset": "fresh", "metric": name, "timestamps": timestamps, "values": values }),
        );
    }
    let stored = app
        .post_json("/v1/samples", &json!({ "series": series }))
        .await;
    assert!(stored.status().is_success(), "{}", stored.status());
    let answer = app.post_value("/v1/score", &with_asset("fresh")).await;
    assert_eq!(answer["context"], "live", "{answer}");
    let stored = app.get_value("/v1/assets/fresh/score").await;
    assert_eq!(stored["context"], "live", "{stored}");
    assert_eq!(stored["model"]["kind"], "trained");
    // In a batch, each window's timestamps date the past it is compared with: a day ago,
    // nothing was stored yet; a bad time fails that window alone.
    let mut dated = with_asset("fresh");
    dated["timestamps"] = json!([now - 86_400]);
    let mut bad = with_asset("fresh");
    bad["timestamps"] = json!(["yesterday"]);
    let batch = app
        .post_value(
            "/v1/score/batch",
            &json!({ "windows": [with_asset("fresh"), dated, bad] }),
        )
        .await;
    assert_eq!(batch["scores"][0]["context"], "live", "{batch}");
    assert_eq!(batch["scores"][1]["context"], "none", "{batch}");
    assert_eq!(
        batch["scores"][2]["error"]["code"], "invalid_value",
        "{batch}"
    );
    // Compared with its own calm past, a calm window of the same asset stays calm.
    assert!(stored["probability"].as_f64().unwrap() < 0.5, "{stored}");
}
