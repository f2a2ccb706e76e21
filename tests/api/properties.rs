//! Properties over generated inputs (proptest): sample batches over HTTP, Alertmanager
//! payloads, and CSV and Parquet files for `vigil import`. Each case mixes valid parts with
//! bad ones (bad names, non-finite values, timestamps out of range or unreadable, unknown
//! statuses, overlong fingerprints); the properties are that nothing answers 5xx, every
//! error is the JSON `{code, message}` body, and a batch is stored whole or not at all.
//! proptest shrinks a failing case to a small one and prints it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

use crate::support::{TestApp, TestDb, error_code};

/// Cases per property: enough to meet every kind of bad part many times, in well under a
/// minute each.
const CASES: u32 = 256;

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        // Shrinking re-runs requests; a few hundred steps find a small case.
        max_shrink_iters: 400,
        failure_persistence: None,
        ..Config::default()
    })
}

/// How many cases were accepted and refused: a property over generated inputs proves
/// little unless the generator made many of both.
#[derive(Default)]
struct Tally {
    accepted: AtomicUsize,
    refused: AtomicUsize,
}

impl Tally {
    fn count(&self, accepted: bool) {
        if accepted {
            &self.accepted
        } else {
            &self.refused
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    fn assert_both(&self) {
        let (accepted, refused) = (
            self.accepted.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        );
        assert!(
            accepted > 10 && refused > 10,
            "the generator makes both kinds: {accepted} accepted, {refused} refused"
        );
    }
}

/// A name part of a case: valid (one of a few, so that names repeat) or one of the kinds
/// the name rules refuse.
#[derive(Debug, Clone)]
enum Name {
    Good(u8),
    Empty,
    LeadingDash,
    Space,
    TooLong,
}

fn name() -> impl Strategy<Value = Name> {
    prop_oneof![
        8 => (0u8..3).prop_map(Name::Good),
        1 => Just(Name::Empty),
        1 => Just(Name::LeadingDash),
        1 => Just(Name::Space),
        1 => Just(Name::TooLong),
    ]
}

impl Name {
    /// The name in case `case`'s namespace (valid names start with `p{case}-`).
    fn text(&self, case: usize, what: &str) -> String {
        match self {
            Name::Good(n) => format!("p{case}-{what}{n}"),
            Name::Empty => String::new(),
            Name::LeadingDash => format!("-p{case}"),
            Name::Space => format!("p{case} {what}"),
            Name::TooLong => format!("p{case}-{}", "x".repeat(200)),
        }
    }

    fn good(&self) -> bool {
        matches!(self, Name::Good(_))
    }
}

/// A sample's time: a recent minute (so that samples repeat), or refused.
#[derive(Debug, Clone)]
enum Time {
    Minute(u8),
    Ancient,
    FarFuture,
    Unreadable,
}

fn time() -> impl Strategy<Value = Time> {
    prop_oneof![
        10 => (0u8..6).prop_map(Time::Minute),
        1 => Just(Time::Ancient),
        1 => Just(Time::FarFuture),
        1 => Just(Time::Unreadable),
    ]
}

/// A sample's value: finite, or a non-finite token some encoders write.
#[derive(Debug, Clone)]
enum Number {
    Finite(f64),
    NanToken,
    InfToken,
}

fn number() -> impl Strategy<Value = Number> {
    prop_oneof![
        10 => (-1e9f64..1e9).prop_map(Number::Finite),
        1 => Just(Number::NanToken),
        1 => Just(Number::InfToken),
    ]
}

#[derive(Debug, Clone)]
struct Sample {
    asset: Name,
    metric: Name,
    time: Time,
    value: Number,
    /// Sent as a one-sample series item instead of a row.
    as_series: bool,
}

/// A sample, bad in some part now and then (`clean`: never).
fn sample(clean: bool) -> impl Strategy<Value = Sample> {
    let (asset, metric, time, value) = if clean {
        (
            (0u8..3).prop_map(Name::Good).boxed(),
            (0u8..3).prop_map(Name::Good).boxed(),
            (0u8..6).prop_map(Time::Minute).boxed(),
            (-1e9f64..1e9).prop_map(Number::Finite).boxed(),
        )
    } else {
        (
            name().boxed(),
            name().boxed(),
            time().boxed(),
            number().boxed(),
        )
    };
    (asset, metric, time, value, any::<bool>()).prop_map(
        |(asset, metric, time, value, as_series)| Sample {
            asset,
            metric,
            time,
            value,
            as_series,
        },
    )
}

impl Sample {
    fn good(&self) -> bool {
        self.asset.good()
            && self.metric.good()
            && matches!(self.time, Time::Minute(_))
            && matches!(self.value, Number::Finite(_))
    }

    fn ts_json(&self, t0: i64) -> Value {
        match self.time {
            Time::Minute(m) => json!(t0 + 60 * i64::from(m)),
            Time::Ancient => json!(-6_000_000_000_000_i64),
            Time::FarFuture => json!(t0 + 10 * 365 * 86_400),
            Time::Unreadable => json!("yesterday"),
        }
    }

    fn value_json(&self) -> Value {
        match self.value {
            Number::Finite(v) => json!(v),
            Number::NanToken => json!("NaN"),
            Number::InfToken => json!("-Inf"),
        }
    }

    /// What identifies a stored sample.
    fn key(&self, case: usize) -> (String, String, String) {
        (
            self.asset.text(case, "a"),
            self.metric.text(case, "m"),
            format!("{:?}", self.time),
        )
    }
}

/// A batch: half the time all valid, else with bad parts here and there.
fn batch() -> impl Strategy<Value = Vec<Sample>> {
    prop_oneof![
        prop::collection::vec(sample(true), 1..12),
        prop::collection::vec(sample(false), 1..12),
    ]
}

/// Samples stored under case `case`'s names.
async fn stored_in_case(pool: &sqlx::PgPool, case: usize) -> i64 {
    sqlx::query_scalar(
        "select count(*) from sample s join asset a using (asset_id) where a.name like $1",
    )
    .bind(format!("p{case}-%"))
    .fetch_one(pool)
    .await
    .unwrap()
}

#[test]
fn sample_batches_are_stored_whole_or_not_at_all() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(TestApp::spawn());
    let t0 = chrono::Utc::now().timestamp() / 60 * 60 - 3600;
    let cases = AtomicUsize::new(0);
    let tally = Tally::default();
    runner()
        .run(&batch(), |samples| {
            let case = cases.fetch_add(1, Ordering::Relaxed);
            let (mut rows, mut series) = (Vec::new(), Vec::new());
            for s in &samples {
                let (asset, metric) = (s.asset.text(case, "a"), s.metric.text(case, "m"));
                if s.as_series {
                    series.push(json!({ "asset": asset, "metric": metric,
                        "timestamps": [s.ts_json(t0)], "values": [s.value_json()] }));
                } else {
                    rows.push(json!({ "asset": asset, "metric": metric,
                        "ts": s.ts_json(t0), "value": s.value_json() }));
                }
            }
            let body = json!({ "rows": rows, "series": series });
            rt.block_on(async {
                let response = app.post_json("/v1/samples", &body).await;
                let status = response.status().as_u16();
                let all_good = samples.iter().all(Sample::good);
                prop_assert!(status < 500, "{status} for {body}");
                if all_good {
                    prop_assert_eq!(status, 200, "a valid batch is stored: {}", body);
                } else {
                    prop_assert!((400..500).contains(&status), "{status} for {body}");
                    error_code(response).await;
                }
                let distinct: HashSet<_> = samples.iter().map(|s| s.key(case)).collect();
                let expected = if all_good { distinct.len() as i64 } else { 0 };
                prop_assert_eq!(
                    stored_in_case(&app.db.pool, case).await,
                    expected,
                    "whole or nothing: {}",
                    body
                );
                tally.count(all_good);
                Ok::<(), TestCaseError>(())
            })
        })
        .unwrap();
    tally.assert_both();
}

#[derive(Debug, Clone)]
struct Alert {
    status: &'static str,
    /// The asset label (`instance`), or none (the alert is then skipped).
    asset: Option<Name>,
    kind: u8,
    starts_years_ago: u16,
    ends: Option<i64>,
    fingerprint: Option<usize>,
}

fn alert() -> impl Strategy<Value = Alert> {
    (
        prop_oneof![4 => Just("firing"), 3 => Just("resolved"), 1 => Just("pending")],
        prop::option::weighted(0.85, name()),
        0u8..3,
        prop_oneof![6 => Just(0u16), 1 => Just(2025u16), 1 => 1u16..30],
        prop::option::of(-7_200i64..7_200),
        prop::option::of(prop_oneof![5 => 1usize..40, 1 => 501usize..800]),
    )
        .prop_map(
            |(status, asset, kind, starts_years_ago, ends, fingerprint)| Alert {
                status,
                asset,
                kind,
                starts_years_ago,
                ends,
                fingerprint,
            },
        )
}

impl Alert {
    /// Whether Vigil records it (an alert without the asset label is skipped, whatever it
    /// holds).
    fn good(&self) -> bool {
        match &self.asset {
            None => true,
            Some(asset) => {
                asset.good()
                    && self.status != "pending"
                    && self.fingerprint.is_none_or(|f| f <= 500)
                    // Before 1990 (`ingest.min_timestamp`).
                    && self.starts_years_ago < 2025
            }
        }
    }

