//! `vigil demo`: the whole loop on a fresh machine in one command. A scratch database
//! (`vigil_demo`, recreated each run, on the embedded cluster or DATABASE_URL's server), a
//! month of simulated history, training, the service on localhost, then a live day streamed
//! in accelerated time: samples in, alerts, diagnoses, guarded actions delivered to a webhook
//! receiver that heals an asset only when the action fits its fault, verification, and
//! automatic feedback (the simulator knows the truth). Ends with a summary table.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::App;
use crate::config::{ActionSettings, ExecutorKind, Settings};
use crate::policy::guard::Mode;
use crate::simulator::{Fault, Fleet, FleetParams, METRICS, Scenario};
use crate::store::Database;

/// Flags of `vigil demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Assets in the fleet.
    #[arg(long, default_value_t = 24)]
    pub assets: usize,
    /// Days of history to train on.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Hours of live stream after training.
    #[arg(long, default_value_t = 24)]
    pub live_hours: u32,
    /// Mean hours between faults on one asset during the live stream.
    #[arg(long, default_value_t = 8.0)]
    pub live_fault_every_hours: f64,
    /// Real milliseconds per simulated minute of the live stream.
    #[arg(long, default_value_t = 40)]
    pub minute_ms: u64,
    /// Seed of the fleet.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Exit after the summary instead of serving on.
    #[arg(long)]
    pub exit: bool,
    /// The scratch database (dropped and created again on each run).
    #[arg(long, default_value = "vigil_demo", value_name = "NAME")]
    pub database: String,
}

/// What the demo measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Faults injected during the live stream.
    pub faults: usize,
    /// Of which an alert opened before the failure time.
    pub predicted: usize,
    /// Median minutes from the first alert to the (planned) failure, for predicted faults.
    pub median_lead_minutes: Option<f64>,
    /// Alerts opened on assets with no fault going on.
    pub false_alarms: usize,
    /// Alerts opened in all.
    pub alerts: usize,
    /// Actions that ran.
    pub actions_run: usize,
    /// Actions the guard blocked.
    pub actions_blocked: usize,
    /// Actions verified as healing.
    pub actions_healed: usize,
    /// Faults healed before their failure.
    pub prevented: usize,
    /// Share of actions (on an asset with a fault going on) that were the fault's right
    /// action, in the first and the second half of the live stream's actions.
    pub right_action_rate: (Option<f64>, Option<f64>),
    /// Failures that happened (incidents).
    pub failures: usize,
    /// The global threshold before and after feedback.
    pub threshold: (f64, f64),
    /// Per fault kind: the right action, the learned best action, its posterior mean and
    /// the outcomes behind it.
    pub learned: Vec<(String, String, Option<String>, f64, u64)>,
    /// Validation ROC AUC and average precision of the trained model.
    pub model_quality: (Option<f64>, Option<f64>),
}

/// The live state the webhook receiver heals.
#[derive(Debug, Default)]
struct Live {
    /// Simulated now.
    now: i64,
    /// Healed scenarios: index -> when.
    healed: HashMap<usize, i64>,
}

/// The demo's configuration on top of the user's: the catalog of the six right actions (and
/// `page_human`) as webhooks to the demo's receiver, all in auto mode, and timings scaled to
/// the accelerated stream.
fn demo_settings(mut settings: Settings, receiver: &str, args: &DemoArgs) -> Settings {
    settings.training.history_days = args.days + 2;
    settings.training.schedule = String::new();
    settings.scoring.on_ingest = true;
    settings.scoring.fire_windows = 2;
    settings.policy.min_labels = 10;
    let minute_secs = args.minute_ms as f64 / 1000.0;
    // Real seconds for a few simulated minutes.
    let minutes = |m: f64| ((m * minute_secs).ceil() as i64).max(1);
    settings.guard.cooldown_secs = minutes(10.0);
    settings.guard.rate_limit_per_hour = 100_000;
    settings.guard.budget = (args.assets as u32 / 3).max(2);
    settings.guard.breaker_after = 3;
    settings.guard.breaker_reset_secs = minutes(180.0);
    // Settle for a feature window (60 minutes), so the score sees the healed asset.
    settings.guard.settle_secs = minutes(65.0);
    settings.guard.verify_window_secs = minutes(10.0);
    settings.guard.sweep_every_secs = 1;
    settings.guard.sample_seed = Some(args.seed);
    settings.actions = Fault::ALL
        .iter()
        .map(|f| ActionSettings {
            name: f.right_action().to_owned(),
            executor: ExecutorKind::Webhook,
            mode: Mode::Auto,
            kinds: Vec::new(),
            classes: Vec::new(),
            prior: (1.0, 1.0),
            url: Some(receiver.to_owned()),
            secret: Some("vigil-demo".to_owned()),
            argv: Vec::new(),
            timeout_secs: 5,
            retries: 1,
        })
        .chain([ActionSettings {
            name: crate::actions::PAGE_HUMAN.to_owned(),
            executor: ExecutorKind::DryRun,
            mode: Mode::Auto,
            kinds: Vec::new(),
            classes: Vec::new(),
            prior: (1.0, 1.0),
            url: None,
            secret: None,
            argv: Vec::new(),
            timeout_secs: 5,
            retries: 0,
        }])
        .collect();
    settings
}

