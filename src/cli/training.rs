//! `vigil train` (one run from the database or from files, with a progress spinner and a
//! summary table) and `vigil models` (the registry).

use std::time::Instant;

use anyhow::{Context as _, bail};
use chrono::Utc;
use indicatif::ProgressBar;

use super::{ModelsCommand, TrainArgs};
use crate::config::Settings;
use crate::ingest::Limits;
use crate::jobs::train::{self, Bundle, TrainingData};
use crate::model::evaluation::Scorecard;
use crate::store::Database;

/// `vigil train`.
pub async fn train(settings: Settings, args: &TrainArgs) -> anyhow::Result<()> {
    let spinner = ProgressBar::new_spinner().with_message("loading");
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let started = Instant::now();
    let (Some(input), Some(incidents)) = (args.input.clone(), args.incidents.clone()) else {
        return train_from_database(settings, spinner, started, args.rules).await;
    };
    let limits = Limits::new(&settings.ingest, Utc::now());
    let data = tokio::task::spawn_blocking(move || {
        train::histories_from_files(&input, Some(&incidents), limits)
    })
    .await
    .context("the loading task panicked")??;
    let load_secs = started.elapsed().as_secs_f64();
    let bundle = fit(&settings, data, None, &spinner).await?;
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
    print_rules(&bundle, args.rules);
    println!("model bundle written to {}", output.display());
    Ok(())
}

async fn fit(
    settings: &Settings,
    data: TrainingData,
    champion: Option<Bundle>,
    spinner: &ProgressBar,
) -> anyhow::Result<Bundle> {
    let training = settings.training.clone();
    let rule = train::alert_rule(settings);
    let bar = spinner.clone();
    let bundle = tokio::task::spawn_blocking(move || {
        let mut bundle = train::train(
            data.metrics,
            &data.histories,
            &data.failures,
            &training,
            &rule,
            champion.as_ref(),
            &mut |stage| bar.set_message(stage.to_owned()),
        )?;
        bundle.report.samples = data.samples;
        Ok::<_, train::TrainError>(bundle)
    })
    .await
    .context("the training task panicked")??;
    Ok(bundle)
}

async fn train_from_database(
    settings: Settings,
    spinner: ProgressBar,
    started: Instant,
    rules: bool,
) -> anyhow::Result<()> {
    let database = Database::open(&settings)
        .await
        .context("opening the database")?;
    let bar = spinner.clone();
    let result = train::run_once(
        &database.store,
        &settings,
        train::Trigger::Manual,
        move |stage| bar.set_message(stage.to_owned()),
    )
    .await;
    database.close().await?;
    let outcome = result?;
    spinner.finish_and_clear();
    let bundle = &outcome.bundle;
    print_summary(bundle, outcome.load_secs, started.elapsed().as_secs_f64());
    print_rules(bundle, rules);
    let model = &outcome.registration.model;
    let decision = bundle
        .report
        .champion
        .as_ref()
        .map_or("", |d| d.reason.as_str());
    if outcome.registration.shadow {
        println!(
            "model {} (bundle v{}) won on validation ({decision}) and scores in shadow beside the \
             active model for {} s (training.shadow_secs); then it is promoted or dropped on the \
             live windows (GET /v1/models/{}; POST .../promote or .../drop ends it early)",
            model.model_id, model.version, settings.training.shadow_secs, model.model_id
        );
    } else if outcome.registration.activated {
        println!(
            "model {} (bundle v{}) is now active ({decision}); stored in the database",
            model.model_id, model.version
        );
    } else {
        println!(
            "model {} (bundle v{}) stays a candidate: it is worse than active model {} on the same validation windows",
            model.model_id,
            model.version,
            outcome
                .champion_id
                .map_or_else(|| "?".to_owned(), |id| id.to_string()),
        );
    }
    Ok(())
}

