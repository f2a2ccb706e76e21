//! Isolation-forest benchmark, the Rust side: builds the seed-baseline task's windows (60
//! one-minute points, stride 1, label = failure within 30 minutes, time split at 70%) with
//! Vigil's pipeline, writes the train and validation feature matrices as .npy for the
//! scikit-learn side (`bench/isolation_forest.py`), then fits Vigil's isolation forest
//! (100 trees, 256 samples, seed 0) on the train windows and scores the validation windows,
//! printing one JSON line. Run both with `bench/isolation_forest.sh`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{Array2, ArrayView2};
use vigil::config::{IngestSettings, TrainingSettings};
use vigil::features::FeatureSchema;
use vigil::features::dataset;
use vigil::ingest::Limits;
use vigil::jobs::train::histories_from_files;
use vigil::model::IsolationForest;
use vigil::model::evaluation::{average_precision, roc_auc};

fn write_npy(path: &Path, data: ArrayView2<f64>) {
    let (rows, cols) = data.dim();
    let mut header =
        format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    file.write_all(b"\x93NUMPY\x01\x00").unwrap();
    file.write_all(&(header.len() as u16).to_le_bytes())
        .unwrap();
    file.write_all(header.as_bytes()).unwrap();
    for v in data.iter() {
        file.write_all(&v.to_le_bytes()).unwrap();
    }
    file.flush().unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .unwrap_or_else(|| {
                panic!("usage: if_bench --input metrics.csv --incidents incidents.csv --out DIR")
            })
            .clone()
    };
    let (input, incidents, out) = (
        value("--input"),
        value("--incidents"),
        PathBuf::from(value("--out")),
    );
    std::fs::create_dir_all(&out).unwrap();
    let limits = Limits::new(&IngestSettings::default(), chrono::Utc::now());
    let data =
        histories_from_files(Path::new(&input), Some(Path::new(&incidents)), limits).unwrap();
    let settings = TrainingSettings::default();
    let schema = FeatureSchema::new(
        data.metrics.clone(),
        settings.window,
        settings.step_secs,
        settings.max_fill,
    );
    let params = vigil::jobs::train::dataset_params(&settings);
    let set = dataset::build(&schema, &data.histories, &data.failures, &params);
    let (train_x, validation_x) = (
        set.all_features(&set.train),
        set.all_features(&set.validation),
    );
    write_npy(&out.join("train.npy"), train_x.view());
    write_npy(&out.join("validation.npy"), validation_x.view());
    let labels = Array2::from_shape_vec(
        (set.validation.len(), 1),
        set.validation
            .y
            .iter()
            .map(|&y| if y { 1.0 } else { 0.0 })
            .collect(),
    )
    .unwrap();
    write_npy(&out.join("validation_labels.npy"), labels.view());

    let mut best = (f64::MAX, f64::MAX);
    let mut scores = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let forest = IsolationForest::params()
            .check()
            .unwrap()
            .fit(train_x.view())
            .unwrap();
        let fit_secs = started.elapsed().as_secs_f64();
        let started = Instant::now();
        scores = forest.score(validation_x.view());
        let score_secs = started.elapsed().as_secs_f64();
        if fit_secs + score_secs < best.0 + best.1 {
            best = (fit_secs, score_secs);
        }
    }
    println!(
        "{{\"impl\": \"vigil\", \"train_rows\": {}, \"validation_rows\": {}, \"features\": {}, \"fit_secs\": {:.4}, \"score_secs\": {:.4}, \"roc_auc\": {:.4}, \"avg_precision\": {:.4}}}",
        set.train.len(),
        set.validation.len(),
        schema.len(),
        best.0,
        best.1,
        roc_auc(&scores, &set.validation.y).unwrap_or(f64::NAN),
        average_precision(&scores, &set.validation.y).unwrap_or(f64::NAN),
    );
}
