//! `vigil demo --chaos` in a reduced size: the summary's numbers are real (checked against
//! the database), failures were predicted before they happened, actions ran, were verified
//! and healed assets, the learned action of each fault kind is its right action, and under
//! chaos (webhook receiver failing then hanging, every database connection killed for a
//! few seconds) no acknowledged sample was lost and the guards held.

use vigil::config::Settings;
use vigil::sim::demo::{DemoArgs, run};

use crate::support::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reduced_demo_under_chaos_predicts_failures_heals_and_learns() {
    let db = TestDb::migrated().await;
    let settings = Settings {
        database_url: Some(db.url()),
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Settings::default()
    };
    let args = DemoArgs {
        assets: 12,
        days: 5,
        live_hours: 12,
        // A fault every 12 hours per asset in the history gives the diagnosis tree about
        // 20 failures of each kind to learn from.
        history_fault_every_hours: 12.0,
        live_fault_every_hours: 2.0,
        minute_ms: 25,
        seed: 42,
        exit: true,
        database: format!("{}_demo", db.name),
        // Five days of a dozen assets hold few failures: every one has its operator's
        // record, so that each kind has some.
        operator_records: 1.0,
        chaos: true,
    };
    let (summary, service) = run(settings, &args, &|m| eprintln!("{m}")).await.unwrap();
    // One line: a failure report keeps it whole.
    eprintln!("{summary:?}");
    let demo = sqlx::PgPool::connect_with(
        crate::support::admin_options()
            .await
            .database(&args.database),
    )
    .await
    .unwrap();
    let count = |sql: &'static str| {
        let demo = demo.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&demo)
                .await
                .unwrap() as usize
        }
    };
    assert!(summary.faults >= 10, "{summary:?}");
    assert_eq!(summary.alerts, count("select count(*) from alert").await);
    assert_eq!(
        summary.failures,
        count("select count(*) from incident where source = 'api'").await,
        "each failure that happened is one incident"
    );
    assert_eq!(summary.failures + summary.prevented, summary.faults);
    assert!(
        summary.predicted >= 1,
        "failures are predicted before they happen: {summary:?}"
    );
    assert!(summary.median_lead_minutes.unwrap() > 0.0);
    assert!(summary.actions_run > 0);
    assert_eq!(
        summary.actions_healed,
        count("select count(*) from action where verification = 'healed'").await
    );
    assert_eq!(
        summary.actions_run,
        count("select count(*) from action where state in ('succeeded', 'failed')").await
    );
    assert!(
        count("select count(*) from action where verification <> 'pending'").await > 0,
        "actions were verified without anyone clicking"
    );
    // A few days of a dozen assets make a small validation set: the model must beat chance
    // clearly, not more.
    assert!(summary.model_quality.0.unwrap() > 0.6, "{summary:?}");

    assert!(
        summary.actions_healed >= 1,
        "an action healed an asset: {summary:?}"
    );
    assert!(summary.prevented >= 1, "{summary:?}");
    assert!(summary.operator_outcomes > 0);
    for learned in &summary.learned {
        assert_eq!(
            learned.after.as_deref(),
            Some(learned.right.as_str()),
            "the learned action of {} is its right action: {learned:?}",
            learned.kind
        );
    }

    let chaos = summary.chaos.as_ref().expect("a chaos report");
    assert!(chaos.database_back, "{chaos:?}");
    let live_samples = (12 * 60 * 12 * vigil::sim::fleet::METRICS.len()) as u64;
    assert_eq!(chaos.samples_acknowledged, live_samples, "{chaos:?}");
    assert_eq!(
        chaos.samples_stored, chaos.samples_acknowledged,
        "no acknowledged sample is lost"
    );
    assert!(
        chaos.receiver_failures + chaos.executor_timeouts > 0,
        "the executor met the receiver's faults: {chaos:?}"
    );
    assert!(chaos.actions_failed > 0, "{chaos:?}");
    assert_eq!(chaos.actions_stuck, 0, "every action's result was recorded");
    assert!(
        chaos.max_assets_in_flight as u32 <= chaos.budget,
        "{chaos:?}"
    );
    assert_eq!(chaos.cooldown_violations, 0, "{chaos:?}");
    service.stop().await.unwrap();
}

/// `vigil simulate --live` against a running Vigil: every streamed sample is stored, each
/// failure that happened is one incident, and the summary accounts for every fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_simulation_streams_to_a_running_vigil() {
    let receiver = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = crate::support::TestApp::spawn_with(|s| {
        s.scoring.on_ingest = true;
        s.actions = vigil::sim::fleet::Fault::ALL
            .iter()
            .map(|f| vigil::config::ActionSettings {
                name: f.right_action().to_owned(),
                executor: vigil::config::ExecutorKind::Webhook,
                mode: vigil::policy::guard::Mode::Auto,
                kinds: Vec::new(),
                classes: Vec::new(),
                prior: (1.0, 1.0),
                url: Some(format!("http://{receiver}/action")),
                secret: Some("test".to_owned()),
                argv: Vec::new(),
                timeout_secs: 2,
                retries: 0,
            })
            .collect();
    })
    .await;
    let from = chrono::Utc::now().timestamp() / 60 * 60 - 4 * 3600;
    let fleet = vigil::sim::fleet::Fleet::new(
        vigil::sim::fleet::FleetParams {
            assets: 3,
            fault_every_hours: 1.5,
            seed: 7,
            ..Default::default()
        },
        from,
        from + 4 * 3600,
    );
    let (faults, minutes) = (fleet.scenarios.len(), fleet.times().count());
    assert!(faults > 0, "the seed plants faults");
    let remote = vigil::sim::demo::Remote {
        url: app.url(""),
        token: None,
        receiver,
        minute_ms: 2,
        final_wait: std::time::Duration::from_secs(1),
    };
    let summary =
        vigil::sim::demo::stream_remote(Settings::default(), &remote, fleet, &|m| eprintln!("{m}"))
            .await
            .unwrap();
    let count = |sql: &'static str| {
        let pool = app.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap() as usize
        }
    };
    assert_eq!(
        count("select count(*) from sample").await,
        3 * minutes * vigil::sim::fleet::METRICS.len()
    );
    assert_eq!(summary.faults, faults);
    assert_eq!(summary.failures + summary.prevented, faults);
    assert_eq!(
        summary.failures,
        count("select count(*) from incident").await
    );
    assert_eq!(summary.alerts, count("select count(*) from alert").await);
}
