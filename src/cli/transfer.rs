//! `vigil import` and `vigil export`: files in and out, with progress bars and a summary.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use indicatif::ProgressBar;

use super::{ExportArgs, ImportArgs};
use crate::config::Settings;
use crate::ingest::files::{self, ExportFilter, Rejections};
use crate::ingest::{self, Limits, NamedBatch};
use crate::jobs;
use crate::store::incidents::{ExternalEvent, NewIncident};
use crate::store::{Database, Store};

fn spinner(message: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

use crate::progress::counter;

/// Prints the rejected rows and decides whether the file may still be stored.
fn report_rejections(
    path: &Path,
    rejections: &Rejections,
    skip_bad_rows: bool,
) -> anyhow::Result<()> {
    if rejections.count == 0 {
        return Ok(());
    }
    eprintln!("{}: {} row(s) rejected:", path.display(), rejections.count);
    for row in &rejections.rows {
        eprintln!("  {row}   [{}]", row.code());
    }
    if rejections.count > rejections.rows.len() as u64 {
        eprintln!(
            "  ... and {} more",
            rejections.count - rejections.rows.len() as u64
        );
    }
    if !skip_bad_rows {
        bail!(
            "{}: {} bad row(s); nothing from this file was stored (fix them, or pass --skip-bad-rows to store the rest)",
            path.display(),
            rejections.count
        );
    }
    Ok(())
}

/// `vigil import`.
pub async fn import(settings: Settings, args: &ImportArgs) -> anyhow::Result<()> {
    if args.files.is_empty() && args.incidents.is_empty() {
        bail!("nothing to import: name sample files, or incident files with --incidents");
    }
    let database = Database::open(&settings)
        .await
        .context("opening the database")?;
    let result = import_all(&database.store, &settings, args).await;
    database.close().await?;
    result
}

async fn import_all(store: &Store, settings: &Settings, args: &ImportArgs) -> anyhow::Result<()> {
    let now = Utc::now();
    let limits = Limits::new(&settings.ingest, now).unbounded_batch();
    let retention_cutoff = jobs::retention::cutoff(&settings.retention, now);
    for path in &args.files {
        let started = Instant::now();
        let reading = spinner(format!("reading {}", path.display()));
        let mut batch = NamedBatch::new(limits);
        let layout = args.layout;
        let (rows, rejections, batch) = tokio::task::block_in_place(|| {
            files::read_samples(path, layout, &mut batch)
                .map(|(rows, rejections)| (rows, rejections, batch))
        })?;
        reading.finish_and_clear();
        report_rejections(path, &rejections, args.skip_bad_rows)?;
        let oldest = batch.oldest_micros();
        let bar = counter(batch.len() as u64, "storing");
        let report = ingest::store_batch(store, batch, &mut |n| bar.set_position(n))
            .await
            .with_context(|| format!("storing {}", path.display()))?;
        bar.finish_and_clear();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{}: {} rows, {} samples stored ({} already there), {} assets, {} metrics, {} rejected, {:.1} s ({:.0} samples/s)",
            path.display(),
            rows,
            report.stored,
            report.received - report.stored,
            report.assets,
            report.metrics,
            rejections.count,
            secs,
            report.received as f64 / secs.max(1e-9),
        );
        let oldest = oldest.and_then(DateTime::from_timestamp_micros);
        if let (Some(cutoff), Some(oldest)) = (retention_cutoff, oldest)
            && oldest < cutoff
        {
            eprintln!(
                "note: samples before {cutoff} are older than retention.samples_days = {} and will be dropped by the next retention run; set retention.samples_days = 0 to keep them",
                settings.retention.samples_days
            );
        }
    }
    for path in &args.incidents {
        let (rows, rejections) = tokio::task::block_in_place(|| files::read_incidents(path))?;
        report_rejections(path, &rejections, args.skip_bad_rows)?;
        let names: Vec<String> = rows.iter().map(|r| r.asset.clone()).collect();
        let ids = store.resolve_asset_ids(&names).await?;
        let events: Vec<ExternalEvent> = rows
            .iter()
            .map(|row| {
                let at = |micros: i64| DateTime::from_timestamp_micros(micros).unwrap_or_default();
                let incident = NewIncident {
                    asset_id: ids[&row.asset],
                    kind: row.kind.clone(),
                    severity: row.severity.clone(),
                    started_at: at(row.started_micros),
                    detected_at: row.detected_micros.map(at),
                    resolved_at: None,
                    root_cause: row.root_cause.clone(),
                    source: "import".to_owned(),
                    fingerprint: Some(format!("{}/{}", row.asset, row.kind)),
                    labels: serde_json::json!({}),
                };
                match row.resolved_micros {
                    Some(resolved) => ExternalEvent::Resolved(incident, at(resolved)),
                    None => ExternalEvent::Firing(incident),
                }
            })
            .collect();
        let report = store.record_external(&events).await?;
        println!(
            "{}: {} incidents, {} opened, {} resolved, {} already known, {} rejected",
            path.display(),
            rows.len(),
            report.opened,
            report.resolved,
            report.unchanged,
            rejections.count
        );
    }
    Ok(())
}

/// `vigil export`.
pub async fn export(settings: Settings, args: &ExportArgs) -> anyhow::Result<()> {
    let parse = |field: &str, text: &Option<String>| -> anyhow::Result<Option<DateTime<Utc>>> {
        text.as_deref()
            .map(|t| {
                files::parse_timestamp(t)
                    .and_then(DateTime::from_timestamp_micros)
                    .with_context(|| {
                        format!("--{field} {t:?} is not a time (RFC 3339 or Unix seconds)")
                    })
            })
            .transpose()
    };
    let filter = ExportFilter {
        asset: args.asset.clone(),
        metric: args.metric.clone(),
        from: parse("from", &args.from)?.unwrap_or(settings.ingest.min_timestamp),
        to: parse("to", &args.to)?.unwrap_or_else(|| Utc::now() + chrono::Duration::days(1)),
    };
    let database = Database::open(&settings)
        .await
        .context("opening the database")?;
    let bar = spinner(format!("exporting to {}", args.output.display()));
    let started = Instant::now();
    let result = files::export_parquet(&database.store, &args.output, &filter, &mut |rows| {
        bar.set_message(format!(
            "exporting to {}: {rows} rows",
            args.output.display()
        ));
    })
    .await;
    bar.finish_and_clear();
    database.close().await?;
    let rows = result?;
    println!(
        "{}: {rows} samples written in {:.1} s",
        args.output.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