/// `vigil models ...`.
pub async fn models(settings: Settings, command: &ModelsCommand) -> anyhow::Result<()> {
    let database = Database::open(&settings)
        .await
        .context("opening the database")?;
    let store = &database.store;
    let result = async {
        match command {
            ModelsCommand::List => {
                let models = store.list_models().await?;
                println!(
                    "{:>5}  {:<18} {:<8} {:>7}  {:<10} {:>9}  created",
                    "id", "kind", "class", "version", "status", "val AP"
                );
                for m in models {
                    let ap = m.metrics["failure"]["average_precision"].as_f64();
                    println!(
                        "{:>5}  {:<18} {:<8} {:>7}  {:<10} {:>9}  {}",
                        m.model_id,
                        m.kind,
                        m.asset_class.as_deref().unwrap_or("*"),
                        m.version,
                        m.status,
                        ap.map_or_else(|| "-".to_owned(), |v| format!("{v:.4}")),
                        m.created_at.format("%Y-%m-%d %H:%M")
                    );
                }
            }
            ModelsCommand::Show { id } => {
                let model = store.model(*id).await?;
                println!("{}", serde_json::to_string_pretty(&model)?);
            }
            ModelsCommand::Activate { id } => {
                let model = train::activate(store, *id).await?;
                println!(
                    "model {} ({} v{}) is now active",
                    model.model_id, model.kind, model.version
                );
            }
            ModelsCommand::Register { file } => {
                let bytes =
                    std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
                let bundle = Bundle::from_artifact(&bytes).with_context(|| {
                    format!("{} is not a bundle this Vigil can serve", file.display())
                })?;
                let at = |t: i64| chrono::DateTime::from_timestamp(t, 0).unwrap_or_default();
                let range = (
                    at(bundle.report.data_range.0),
                    at(bundle.report.data_range.1),
                );
                let registration = train::register(store, &bundle, range).await?;
                let m = &registration.model;
                let state = if registration.activated {
                    "active"
                } else {
                    "a candidate"
                };
                println!(
                    "registered {} as model {} (v{}), now {state}",
                    file.display(),
                    m.model_id,
                    m.version
                );
            }
            ModelsCommand::Export { id, output } => {
                let record = store.model(*id).await?;
                let bytes = store.model_artifact(&record).await?;
                std::fs::write(output, &bytes)
                    .with_context(|| format!("writing {}", output.display()))?;
                println!(
                    "model {} ({} v{}) written to {} ({} bytes; `vigil models import` reads it)",
                    record.model_id,
                    record.kind,
                    record.version,
                    output.display(),
                    bytes.len()
                );
            }
            ModelsCommand::Rollback => {
                let Some(model) = train::rollback(store).await? else {
                    bail!("no earlier active model whose artifact loads to roll back to");
                };
                println!(
                    "rolled back: model {} (v{}) is active again",
                    model.model_id, model.version
                );
            }
        }
        Ok(())
    }
    .await;
    database.close().await?;
    result
}

