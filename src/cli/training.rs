//! `vigil train`: one training run from files, with a progress spinner and a summary table.

use std::time::Instant;

use anyhow::Context as _;
use chrono::Utc;
use indicatif::ProgressBar;

use super::TrainArgs;
use crate::config::Settings;
use crate::ingest::Limits;
use crate::jobs::train::{self, Bundle};
use crate::model::evaluation::Scorecard;

/// `vigil train`.
pub async fn train(settings: Settings, args: &TrainArgs) -> anyhow::Result<()> {
    let spinner = ProgressBar::new_spinner().with_message("loading");
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let started = Instant::now();
    let limits = Limits::new(&settings.ingest, Utc::now());
    let training = settings.training.clone();
    let input = args.input.clone();
    let incidents = args.incidents.clone();
    let bar = spinner.clone();
    let (bundle, load_secs) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(Bundle, f64)> {
            let data = train::histories_from_files(&input, Some(&incidents), limits)?;
            let load_secs = started.elapsed().as_secs_f64();
            let mut bundle = train::train(
                data.metrics,
                &data.histories,
                &data.failures,
                &training,
                &mut |stage| bar.set_message(stage.to_owned()),
            )?;
            bundle.report.samples = data.samples;
            Ok((bundle, load_secs))
        })
        .await
        .context("the training task panicked")??;
    spinner.finish_and_clear();

    let output = args
        .output
        .clone()
        .unwrap_or_else(|| train::default_artifact_path(&settings.data_dir));
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::to_vec(&bundle).context("serialising the bundle")?;
    std::fs::write(&output, json).with_context(|| format!("writing {}", output.display()))?;
    print_summary(&bundle, load_secs, started.elapsed().as_secs_f64());
    println!("model bundle written to {}", output.display());
    Ok(())
}

fn print_summary(bundle: &Bundle, load_secs: f64, total_secs: f64) {
    let r = &bundle.report;
    println!(
        "data: {} samples, {} assets, {} metrics, {} failures; cutoff {}",
        r.samples,
        r.assets,
        bundle.schema.metrics.len(),
        r.failures,
        chrono::DateTime::from_timestamp(r.cutoff, 0).map_or_else(String::new, |t| t.to_rfc3339())
    );
    println!(
        "windows: train {} ({} positive), validation {} ({} positive), {} with a missing metric; {} features",
        r.train_windows.0,
        r.train_windows.1,
        r.validation_windows.0,
        r.validation_windows.1,
        r.windows_with_missing,
        bundle.schema.len()
    );
    println!("\n{:<22} {:>9}", "stage", "seconds");
    println!("{:<22} {:>9.3}", "load", load_secs);
    for (stage, secs) in &r.stages {
        println!("{stage:<22} {secs:>9.3}");
    }
    println!("{:<22} {:>9.3}", "total (incl. writing)", total_secs);
    println!("\nvalidation          ROC AUC   avg precision   Brier");
    let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.4}"));
    let line = |name: &str, card: &Option<Scorecard>| {
        if let Some(c) = card {
            println!(
                "{name:<18} {:>8} {:>15} {:>7}",
                fmt(c.roc_auc),
                fmt(c.average_precision),
                fmt(c.brier)
            );
        }
    };
    line("failure model", &r.failure);
    line("isolation forest", &r.anomaly);
    if let Some(card) = &r.failure {
        println!("\nreliability (failure model on validation)");
        println!(
            "{:<12} {:>9} {:>10} {:>9}",
            "predicted", "windows", "mean pred", "observed"
        );
        for bin in &card.reliability {
            println!(
                "{:<12} {:>9} {:>10.4} {:>9.4}",
                format!("{:.1}-{:.1}", bin.from, bin.to),
                bin.count,
                bin.predicted,
                bin.observed
            );
        }
    }
}
