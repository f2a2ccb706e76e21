//! Drift: live windows like the model's reference windows measure small; a shift raises the
//! population stability index over the threshold, and a training run with trigger `drift`
//! starts, recorded with the check that started it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vigil::jobs::train::synthetic;

use crate::score::app_with_model;
use crate::support::TestApp;

/// Windows of the synthetic fleet the test model was trained on (every asset, interleaved,
/// ending in its validation period), with `cpu_shift` added to cpu.
fn windows(cpu_shift: f64) -> Vec<Value> {
    let data = synthetic(4, 3, 7);
    let mut out = Vec::new();
    for end in (3100..4300).step_by(6) {
        for history in &data.histories {
            let mut window = serde_json::Map::new();
            for (name, series) in data.metrics.iter().zip(&history.metrics) {
                let values: Vec<f64> = series.as_ref().unwrap().values[end + 1 - 20..=end]
                    .iter()
                    .map(|v| if name == "cpu" { v + cpu_shift } else { *v })
                    .collect();
                window.insert(name.clone(), json!(values));
            }
            out.push(json!({ "asset": history.asset, "window": window }));
        }
    }
    out
}

/// Waits for a drift check of `model_id` that measured at least `windows` windows.
async fn drift_with(app: &TestApp, model_id: i64, windows: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let model: Value = app.get_value(&format!("/v1/models/{model_id}")).await;
        if model["drift"]["windows"].as_i64().unwrap_or(0) >= windows {
            return model["drift"].clone();
        }
        assert!(Instant::now() < deadline, "no drift check: {model}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_shift_in_live_windows_raises_drift_and_starts_a_training_run() {
    let app = app_with_model(|s| {
        s.drift.enabled = true;
        s.drift.flush_secs = 1;
        s.drift.check_every_secs = 1;
        s.drift.min_windows = 200;
        s.drift.window_secs = 3600;
        s.drift.cooldown_secs = 3600;
    })
    .await;
    let models: Value = app.get_value("/v1/models").await;
    let model_id = models["models"][0]["model_id"].as_i64().unwrap();

    let normal = windows(0.0);
    let n = normal.len() as i64;
    let answered: Value = app
        .post_value("/v1/score/batch", &json!({ "windows": normal }))
        .await;
    assert_eq!(answered["scores"].as_array().unwrap().len() as i64, n);
    let calm = drift_with(&app, model_id, n).await;
    assert_eq!(calm["over_threshold"], false, "{calm}");
    assert!(calm["score_psi"].as_f64().unwrap() < 0.25, "{calm}");
    assert!(calm["max_feature_psi"].as_f64().unwrap() < 0.25, "{calm}");
    assert_eq!(calm["job_run_id"], Value::Null);
    eprintln!("drift before the shift: {calm}");

    // Every cpu reading moves up by 100: the live windows no longer look like the reference.
    let shifted = windows(100.0);
    app.post_value("/v1/score/batch", &json!({ "windows": shifted }))
        .await;
    let drifted = drift_with(&app, model_id, 2 * n).await;
    assert_eq!(drifted["over_threshold"], true, "{drifted}");
    assert!(
        drifted["max_feature_psi"].as_f64().unwrap() > 1.0,
        "{drifted}"
    );
    eprintln!("drift after the shift: {drifted}");
    let top = drifted["top_features"][0][0].as_str().unwrap();
    assert!(top.starts_with("cpu"), "cpu moved most: {drifted}");

    // The check started a training run, recorded with trigger `drift` and linked to it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        let runs: Value = app.get_value("/v1/jobs?job=train").await;
        if let Some(run) = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["trigger"] == "drift" && r["status"] != "running")
        {
            break run.clone();
        }
        assert!(Instant::now() < deadline, "no drift run: {runs}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // No samples are stored here, so the run itself has nothing to train on.
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["scheduled_for"].is_string(), "its drift period: {run}");
    let linked: i64 = sqlx::query_scalar(
        "select count(*) from model_drift where over_threshold and job_run_id = $1",
    )
    .bind(run["job_run_id"].as_i64().unwrap())
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(linked, 1);
    // One drift run for the period, however many checks found drift after it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let drift_runs: i64 =
        sqlx::query_scalar("select count(*) from job_run where trigger = 'drift'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(drift_runs, 1);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(&format!(
            "vigil_model_drift_over_threshold{{model_id=\"{model_id}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("vigil_model_drift_psi{"), "{metrics}");
}
