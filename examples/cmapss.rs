//! Time to failure on NASA C-MAPSS FD001 with the usual protocol: train on the 100 run-to-
//! failure engines with RUL capped at 125 cycles, predict once per test engine at its last
//! cycle, report RMSE (and the PHM08 score) over the 100 test engines.
//!
//! Features are Vigil's own ([`vigil::features::extract`]): windows of the last 30 cycles of
//! the 21 sensors (cycle = one grid step), each engine's first 20 cycles as its baseline, plus
//! the cycle count; the model is [`vigil::model::GradientBoosting`] (400 rounds, learning rate
//! 0.05), its depth and leaf size chosen by 5-fold cross-validation over whole training
//! engines, then the mean of 5 such models that differ only in their seeded row subsamples.
//!
//!   cargo run --release --example cmapss -- ../shared/datasets/cmapss

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use ndarray::Array2;
use vigil::features::context::{BlockStats, Spread};
use vigil::features::{Context, FeatureSchema, extract};
use vigil::model::GradientBoosting;

const WINDOW: usize = 30;
const BASELINE_CYCLES: usize = 20;
const RUL_CAP: f64 = 125.0;
const FOLDS: usize = 5;
const BAG: u64 = 5;

/// Sensor readings per unit, one row per cycle.
fn read_units(path: &Path) -> BTreeMap<u32, Vec<Vec<f64>>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut units: BTreeMap<u32, Vec<Vec<f64>>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<f64> = line
            .split_whitespace()
            .map(|f| f.parse().unwrap())
            .collect();
        units
            .entry(fields[0] as u32)
            .or_default()
            .push(fields[5..26].to_vec());
    }
    units
}

/// The feature row of a unit at cycle index `end` (0-based), window ending there.
fn row(
    schema: &FeatureSchema,
    cycles: &[Vec<f64>],
    end: usize,
    baselines: &[Option<Context>],
) -> Vec<f64> {
    let columns: Vec<Vec<f64>> = (0..schema.metrics.len())
        .map(|s| {
            cycles[end + 1 - WINDOW..=end]
                .iter()
                .map(|c| c[s])
                .collect()
        })
        .collect();
    let window: Vec<Option<&[f64]>> = columns.iter().map(|c| Some(c.as_slice())).collect();
    let mut out = vec![0.0; schema.len()];
    extract(schema, &window, baselines, &mut out).expect("every sensor is present");
    out.push((end + 1) as f64);
    out
}

