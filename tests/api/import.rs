//! `vigil import`, `vigil export` and `vigil retention` as a user runs them, against the
//! test's database.

use std::path::Path;

use chrono::{Duration, Utc};

use crate::support::TestDb;

async fn vigil(db: &TestDb, args: &[&str]) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_vigil"));
    for (key, _) in std::env::vars() {
        if key.starts_with("VIGIL_") {
            command.env_remove(key);
        }
    }
    command
        .env("DATABASE_URL", db.url())
        .args(args)
        .output()
        .await
        .unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn long_csv(rows: usize, bad_row: Option<usize>) -> String {
    let t0 = (Utc::now() - Duration::days(2)).timestamp();
    let mut text = String::from("asset,metric,ts,value\n");
    for i in 0..rows {
        if Some(i) == bad_row {
            text.push_str(&format!(
                "pump-1,temp,{},not-a-number\n",
                t0 + i as i64 * 60
            ));
        } else {
            text.push_str(&format!(
                "pump-{},temp,{},{}\n",
                i % 3,
                t0 + i as i64 * 60,
                20.0 + i as f64 / 10.0
            ));
        }
    }
    text
}

#[tokio::test]
async fn import_stores_a_file_once_and_exports_it_back() {
    let db = TestDb::migrated().await;
    let dir = tempfile::tempdir().unwrap();
    let csv = write(dir.path(), "samples.csv", &long_csv(300, None));
    let output = vigil(&db, &["import", &csv]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(
            "300 rows, 300 samples stored (0 already there), 3 assets, 1 metrics, 0 rejected"
        ),
        "{stdout}"
    );
    assert_eq!(db.count_samples().await, 300);

    let output = vigil(&db, &["import", &csv]).await;
    assert!(output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("0 samples stored (300 already there)")
    );
    assert_eq!(db.count_samples().await, 300);

    let parquet = dir.path().join("out.parquet").display().to_string();
    let output = vigil(&db, &["export", "--output", &parquet, "--asset", "pump-1"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("100 samples written"));
    let frame = vigil::ingest::files::read_frame(Path::new(&parquet)).unwrap();
    assert_eq!(frame.height(), 100);
    assert_eq!(
        frame
            .get_column_names()
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>(),
        ["asset", "metric", "ts", "value"]
    );
}

#[tokio::test]
async fn a_csv_with_a_bad_row_stores_nothing_unless_told_to_skip_it() {
    let db = TestDb::migrated().await;
    let dir = tempfile::tempdir().unwrap();
    let csv = write(dir.path(), "bad.csv", &long_csv(50, Some(17)));
    let output = vigil(&db, &["import", &csv]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("row 18"), "{stderr}");
    assert!(
        stderr.contains("nothing from this file was stored"),
        "{stderr}"
    );
    assert_eq!(db.count_samples().await, 0);

    let output = vigil(&db, &["import", "--skip-bad-rows", &csv]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(db.count_samples().await, 49);
}

#[tokio::test]
async fn wide_files_and_incident_files_are_imported() {
    let db = TestDb::migrated().await;
    let dir = tempfile::tempdir().unwrap();
    let day = (Utc::now() - Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let wide = write(
        dir.path(),
        "wide.csv",
        &format!(
            "asset,ts,cpu,mem\nweb-1,{day}T00:00:00Z,0.5,10\nweb-1,{day}T00:01:00Z,,11\nweb-2,{day}T00:00:00Z,0.9,12\n"
        ),
    );
    let incidents = write(
        dir.path(),
        "incidents.csv",
        &format!(
            "asset,started_at,kind,resolved_at\nweb-1,{day}T00:30:00Z,memory_leak,{day}T01:00:00Z\nweb-2,{day}T02:00:00Z,latency_creep,\n"
        ),
    );
    let output = vigil(&db, &["import", &wide, "--incidents", &incidents]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("5 samples stored"), "{stdout}");
    assert!(
        stdout.contains("2 incidents, 1 opened, 1 resolved"),
        "{stdout}"
    );
    assert_eq!(db.count_samples().await, 5);

    let output = vigil(&db, &["import", "--incidents", &incidents]).await;
    assert!(String::from_utf8_lossy(&output.stdout).contains("2 already known"));
}

#[tokio::test]
async fn retention_drops_whole_old_partitions() {
    let db = TestDb::migrated().await;
    let dir = tempfile::tempdir().unwrap();
    let old = (Utc::now() - Duration::days(40)).timestamp();
    let new = (Utc::now() - Duration::hours(1)).timestamp();
    let csv = write(
        dir.path(),
        "two.csv",
        &format!("asset,metric,ts,value\na,m,{old},1\na,m,{new},2\n"),
    );
    let output = vigil(&db, &["import", &csv]).await;
    assert!(output.status.success());
    let note = "will be dropped by the next retention run";
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains(note),
        "40 days is within the default 90"
    );

    let dry = vigil(&db, &["retention", "--dry-run"]).await;
    assert!(String::from_utf8_lossy(&dry.stdout).contains("would drop 0 partition(s)"));
    let output = vigil_with_days(&db, 30, &["retention"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("dropped 1 partition(s)"), "{stdout}");
    assert_eq!(db.count_samples().await, 1);
    let output = vigil_with_days(&db, 0, &["retention"]).await;
    assert!(String::from_utf8_lossy(&output.stdout).contains("retention is off"));
}

async fn vigil_with_days(db: &TestDb, days: u32, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .env("DATABASE_URL", db.url())
        .env("VIGIL_RETENTION__SAMPLES_DAYS", days.to_string())
        .args(args)
        .output()
        .await
        .unwrap()
}
