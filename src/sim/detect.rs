//! `vigil detect` (the cold-start detector over one CSV series) and `vigil eval nab` (the
//! NAB score of the detector, or of any detector's result files, on a NAB corpus).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::ingest::files::parse_timestamp;
use crate::model::streaming::{StreamingDetector, StreamingParams};
use crate::sim::nab::{self, PROFILES, ProfileScore};

/// Flags of `vigil detect`.
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// CSV file with a header and columns timestamp,value (NAB's format), oldest first; rows
    /// are scored in file order, also where the clock steps back.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Where to write timestamp,value,anomaly_score ("-" for standard output).
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
}

/// `vigil eval ...`.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Score the cold-start detector (or result files) with the NAB scorer.
    ///
    /// Runs `vigil detect` over every data file named in the corpus'
    /// labels/combined_windows.json and prints the three profile scores (standard,
    /// reward_low_FP_rate, reward_low_FN_rate), each at the threshold that is best over the
    /// whole corpus, normalized so a detector that never fires scores 0 and a perfect one 100.
    Nab(NabArgs),
}

/// Flags of `vigil eval nab`.
#[derive(Debug, Args)]
pub struct NabArgs {
    /// NAB corpus: data/<category>/<file>.csv and labels/combined_windows.json.
    #[arg(long, value_name = "DIR", default_value = "../shared/datasets/nab")]
    pub corpus: PathBuf,
    /// Score these result files instead of running the detector: <DIR>/<category>/<file>
    /// or <DIR>/<category>/<detector>_<file>, with columns timestamp and anomaly_score
    /// (NAB's results/<detector> layout, or what `vigil detect` writes).
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
    /// Also choose the detector's parameters leave-one-category-out: for each category, the
    /// parameters of a small grid that do best on the other categories (the mean of their
    /// per-category standard scores) score it. Twice: at the chosen parameters' own alarm
    /// level (nothing fitted to scores), then at the threshold best over the other
    /// categories (NAB's sweep). Prints each fold and their mean beside the all-files score
    /// (about a minute and a half on 2 cores).
    #[arg(long, conflicts_with = "results")]
    pub loco: bool,
}

/// One series read from CSV: timestamps as written, as microseconds, and values.
#[derive(Debug, Default)]
pub struct Series {
    /// Timestamps as written in the file.
    pub text: Vec<String>,
    /// Timestamps in microseconds since the Unix epoch.
    pub micros: Vec<i64>,
    /// The chosen column's values.
    pub values: Vec<f64>,
}

/// Reads columns `timestamp` and `column` of a CSV file with a header, with the same CSV
/// reader as `vigil import` (quoted fields and all). Rows stay in file order, also where the
/// clock steps back (a real NAB file's does, by an hour): NAB scores rows in file order.
pub fn read_series(path: &Path, column: &str) -> anyhow::Result<Series> {
    use polars::prelude::DataType;
    let frame = crate::ingest::files::read_frame(path)?;
    let find = |name: &str, as_type: &DataType| {
        let found = frame.column(name).map_err(|_| {
            let header: Vec<&str> = frame
                .get_column_names()
                .iter()
                .map(|c| c.as_str())
                .collect();
            anyhow::anyhow!(
                "{} has no column {name:?} (header: {})",
                path.display(),
                header.join(",")
            )
        })?;
        found
            .cast(as_type)
            .with_context(|| format!("{}: column {name:?}", path.display()))
    };
    let stamps = find("timestamp", &DataType::String)?;
    let values = find(column, &DataType::Float64)?;
    let mut series = Series::default();
    for (i, (stamp, value)) in stamps.str()?.iter().zip(values.f64()?.iter()).enumerate() {
        // Row 1 is the header.
        let row = || format!("{} line {}", path.display(), i + 2);
        let stamp = stamp.unwrap_or("");
        let micros = parse_timestamp(stamp)
            .with_context(|| format!("{}: cannot read timestamp {stamp:?}", row()))?;
        let value = value
            .filter(|v| v.is_finite())
            .with_context(|| format!("{}: {column} is not a finite number", row()))?;
        series.text.push(stamp.to_owned());
        series.micros.push(micros);
        series.values.push(value);
    }
    Ok(series)
}