fn print_rules(bundle: &Bundle, rules: bool) {
    if let (true, Some(diagnosis)) = (rules, &bundle.diagnosis) {
        println!("\ndiagnosis tree\n{}", diagnosis.rules());
    }
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
    println!("{:<22} {:>9.3}", "total", total_secs);
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
    if let Some(h) = &r.held_out {
        line("held-out assets", &h.failure);
        line("training (sample)", &h.training);
        let ap = |c: &Option<Scorecard>| c.as_ref().and_then(|c| c.average_precision);
        println!(
            "held-out assets: one in {} ({} assets, whole) left out of a second fit and \
             scored on their validation windows{}{}",
            crate::model::bundle::HELD_OUT_EVERY,
            h.assets,
            match (ap(&h.training), ap(&r.failure)) {
                (Some(t), Some(v)) => format!(
                    "; average precision training {t:.4} -> validation {v:.4} (gap {:.4})",
                    t - v
                ),
                _ => String::new(),
            },
            match (ap(&r.failure), ap(&h.failure)) {
                (Some(v), Some(a)) => format!(" -> held-out assets {a:.4} (gap {:.4})", v - a),
                _ => String::new(),
            }
        );
    }
    if let Some(champion) = &r.champion
        && let Some(ap) = champion.champion_average_precision
    {
        println!("{:<18} {:>8} {:>15.4}", "active model", "", ap);
    }
    let chosen = |model: &crate::model::failure::FailureModel, slice: &str| {
        if let Some(selection) = model.selection() {
            println!(
                "failure model chosen on the calibration slice ({slice}): {} \
                 (average precision: logistic regression {}, tree ensemble {}, blend {}{})",
                selection.chosen,
                fmt(selection.logistic_average_precision),
                fmt(selection.ensemble_average_precision),
                fmt(selection.blend_average_precision),
                selection
                    .blend_weight
                    .map(|w| format!(" with the logistic regression's weight {w}"))
                    .unwrap_or_default()
            );
        }
    };
    chosen(bundle.validated_failure(), "latest training windows");
    if let Some((windows, positive)) = r.refit_windows {
        println!(
            "fitted again for scoring on all {windows} windows ({positive} positive: training \
             and validation together, training.refit); the figures above are the first fit's"
        );
        chosen(&bundle.failure, "latest windows of all");
    }
    match &bundle.alert_threshold {
        Some(t) => {
            let how = match &t.events {
                Some(e) => format!(
                    "least cost of its alerts replayed on the validation windows: {} of {} \
                     failures caught, {} alerts, {} false",
                    e.caught, e.failures, e.alerts, e.false_alarms
                ),
                None => "best F1 on the validation windows".to_owned(),
            };
            println!(
                "alert threshold proposed: {:.4} ({how}; window precision {:.3}, recall {:.3} \
                 of {} windows before failures; used where no threshold is stored, when \
                 scoring.model_threshold)",
                t.fire_at, t.precision, t.recall, t.positives
            )
        }
        None => println!(
            "alert threshold proposed: none (fewer than {} validation failures and {} \
             windows before failures); scoring.alert_threshold applies",
            crate::model::bundle::MIN_THRESHOLD_FAILURES,
            crate::model::bundle::MIN_THRESHOLD_POSITIVES
        ),
    }
    if let Some(f) = &r.feedback {
        println!(
            "\nfeedback on alerts: {} true and {} false alarms among the training windows \
             ({} false alarms weighed {}x), {} and {} among the validation windows, {} with a \
             failure kind, {} left out",
            f.labels.train.0,
            f.labels.train.1,
            f.labels.train.1,
            bundle.params.false_alarm_weight,
            f.labels.validation.0,
            f.labels.validation.1,
            f.labels.kinds,
            f.labels.skipped
        );
        println!(
            "mean probability on validation windows: false alarms {} (active model {}), \
             true alarms {} (active model {})",
            fmt(f.false_alarm_probability),
            fmt(f.champion_false_alarm_probability),
            fmt(f.true_alarm_probability),
            fmt(f.champion_true_alarm_probability)
        );
    }
    if let Some(kinds) = &r.diagnosis {
        println!("\ndiagnosis on validation windows before failures");
        println!(
            "{:<20} {:>8} {:>10} {:>8}",
            "kind", "windows", "precision", "recall"
        );
        for k in kinds {
            println!(
                "{:<20} {:>8} {:>10} {:>8}",
                k.kind,
                k.support,
                fmt(k.precision),
                fmt(k.recall)
            );
        }
    }
    if !r.classes.is_empty() {
        println!("\nper-class models (average precision on the class's validation windows)");
        println!(
            "{:<14} {:>6} {:>8} {:>10} {:>10}  used",
            "class", "assets", "metrics", "fleet AP", "class AP"
        );
        for c in &r.classes {
            println!(
                "{:<14} {:>6} {:>8} {:>10} {:>10}  {} ({})",
                c.class,
                c.assets,
                c.metrics.len(),
                fmt(c.fleet_average_precision),
                fmt(c.class_average_precision),
                if c.used { "yes" } else { "no" },
                c.reason
            );
        }
    }
    if let Some(t) = &r.time_to_failure {
        println!(
            "\ntime to failure (capped at {} min; fitted on {} windows)",
            bundle.params.ttf_cap_secs / 60,
            t.train_rows
        );
        println!(
            "  RMSE over {} validation windows: {} min",
            t.validation_rows,
            fmt(t.rmse_minutes)
        );
        println!(
            "  mean absolute error within the horizon before a failure ({} windows): {} min (predicting the mean: {} min)",
            t.near_rows,
            fmt(t.near_mae_minutes),
            fmt(t.near_mae_minutes_of_mean)
        );
        if t.withheld {
            println!(
                "  withheld: no better than predicting the mean there, so answers carry no time to failure"
            );
        }
    }
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
