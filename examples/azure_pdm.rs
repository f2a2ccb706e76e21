//! Failure prediction on the Azure predictive-maintenance subset (20 machines, 90 days of
//! hourly telemetry, with errors, maintenance and failures): for each component, predict a
//! failure of that component within 24 hours, with Vigil's training pipeline.
//!
//! Metrics per machine and hour: the four telemetry channels, the number of errors in the
//! hour, and for each component the hours since it was last replaced (from the maintenance
//! log). Windows are 24 hourly points, stride 1; the split is by time at 70%. One failure
//! model (isolation forest + calibrated logistic regression) is trained per component.
//!
//!   cargo run --release --example azure_pdm -- ../shared/datasets/azure_pdm/subset_20machines_90days

use std::collections::BTreeMap;
use std::path::Path;

use vigil::config::TrainingSettings;
use vigil::features::dataset::{AssetHistory, Failure, MetricHistory};
use vigil::ingest::files::parse_timestamp;
use vigil::jobs::train::train;

const COMPONENTS: [&str; 4] = ["comp1", "comp2", "comp3", "comp4"];

fn rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

fn secs(text: &str) -> i64 {
    parse_timestamp(text).expect("a timestamp") / 1_000_000
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/datasets/azure_pdm/subset_20machines_90days".to_owned());
    let dir = Path::new(&dir);
    let mut metrics: Vec<String> = ["volt", "rotate", "pressure", "vibration", "errors"]
        .map(String::from)
        .to_vec();
    metrics.extend(COMPONENTS.iter().map(|c| format!("{c}_age_hours")));
    // machine -> hour -> values
    let mut telemetry: BTreeMap<String, BTreeMap<i64, [f64; 4]>> = BTreeMap::new();
    for r in rows(&dir.join("PdM_telemetry.csv")) {
        let values = [
            r[2].parse().unwrap(),
            r[3].parse().unwrap(),
            r[4].parse().unwrap(),
            r[5].parse().unwrap(),
        ];
        telemetry
            .entry(format!("machine-{}", r[1]))
            .or_default()
            .insert(secs(&r[0]), values);
    }
    let mut errors: BTreeMap<(String, i64), f64> = BTreeMap::new();
    for r in rows(&dir.join("PdM_errors.csv")) {
        *errors
            .entry((format!("machine-{}", r[1]), secs(&r[0])))
            .or_default() += 1.0;
    }
    let mut replaced: BTreeMap<(String, usize), Vec<i64>> = BTreeMap::new();
    for r in rows(&dir.join("PdM_maint.csv")) {
        let comp = COMPONENTS.iter().position(|c| *c == r[2]).unwrap();
        replaced
            .entry((format!("machine-{}", r[1]), comp))
            .or_default()
            .push(secs(&r[0]));
    }
    let failures: Vec<Failure> = rows(&dir.join("PdM_failures.csv"))
        .into_iter()
        .map(|r| Failure {
            asset: format!("machine-{}", r[1]),
            kind: r[2].clone(),
            started: secs(&r[0]),
            resolved: None,
        })
        .collect();

    let histories: Vec<AssetHistory> = telemetry
        .iter()
        .map(|(asset, hours)| {
            let mut series = vec![MetricHistory::default(); metrics.len()];
            for (&t, values) in hours {
                let mut row = values.to_vec();
                row.push(errors.get(&(asset.clone(), t)).copied().unwrap_or(0.0));
                for comp in 0..COMPONENTS.len() {
                    let last = replaced
                        .get(&(asset.clone(), comp))
                        .and_then(|times| times.iter().filter(|&&r| r <= t).max().copied());
                    // Never replaced in the log: count from the start of the log.
                    row.push(last.map_or(((t - 1_401_602_400) / 3600) as f64, |r| {
                        ((t - r) / 3600) as f64
                    }));
                }
                for (s, v) in series.iter_mut().zip(row) {
                    s.ts.push(t);
                    s.values.push(v);
                }
            }
            AssetHistory {
                asset: asset.clone(),
                metrics: series.into_iter().map(Some).collect(),
            }
        })
        .collect();

    let settings = TrainingSettings {
        window: 24,
        step_secs: 3600,
        max_fill: 2,
        stride: 1,
        horizon_secs: 24 * 3600,
        train_frac: 0.7,
        negatives_per_positive: 10,
        ..TrainingSettings::default()
    };
    println!(
        "{:<8} {:>9} {:>9} {:>9} {:>9} {:>9}   (validation windows; precision/recall at p >= 0.5)",
        "component", "positives", "ROC AUC", "avg prec", "precision", "recall"
    );
    for comp in COMPONENTS {
        let mine: Vec<Failure> = failures
            .iter()
            .filter(|f| f.kind == comp)
            .cloned()
            .collect();
        let line = match train(
            metrics.clone(),
            &histories,
            &mine,
            &settings,
            &vigil::model::evaluation::AlertRule::default(),
            None,
            &mut |_| {},
        ) {
            Ok(bundle) => {
                let card = bundle.report.failure.clone().unwrap();
                let (tp, fp, positives) = card.reliability.iter().filter(|b| b.from >= 0.5).fold(
                    (0.0, 0.0, card.positives as f64),
                    |(tp, fp, p), b| {
                        let hits = b.observed * b.count as f64;
                        (tp + hits, fp + b.count as f64 - hits, p)
                    },
                );
                let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
                format!(
                    "{comp:<8} {:>9} {:>9} {:>9} {:>9} {:>9}",
                    card.positives,
                    fmt(card.roc_auc),
                    fmt(card.average_precision),
                    fmt((tp + fp > 0.0).then(|| tp / (tp + fp))),
                    fmt((positives > 0.0).then(|| tp / positives)),
                )
            }
            Err(e) => format!("{comp:<8} not trained: {e}"),
        };
        println!("{line}");
    }
}