    fn json(&self, case: usize, now: chrono::DateTime<chrono::Utc>) -> Value {
        let starts = now - chrono::Duration::days(365 * i64::from(self.starts_years_ago));
        let mut labels = json!({ "alertname": format!("Kind{}", self.kind), "severity": "page" });
        if let Some(asset) = &self.asset {
            labels["instance"] = json!(asset.text(case, "a"));
        }
        let mut alert = json!({
            "status": self.status, "labels": labels, "annotations": {},
            "startsAt": starts.to_rfc3339(),
            "endsAt": self.ends.map_or("0001-01-01T00:00:00Z".to_owned(), |s| {
                (starts + chrono::Duration::seconds(s)).to_rfc3339()
            }),
            "generatorURL": "http://prometheus",
        });
        if let Some(len) = self.fingerprint {
            alert["fingerprint"] = json!(format!("{case}-{}", "f".repeat(len)));
        }
        alert
    }
}

/// Incidents and assets under case `case`'s names.
async fn incidents_and_assets_in_case(pool: &sqlx::PgPool, case: usize) -> (i64, i64) {
    sqlx::query_as(
        "select (select count(*) from incident i join asset a using (asset_id) where a.name like $1), \
                (select count(*) from asset where name like $1)",
    )
    .bind(format!("p{case}-%"))
    .fetch_one(pool)
    .await
    .unwrap()
}

#[test]
fn alertmanager_payloads_get_no_5xx_and_are_recorded_whole_or_not_at_all() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(TestApp::spawn());
    let cases = AtomicUsize::new(0);
    let tally = Tally::default();
    runner()
        .run(&prop::collection::vec(alert(), 1..6), |alerts| {
            let case = cases.fetch_add(1, Ordering::Relaxed);
            let now = chrono::Utc::now();
            let body = json!({
                "version": "4", "status": "firing", "receiver": "vigil", "groupLabels": {},
                "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
                "groupKey": "{}", "truncatedAlerts": 0,
                "alerts": alerts.iter().map(|a| a.json(case, now)).collect::<Vec<_>>(),
            });
            rt.block_on(async {
                let response = app.post_json("/v1/alertmanager", &body).await;
                let status = response.status().as_u16();
                prop_assert!(status < 500, "{status} for {body}");
                let (incidents, assets) = incidents_and_assets_in_case(&app.db.pool, case).await;
                if alerts.iter().all(Alert::good) {
                    prop_assert_eq!(status, 200, "a valid payload is recorded: {}", body);
                    let answer: Value = response.json().await.unwrap();
                    let accounted = ["opened", "resolved", "unchanged", "skipped"]
                        .iter()
                        .map(|k| answer[k].as_u64().unwrap_or(0))
                        .sum::<u64>();
                    prop_assert_eq!(accounted, alerts.len() as u64, "{} for {}", answer, body);
                    let skipped = alerts.iter().filter(|a| a.asset.is_none()).count();
                    prop_assert_eq!(answer["skipped"].as_u64(), Some(skipped as u64));
                    prop_assert!(incidents >= 1 || skipped == alerts.len(), "{body}");
                    tally.count(true);
                } else {
                    prop_assert!((400..500).contains(&status), "{status} for {body}");
                    error_code(response).await;
                    prop_assert_eq!((incidents, assets), (0, 0), "nothing of {} is kept", body);
                    tally.count(false);
                }
                Ok::<(), TestCaseError>(())
            })
        })
        .unwrap();
    tally.assert_both();
}

