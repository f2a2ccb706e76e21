//! Writes the feature rows `vigil train` computes for a fleet's samples and incidents, to
//! study the failure model's choices outside Rust (bench/fleet2/lab.py reads them):
//! `OUT.bin` (little-endian f64, rows × columns) and `OUT.json` (columns, and per row the
//! asset, window end, label and part: 0 training, 1 validation).
//!
//!   cargo run --release --example features_dump -- metrics.csv incidents.csv OUT [STRIDE]
//!
//! The split is the training settings' (`train_frac` 0.7 of the time range by default);
//! STRIDE (default 5) thins the windows.

use std::io::Write;
use std::path::Path;

use chrono::Utc;
use vigil::config::{IngestSettings, TrainingSettings};
use vigil::features::FeatureSchema;
use vigil::features::dataset::{Dataset, Part, build};
use vigil::ingest::Limits;
use vigil::jobs::train::{dataset_params, histories_from_files};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [samples, incidents, out, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: features_dump metrics.csv incidents.csv OUT [STRIDE]");
    };
    let stride: usize = rest.first().map_or(Ok(5), |s| s.parse())?;
    let limits = Limits::new(&IngestSettings::default(), Utc::now());
    let data = histories_from_files(Path::new(samples), Some(Path::new(incidents)), limits)?;
    let settings = TrainingSettings {
        stride,
        ..TrainingSettings::default()
    };
    let schema = FeatureSchema::new(
        data.metrics.clone(),
        settings.window,
        settings.step_secs,
        settings.max_fill,
    );
    let dataset = build(
        &schema,
        &data.histories,
        &data.failures,
        &dataset_params(&settings),
    );
    let mut bin = std::io::BufWriter::new(std::fs::File::create(format!("{out}.bin"))?);
    let mut rows = Vec::new();
    for (part, which) in [(&dataset.train, 0), (&dataset.validation, 1)] {
        write_part(&dataset, part, &mut bin)?;
        for i in 0..part.len() {
            rows.push(serde_json::json!([
                dataset.assets[part.asset[i] as usize],
                part.end[i],
                part.y[i],
                which
            ]));
        }
    }
    bin.flush()?;
    let meta = serde_json::json!({ "columns": schema.names(), "rows": rows });
    std::fs::write(format!("{out}.json"), meta.to_string())?;
    eprintln!(
        "{} rows × {} columns → {out}.bin, {out}.json",
        dataset.train.len() + dataset.validation.len(),
        schema.len()
    );
    Ok(())
}

fn write_part(dataset: &Dataset, part: &Part, out: &mut impl Write) -> std::io::Result<()> {
    let x = dataset.all_features(part);
    for v in x.iter() {
        out.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}