/// Starts the webhook receiver: an action heals the asset's ongoing fault when it is that
/// fault's right action.
async fn start_receiver(fleet: Arc<Fleet>, live: Arc<Mutex<Live>>) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/action",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let (fleet, live) = (fleet.clone(), live.clone());
            async move {
                let asset = body["asset"].as_str().unwrap_or_default();
                let action = body["action"].as_str().unwrap_or_default();
                let mut live = live.lock().unwrap_or_else(|e| e.into_inner());
                let now = live.now;
                let hit = fleet.scenarios.iter().enumerate().find(|(i, s)| {
                    fleet.assets[s.asset] == asset
                        && s.start <= now
                        && now < s.fail_at
                        && !live.healed.contains_key(i)
                });
                let healed = match hit {
                    Some((i, s)) if s.fault.right_action() == action => {
                        live.healed.insert(i, now);
                        true
                    }
                    _ => false,
                };
                axum::Json(json!({ "healed": healed }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/action", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// Runs the demo and returns its summary; `serve_until` decides how long the service keeps
/// serving after it (immediately done: exit).
pub async fn run(
    settings: Settings,
    args: &DemoArgs,
    say: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<(Summary, DemoService)> {
    let end = chrono::Utc::now().timestamp() / 60 * 60;
    let live_from = end - i64::from(args.live_hours) * 3600;
    let base = FleetParams {
        assets: args.assets,
        seed: args.seed,
        ..FleetParams::default()
    };
    let history = Fleet::new(
        base.clone(),
        live_from - i64::from(args.days) * 86_400,
        live_from,
    );
    let fleet = Arc::new(Fleet::new(
        FleetParams {
            fault_every_hours: args.live_fault_every_hours,
            ..base
        },
        live_from,
        end,
    ));
    let live = Arc::new(Mutex::new(Live::default()));
    let receiver = start_receiver(fleet.clone(), live.clone()).await?;
    let settings = demo_settings(settings, &receiver, args);

    say(&format!(
        "1/5 starting PostgreSQL (scratch database {})",
        args.database
    ));
    let database = Database::open_scratch(&settings, &args.database)
        .await
        .context("opening the demo database (is PostgreSQL installed? see README)")?;
    let store = database.store.clone();

    say(&format!(
        "2/5 simulating {} days of history: {} assets x {} metrics, {} faults",
        args.days,
        history.assets.len(),
        METRICS.len(),
        history.scenarios.len()
    ));
    super::simulate::store_history(&store, &settings, &history, true).await?;

    say("3/5 training on the history");
    let outcome = crate::jobs::train::run_once(&store, &settings, |_| {})
        .await
        .context("training")?;
    let report = &outcome.bundle.report;
    let model_quality = report
        .failure
        .as_ref()
        .map_or((None, None), |c| (c.roc_auc, c.average_precision));
    say(&format!(
        "    model v{}: validation ROC AUC {}, average precision {}",
        outcome.registration.model.version,
        fmt_opt(model_quality.0),
        fmt_opt(model_quality.1)
    ));

    let app = match App::build(settings.clone(), store.clone()).await {
        Ok(app) => app,
        Err(e) => {
            say(&format!("    {e}; using a free port instead"));
            let mut s = settings.clone();
            s.listen = "127.0.0.1:0".parse()?;
            App::build(s, store.clone()).await?
        }
    };
    let addr = app.local_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(async move {
        let _ = stop_rx.await;
    }));
    let url = format!("http://{addr}");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{url}/v1/models")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    say(&format!(
        "4/5 serving on {url}; streaming {} live hours with {} faults ({} ms per minute)",
        args.live_hours,
        fleet.scenarios.len(),
        args.minute_ms
    ));
    let summary = stream_live(&client, &url, &fleet, &live, &settings, args, &store).await?;
    say("5/5 done");
    let summary = Summary {
        model_quality,
        ..summary
    };
    Ok((
        summary,
        DemoService {
            url,
            stop: Some(stop_tx),
            server: Some(server),
            database: Some(database),
        },
    ))
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("n/a".to_owned(), |v| format!("{v:.3}"))
}

/// The service left running after the demo.
pub struct DemoService {
    /// Its base URL.
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    database: Option<Database>,
}

impl DemoService {
    /// Stops the service and the database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        }
        if let Some(db) = self.database.take() {
            db.close().await?;
        }
        Ok(())
    }
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<Value> {
    let response = client.post(url).json(body).send().await?;
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        anyhow::bail!("POST {url}: {status} {value}");
    }
    Ok(value)
}