/// Each sensor's first cycles as the engine's past (its context): the features compare
/// each window with the engine's own early life.
fn baselines(cycles: &[Vec<f64>], n_sensors: usize) -> Vec<Option<Context>> {
    (0..n_sensors)
        .map(|s| {
            let first: Vec<f64> = cycles[..BASELINE_CYCLES.min(cycles.len())]
                .iter()
                .map(|c| c[s])
                .collect();
            Spread::of(BlockStats::of(&first), 2).map(|s| Context {
                mean: s.mean,
                std: s.std,
                recent_mean: None,
                week: None,
            })
        })
        .collect()
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/datasets/cmapss".to_owned());
    let dir = Path::new(&dir);
    let started = Instant::now();
    let train = read_units(&dir.join("train_FD001.txt"));
    let test = read_units(&dir.join("test_FD001.txt"));
    let truth: Vec<f64> = std::fs::read_to_string(dir.join("RUL_FD001.txt"))
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    // Engines of one fleet run from the same nominal levels: here absolute levels help.
    let mut schema = FeatureSchema::new((1..=21).map(|s| format!("s{s}")).collect(), WINDOW, 1, 0);
    schema.levels = true;

    // One engine's rows and targets, flat.
    let rows_of = |cycles: &Vec<Vec<f64>>| {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        let b = baselines(cycles, 21);
        for end in WINDOW - 1..cycles.len() {
            x.extend(row(&schema, cycles, end, &b));
            y.push(((cycles.len() - 1 - end) as f64).min(RUL_CAP));
        }
        (x, y)
    };
    // Each training engine's rows, computed once; the folds and the final fit stack the
    // engines `keep` selects, in engine order.
    let engines: Vec<(Vec<f64>, Vec<f64>)> = train.values().map(rows_of).collect();
    let stack = |keep: &dyn Fn(usize) -> bool| {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (_, (ex, ey)) in engines.iter().enumerate().filter(|(i, _)| keep(*i)) {
            x.extend_from_slice(ex);
            y.extend_from_slice(ey);
        }
        let x = Array2::from_shape_vec((y.len(), schema.len() + 1), x).unwrap();
        (x, y)
    };
    let fit = |x: &Array2<f64>, y: &[f64], (depth, min_leaf): (usize, usize), seed: u64| {
        GradientBoosting::params()
            .n_rounds(400)
            .learning_rate(0.05)
            .max_depth(depth)
            .min_leaf(min_leaf)
            .seed(seed)
            .check()
            .unwrap()
            .fit(x.view(), y)
            .unwrap()
    };
    // Hyperparameters chosen by 5-fold cross-validation over whole training engines (each
    // engine's every window scored by the model fitted without it), never on the test set.
    let folds: Vec<_> = (0..FOLDS)
        .map(|k| (stack(&|i| i % FOLDS != k), stack(&|i| i % FOLDS == k)))
        .collect();
    let candidates = [(3, 30), (3, 100), (4, 30), (4, 100), (5, 30), (5, 100)];
    let mut chosen = candidates[0];
    let mut best = f64::MAX;
    for candidate in candidates {
        let (mut squared, mut n) = (0.0, 0);
        for ((x_fit, y_fit), (x_val, y_val)) in &folds {
            let predictions = fit(x_fit, y_fit, candidate, 0).predict(x_val.view());
            squared += predictions
                .iter()
                .zip(y_val)
                .map(|(p, t)| (p.clamp(0.0, RUL_CAP) - t).powi(2))
                .sum::<f64>();
            n += y_val.len();
        }
        let rmse = (squared / n as f64).sqrt();
        eprintln!(
            "depth {} min_leaf {}: cross-validated RMSE {rmse:.2}",
            candidate.0, candidate.1
        );
        if rmse < best {
            best = rmse;
            chosen = candidate;
        }
    }
    let (x, y) = stack(&|_| true);
    let fit_started = Instant::now();
    // A bag of seeds: the mean of models that differ only in their row subsamples.
    let models: Vec<GradientBoosting> = (0..BAG).map(|seed| fit(&x, &y, chosen, seed)).collect();
    let fit_secs = fit_started.elapsed().as_secs_f64();

    let (mut squared, mut score) = (0.0, 0.0);
    for ((_, cycles), &true_rul) in test.iter().zip(&truth) {
        let b = baselines(cycles, 21);
        let features = row(&schema, cycles, cycles.len() - 1, &b);
        let predicted = (models
            .iter()
            .map(|m| m.predict_one(ndarray::ArrayView1::from(&features)))
            .sum::<f64>()
            / models.len() as f64)
            .clamp(0.0, RUL_CAP);
        let d = predicted - true_rul;
        squared += d * d;
        score += if d < 0.0 {
            (-d / 13.0).exp() - 1.0
        } else {
            (d / 10.0).exp() - 1.0
        };
    }
    let rmse = (squared / truth.len() as f64).sqrt();
    println!(
        "{{\"dataset\": \"C-MAPSS FD001\", \"train_rows\": {}, \"test_engines\": {}, \"max_depth\": {}, \"min_leaf\": {}, \"rmse\": {rmse:.2}, \"phm08_score\": {score:.1}, \"fit_secs\": {fit_secs:.2}, \"total_secs\": {:.2}}}",
        y.len(),
        truth.len(),
        chosen.0,
        chosen.1,
        started.elapsed().as_secs_f64()
    );
}