/// A cell of a samples file: what the row holds, and whether the reader must refuse it.
#[derive(Debug, Clone)]
enum FileTime {
    Seconds(u8),
    Rfc3339(u8),
    Spaced(u8),
    Unreadable,
}

#[derive(Debug, Clone)]
enum FileValue {
    Finite(f64),
    Text,
    Missing,
}

#[derive(Debug, Clone)]
struct FileRow {
    asset: u8,
    metric: u8,
    time: FileTime,
    value: FileValue,
}

fn file_row() -> impl Strategy<Value = FileRow> {
    (
        0u8..3,
        0u8..2,
        prop_oneof![
            4 => (0u8..6).prop_map(FileTime::Seconds),
            2 => (0u8..6).prop_map(FileTime::Rfc3339),
            2 => (0u8..6).prop_map(FileTime::Spaced),
            1 => Just(FileTime::Unreadable),
        ],
        prop_oneof![
            8 => (-1e6f64..1e6).prop_map(FileValue::Finite),
            1 => Just(FileValue::Text),
            1 => Just(FileValue::Missing),
        ],
    )
        .prop_map(|(asset, metric, time, value)| FileRow {
            asset,
            metric,
            time,
            value,
        })
}

impl FileRow {
    fn good(&self) -> bool {
        !matches!(self.time, FileTime::Unreadable) && matches!(self.value, FileValue::Finite(_))
    }

