//! Guarded actions against a real PostgreSQL and a real local webhook receiver: every guard
//! blocks when it must and lets through when it may, always leaving an audit row; approval,
//! expiry and the kill switch; a storm acts on no more than the budget; verification feeds
//! the posteriors; a command runs only its template.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use vigil::actions::{Actions, AlertContext, Rescore};
use vigil::config::{ActionSettings, ExecutorKind, Settings};
use vigil::policy::guard::Mode;
use vigil::store::actions::ActionRow;
use vigil::store::scores::NewScore;

use crate::support::{TestApp, expect_error, score_at};

const SECRET: &str = "webhook-secret";

/// A local HTTP receiver that records every delivery and answers the queued statuses (then
/// 200).
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    statuses: Arc<Mutex<Vec<u16>>>,
}

impl Receiver {
    async fn start(statuses: Vec<u16>) -> (Receiver, String) {
        let receiver = Receiver {
            statuses: Arc::new(Mutex::new(statuses)),
            ..Receiver::default()
        };
        let r = receiver.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let r = r.clone();
                async move {
                    r.got.lock().unwrap().push((headers, body));
                    let mut queued = r.statuses.lock().unwrap();
                    let status = if queued.is_empty() {
                        200
                    } else {
                        queued.remove(0)
                    };
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn deliveries(&self) -> Vec<(HeaderMap, String)> {
        self.got.lock().unwrap().clone()
    }
}

fn webhook(name: &str, url: &str, mode: Mode) -> ActionSettings {
    ActionSettings {
        name: name.to_owned(),
        executor: ExecutorKind::Webhook,
        mode,
        kinds: Vec::new(),
        classes: Vec::new(),
        prior: (1.0, 1.0),
        url: Some(url.to_owned()),
        secret: Some(SECRET.to_owned()),
        argv: Vec::new(),
        timeout_secs: 2,
        retries: 2,
    }
}

fn dry_run(name: &str) -> ActionSettings {
    ActionSettings {
        executor: ExecutorKind::DryRun,
        url: None,
        secret: None,
        mode: Mode::Auto,
        ..webhook(name, "", Mode::Auto)
    }
}

/// Settings with a catalog and loose guard limits, tightened by `tweak`.
fn settings(actions: Vec<ActionSettings>, tweak: impl FnOnce(&mut Settings)) -> Settings {
    let mut s = Settings {
        actions,
        ..Settings::default()
    };
    s.guard.cooldown_secs = 0;
    s.guard.rate_limit_per_hour = 100;
    s.guard.budget = 100;
    s.guard.breaker_after = 100;
    s.guard.settle_secs = 0;
    s.guard.verify_window_secs = 0;
    tweak(&mut s);
    s
}

/// Opens an alert on `asset` and returns its context.
async fn alert(app: &TestApp, asset: &str) -> AlertContext {
    let score = NewScore {
        anomaly_score: 0.5,
        failure_kind: Some("memory_leak".to_owned()),
        kind_confidence: Some(0.9),
        ..score_at(asset, chrono::Utc::now(), true)
    };
    app.db
        .store
        .clear_alert(asset, chrono::Utc::now())
        .await
        .unwrap();
    let alert_id = app.db.store.open_alert(&score).await.unwrap().unwrap();
    AlertContext {
        alert_id,
        asset: asset.to_owned(),
        class: "default".to_owned(),
        kind: "memory_leak".to_owned(),
    }
}

async fn act(actions: &Actions, app: &TestApp, asset: &str) -> ActionRow {
    let ctx = alert(app, asset).await;
    actions
        .on_alert(&ctx)
        .await
        .unwrap()
        .expect("an action row")
}

fn refused_by(row: &ActionRow) -> Option<String> {
    let checks = row.guard_decision["checks"].as_array().unwrap();
    assert_eq!(
        checks.len(),
        5,
        "every rule is recorded: {}",
        row.guard_decision
    );
    checks
        .iter()
        .find(|c| c["passed"] == false)
        .map(|c| c["rule"].as_str().unwrap().to_owned())
}

/// A rescore that says the asset is calm (level 0.1, clear below 0.3).
fn calm() -> Rescore {
    Arc::new(|_| Box::pin(async { Ok((0.1, 0.3)) }))
}

#[tokio::test]
async fn an_auto_webhook_runs_signed_with_retries_and_verification_feeds_the_posterior() {
    let (receiver, url) = Receiver::start(vec![503]).await;
    let s = settings(vec![webhook("restart", &url, Mode::Auto)], |_| {});
    let app = TestApp::spawn_with(|x| {
        x.actions = s.actions.clone();
        x.guard = s.guard.clone();
    })
    .await;
    let actions = Actions::new(app.db.store.clone(), Arc::new(s), 1);

    let row = act(&actions, &app, "web-01").await;
    assert_eq!(row.state, "succeeded", "{row:?}");
    assert_eq!(refused_by(&row), None);
    assert_eq!(
        row.result.as_ref().unwrap()["attempts"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), 2, "one 503, then a retry");
    let (headers, body) = &deliveries[1];
    let expected = format!(
        "sha256={}",
        hex::encode(vigil::actions::executor::hmac_sha256(
            SECRET.as_bytes(),
            body.as_bytes()
        ))
    );
    assert_eq!(headers["x-vigil-signature"].to_str().unwrap(), expected);
    let sent: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        (sent["action"].as_str(), sent["asset"].as_str()),
        (Some("restart"), Some("web-01"))
    );

    // Verification: calm and no incident since: healed, counted once.
    assert_eq!(actions.verify_due(&calm()).await.unwrap(), 1);
    assert_eq!(
        actions.verify_due(&calm()).await.unwrap(),
        0,
        "verified once"
    );
    let policy: Value = app.get_value("/v1/policy/actions").await;
    let p = &policy["posteriors"][0];
    assert_eq!(
        (p["action"].as_str(), p["healed"].as_u64()),
        (Some("restart"), Some(1))
    );
    assert!((p["mean"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);

    // An incident after the action makes it not healed, whatever the score says.
    let row = act(&actions, &app, "web-02").await;
    app.post_json(
        "/v1/incidents",
        &json!({
            "asset": "web-02",
            "kind": "memory_leak",
            "started_at": (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339()
        }),
    )
    .await;
    actions.verify_due(&calm()).await.unwrap();
    let verified = app.db.store.action(row.action_id).await.unwrap();
    assert_eq!(verified.verification, "not_healed");

    // A person's outcome overrides the verification: restart was tried on web-02 and did
    // not heal it, reroute did.
    let incident: i64 = sqlx::query_scalar("select max(incident_id) from incident")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let body = json!({
        "client_key": "outcome-1",
        "actions_tried": ["restart", "reroute"],
        "healed_by": "reroute",
        "time_to_recover_secs": 420,
        "root_cause": "leaky cache",
    });
    let path = format!("/v1/incidents/{incident}/outcome");
    let first = app.post_json(&path, &body).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(
        first["outcome"]["missed_detection"], false,
        "an alert preceded it"
    );
    let again = app.post_json(&path, &body).await;
    assert_eq!(again.status(), 200, "the same key counts once");
    let counts = |policy: &Value, action: &str| {
        let p = policy["posteriors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["action"] == action)
            .cloned()
            .unwrap();
        (
            p["healed"].as_u64().unwrap(),
            p["not_healed"].as_u64().unwrap(),
        )
    };
    let policy: Value = app.get_value("/v1/policy/actions").await;
    // restart: the healed web-01 verification stays, the web-02 verification is replaced by
    // the person's "not healed" (still one), reroute healed once.
    assert_eq!(counts(&policy, "restart"), (1, 1));
    assert_eq!(counts(&policy, "reroute"), (1, 0));
    assert_eq!(
        app.db
            .store
            .action(row.action_id)
            .await
            .unwrap()
            .verification,
        "skipped",
        "overridden by the person's outcome"
    );
    expect_error(
        app.post_json(
            &path,
            &json!({ "client_key": "k2", "actions_tried": ["a"], "healed_by": "b" }),
        )
        .await,
        422,
        "invalid_value",
    )
    .await;

    // An incident nobody alerted on is a missed detection.
    let created: Value = app
        .post_value(
            "/v1/incidents",
            &json!({ "asset": "quiet-01", "kind": "disk_full", "started_at": chrono::Utc::now().timestamp() }),
        )
        .await;
    let missed: Value = app
        .post_value(
            &format!("/v1/incidents/{}/outcome", created["incident_id"]),
            &json!({ "client_key": "outcome-2" }),
        )
        .await;
    assert_eq!(missed["outcome"]["missed_detection"], true, "{missed}");
}

#[tokio::test]
async fn each_guard_blocks_when_it_must_and_leaves_an_audit_row() {
    let (_receiver, url) = Receiver::start(vec![]).await;
    let catalog = vec![webhook("restart", &url, Mode::Auto), dry_run("page_human")];
    let app = TestApp::spawn().await;
    let with = |tweak: &dyn Fn(&mut Settings)| {
        let s = settings(catalog.clone(), |s| tweak(s));
        Actions::new(app.db.store.clone(), Arc::new(s), 2)
    };

    // Cooldown: a second action on the same asset within it is blocked; other assets pass.
    let guarded = with(&|s| s.guard.cooldown_secs = 3600);
    let first = act(&guarded, &app, "a-1").await;
    assert_eq!(first.state, "succeeded", "{:?}", first.guard_decision);
    guarded.verify_due(&calm()).await.unwrap();
    let blocked = act(&guarded, &app, "a-1").await;
    assert_eq!(
        (blocked.state.as_str(), refused_by(&blocked).as_deref()),
        ("blocked", Some("cooldown"))
    );
    assert_eq!(act(&guarded, &app, "a-2").await.state, "succeeded");

    // Rate limit: restart ran twice this hour; a limit of 2 blocks a third anywhere.
    let limited = with(&|s| s.guard.rate_limit_per_hour = 2);
    let third = act(&limited, &app, "a-3").await;
    assert_eq!(refused_by(&third).as_deref(), Some("rate_limit"));
    let roomy = with(&|s| s.guard.rate_limit_per_hour = 3);
    assert_eq!(act(&roomy, &app, "a-3").await.state, "succeeded");

    // Budget: a-2 and a-3 still await verification (in flight); a budget of 2 blocks a-4.
    let tight = with(&|s| s.guard.budget = 2);
    let over = act(&tight, &app, "a-4").await;
    assert_eq!(refused_by(&over).as_deref(), Some("budget"));
    let loose = with(&|s| s.guard.budget = 3);
    let ok = act(&loose, &app, "a-4").await;
    assert_eq!(ok.state, "succeeded", "{}", ok.guard_decision);

    // Everything so far healed.
    loose.verify_due(&calm()).await.unwrap();

    // Breaker: an action that does not heal a-5 is followed by the next one while its
    // alert is open; after two in a row the breaker escalates to page_human.
    let breaker = with(&|s| s.guard.breaker_after = 2);
    let hot: Rescore = Arc::new(|_| Box::pin(async { Ok((0.9, 0.3)) }));
    assert_eq!(act(&breaker, &app, "a-5").await.state, "succeeded");
    breaker.verify_due(&hot).await.unwrap(); // not healed: a second action runs
    breaker.verify_due(&hot).await.unwrap(); // not healed again: escalate
    let tried = app
        .db
        .store
        .list_actions(Some("a-5"), None, 10)
        .await
        .unwrap();
    assert_eq!(tried.len(), 3, "{tried:?}");
    let escalated = &tried[0];
    assert_eq!(escalated.name, "page_human", "{escalated:?}");
    assert_eq!(escalated.state, "succeeded");
    assert_eq!(refused_by(escalated).as_deref(), Some("breaker"));

    // Kill switch: on, nothing runs; the decision is still recorded.
    let response = app
        .put_json("/v1/policy/kill-switch", &json!({ "on": true }))
        .await;
    assert_eq!(response.status(), 200);
    let killed = act(&loose, &app, "a-6").await;
    assert_eq!(
        (killed.state.as_str(), refused_by(&killed).as_deref()),
        ("blocked", Some("kill_switch"))
    );
    app.put_json("/v1/policy/kill-switch", &json!({ "on": false }))
        .await;
    assert_eq!(act(&loose, &app, "a-6").await.state, "succeeded");

    let audit: i64 =
        sqlx::query_scalar("select count(*) from action where guard_decision ? 'checks'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    let all: i64 = sqlx::query_scalar("select count(*) from action")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(
        audit, all,
        "every action, run or blocked, has its guard decision"
    );
}

#[tokio::test]
async fn approval_runs_after_an_admin_approves_and_expires_otherwise() {
    let (receiver, url) = Receiver::start(vec![]).await;
    // A long cooldown: an action waiting for approval has not acted, so it does not start
    // the cooldown that would block its own approval.
    let s = settings(vec![webhook("rollback", &url, Mode::Approve)], |s| {
        s.guard.cooldown_secs = 3600
    });
    let app = TestApp::spawn_with(|x| {
        x.actions = s.actions.clone();
        x.guard = s.guard.clone();
    })
    .await;
    let actions = Actions::new(app.db.store.clone(), Arc::new(s.clone()), 3);

    let waiting = act(&actions, &app, "b-1").await;
    assert_eq!(waiting.state, "awaiting_approval");
    assert!(waiting.expires_at.is_some());
    assert!(
        receiver.deliveries().is_empty(),
        "nothing runs before approval"
    );
    // The kill switch also holds approved actions back.
    app.put_json("/v1/policy/kill-switch", &json!({ "on": true }))
        .await;
    let path = format!("/v1/actions/{}/approve", waiting.action_id);
    expect_error(app.post_json(&path, &json!({})).await, 409, "guard_refused").await;
    app.put_json("/v1/policy/kill-switch", &json!({ "on": false }))
        .await;
    let approved: Value = app.post_value(&path, &json!({})).await;
    assert_eq!(approved["state"], "succeeded", "{approved}");
    assert_eq!(approved["decided_by"], "anonymous");
    assert_eq!(receiver.deliveries().len(), 1);
    expect_error(app.post_json(&path, &json!({})).await, 409, "conflict").await;

    let rejected = act(&actions, &app, "b-2").await;
    let answer: Value = app
        .post_value(
            &format!("/v1/actions/{}/reject", rejected.action_id),
            &json!({}),
        )
        .await;
    assert_eq!(answer["state"], "rejected");

    // With a zero timeout the request expires before anyone approves it.
    let hasty = Settings {
        guard: vigil::config::GuardSettings {
            approval_timeout_secs: 0,
            ..s.guard.clone()
        },
        ..s.clone()
    };
    let hasty = Actions::new(app.db.store.clone(), Arc::new(hasty), 4);
    let late = act(&hasty, &app, "b-3").await;
    let path = format!("/v1/actions/{}/approve", late.action_id);
    expect_error(app.post_json(&path, &json!({})).await, 409, "conflict").await;
    assert_eq!(
        app.db.store.action(late.action_id).await.unwrap().state,
        "expired"
    );
    assert_eq!(receiver.deliveries().len(), 1);
}

/// An action committed as `running` whose result never comes (its process died, or the
/// commit's acknowledgement was lost) does not hold the asset and the budget for ever: the
/// sweeper marks it failed, lost, once no run could still record it; a fresh one is left
/// alone, and a result recorded late still wins.
#[tokio::test]
async fn the_sweeper_fails_an_action_whose_result_was_lost() {
    let s = settings(
        vec![webhook("rollback", "http://127.0.0.1:9/", Mode::Approve)],
        |_| {},
    );
    let app = TestApp::spawn_with(|x| {
        x.actions = s.actions.clone();
        x.guard = s.guard.clone();
    })
    .await;
    let actions = Arc::new(Actions::new(app.db.store.clone(), Arc::new(s.clone()), 5));
    let lost_after = vigil::actions::lost_after(&s.actions);
    let old = act(&actions, &app, "l-1").await;
    let fresh = act(&actions, &app, "l-2").await;
    for (row, age) in [(&old, lost_after * 2), (&fresh, lost_after / 2)] {
        sqlx::query(
            "update action set state = 'running', \
             started_at = now() - make_interval(secs => $2) where action_id = $1",
        )
        .bind(row.action_id)
        .bind(age.as_secs_f64())
        .execute(&app.db.pool)
        .await
        .unwrap();
    }
    let sweeper = actions
        .clone()
        .spawn_sweeper(calm(), std::time::Duration::from_millis(50));
    let mut marked = app.db.store.action(old.action_id).await.unwrap();
    for _ in 0..100 {
        if marked.state != "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        marked = app.db.store.action(old.action_id).await.unwrap();
    }
    sweeper.abort();
    assert_eq!(marked.state, "failed", "{marked:?}");
    let result = marked.result.clone().unwrap();
    assert_eq!(result["lost"], true, "{result}");
    assert!(marked.finished_at.is_some());
    assert_eq!(
        app.db.store.action(fresh.action_id).await.unwrap().state,
        "running",
        "an action that may still record its result is left alone"
    );
    app.db
        .store
        .finish_action(old.action_id, true, &json!({"status": 200}))
        .await
        .unwrap();
    let late = app.db.store.action(old.action_id).await.unwrap();
    assert_eq!(late.state, "succeeded");
    assert_eq!(late.result.unwrap()["status"], 200);
}

#[tokio::test]
async fn a_storm_acts_on_no_more_than_the_budget() {
    let (receiver, url) = Receiver::start(vec![]).await;
    let s = settings(vec![webhook("restart", &url, Mode::Auto)], |s| {
        s.guard.budget = 3
    });
    let app = TestApp::spawn().await;
    let actions = Arc::new(Actions::new(app.db.store.clone(), Arc::new(s), 5));
    let mut contexts = Vec::new();
    for i in 0..12 {
        contexts.push(alert(&app, &format!("storm-{i}")).await);
    }
    let tasks: Vec<_> = contexts
        .into_iter()
        .map(|ctx| {
            let actions = actions.clone();
            tokio::spawn(async move { actions.on_alert(&ctx).await.unwrap().unwrap() })
        })
        .collect();
    let mut ran = 0;
    let mut blocked = 0;
    for t in tasks {
        let row = t.await.unwrap();
        match row.state.as_str() {
            "succeeded" => ran += 1,
            "blocked" => {
                assert_eq!(refused_by(&row).as_deref(), Some("budget"));
                blocked += 1;
            }
            other => panic!("unexpected state {other}"),
        }
    }
    assert_eq!((ran, blocked), (3, 9));
    assert_eq!(receiver.deliveries().len(), 3);
}

#[tokio::test]
async fn a_command_runs_its_template_only() {
    let mut echo = dry_run("restart");
    echo.executor = ExecutorKind::Command;
    echo.argv = vec![
        "/bin/echo".to_owned(),
        "restarting".to_owned(),
        "{asset}".to_owned(),
    ];
    let mut bad = echo.clone();
    bad.name = "bad".to_owned();
    bad.argv = vec!["/bin/echo".to_owned(), "{password}".to_owned()];
    let app = TestApp::spawn().await;
    let run = |spec: ActionSettings| {
        Actions::new(
            app.db.store.clone(),
            Arc::new(settings(vec![spec], |_| {})),
            6,
        )
    };
    let row = act(&run(echo), &app, "c-1").await;
    let result = row.result.unwrap();
    assert_eq!(row.state, "succeeded", "{result}");
    assert_eq!(result["argv"], json!(["/bin/echo", "restarting", "c-1"]));
    assert_eq!(result["stdout"], "restarting c-1\n");
    let row = act(&run(bad), &app, "c-2").await;
    assert_eq!(row.state, "failed");
    assert!(
        row.result.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("unknown placeholder")
    );
}

#[tokio::test]
async fn an_alert_from_scoring_is_acted_on_and_verified_without_anyone_clicking() {
    let app = crate::score::app_with_model(|s| {
        s.scoring.fire_windows = 1;
        s.actions = vec![dry_run("restart")];
        // The risky window's own score is stored just after the action; settling for a
        // second leaves it out of the verification.
        s.guard.settle_secs = 1;
        s.guard.verify_window_secs = 0;
        s.guard.sweep_every_secs = 1;
    })
    .await;
    // The asset's stored history is calm (minutes long after its failure)...
    let base = (chrono::Utc::now().timestamp() / 60 - 600) * 60;
    crate::score::post_minutes(&app, base, 520..=550).await;
    // ...when a risky window is posted: the alert opens and an action follows.
    let risky: Value = app
        .post_value("/v1/score", &crate::score::window(195))
        .await;
    let alert_id = risky["alert_opened"].as_i64().expect("an alert opens");
    assert_eq!(risky["recommended_action"]["action"], "restart", "{risky}");
    assert_eq!(risky["recommended_action"]["outcomes"], 0);
    let mut action = Value::Null;
    for _ in 0..150 {
        let list: Value = app.get_value("/v1/actions?asset=asset-0").await;
        action = list["actions"][0].clone();
        if action["verification"] != Value::Null && action["verification"] != "pending" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(action["alert_id"], alert_id, "{action}");
    assert_eq!(action["name"], "restart");
    assert_eq!(action["state"], "succeeded");
    assert_eq!(action["failure_kind"], risky["diagnosis"]["kind"]);
    assert_eq!(
        action["verification"], "healed",
        "the re-scored stored window is calm: {action}"
    );
    let policy: Value = app.get_value("/v1/policy/actions").await;
    assert_eq!(policy["posteriors"][0]["healed"], 1);
}