impl Series {
    /// The median step between distinct timestamps, in seconds (0 for fewer than two).
    pub fn step_secs(&self) -> f64 {
        let mut steps: Vec<i64> = self
            .micros
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|&d| d > 0)
            .collect();
        if steps.is_empty() {
            return 0.0;
        }
        let middle = steps.len() / 2;
        let (_, median, _) = steps.select_nth_unstable(middle);
        *median as f64 / 1e6
    }

    /// The cold-start detector's score of each row, from the rows before it; its day-long
    /// context is sized from the series' median step.
    pub fn score(&self) -> anyhow::Result<Vec<f64>> {
        self.score_with(StreamingParams::default())
    }

    /// [`Series::score`] with other parameters.
    pub fn score_with(&self, params: StreamingParams) -> anyhow::Result<Vec<f64>> {
        let params = params.with_step(self.step_secs());
        Ok(StreamingDetector::score_series(params, &self.values)?)
    }
}

/// `vigil detect`.
pub fn detect(args: &DetectArgs) -> anyhow::Result<()> {
    let series = read_series(&args.input, "value")?;
    let back = series.micros.windows(2).filter(|w| w[1] < w[0]).count();
    if back > 0 {
        eprintln!(
            "note: {}: the clock steps back {back} time(s); rows are scored in file order",
            args.input.display()
        );
    }
    let scores = series.score()?;
    let mut out = String::with_capacity(series.values.len() * 40);
    out.push_str("timestamp,value,anomaly_score\n");
    for ((t, v), s) in series.text.iter().zip(&series.values).zip(&scores) {
        out.push_str(&format!("{t},{v},{s:.6}\n"));
    }
    if args.output.as_os_str() == "-" {
        print!("{out}");
    } else {
        std::fs::write(&args.output, out)
            .with_context(|| format!("writing {}", args.output.display()))?;
        eprintln!(
            "scored {} rows of {} into {}",
            scores.len(),
            args.input.display(),
            args.output.display()
        );
    }
    Ok(())
}

/// A corpus file with its labelled windows (microseconds).
struct Labelled {
    name: String,
    windows: Vec<(i64, i64)>,
}