    fn minute(&self) -> Option<u8> {
        match self.time {
            FileTime::Seconds(m) | FileTime::Rfc3339(m) | FileTime::Spaced(m) => Some(m),
            FileTime::Unreadable => None,
        }
    }

    fn ts_text(&self, t0: chrono::DateTime<chrono::Utc>) -> String {
        let at = |m: u8| t0 + chrono::Duration::minutes(i64::from(m));
        match self.time {
            FileTime::Seconds(m) => at(m).timestamp().to_string(),
            FileTime::Rfc3339(m) => at(m).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            FileTime::Spaced(m) => at(m).format("%Y-%m-%d %H:%M:%S").to_string(),
            FileTime::Unreadable => "soon".to_owned(),
        }
    }

    fn value_text(&self) -> String {
        match self.value {
            FileValue::Finite(v) => format!("{v}"),
            FileValue::Text => "n/a".to_owned(),
            FileValue::Missing => String::new(),
        }
    }
}

/// Reads `path` as `vigil import` does: the rows, the rejected count and the batch.
fn read(path: &std::path::Path) -> (u64, u64, vigil::ingest::NamedBatch) {
    let settings = vigil::config::Settings::default();
    let limits = vigil::ingest::Limits::new(&settings.ingest, chrono::Utc::now());
    let mut batch = vigil::ingest::NamedBatch::new(limits.unbounded_batch());
    let (rows, rejections) =
        vigil::ingest::files::read_samples(path, vigil::ingest::files::Layout::Auto, &mut batch)
            .unwrap();
    (rows, rejections.count, batch)
}

#[test]
fn csv_and_parquet_files_read_alike_refuse_each_bad_row_and_store_whole() {
    use polars::prelude::*;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::migrated());
    let dir = tempfile::tempdir().unwrap();
    let t0 = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() / 60 * 60, 0).unwrap()
        - chrono::Duration::days(1);
    let cases = AtomicUsize::new(0);
    runner()
        .run(&prop::collection::vec(file_row(), 1..30), |rows| {
            let case = cases.fetch_add(1, Ordering::Relaxed);
            let assets: Vec<String> = rows
                .iter()
                .map(|r| format!("p{case}-a{}", r.asset))
                .collect();
            let metrics: Vec<String> = rows.iter().map(|r| format!("m{}", r.metric)).collect();
            let times: Vec<String> = rows.iter().map(|r| r.ts_text(t0)).collect();
            let values: Vec<String> = rows.iter().map(FileRow::value_text).collect();
            let mut csv = String::from("asset,metric,ts,value\n");
            for i in 0..rows.len() {
                csv.push_str(&format!(
                    "{},{},{},{}\n",
                    assets[i], metrics[i], times[i], values[i]
                ));
            }
            let csv_path = dir.path().join(format!("case{case}.csv"));
            std::fs::write(&csv_path, &csv).unwrap();
            // The same rows as Parquet, the value column a float where it can be one.
            let numbers: Vec<Option<f64>> = rows
                .iter()
                .map(|r| match r.value {
                    FileValue::Finite(v) => Some(v),
                    _ => None,
                })
                .collect();
            let parquet_path = dir.path().join(format!("case{case}.parquet"));
            let mut frame = df!(
                "asset" => &assets, "metric" => &metrics, "ts" => &times, "value" => &numbers
            )
            .unwrap();
            vigil::ingest::files::write_parquet(&parquet_path, &mut frame).unwrap();

            let bad = rows.iter().filter(|r| !r.good()).count() as u64;
            let (csv_rows, csv_rejected, batch) = read(&csv_path);
            prop_assert_eq!(csv_rows, rows.len() as u64, "{}", csv);
            prop_assert_eq!(csv_rejected, bad, "each bad row is refused: {}", csv);
            prop_assert_eq!(batch.len() as u64, rows.len() as u64 - bad);
            let (parquet_rows, parquet_rejected, parquet_batch) = read(&parquet_path);
            prop_assert_eq!(
                (parquet_rows, parquet_rejected, parquet_batch.len()),
                (csv_rows, csv_rejected, batch.len()),
                "Parquet reads as CSV does: {}",
                csv
            );
            if bad == 0 {
                let distinct: HashSet<_> = rows
                    .iter()
                    .map(|r| (r.asset, r.metric, r.minute()))
                    .collect();
                let stored = rt.block_on(async {
                    let report = vigil::ingest::store_batch(&db.store, batch, &mut |_| {})
                        .await
                        .unwrap();
                    prop_assert_eq!(report.stored, distinct.len() as u64, "{}", csv);
                    Ok::<i64, TestCaseError>(stored_in_case(&db.pool, case).await)
                })?;
                prop_assert_eq!(stored, distinct.len() as i64, "{}", csv);
            }
            Ok(())
        })
        .unwrap();
}