/// Labels new alerts from the simulator's truth: a true alarm when a fault was going on on
/// the asset (from its first precursor to its recovery).
async fn give_feedback(client: &reqwest::Client, url: &str, fleet: &Fleet) -> anyhow::Result<()> {
    let page: Value = client
        .get(format!("{url}/v1/alerts?feedback=none&limit=1000"))
        .send()
        .await?
        .json()
        .await?;
    for alert in page["alerts"].as_array().into_iter().flatten() {
        let opened = alert["opened_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(0, |t| t.timestamp());
        let asset = alert["asset"].as_str().unwrap_or_default();
        let truth = fault_at(fleet, asset, opened).is_some();
        post(
            client,
            &format!("{url}/v1/alerts/{}/feedback", alert["alert_id"]),
            &json!({
                "label": if truth { "true_alarm" } else { "false_alarm" },
                "client_key": format!("demo-{}", alert["alert_id"]),
            }),
        )
        .await?;
    }
    Ok(())
}

/// The fault going on on `asset` at `ts` (first precursor to recovery), if any.
fn fault_at<'a>(fleet: &'a Fleet, asset: &str, ts: i64) -> Option<&'a Scenario> {
    fleet.scenarios.iter().find(|s| {
        fleet.assets[s.asset] == asset && s.start <= ts && ts < s.fail_at + Scenario::DOWN_SECS
    })
}

