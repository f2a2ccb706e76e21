//! Two `vigil serve` processes, each with a data directory of its own (no shared disk), on
//! one PostgreSQL (`DATABASE_URL`), and a client that alternates between them: they train
//! once per schedule tick, serve a model activated through either within a second, open an
//! alert exactly as one process would, keep one action budget, and when one is killed with
//! `kill -9` mid-action the other marks the action lost and releases the budget, without
//! running anything twice.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::Child;
use vigil::jobs::train;

use crate::models::decided;
use crate::score::window;
use crate::support::{TestDb, free_port, last_days, serve_ready, trained, vigil};

/// One `vigil serve` process.
struct Replica {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Replica {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().and_then(Child::id).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Two replicas over one test database.
struct Replicas {
    db: TestDb,
    replicas: Vec<Replica>,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Replicas {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (i, r) in self.replicas.iter().enumerate() {
                let log = r.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- replica {i} log (last lines, newest first) ---");
                for line in tail {
                    eprintln!("{line}");
                }
            }
        }
    }
}

impl Replicas {
    /// Starts two replicas with `config` (TOML) on a fresh migrated database.
    async fn start(config: &str) -> Replicas {
        let db = TestDb::migrated().await;
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("vigil.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut replicas = Vec::new();
        for i in 0..2 {
            let data_dir = dir.path().join(format!("replica-{i}"));
            let log = dir.path().join(format!("replica-{i}.log"));
            let port = free_port();
            let mut command = vigil();
            command
                .arg("serve")
                .arg("--config")
                .arg(&config_path)
                .arg("--data-dir")
                .arg(&data_dir)
                .env("DATABASE_URL", db.url());
            let child = serve_ready(command, port, &log).await;
            replicas.push(Replica {
                child: Some(child),
                port,
                log,
            });
        }
        Replicas {
            db,
            replicas,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// Posts a window for `asset` (the synthetic fleet's asset-0 minutes ending at
    /// `end_minute`) to replica `i`; returns the answer.
    async fn score(&self, i: usize, asset: &str, end_minute: usize) -> Value {
        let mut body = window(end_minute);
        body["asset"] = json!(asset);
        let response = self
            .client
            .post(self.replicas[i].url("/v1/score"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "replica {i}");
        response.json().await.unwrap()
    }

    /// Registers the trained test bundle (active) and waits until both replicas answer with
    /// it; returns its id.
    async fn with_model(&self) -> (train::Bundle, i64) {
        let mut bundle = tokio::task::spawn_blocking(trained).await.unwrap();
        // The assets these tests score (none has stored samples) are compared with the past
        // training saw last of asset-0, whose windows they post.
        let past = bundle.contexts["asset-0"].clone();
        let storm = (0..12).map(|n| format!("storm-{n}"));
        for asset in storm.chain(["pump-1", "victim", "bystander", "next"].map(String::from)) {
            bundle.contexts.insert(asset, past.clone());
        }
        let registered = train::register(&self.db.store, &bundle, last_days(3))
            .await
            .unwrap();
        assert!(registered.activated);
        let id = registered.model.model_id;
        for i in 0..2 {
            self.wait_for_model(i, id, Duration::from_secs(30)).await;
        }
        (bundle, id)
    }

    /// Waits until replica `i` answers with model `id`; returns how long that took.
    async fn wait_for_model(&self, i: usize, id: i64, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            // Until a model is loaded the cold-start detector refuses this short window (422).
            let response = self
                .client
                .post(self.replicas[i].url("/v1/score"))
                .json(&window(550))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let answer: Value = response.json().await.unwrap();
            if status == 200 && answer["model"]["model_id"] == id {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "replica {i} does not answer with model {id} within {within:?}: {status} {answer}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Rows of a query that returns one integer per row.
    async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }
}

/// A schedule tick: its time, how many runs it has, their statuses and runners.
type Tick = (chrono::DateTime<chrono::Utc>, i64, Vec<String>, Vec<String>);

#[tokio::test]
async fn two_replicas_train_exactly_once_per_tick() {
    // No samples: every run fails at once, so a replica that loses the race for a tick
    // finds the lock free right after; only the recorded tick keeps it from running again.
    let replicas = Replicas::start("[training]\nschedule = \"*/2 * * * * *\"\n").await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    let ticks: Vec<Tick> = sqlx::query_as(
        "select scheduled_for, count(*), array_agg(status), array_agg(detail->>'runner') \
             from job_run where job = 'train' and trigger = 'schedule' \
             and status <> 'running' group by scheduled_for order by scheduled_for",
    )
    .fetch_all(&replicas.db.pool)
    .await
    .unwrap();
    assert!(ticks.len() >= 3, "{ticks:?}");
    let pids: Vec<String> = replicas
        .replicas
        .iter()
        .map(|r| format!(":{}", r.pid()))
        .collect();
    for (tick, runs, statuses, runners) in &ticks {
        assert_eq!(*runs, 1, "tick {tick}: {ticks:?}");
        assert_eq!(statuses[0], "failed", "no samples to train on");
        assert!(
            pids.iter().any(|pid| runners[0].ends_with(pid)),
            "run by one of the replicas: {runners:?} {pids:?}"
        );
    }
    for pair in ticks.windows(2) {
        assert_eq!(
            (pair[1].0 - pair[0].0).num_seconds(),
            2,
            "no tick skipped: {ticks:?}"
        );
    }
    let error: String = sqlx::query_scalar(
        "select detail->>'error' from job_run where trigger = 'schedule' and status = 'failed' \
         limit 1",
    )
    .fetch_one(&replicas.db.pool)
    .await
    .unwrap();
    assert!(error.contains("not enough data"), "{error}");
    let skipped: usize = replicas
        .replicas
        .iter()
        .map(|r| {
            r.log()
                .lines()
                .filter(|l| l.contains("scheduled training skipped"))
                .count()
        })
        .sum();
    assert!(
        skipped + 1 >= ticks.len(),
        "for every tick but the latest, the other replica skipped: {skipped} skips, {} ticks",
        ticks.len()
    );
}

#[tokio::test]
async fn a_model_activated_through_one_replica_answers_on_both_within_a_second() {
    let replicas = Replicas::start("").await;
    let (bundle, first) = replicas.with_model().await;
    let candidate = train::register(&replicas.db.store, &decided(&bundle, false), last_days(3))
        .await
        .unwrap();
    assert!(!candidate.activated);
    let second = candidate.model.model_id;
    let response = replicas
        .client
        .post(replicas.replicas[0].url(&format!("/v1/models/{second}/activate")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let took = replicas
        .wait_for_model(1, second, Duration::from_secs(1))
        .await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    replicas
        .wait_for_model(0, second, Duration::from_secs(1))
        .await;
    assert_ne!(first, second);
}

#[tokio::test]
async fn replicas_open_one_alert_after_fire_windows_whichever_scored_each_window() {
    let replicas = Replicas::start("[scoring]\nfire_windows = 3\n").await;
    replicas.with_model().await;
    // asset-0's window ending at minute 195 is risky (its failure is at 200), at 550 calm.
    let risky = 195;
    let calm = 550;
    let mut opened = Vec::new();
    for (n, i) in [0, 1, 0].into_iter().enumerate() {
        let answer = replicas.score(i, "pump-1", risky).await;
        assert_eq!(answer["alert"], true, "window {n}: {answer}");
        opened.push(answer["alert_opened"].clone());
    }
    assert_eq!(opened[0], Value::Null, "{opened:?}");
    assert_eq!(opened[1], Value::Null, "{opened:?}");
    assert!(opened[2].is_i64(), "the third window opens it: {opened:?}");
    let fourth = replicas.score(1, "pump-1", risky).await;
    assert_eq!(fourth["alert_opened"], Value::Null, "already open");
    let open = "select count(*) from alert a join asset s using (asset_id) \
                where s.name = 'pump-1' and a.state = 'open'";
    assert_eq!(replicas.count(open).await, 1);

    // A calm window on either replica clears it and ends the streak: two risky windows
    // after it open nothing, the third does.
    let answer = replicas.score(0, "pump-1", calm).await;
    assert_eq!(answer["alert"], false, "{answer}");
    assert_eq!(replicas.count(open).await, 0, "cleared");
    let mut opened = Vec::new();
    for i in [1, 0, 1] {
        opened.push(replicas.score(i, "pump-1", risky).await["alert_opened"].clone());
    }
    assert_eq!(opened[..2], [Value::Null, Value::Null], "{opened:?}");
    assert!(opened[2].is_i64(), "{opened:?}");
    let alerts =
        "select count(*) from alert a join asset s using (asset_id) where s.name = 'pump-1'";
    assert_eq!(replicas.count(alerts).await, 2);
}

#[tokio::test]
async fn the_action_budget_holds_across_replicas_in_an_alert_storm() {
    let replicas = Replicas::start(
        "[scoring]\nfire_windows = 1\n\
         [guard]\nbudget = 3\ncooldown_secs = 0\nrate_limit_per_hour = 100\nbreaker_after = 100\n\
         [[actions]]\nname = \"restart\"\nexecutor = \"dry_run\"\nmode = \"auto\"\n",
    )
    .await;
    replicas.with_model().await;
    let replicas = Arc::new(replicas);
    let storm: Vec<_> = (0..12)
        .map(|n| {
            let replicas = replicas.clone();
            tokio::spawn(async move {
                let answer = replicas.score(n % 2, &format!("storm-{n}"), 195).await;
                assert!(answer["alert_opened"].is_i64(), "{answer}");
            })
        })
        .collect();
    for task in storm {
        task.await.unwrap();
    }
    // Every alert gets one action row: run, or blocked by the guard.
    let deadline = Instant::now() + Duration::from_secs(30);
    while replicas.count("select count(*) from action").await < 12 {
        assert!(Instant::now() < deadline, "an alert was never acted on");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ran = replicas
        .count("select count(*) from action where state <> 'blocked'")
        .await;
    let over_budget = replicas
        .count(
            "select count(*) from action where state = 'blocked' \
             and guard_decision::text like '%budget%'",
        )
        .await;
    assert_eq!((ran, over_budget), (3, 9));
}

/// A webhook receiver that records each call and never answers it.
async fn hanging_receiver() -> (Arc<Mutex<Vec<String>>>, String) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(body);
                tokio::time::sleep(Duration::from_secs(3600)).await;
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (got, url)
}

/// The action rows of `asset`: (id, state, result).
async fn actions_of(replicas: &Replicas, asset: &str) -> Vec<(i64, String, Option<Value>)> {
    sqlx::query_as(
        "select a.action_id, a.state, a.result from action a join asset s using (asset_id) \
         where s.name = $1 order by a.action_id",
    )
    .bind(asset)
    .fetch_all(&replicas.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_replica_killed_mid_action_loses_it_to_the_other_s_sweeper_and_nothing_runs_twice() {
    let (calls, url) = hanging_receiver().await;
    let config = format!(
        "[scoring]\nfire_windows = 1\n\
         [guard]\nbudget = 1\ncooldown_secs = 0\nsweep_every_secs = 1\n\
         [[actions]]\nname = \"restart\"\nexecutor = \"webhook\"\nmode = \"auto\"\n\
         url = \"{url}\"\nsecret = \"test-secret\"\ntimeout_secs = 5\nretries = 0\n"
    );
    let mut replicas = Replicas::start(&config).await;
    replicas.with_model().await;
    let answer = replicas.score(0, "victim", 195).await;
    assert!(answer["alert_opened"].is_i64(), "{answer}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the webhook was never called");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The action is under way on replica 0: kill it without a chance to record anything.
    let pid = replicas.replicas[0].pid();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut child = replicas.replicas[0].child.take().unwrap();
    child.wait().await.unwrap();
    let victim = actions_of(&replicas, "victim").await;
    assert_eq!(victim.len(), 1);
    assert_eq!(victim[0].1, "running", "{victim:?}");

    // While it counts as in flight, the budget of 1 blocks an action on another asset.
    let answer = replicas.score(1, "bystander", 195).await;
    assert!(answer["alert_opened"].is_i64(), "{answer}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let bystander = loop {
        let rows = actions_of(&replicas, "bystander").await;
        if !rows.is_empty() {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "the bystander's alert was never acted on"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(bystander[0].1, "blocked", "{bystander:?}");

    // The surviving replica's sweeper marks it lost once it has been running longer than
    // any run could take (`actions::lost_after`: about a minute here).
    let deadline = Instant::now() + Duration::from_secs(150);
    let lost = loop {
        let rows = actions_of(&replicas, "victim").await;
        if rows[0].1 != "running" {
            break rows;
        }
        assert!(Instant::now() < deadline, "the lost action stays running");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(lost[0].1, "failed", "{lost:?}");
    assert_eq!(lost[0].2.as_ref().unwrap()["lost"], true, "{lost:?}");

    // The budget is free again: the next alert's action runs.
    let answer = replicas.score(1, "next", 195).await;
    assert!(answer["alert_opened"].is_i64(), "{answer}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "the next action never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let calls = calls.lock().unwrap().clone();
    let for_victim = calls.iter().filter(|c| c.contains("\"victim\"")).count();
    assert_eq!(
        for_victim, 1,
        "the lost action was not run again: {calls:?}"
    );
    assert_eq!(actions_of(&replicas, "victim").await.len(), 1);
    assert!(calls.iter().any(|c| c.contains("\"next\"")), "{calls:?}");
}
