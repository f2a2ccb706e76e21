use chrono::{DateTime, Duration, TimeZone, Utc};
use vigil::store::samples::SampleColumns;
use vigil::store::{self, MIGRATOR};

use crate::support::{TestDb, score_at};

const TABLES: [&str; 17] = [
    "asset",
    "metric",
    "sample",
    "incident",
    "model",
    "score",
    "score_alerting",
    "alert",
    "alert_feedback",
    "incident_outcome",
    "action",
    "threshold",
    "threshold_change",
    "action_outcome_stat",
    "guard_setting",
    "job_run",
    "_sqlx_migrations",
];

#[tokio::test]
async fn migrations_apply_on_an_empty_database_and_are_idempotent() {
    let db = TestDb::empty().await;
    let before = db.store.schema_status().await.unwrap();
    assert!(before.applied.is_empty());
    assert_eq!(before.pending.len(), MIGRATOR.iter().count());

    db.store.migrate().await.unwrap();
    db.store.migrate().await.unwrap();
    let after = db.store.schema_status().await.unwrap();
    assert!(after.is_current());
    assert_eq!(after.applied.len(), MIGRATOR.iter().count());

    for table in TABLES {
        let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
            .bind(table)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert!(exists, "table {table} exists");
    }
}

#[tokio::test]
async fn scores_stored_before_partitioning_move_into_day_partitions() {
    let db = TestDb::empty().await;
    MIGRATOR.run_to(3, &db.pool).await.unwrap();
    let asset: i64 =
        sqlx::query_scalar("insert into asset (name) values ('pump-1') returning asset_id")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    for (day, alert) in [(1, false), (1, true), (3, false)] {
        sqlx::query(
            "insert into score (asset_id, model_version, window_end, probability, is_alert) \
             values ($1, 'test', '2026-11-01T12:00:00Z'::timestamptz + make_interval(days => $2), 0.5, $3)",
        )
        .bind(asset)
        .bind(day)
        .bind(alert)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    db.store.migrate().await.unwrap();
    let rows: Vec<(String, i64, bool)> = sqlx::query_as(
        "select tableoid::regclass::text, score_id, is_alert from score order by score_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            ("score_p20261102".to_owned(), 1, false),
            ("score_p20261102".to_owned(), 2, true),
            ("score_p20261104".to_owned(), 3, false),
        ]
    );
    // New scores go on numbering after the moved ones, into partitions made for them.
    let score = vigil::store::scores::NewScore {
        probability: Some(0.2),
        ..score_at(
            "pump-1",
            Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap(),
            false,
        )
    };
    db.store.insert_scores(&[score]).await.unwrap();
    let newest: (String, i64) = sqlx::query_as(
        "select tableoid::regclass::text, score_id from score order by score_id desc limit 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(newest, ("score_p20261120".to_owned(), 4));
}

#[tokio::test]
async fn every_table_is_commented() {
    let db = TestDb::migrated().await;
    let uncommented: Vec<String> = sqlx::query_scalar(
        "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relispartition \
         and c.relname <> '_sqlx_migrations' and obj_description(c.oid, 'pg_class') is null",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        uncommented.is_empty(),
        "tables without a comment: {uncommented:?}"
    );
}

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

async fn batch_over_three_days(db: &TestDb) -> SampleColumns {
    let (asset, metric) = db.asset_and_metric("pump-1", "temp").await;
    let mut batch = SampleColumns::default();
    for day in 1..=3 {
        for hour in [0, 12, 23] {
            batch.push(asset, metric, at(day, hour), f64::from(day * 100 + hour));
        }
    }
    batch
}

#[tokio::test]
async fn sample_partitions_are_created_on_demand_and_inserts_are_idempotent() {
    let db = TestDb::migrated().await;
    assert!(db.store.sample_partitions().await.unwrap().is_empty());
    let batch = batch_over_three_days(&db).await;
    assert_eq!(db.store.insert_samples(&batch).await.unwrap(), 9);
    assert_eq!(
        db.store.sample_partitions().await.unwrap(),
        vec!["sample_p20261101", "sample_p20261102", "sample_p20261103"]
    );
    assert_eq!(
        db.store.insert_samples(&batch).await.unwrap(),
        0,
        "a re-sent batch stores nothing twice"
    );
    assert_eq!(db.store.count_samples(None).await.unwrap(), 9);
}

#[tokio::test]
async fn retention_drops_whole_partitions_before_the_cutoff() {
    let db = TestDb::migrated().await;
    db.store
        .insert_samples(&batch_over_three_days(&db).await)
        .await
        .unwrap();
    // A cutoff inside day 2 drops day 1 only: a partition goes once all of it is old.
    let dropped = db
        .store
        .drop_sample_partitions_before(at(2, 18))
        .await
        .unwrap();
    assert_eq!(dropped, vec!["sample_p20261101"]);
    assert_eq!(db.store.count_samples(None).await.unwrap(), 6);
    let dropped = db
        .store
        .drop_sample_partitions_before(at(3, 0) + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(dropped, vec!["sample_p20261102", "sample_p20261103"]);
    assert_eq!(db.store.count_samples(None).await.unwrap(), 0);
}

#[tokio::test]
async fn a_batch_with_one_bad_value_is_stored_not_at_all() {
    let db = TestDb::migrated().await;
    let mut batch = batch_over_three_days(&db).await;
    batch.values[4] = f64::NAN;
    let err = db.store.insert_samples(&batch).await.unwrap_err();
    assert!(matches!(err, store::Error::Constraint { .. }), "{err}");
    assert_eq!(db.store.count_samples(None).await.unwrap(), 0);
    batch.values[4] = f64::INFINITY;
    assert!(db.store.insert_samples(&batch).await.is_err());
    assert_eq!(db.store.count_samples(None).await.unwrap(), 0);
}

#[tokio::test]
async fn concurrent_batches_into_new_days_create_each_partition_once() {
    let db = TestDb::migrated().await;
    let (asset, metric) = db.asset_and_metric("pump-1", "temp").await;
    let tasks: Vec<_> = (0..6)
        .map(|k| {
            let store = db.store.clone();
            tokio::spawn(async move {
                let mut batch = SampleColumns::default();
                for day in 1..=4 {
                    batch.push(asset, metric, at(day, k), f64::from(k));
                }
                store.insert_samples(&batch).await.unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 4);
    }
    assert_eq!(db.store.sample_partitions().await.unwrap().len(), 4);
    assert_eq!(db.store.count_samples(None).await.unwrap(), 24);
}