async fn stream_live(
    client: &reqwest::Client,
    url: &str,
    fleet: &Arc<Fleet>,
    live: &Arc<Mutex<Live>>,
    settings: &Settings,
    args: &DemoArgs,
    store: &crate::store::Store,
) -> anyhow::Result<Summary> {
    let times: Vec<i64> = fleet.times().collect();
    let bar = ProgressBar::new(times.len() as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} live [{bar:30}] {pos}/{len} minutes ({elapsed}) {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let mut failed: Vec<usize> = Vec::new();
    for (k, &t) in times.iter().enumerate() {
        let started = Instant::now();
        let healed = {
            let mut l = live.lock().unwrap_or_else(|e| e.into_inner());
            l.now = t;
            l.healed.clone()
        };
        let healed_at = |i: usize| healed.get(&i).copied();
        let series: Vec<Value> = fleet
            .assets
            .iter()
            .enumerate()
            .flat_map(|(a, asset)| {
                let healed_at = &healed_at;
                METRICS.iter().enumerate().map(move |(m, metric)| {
                    json!({
                        "asset": asset,
                        "metric": metric,
                        "timestamps": [t],
                        "values": [fleet.value(a, m, t, healed_at)],
                    })
                })
            })
            .collect();
        post(
            client,
            &format!("{url}/v1/samples"),
            &json!({ "series": series }),
        )
        .await?;
        for (i, s) in fleet.scenarios.iter().enumerate() {
            if s.fail_at == t && !healed.contains_key(&i) {
                failed.push(i);
                post(
                    client,
                    &format!("{url}/v1/incidents"),
                    &json!({
                        "asset": fleet.assets[s.asset],
                        "kind": s.fault.kind(),
                        "started_at": t,
                        "resolved_at": t + Scenario::DOWN_SECS,
                        "severity": "major",
                    }),
                )
                .await?;
            }
        }
        if k % 10 == 9 {
            // Back-pressure: on a slow or busy machine, wait for scoring on ingest to catch
            // up (within 5 simulated minutes) rather than outrun it.
            catch_up(store, t - 300).await?;
        }
        if k % 15 == 14 {
            give_feedback(client, url, fleet).await?;
            bar.set_message(format!("{} healed, {} failed", healed.len(), failed.len()));
        }
        bar.inc(1);
        let pace = Duration::from_millis(args.minute_ms);
        if let Some(rest) = pace.checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    bar.finish_and_clear();
    // Let the last actions settle and be verified, then label the last alerts.
    let wait = settings.guard.settle_secs + settings.guard.verify_window_secs + 2;
    tokio::time::sleep(Duration::from_secs(wait as u64)).await;
    give_feedback(client, url, fleet).await?;
    summarize(client, url, fleet, live, failed.len()).await
}

/// Waits (up to a minute) until the newest stored score ends at `until` or later.
async fn catch_up(store: &crate::store::Store, until: i64) -> anyhow::Result<()> {
    let until = chrono::DateTime::from_timestamp(until, 0).unwrap_or_default();
    for _ in 0..600 {
        let newest: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("select max(window_end) from score")
                .fetch_one(store.pool())
                .await?;
        if newest.is_some_and(|n| n >= until) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn get(client: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    Ok(client.get(url).send().await?.json().await?)
}

async fn summarize(
    client: &reqwest::Client,
    url: &str,
    fleet: &Fleet,
    live: &Arc<Mutex<Live>>,
    failures: usize,
) -> anyhow::Result<Summary> {
    let alerts = get(client, &format!("{url}/v1/alerts?limit=1000")).await?;
    let alerts = alerts["alerts"].as_array().cloned().unwrap_or_default();
    let opened = |a: &Value| {
        a["opened_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(0, |t| t.timestamp())
    };
    let mut leads = Vec::new();
    for s in &fleet.scenarios {
        let first = alerts
            .iter()
            .filter(|a| a["asset"] == fleet.assets[s.asset].as_str())
            .map(opened)
            .filter(|&t| t >= s.start && t <= s.fail_at)
            .min();
        if let Some(t) = first {
            leads.push((s.fail_at - t) as f64 / 60.0);
        }
    }
    leads.sort_by(f64::total_cmp);
    let actions = get(client, &format!("{url}/v1/actions?limit=1000")).await?;
    let actions = actions["actions"].as_array().cloned().unwrap_or_default();
    let count = |key: &str, value: &str| actions.iter().filter(|a| a[key] == value).count();
    let thresholds = get(client, &format!("{url}/v1/policy/thresholds")).await?;
    let global = thresholds["thresholds"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["asset_class"] == "*")
        .and_then(|t| t["fire_at"].as_f64());
    let default = thresholds["default"]["fire_at"].as_f64().unwrap_or(0.5);
    let policy = get(client, &format!("{url}/v1/policy/actions")).await?;
    let mut best: BTreeMap<String, (String, f64, u64)> = BTreeMap::new();
    for p in policy["posteriors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["action"] != crate::actions::PAGE_HUMAN)
    {
        let kind = p["failure_kind"].as_str().unwrap_or_default().to_owned();
        let mean = p["mean"].as_f64().unwrap_or(0.0);
        let n = p["healed"].as_u64().unwrap_or(0) + p["not_healed"].as_u64().unwrap_or(0);
        let action = p["action"].as_str().unwrap_or_default().to_owned();
        // Per kind, the best posterior mean over classes and actions.
        if best.get(&kind).is_none_or(|b| mean > b.1) {
            best.insert(kind, (action, mean, n));
        }
    }
    let learned = Fault::ALL
        .iter()
        .map(|f| {
            let b = best.get(f.kind());
            (
                f.kind().to_owned(),
                f.right_action().to_owned(),
                b.map(|b| b.0.clone()),
                b.map_or(0.0, |b| b.1),
                b.map_or(0, |b| b.2),
            )
        })
        .collect();
    let prevented = live.lock().unwrap_or_else(|e| e.into_inner()).healed.len();
    // Which actions were right: the fault going on when the action's alert opened.
    let mut choices: Vec<(i64, bool)> = actions
        .iter()
        .filter(|a| a["name"] != crate::actions::PAGE_HUMAN && a["state"] != "blocked")
        .filter_map(|a| {
            let alert = alerts.iter().find(|al| al["alert_id"] == a["alert_id"])?;
            let fault = fault_at(fleet, alert["asset"].as_str()?, opened(alert))?;
            Some((
                a["action_id"].as_i64()?,
                a["name"] == fault.fault.right_action(),
            ))
        })
        .collect();
    choices.sort_by_key(|c| c.0);
    let rate = |c: &[(i64, bool)]| {
        (!c.is_empty()).then(|| c.iter().filter(|x| x.1).count() as f64 / c.len() as f64)
    };
    let (early, late) = choices.split_at(choices.len() / 2);
    Ok(Summary {
        faults: fleet.scenarios.len(),
        predicted: leads.len(),
        median_lead_minutes: leads.get(leads.len() / 2).copied(),
        false_alarms: alerts
            .iter()
            .filter(|a| {
                fault_at(fleet, a["asset"].as_str().unwrap_or_default(), opened(a)).is_none()
            })
            .count(),
        alerts: alerts.len(),
        actions_run: actions
            .iter()
            .filter(|a| a["state"] == "succeeded" || a["state"] == "failed")
            .count(),
        actions_blocked: count("state", "blocked"),
        actions_healed: count("verification", "healed"),
        prevented,
        right_action_rate: (rate(early), rate(late)),
        failures,
        threshold: (default, global.unwrap_or(default)),
        learned,
        model_quality: (None, None),
    })
}

/// Prints the summary table.
pub fn print_summary(s: &Summary) {
    println!();
    println!("Vigil demo summary");
    println!("  faults injected in the live stream   {}", s.faults);
    println!(
        "  predicted (alert before the failure) {} ({:.0}%), median lead {} minutes",
        s.predicted,
        100.0 * s.predicted as f64 / s.faults.max(1) as f64,
        s.median_lead_minutes
            .map_or("n/a".to_owned(), |m| format!("{m:.0}"))
    );
    println!("  failures prevented (healed in time)  {}", s.prevented);
    let pct = |r: Option<f64>| r.map_or("n/a".to_owned(), |r| format!("{:.0}%", 100.0 * r));
    println!(
        "  right action chosen, 1st -> 2nd half {} -> {}",
        pct(s.right_action_rate.0),
        pct(s.right_action_rate.1)
    );
    println!("  failures that happened               {}", s.failures);
    println!(
        "  alerts                               {} ({} false alarms)",
        s.alerts, s.false_alarms
    );
    println!(
        "  actions run / healed / blocked       {} / {} / {}",
        s.actions_run, s.actions_healed, s.actions_blocked
    );
    println!(
        "  global threshold before -> after     {:.3} -> {:.3}",
        s.threshold.0, s.threshold.1
    );
    println!(
        "  model: validation ROC AUC {}, average precision {}",
        fmt_opt(s.model_quality.0),
        fmt_opt(s.model_quality.1)
    );
    println!();
    println!(
        "  {:<15} {:<12} {:<24} {:>8} {:>9}",
        "fault kind", "right", "learned (before: none)", "P(heal)", "outcomes"
    );
    for (kind, right, learned, mean, n) in &s.learned {
        let learned = learned.as_deref().unwrap_or("-");
        let mark = if learned == right { "ok" } else { "" };
        println!("  {kind:<15} {right:<12} {learned:<21} {mark:<2} {mean:>8.2} {n:>9}");
    }
}

/// `vigil demo`.
pub async fn demo(settings: Settings, args: &DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let say = |m: &str| println!("{m}");
    let (summary, service) = run(settings, args, &say).await?;
    print_summary(&summary);
    println!("\nfinished in {:.0} s", started.elapsed().as_secs_f64());
    if args.exit {
        return service.stop().await;
    }
    println!(
        "\nVigil keeps serving at {} (Ctrl-C stops it). Try:",
        service.url
    );
    println!(
        "  curl -s {}/v1/alerts?limit=5 | head -c 600; echo\n  curl -s {}/v1/policy/actions | head -c 600; echo",
        service.url, service.url
    );
    tokio::signal::ctrl_c().await?;
    service.stop().await
}
