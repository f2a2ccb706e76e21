//! `vigil demo` in a reduced size: the summary's numbers are real (checked against the
//! database), failures were predicted before they happened, and actions ran and were
//! verified. (Not asserted: that actions healed assets and the learned action per kind is
//! right; a reduced run has too few faults per kind for that, see the issue note.)

use vigil::cli::demo::{DemoArgs, run};
use vigil::config::Settings;

use crate::support::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reduced_demo_predicts_failures_and_acts_on_them() {
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
        live_fault_every_hours: 2.0,
        minute_ms: 25,
        seed: 42,
        exit: true,
        database: format!("{}_demo", db.name),
    };
    let (summary, service) = run(settings, &args, &|m| eprintln!("{m}")).await.unwrap();
    eprintln!("{summary:#?}");
    let demo = vigil::store::Store::connect(
        crate::support::admin_options()
            .await
            .database(&args.database),
        &Settings::default(),
    )
    .await
    .unwrap();
    let count = |sql: &'static str| {
        let demo = demo.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(demo.pool())
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
    service.stop().await.unwrap();
}