fn read_windows(corpus: &Path) -> anyhow::Result<Vec<Labelled>> {
    let path = corpus.join("labels/combined_windows.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (is --corpus a NAB checkout? it needs data/ and labels/)",
            path.display()
        )
    })?;
    let map: std::collections::BTreeMap<String, Vec<[String; 2]>> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    map.into_iter()
        .map(|(name, windows)| {
            let windows = windows
                .iter()
                .map(|[a, b]| {
                    let parse = |t: &str| {
                        parse_timestamp(t)
                            .with_context(|| format!("{name}: bad window timestamp {t:?}"))
                    };
                    Ok((parse(a)?, parse(b)?))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(Labelled { name, windows })
        })
        .collect()
}

/// The result file of `name` (`category/file.csv`) under `dir`.
fn result_file(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let (category, file) = name.split_once('/').unwrap_or(("", name));
    let plain = dir.join(category).join(file);
    if plain.exists() {
        return Ok(plain);
    }
    let detector = dir.file_name().and_then(|d| d.to_str()).unwrap_or_default();
    let prefixed = dir.join(category).join(format!("{detector}_{file}"));
    if prefixed.exists() {
        return Ok(prefixed);
    }
    bail!(
        "no result file for {name}: neither {} nor {}",
        plain.display(),
        prefixed.display()
    )
}

/// Scores the detector (or the result files under `results`) on a NAB corpus.
pub fn evaluate_nab(
    corpus: &Path,
    results: Option<&Path>,
    progress: &ProgressBar,
) -> anyhow::Result<Vec<ProfileScore>> {
    let labelled = read_windows(corpus)?;
    progress.set_length(labelled.len() as u64);
    let scored = labelled
        .par_iter()
        .map(|file| {
            let data = read_series(&corpus.join("data").join(&file.name), "value")?;
            let scores = match results {
                Some(dir) => {
                    let result = read_series(&result_file(dir, &file.name)?, "anomaly_score")?;
                    if result.micros != data.micros {
                        bail!("the result rows of {} differ from its data rows", file.name);
                    }
                    result.values
                }
                None => data.score()?,
            };
            progress.inc(1);
            Ok((data.micros, scores))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let files: Vec<nab::File<'_>> = scored
        .iter()
        .zip(&labelled)
        .map(|((micros, scores), l)| nab::File {
            timestamps: micros,
            scores,
            windows: &l.windows,
        })
        .collect();
    nab::score_corpus(&files, &PROFILES).context("scoring")
}

/// The parameters leave-one-category-out chooses from: the detector's defaults with the
/// alarm's tail, the refractory period and the context view's weight varied.
pub fn param_grid() -> Vec<StreamingParams> {
    let mut grid = Vec::new();
    for alarm_tail in [1e-3, 1e-4, 1e-5] {
        for refractory in [50, 100, 200] {
            for context_weight in [0.6, 0.9] {
                grid.push(StreamingParams {
                    alarm_tail,
                    refractory,
                    context_weight,
                    ..StreamingParams::default()
                });
            }
        }
    }
    grid
}

/// How a fold's threshold is set in [`evaluate_loco`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdRule {
    /// The detector's own alarm level for the parameters
    /// ([`StreamingParams::alarm_threshold`]): fixed by `alarm_tail`, nothing fitted to
    /// scores. This is how the detector alarms when it runs.
    Alarm,
    /// NAB's way: the threshold best over the tuning categories pooled, swept over their
    /// scores.
    Swept,
}

/// One held-out category of [`evaluate_loco`].
#[derive(Debug, Clone, PartialEq)]
pub struct Fold {
    /// The category scored.
    pub category: String,
    /// Index into the grid of the parameters chosen on the other categories.
    pub params: usize,
    /// The threshold chosen with them.
    pub threshold: f64,
    /// Their mean per-category standard score on the other categories.
    pub tuned: f64,
    /// The held-out category's standard score at those parameters and threshold.
    pub score: f64,
}

/// Leave-one-category-out under one [`ThresholdRule`].
#[derive(Debug, Clone, PartialEq)]
pub struct LocoRun {
    /// The rule the thresholds follow.
    pub rule: ThresholdRule,
    /// One fold per category.
    pub folds: Vec<Fold>,
    /// The mean of the folds' held-out scores.
    pub mean: f64,
    /// The parameters the same rule chooses on every category, their mean per-category
    /// score and their all-files score, each under the rule.
    pub all: (usize, f64, f64),
    /// The detector's default parameters' mean per-category and all-files scores under the
    /// rule.
    pub default: (f64, f64),
}

/// What leave-one-category-out gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Loco {
    /// The grid searched ([`param_grid`]).
    pub grid: Vec<StreamingParams>,
    /// One run per rule: [`ThresholdRule::Alarm`], then [`ThresholdRule::Swept`].
    pub runs: Vec<LocoRun>,
}

/// Chooses the detector's parameters leave-one-category-out over a NAB corpus (categories are
/// the data folders): for each category, the grid's parameters with the best mean
/// per-category standard score on the others (at the threshold `rule` sets; ties to the
/// earlier in the grid) score it at that threshold. Both rules are run.
pub fn evaluate_loco(corpus: &Path, progress: &ProgressBar) -> anyhow::Result<Loco> {
    let labelled = read_windows(corpus)?;
    let data = labelled
        .par_iter()
        .map(|file| read_series(&corpus.join("data").join(&file.name), "value"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let grid = param_grid();
    progress.set_length((grid.len() * data.len()) as u64);
    let scores: Vec<Vec<Vec<f64>>> = grid
        .iter()
        .map(|params| {
            data.par_iter()
                .map(|series| {
                    let scores = series.score_with(params.clone());
                    progress.inc(1);
                    scores
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .collect::<anyhow::Result<_>>()?;
    let category_of = |name: &str| name.split_once('/').map_or("", |(c, _)| c).to_owned();
    let mut categories: Vec<String> = labelled.iter().map(|l| category_of(&l.name)).collect();
    categories.sort();
    categories.dedup();
    let standard = &PROFILES[0];
    let files_of = |g: usize, cats: &[&String]| -> Vec<nab::File<'_>> {
        labelled
            .iter()
            .zip(&data)
            .zip(&scores[g])
            .filter(|((l, _), _)| cats.iter().any(|c| **c == category_of(&l.name)))
            .map(|((l, series), scores)| nab::File {
                timestamps: &series.micros,
                scores,
                windows: &l.windows,
            })
            .collect()
    };
    // The threshold `rule` sets for parameters `g` tuned on categories `cats`.
    let threshold_of = |g: usize, cats: &[&String], rule: ThresholdRule| -> anyhow::Result<f64> {
        Ok(match rule {
            ThresholdRule::Alarm => grid[g].alarm_threshold(),
            ThresholdRule::Swept => {
                nab::score_corpus(&files_of(g, cats), &[*standard])?[0].threshold
            }
        })
    };
    // Parameters `g` on categories `cats`: the threshold the rule sets and the mean of the
    // per-category scores at it.
    let judge = |g: usize, cats: &[&String], rule: ThresholdRule| -> anyhow::Result<(f64, f64)> {
        let threshold = threshold_of(g, cats, rule)?;
        let mut sum = 0.0;
        for c in cats {
            sum += nab::score_at(&files_of(g, &[*c]), standard, threshold)?.normalized;
        }
        Ok((sum / cats.len().max(1) as f64, threshold))
    };
    let choose = |cats: &[&String], rule: ThresholdRule| -> anyhow::Result<(usize, f64, f64)> {
        let mut best = (0, f64::MIN, 0.0);
        for g in 0..grid.len() {
            let (mean, threshold) = judge(g, cats, rule)?;
            if mean > best.1 {
                best = (g, mean, threshold);
            }
        }
        Ok(best)
    };
    let all: Vec<&String> = categories.iter().collect();
    let defaults = StreamingParams::default();
    let default = grid
        .iter()
        .position(|p| *p == defaults)
        .context("the defaults are in the grid")?;
    let mut runs = Vec::new();
    for rule in [ThresholdRule::Alarm, ThresholdRule::Swept] {
        let mut folds = Vec::new();
        for held in &categories {
            let others: Vec<&String> = categories.iter().filter(|c| *c != held).collect();
            let (params, tuned, threshold) = choose(&others, rule)?;
            let score = nab::score_at(&files_of(params, &[held]), standard, threshold)?.normalized;
            folds.push(Fold {
                category: held.clone(),
                params,
                threshold,
                tuned,
                score,
            });
        }
        let mean = folds.iter().map(|f| f.score).sum::<f64>() / folds.len().max(1) as f64;
        // All files pooled, at the threshold the rule set for them (which `choose` and
        // `judge` return).
        let pooled = |g: usize, threshold: f64| -> anyhow::Result<f64> {
            Ok(nab::score_at(&files_of(g, &all), standard, threshold)?.normalized)
        };
        let (params, tuned, threshold) = choose(&all, rule)?;
        let (default_tuned, default_threshold) = judge(default, &all, rule)?;
        runs.push(LocoRun {
            rule,
            folds,
            mean,
            all: (params, tuned, pooled(params, threshold)?),
            default: (default_tuned, pooled(default, default_threshold)?),
        });
    }
    Ok(Loco { grid, runs })
}

/// `vigil eval ...`.
pub fn eval(command: &EvalCommand) -> anyhow::Result<()> {
    let EvalCommand::Nab(args) = command;
    let progress = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} files ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.set_message(match &args.results {
        Some(_) => "reading results",
        None => "detecting",
    });
    let scores = evaluate_nab(&args.corpus, args.results.as_deref(), &progress)?;
    progress.finish_and_clear();
    let who = match &args.results {
        Some(dir) => dir.display().to_string(),
        None => "vigil streaming detector".to_owned(),
    };
    println!("NAB scores of {who} on {}", args.corpus.display());
    println!(
        "{:<20} {:>10} {:>10} {:>10} {:>9} {:>6}",
        "profile", "score", "raw", "threshold", "detected", "fp"
    );
    for s in &scores {
        println!(
            "{:<20} {:>10.2} {:>10.4} {:>10.4} {:>5}/{:<3} {:>6}",
            s.profile, s.normalized, s.raw, s.threshold, s.detected, s.windows, s.false_positives
        );
    }
    if args.loco {
        progress.reset();
        progress.set_message("leave-one-category-out");
        let loco = evaluate_loco(&args.corpus, &progress)?;
        progress.finish_and_clear();
        let describe = |g: usize| {
            let p = &loco.grid[g];
            format!(
                "alarm_tail {:e}, refractory {}, context_weight {}",
                p.alarm_tail, p.refractory, p.context_weight
            )
        };
        for run in &loco.runs {
            println!(
                "\nleave-one-category-out, standard profile, parameters chosen on the other categories, {}:",
                match run.rule {
                    ThresholdRule::Alarm => "threshold at the detector's alarm level",
                    ThresholdRule::Swept => "threshold swept on the other categories",
                }
            );
            println!(
                "{:<24} {:>8} {:>10} {:>10}  parameters",
                "held out", "score", "tuned on", "threshold"
            );
            for f in &run.folds {
                println!(
                    "{:<24} {:>8.2} {:>10.2} {:>10.4}  {}",
                    f.category,
                    f.score,
                    f.tuned,
                    f.threshold,
                    describe(f.params)
                );
            }
            println!("{:<24} {:>8.2}", "mean", run.mean);
            println!(
                "chosen the same way on every category: {} (mean per-category score {:.2}, all files {:.2})",
                describe(run.all.0),
                run.all.1,
                run.all.2
            );
            println!(
                "the defaults: mean per-category score {:.2}, all files {:.2}",
                run.default.0, run.default.1
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn corpus() -> Option<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/nab");
        if dir.join("labels/combined_windows.json").exists() {
            Some(dir)
        } else {
            eprintln!("skipped: ../shared/datasets/nab is absent");
            None
        }
    }

    #[test]
    fn the_scorer_reproduces_the_published_reference_scores() {
        let Some(dir) = corpus() else { return };
        let hidden = ProgressBar::hidden();
        // reference_results/README.md: numenta 71.62 / 65.50 / 75.46, earthgecko Skyline
        // 60.90 / 45.83 / 67.51 on these 39 files.
        for (detector, expected) in [
            ("numenta", [71.62, 65.50, 75.46]),
            ("earthgeckoSkyline", [60.90, 45.83, 67.51]),
        ] {
            let results = dir.join("reference_results").join(detector);
            let scores = evaluate_nab(&dir, Some(&results), &hidden).unwrap();
            for (s, e) in scores.iter().zip(expected) {
                assert!(
                    (s.normalized - e).abs() < 0.005,
                    "{detector} {}: {} vs {e}",
                    s.profile,
                    s.normalized
                );
                assert_eq!(s.windows, 83);
            }
        }
    }

    #[test]
    fn the_scorer_matches_nab_row_weights() {
        let Some(dir) = corpus() else { return };
        let name = "realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv";
        let data = read_series(&dir.join("data").join(name), "value").unwrap();
        let result = dir
            .join("reference_results/numenta")
            .join("realAWSCloudwatch/numenta_ec2_cpu_utilization_24ae8d.csv");
        let windows = read_windows(&dir).unwrap();
        let windows = &windows.iter().find(|l| l.name == name).unwrap().windows;
        let file = nab::File {
            timestamps: &data.micros,
            scores: &data.values,
            windows,
        };
        // NAB writes a false positive's weight on its row, and a window's credit (its best
        // detection's weight) on the window's first row; 0 elsewhere.
        let detector = read_series(&result, "anomaly_score").unwrap().values;
        let thresholds = [0.544449877418, 0.629760617689, 0.544449877418];
        let mut checked = 0;
        for ((i, profile), threshold) in PROFILES.iter().enumerate().zip(thresholds) {
            let expected = read_series(&result, &format!("S(t)_{}", profile.name)).unwrap();
            let ours = nab::row_weights(&file, profile).unwrap();
            for (row, b) in expected.values.iter().enumerate() {
                if *b == 0.0 {
                    continue;
                }
                let window = windows.iter().find(|w| w.0 == data.micros[row]);
                let a = match window {
                    Some(&(start, end)) => (0..ours.len())
                        .filter(|&r| data.micros[r] >= start && data.micros[r] <= end)
                        .filter(|&r| detector[r] >= threshold)
                        .map(|r| ours[r])
                        .fold(f64::MIN, f64::max),
                    None => ours[row],
                };
                assert!((a - b).abs() < 1e-9, "profile {i} row {row}: {a} vs {b}");
                checked += 1;
            }
        }
        assert!(checked > 0, "no detection row to compare");
    }

    #[test]
    fn leave_one_category_out_scores_each_category_with_parameters_from_the_others() {
        // Three categories of one file each: a calm series with one jump far out of range,
        // labelled.
        let dir = tempfile::tempdir().unwrap();
        let mut labels = serde_json::Map::new();
        for (c, category) in ["a", "b", "c"].iter().enumerate() {
            std::fs::create_dir_all(dir.path().join("data").join(category)).unwrap();
            let mut text = String::from("timestamp,value\n");
            let stamp = |i: usize| {
                format!(
                    "2024-01-{:02} {:02}:{:02}:00",
                    1 + i / 288,
                    i / 12 % 24,
                    i % 12 * 5
                )
            };
            for i in 0..1500 {
                let v = if i == 1000 + 50 * c {
                    500.0
                } else {
                    ((i * 7 + c) % 11) as f64
                };
                text.push_str(&format!("{},{v}\n", stamp(i)));
            }
            std::fs::write(dir.path().join(format!("data/{category}/f.csv")), text).unwrap();
            let spike = 1000 + 50 * c;
            labels.insert(
                format!("{category}/f.csv"),
                json!([[
                    format!("{}.000000", stamp(spike - 20)),
                    format!("{}.000000", stamp(spike + 20))
                ]]),
            );
        }
        std::fs::create_dir_all(dir.path().join("labels")).unwrap();
        std::fs::write(
            dir.path().join("labels/combined_windows.json"),
            serde_json::Value::Object(labels).to_string(),
        )
        .unwrap();
        let loco = evaluate_loco(dir.path(), &ProgressBar::hidden()).unwrap();
        assert_eq!(loco.grid, param_grid());
        let rules: Vec<ThresholdRule> = loco.runs.iter().map(|r| r.rule).collect();
        assert_eq!(rules, [ThresholdRule::Alarm, ThresholdRule::Swept]);
        for run in &loco.runs {
            let held: Vec<&str> = run.folds.iter().map(|f| f.category.as_str()).collect();
            assert_eq!(held, ["a", "b", "c"]);
            for f in &run.folds {
                if run.rule == ThresholdRule::Alarm {
                    // Nothing fitted to scores: the chosen parameters' own alarm level.
                    assert_eq!(f.threshold, loco.grid[f.params].alarm_threshold());
                }
                // The jump out of range is found in every held-out category.
                assert!(f.score > 50.0, "{:?} {f:?}", run.rule);
            }
            let mean = run.folds.iter().map(|f| f.score).sum::<f64>() / 3.0;
            assert!((run.mean - mean).abs() < 1e-9);
        }
    }

    #[test]
    fn detect_reads_nab_csv_and_refuses_bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        let mut text = String::from("timestamp,value\n");
        for i in 0..300 {
            let v = if i == 250 { 50.0 } else { (i % 7) as f64 };
            text.push_str(&format!("2024-01-01 {:02}:{:02}:00,{v}\n", i / 60, i % 60));
        }
        std::fs::write(&input, &text).unwrap();
        let output = dir.path().join("out.csv");
        // `vigil detect` of the input, read back.
        let detected = || {
            detect(&DetectArgs {
                input: input.clone(),
                output: output.clone(),
            })
            .unwrap();
            read_series(&output, "anomaly_score").unwrap()
        };
        let out = detected();
        assert_eq!(out.values.len(), 300);
        assert_eq!(out.text[0], "2024-01-01 00:00:00");
        let spike = out.values[250..256].iter().copied().fold(0.0, f64::max);
        let calm = out.values[100..250].iter().copied().fold(0.0, f64::max);
        assert!(spike > calm && spike > 0.9, "spike {spike}, calm {calm}");

        std::fs::write(
            &input,
            "timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,x\n",
        )
        .unwrap();
        let err = format!("{:#}", read_series(&input, "value").unwrap_err());
        assert!(
            err.contains("line 3") && err.contains("not a finite number"),
            "{err}"
        );
        // A clock that steps back an hour (as a real NAB file's does): every row is scored,
        // in file order.
        let mut text = String::from("timestamp,value\n");
        for i in 0..300 {
            let hour = if i < 150 { i / 60 } else { i / 60 - 1 };
            text.push_str(&format!(
                "2024-01-01 {:02}:{:02}:00,{}\n",
                hour,
                i % 60,
                i % 5
            ));
        }
        std::fs::write(&input, &text).unwrap();
        let out = detected();
        assert_eq!(out.values.len(), 300);
        assert_eq!(out.text[150], "2024-01-01 01:30:00");
        std::fs::write(&input, "time,value\n").unwrap();
        let err = format!("{:#}", read_series(&input, "value").unwrap_err());
        assert!(err.contains("no column \"timestamp\""), "{err}");

        // Quoted fields, with a comma inside one, are read as CSV reads them.
        std::fs::write(
            &input,
            "\"note\",timestamp,value\n\"a, b\",2024-01-01 00:00:00,1.5\n\"c\",2024-01-01 00:05:00,\"2\"\n",
        )
        .unwrap();
        let quoted = read_series(&input, "value").unwrap();
        assert_eq!(quoted.values, [1.5, 2.0]);
        assert_eq!(quoted.text[1], "2024-01-01 00:05:00");
    }
}
