//! `vigil demo`: the whole loop on a fresh machine in one command. A scratch database
//! (`vigil_demo`, recreated each run, on the embedded cluster or DATABASE_URL's server), a
//! month of simulated history, training, the service on localhost, then a live day streamed
//! in accelerated time: samples in, alerts, diagnoses, guarded actions delivered to a webhook
//! receiver that heals an asset only when the action fits its fault, verification, and
//! automatic feedback (the simulator knows the truth). Ends with a summary table.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
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
use crate::sim::fleet::{Fault, Fleet, FleetParams, METRICS, Scenario};
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
    /// Mean hours between faults on one asset in the history (which the model and the
    /// diagnosis tree learn from).
    #[arg(long, default_value_t = 60.0)]
    pub history_fault_every_hours: f64,
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
    /// Share of the history's failures with an operator's record of what healed them
    /// (incident outcomes the action policy starts from; 0 starts from nothing).
    #[arg(long, default_value_t = 0.5, value_name = "SHARE")]
    pub operator_records: f64,
    /// Also break Vigil's surroundings during the live stream: the webhook receiver fails
    /// (503) for a while, then hangs past the executor's timeout, then the database goes
    /// down for a few seconds (the embedded cluster is stopped and started; on a
    /// DATABASE_URL server every connection to the demo database is killed instead). The
    /// summary shows whether any acknowledged sample was lost and whether the guards held.
    #[arg(long)]
    pub chaos: bool,
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
    /// Operator outcomes in the history (what healed a past failure).
    pub operator_outcomes: usize,
    /// Per fault kind: the right action and what the policy learned.
    pub learned: Vec<Learned>,
    /// Validation ROC AUC and average precision of the trained model.
    pub model_quality: (Option<f64>, Option<f64>),
    /// What `--chaos` did and what it showed.
    pub chaos: Option<ChaosReport>,
}

/// The action policy for one fault kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Learned {
    /// The fault kind.
    pub kind: String,
    /// Its right action (the simulator's truth).
    pub right: String,
    /// The best action (highest posterior mean) before the live stream, from the operators'
    /// records in the history.
    pub before_live: Option<String>,
    /// The best action after the live stream.
    pub after: Option<String>,
    /// Its posterior mean of healing.
    pub mean: f64,
    /// The outcomes behind it.
    pub outcomes: u64,
}

/// What `--chaos` broke, and what held.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChaosReport {
    /// The database fault that was injected.
    pub database_fault: String,
    /// Whether the database fault completed (the database came back).
    pub database_back: bool,
    /// Requests to Vigil sent again after a connection error or a 5xx.
    pub requests_retried: usize,
    /// Live samples Vigil acknowledged (2xx).
    pub samples_acknowledged: u64,
    /// Of the live samples, how many the database holds afterwards.
    pub samples_stored: u64,
    /// Webhook calls the receiver answered 503 on purpose.
    pub receiver_failures: usize,
    /// Webhook calls the receiver left hanging past the executor's timeout.
    pub executor_timeouts: usize,
    /// Actions that ended `failed` (the executor gave up).
    pub actions_failed: usize,
    /// Of the failed actions, those whose result was lost: left `running` until the sweeper
    /// marked them failed.
    pub actions_lost: usize,
    /// Actions still `running` at the end (their result never recorded, not yet marked).
    pub actions_stuck: usize,
    /// The most assets with an action in flight at once.
    pub max_assets_in_flight: usize,
    /// The blast-radius budget.
    pub budget: u32,
    /// Actions on one asset closer together than the cooldown.
    pub cooldown_violations: usize,
    /// Actions blocked, per rule that refused them.
    pub blocked_by: BTreeMap<String, usize>,
}

/// Faults of the demo's webhook receiver (`--chaos`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum ReceiverFault {
    /// Works.
    #[default]
    None,
    /// Answers 503.
    Fail,
    /// Answers after this long (past the executor's timeout), without acting.
    Hang(Duration),
}

/// The live state the webhook receiver heals.
#[derive(Debug, Default)]
struct Live {
    /// Simulated now.
    now: i64,
    /// Healed scenarios: index -> when.
    healed: HashMap<usize, i64>,
    /// The receiver's injected fault.
    fault: ReceiverFault,
    /// Calls answered 503 on purpose.
    failed_calls: usize,
    /// Calls left hanging on purpose.
    hung_calls: usize,
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
            timeout_secs: if args.chaos { 2 } else { 5 },
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
async fn start_receiver(
    fleet: Arc<Fleet>,
    live: Arc<Mutex<Live>>,
    addr: std::net::SocketAddr,
) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/action",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let (fleet, live) = (fleet.clone(), live.clone());
            async move {
                let fault = {
                    let mut live = live.lock().unwrap_or_else(|e| e.into_inner());
                    match live.fault {
                        ReceiverFault::Fail => live.failed_calls += 1,
                        ReceiverFault::Hang(_) => live.hung_calls += 1,
                        ReceiverFault::None => {}
                    }
                    live.fault
                };
                match fault {
                    ReceiverFault::Fail => {
                        return (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            axum::Json(json!({ "healed": false })),
                        );
                    }
                    ReceiverFault::Hang(d) => {
                        tokio::time::sleep(d).await;
                        return (
                            axum::http::StatusCode::OK,
                            axum::Json(json!({ "healed": false })),
                        );
                    }
                    ReceiverFault::None => {}
                }
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
                (
                    axum::http::StatusCode::OK,
                    axum::Json(json!({ "healed": healed })),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the webhook receiver to {addr}"))?;
    let url = format!("http://{}/action", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// Where and how `vigil simulate --live` streams.
#[derive(Debug, Clone)]
pub struct Remote {
    /// Vigil's base URL.
    pub url: String,
    /// Its bearer token, when it has auth.
    pub token: Option<String>,
    /// Where the webhook receiver listens.
    pub receiver: std::net::SocketAddr,
    /// Real milliseconds per simulated minute.
    pub minute_ms: u64,
    /// How long to wait after the stream for the last verifications.
    pub final_wait: Duration,
}

/// `vigil simulate --live`: streams `fleet` to the Vigil at `remote.url`, answers its
/// actions with a webhook receiver (an asset heals when the action fits its fault), opens an
/// incident for each failure, labels alerts from the simulator's truth, waits for the last
/// verifications, and summarizes this stream from the API.
pub async fn stream_remote(
    settings: Settings,
    remote: &Remote,
    fleet: Fleet,
    say: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Summary> {
    let Remote {
        url,
        token,
        receiver,
        minute_ms,
        final_wait,
    } = remote.clone();
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the token is not a valid header value")?;
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()?;
    let url = url.trim_end_matches('/').to_owned();
    let url = url.as_str();
    get(&client, &format!("{url}/v1/models"))
        .await
        .with_context(|| format!("reaching Vigil at {url}"))?;
    let live_from = fleet.from;
    let fleet = Arc::new(fleet);
    let live = Arc::new(Mutex::new(Live::default()));
    let receiver = start_receiver(fleet.clone(), live.clone(), receiver).await?;
    say(&format!(
        "webhook receiver at {receiver}: point the catalog's webhook actions ({}) there",
        Fault::ALL.map(|f| f.right_action()).join(", ")
    ));
    say(&format!(
        "streaming {} assets, {} minutes with {} faults to {url} ({minute_ms} ms per minute)",
        fleet.assets.len(),
        fleet.times().count(),
        fleet.scenarios.len()
    ));
    let before_live = best_actions(&client, url).await?;
    let stream = Stream {
        client: &client,
        url,
        fleet: &fleet,
        live: &live,
        settings: &settings,
        minute_ms,
        chaos: false,
        store: None,
        embedded: None,
        live_from,
        final_wait,
    };
    let mut summary = stream.run().await?;
    for learned in &mut summary.learned {
        learned.before_live = before_live.get(&learned.kind).map(|b| b.0.clone());
    }
    Ok(summary)
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
        FleetParams {
            fault_every_hours: args.history_fault_every_hours,
            ..base.clone()
        },
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
    let receiver = start_receiver(fleet.clone(), live.clone(), ([127, 0, 0, 1], 0).into()).await?;
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
    let operator_outcomes =
        super::history::store_history(&store, &settings, &history, args.operator_records, true)
            .await?;
    say(&format!(
        "    operators recorded what healed {operator_outcomes} of the past failures"
    ));

    say("3/5 training on the history");
    let outcome = crate::jobs::train::run_once(
        &store,
        &settings,
        crate::jobs::train::Trigger::Manual,
        |_| {},
    )
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
    if let Some(t) = &outcome.bundle.alert_threshold {
        let events = t.events.map_or(String::new(), |e| {
            format!(
                ": {} of {} validation failures caught, {} alerts, {} false",
                e.caught, e.failures, e.alerts, e.false_alarms
            )
        });
        say(&format!(
            "    alert threshold proposed {:.3}{events}",
            t.fire_at
        ));
    }

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
        "4/5 serving on {url}; streaming {} live hours with {} faults ({} ms per minute){}",
        args.live_hours,
        fleet.scenarios.len(),
        args.minute_ms,
        if args.chaos { ", with chaos" } else { "" }
    ));
    let before_live = best_actions(&client, &url).await?;
    let stream = Stream {
        client: &client,
        url: &url,
        fleet: &fleet,
        live: &live,
        settings: &settings,
        minute_ms: args.minute_ms,
        chaos: args.chaos,
        store: Some(&store),
        embedded: database.embedded.as_deref(),
        live_from,
        final_wait: Duration::from_secs(
            (settings.guard.settle_secs + settings.guard.verify_window_secs + 2) as u64,
        ),
    };
    let mut summary = stream.run().await?;
    say("5/5 done");
    for learned in &mut summary.learned {
        learned.before_live = before_live.get(&learned.kind).map(|b| b.0.clone());
    }
    let summary = Summary {
        model_quality,
        operator_outcomes,
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

/// POSTs `body`, sending it again (with back-off, for up to two minutes) after a connection
/// error or a 5xx, as a client of a service that may restart should. A 4xx is an error.
/// `retried` counts the resends.
async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    retried: &AtomicUsize,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut wait = Duration::from_millis(100);
    loop {
        let failure = match client.post(url).json(body).send().await {
            Ok(response) if response.status().is_success() => {
                return Ok(response.json().await.unwrap_or(Value::Null));
            }
            Ok(response) => {
                let status = response.status();
                let value: Value = response.json().await.unwrap_or(Value::Null);
                if !status.is_server_error() {
                    anyhow::bail!("POST {url}: {status} {value}");
                }
                format!("{status} {value}")
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            anyhow::bail!("POST {url}: still failing after two minutes: {failure}");
        }
        retried.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

/// The fault going on on `asset` at `ts` (first precursor to recovery), if any.
fn fault_at<'a>(fleet: &'a Fleet, asset: &str, ts: i64) -> Option<&'a Scenario> {
    fleet.scenarios.iter().find(|s| {
        fleet.assets[s.asset] == asset && s.start <= ts && ts < s.fail_at + Scenario::DOWN_SECS
    })
}

async fn get(client: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let response = client.get(url).send().await?;
    let status = response.status();
    let value = response.json().await?;
    if !status.is_success() {
        anyhow::bail!("GET {url}: {status} {value}");
    }
    Ok(value)
}

/// Per fault kind, the action with the highest posterior mean of healing, its outcomes
/// pooled over asset classes (from a uniform prior, as the demo's catalog sets), with that
/// mean and the outcomes behind it.
async fn best_actions(
    client: &reqwest::Client,
    url: &str,
) -> anyhow::Result<BTreeMap<String, (String, f64, u64)>> {
    let policy = get(client, &format!("{url}/v1/policy/actions")).await?;
    let mut counts: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for p in policy["posteriors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["action"] != crate::actions::PAGE_HUMAN)
    {
        let key = (
            p["failure_kind"].as_str().unwrap_or_default().to_owned(),
            p["action"].as_str().unwrap_or_default().to_owned(),
        );
        let c = counts.entry(key).or_default();
        c.0 += p["healed"].as_u64().unwrap_or(0);
        c.1 += p["not_healed"].as_u64().unwrap_or(0);
    }
    let mut best: BTreeMap<String, (String, f64, u64)> = BTreeMap::new();
    for ((kind, action), (healed, not_healed)) in counts {
        let n = healed + not_healed;
        let mean = (1.0 + healed as f64) / (2.0 + n as f64);
        if best.get(&kind).is_none_or(|b| mean > b.1) {
            best.insert(kind, (action, mean, n));
        }
    }
    Ok(best)
}

fn timestamp(v: &Value) -> Option<i64> {
    v.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_micros())
}

/// The live stream and what it needs.
struct Stream<'a> {
    client: &'a reqwest::Client,
    url: &'a str,
    fleet: &'a Arc<Fleet>,
    live: &'a Arc<Mutex<Live>>,
    settings: &'a Settings,
    /// Real milliseconds per simulated minute.
    minute_ms: u64,
    /// Whether to inject chaos (`--chaos`).
    chaos: bool,
    /// The database Vigil serves from, when this process has it (the demo): for the
    /// back-pressure on scoring and for `--chaos`.
    store: Option<&'a crate::store::Store>,
    embedded: Option<&'a crate::store::embedded::EmbeddedPostgres>,
    live_from: i64,
    /// How long to wait after the stream for the last actions to be verified.
    final_wait: Duration,
}

/// How long `--chaos` keeps the database down.
const OUTAGE: Duration = Duration::from_secs(4);

impl Stream<'_> {
    /// Streams the live range, then lets the last actions settle and summarizes.
    async fn run(&self) -> anyhow::Result<Summary> {
        let (fleet, live) = (self.fleet, self.live);
        let times: Vec<i64> = fleet.times().collect();
        let bar = ProgressBar::new(times.len() as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} live [{bar:30}] {pos}/{len} minutes ({elapsed}) {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        let retried = AtomicUsize::new(0);
        let mut acknowledged = 0u64;
        let mut outage: Option<(String, tokio::task::JoinHandle<bool>)> = None;
        let mut failed: Vec<usize> = Vec::new();
        let n = times.len();
        for (k, &t) in times.iter().enumerate() {
            let started = Instant::now();
            if self.chaos {
                if let Some(what) = self.chaos_step(k, n) {
                    bar.println(format!("    chaos: {what}"));
                }
                if k == n * 6 / 10 {
                    let (what, task) = self.database_fault()?;
                    bar.println(format!("    chaos: {what}"));
                    outage = Some((what, task));
                }
            }
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
            let answer = post(
                self.client,
                &format!("{}/v1/samples", self.url),
                &json!({ "series": series }),
                &retried,
            )
            .await?;
            acknowledged += answer["received"].as_u64().unwrap_or(0);
            for (i, s) in fleet.scenarios.iter().enumerate() {
                if s.fail_at == t && !healed.contains_key(&i) {
                    failed.push(i);
                    post(
                        self.client,
                        &format!("{}/v1/incidents", self.url),
                        &json!({
                            "asset": fleet.assets[s.asset],
                            "kind": s.fault.kind(),
                            "started_at": t,
                            "resolved_at": t + Scenario::DOWN_SECS,
                            "severity": "major",
                            // A resend (after a lost answer) finds the same incident.
                            "fingerprint": format!("live-{}-{t}", fleet.assets[s.asset]),
                        }),
                        &retried,
                    )
                    .await?;
                }
            }
            if k % 10 == 9 {
                // Back-pressure: on a slow or busy machine, wait for scoring on ingest to
                // catch up (within 5 simulated minutes) rather than outrun it.
                self.catch_up(t - 300).await;
            }
            if k % 15 == 14 {
                if let Err(e) = self.give_feedback(&retried).await {
                    bar.println(format!("    feedback postponed: {e}"));
                }
                bar.set_message(format!("{} healed, {} failed", healed.len(), failed.len()));
            }
            bar.inc(1);
            let pace = Duration::from_millis(self.minute_ms);
            if let Some(rest) = pace.checked_sub(started.elapsed()) {
                tokio::time::sleep(rest).await;
            }
        }
        bar.finish_and_clear();
        self.set_fault(ReceiverFault::None);
        // Let the last actions settle and be verified, then label the last alerts.
        tokio::time::sleep(self.final_wait).await;
        self.wait_for_actions_at_rest().await?;
        self.give_feedback(&retried).await?;
        let mut summary = self.summarize(failed.len()).await?;
        if self.chaos {
            let (database_fault, database_back) = match outage {
                Some((what, task)) => (what, task.await.unwrap_or(false)),
                None => ("none (the stream was too short)".to_owned(), true),
            };
            let (receiver_failures, executor_timeouts) = {
                let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
                (live.failed_calls, live.hung_calls)
            };
            let samples_stored = self
                .store()?
                .count_samples_since(
                    chrono::DateTime::from_timestamp(self.live_from, 0).unwrap_or_default(),
                )
                .await?;
            // The wait above let verification and the actions it started finish, so that
            // `running` here means a result that was never recorded.
            let actions = get(self.client, &format!("{}/v1/actions?limit=1000", self.url)).await?;
            let actions = actions["actions"].as_array().cloned().unwrap_or_default();
            summary.chaos = Some(ChaosReport {
                database_fault,
                database_back,
                requests_retried: retried.load(Ordering::Relaxed),
                samples_acknowledged: acknowledged,
                samples_stored: samples_stored as u64,
                receiver_failures,
                executor_timeouts,
                ..guard_record(&actions, &self.settings.guard)
            });
        }
        Ok(summary)
    }

    /// Waits until the actions are at rest: none `running` and none succeeded and awaiting
    /// verification. Each ends within its attempts' timeouts and has its result recorded
    /// within the store's retries (or the sweeper marks it lost), then is verified once it
    /// has settled; an action that did not heal may start the next one for its alert (the
    /// breaker bounds that chain). On a busy machine those started near the end of the
    /// stream may still be in flight, and the summary must count them once they are done.
    /// Gives up when a step of that chain takes longer than the sweeper allows, and 5 s
    /// more (the summary then counts what is still in flight). Against a Vigil of which
    /// this process does not know the guard's timings (`simulate --live`), waits for
    /// running actions only.
    async fn wait_for_actions_at_rest(&self) -> anyhow::Result<()> {
        let g = &self.settings.guard;
        let own = self.store.is_some();
        let verify = if own {
            Duration::from_secs((g.settle_secs + g.verify_window_secs).max(0) as u64)
        } else {
            Duration::ZERO
        };
        let step = crate::actions::lost_after(&self.settings.actions)
            + verify
            + Duration::from_secs(2 * g.sweep_every_secs.max(1) + 5);
        let mut deadline = Instant::now() + step;
        let mut last = Vec::new();
        let url = format!("{}/v1/actions?limit=1000", self.url);
        loop {
            let actions = get(self.client, &url).await?;
            let in_flight: Vec<i64> = actions["actions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| {
                    a["state"] == "running"
                        || (own && a["state"] == "succeeded" && a["verification"] == "pending")
                })
                .filter_map(|a| a["action_id"].as_i64())
                .collect();
            if in_flight.is_empty() || Instant::now() >= deadline {
                return Ok(());
            }
            if in_flight != last {
                // Progress: the next step of a chain gets its own time.
                deadline = Instant::now() + step;
                last = in_flight;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The longest timeout of the configured actions (5 s when none is).
    fn max_action_timeout_secs(&self) -> u64 {
        self.settings
            .actions
            .iter()
            .map(|a| a.timeout_secs)
            .max()
            .unwrap_or(5)
    }

    fn set_fault(&self, fault: ReceiverFault) {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).fault = fault;
    }

    /// The receiver's faults by position in the stream: 503s from 20% to 30% of the
    /// minutes, hangs past the executor's timeout from 40% to 50%.
    fn chaos_step(&self, k: usize, n: usize) -> Option<String> {
        let timeout = self.max_action_timeout_secs();
        let (fault, what) = if k == n * 2 / 10 {
            (ReceiverFault::Fail, "the webhook receiver fails (503)")
        } else if k == n * 4 / 10 {
            (
                ReceiverFault::Hang(Duration::from_secs(timeout + 1)),
                "the webhook receiver hangs past the executor's timeout",
            )
        } else if k == n * 3 / 10 || k == n * 5 / 10 {
            (ReceiverFault::None, "the webhook receiver works again")
        } else {
            return None;
        };
        self.set_fault(fault);
        Some(what.to_owned())
    }

    /// Starts the database fault in a task: the embedded cluster goes down for [`OUTAGE`]
    /// and comes back; on another server, every connection to the demo database is killed
    /// for that long. The task answers whether the database came back.
    fn database_fault(&self) -> anyhow::Result<(String, tokio::task::JoinHandle<bool>)> {
        if let Some(cluster) = self.embedded {
            let outage = cluster.outage(OUTAGE)?;
            let what = format!(
                "the embedded PostgreSQL stops, stays down {} s and starts again",
                OUTAGE.as_secs()
            );
            return Ok((
                what,
                tokio::spawn(async move {
                    match outage.await {
                        Ok(()) => true,
                        Err(e) => {
                            eprintln!("    chaos: the database did not come back: {e}");
                            false
                        }
                    }
                }),
            ));
        }
        let store = self.store()?.clone();
        let what = format!(
            "every connection to the demo database is killed, again and again for {} s",
            OUTAGE.as_secs()
        );
        Ok((
            what,
            tokio::spawn(async move {
                let until = Instant::now() + OUTAGE;
                while Instant::now() < until {
                    let _ = store.terminate_other_sessions().await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                store.answers().await
            }),
        ))
    }

    fn store(&self) -> anyhow::Result<&crate::store::Store> {
        self.store
            .ok_or_else(|| anyhow::anyhow!("--chaos needs the demo's own database"))
    }

    /// Waits (up to a minute) until the newest stored score ends at `until` or later (when
    /// this process has Vigil's database).
    async fn catch_up(&self, until: i64) {
        let Some(store) = self.store else { return };
        let until = chrono::DateTime::from_timestamp(until, 0).unwrap_or_default();
        for _ in 0..600 {
            let newest = store.latest_score_end().await;
            if newest.is_ok_and(|n| n.is_some_and(|n| n >= until)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Labels new alerts from the simulator's truth: a true alarm when a fault was going on
    /// on the asset (from its first precursor to its recovery).
    async fn give_feedback(&self, retried: &AtomicUsize) -> anyhow::Result<()> {
        let url = self.url;
        let page = get(
            self.client,
            &format!("{url}/v1/alerts?feedback=none&limit=1000"),
        )
        .await?;
        for alert in page["alerts"].as_array().into_iter().flatten() {
            let opened = timestamp(&alert["opened_at"]).unwrap_or(0) / 1_000_000;
            let asset = alert["asset"].as_str().unwrap_or_default();
            let truth = fault_at(self.fleet, asset, opened).is_some();
            post(
                self.client,
                &format!("{url}/v1/alerts/{}/feedback", alert["alert_id"]),
                &json!({
                    "label": if truth { "true_alarm" } else { "false_alarm" },
                    "client_key": format!("demo-{}", alert["alert_id"]),
                }),
                retried,
            )
            .await?;
        }
        Ok(())
    }

    async fn summarize(&self, failures: usize) -> anyhow::Result<Summary> {
        let (client, url, fleet) = (self.client, self.url, self.fleet);
        let opened = |a: &Value| timestamp(&a["opened_at"]).unwrap_or(0) / 1_000_000;
        // This stream's alerts and actions only (Vigil may hold others).
        let alerts = get(client, &format!("{url}/v1/alerts?limit=1000")).await?;
        let mut alerts = alerts["alerts"].as_array().cloned().unwrap_or_default();
        alerts.retain(|a| {
            opened(a) >= self.live_from
                && fleet.assets.iter().any(|name| a["asset"] == name.as_str())
        });
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
        let mut actions = actions["actions"].as_array().cloned().unwrap_or_default();
        actions.retain(|a| alerts.iter().any(|al| al["alert_id"] == a["alert_id"]));
        let count = |key: &str, value: &str| actions.iter().filter(|a| a[key] == value).count();
        let thresholds = get(client, &format!("{url}/v1/policy/thresholds")).await?;
        let global = thresholds["thresholds"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["asset_class"] == "*")
            .and_then(|t| t["fire_at"].as_f64());
        let default = thresholds["default"]["fire_at"].as_f64().unwrap_or(0.5);
        let best = best_actions(client, url).await?;
        let learned = Fault::ALL
            .iter()
            .map(|f| {
                let b = best.get(f.kind());
                Learned {
                    kind: f.kind().to_owned(),
                    right: f.right_action().to_owned(),
                    before_live: None,
                    after: b.map(|b| b.0.clone()),
                    mean: b.map_or(0.0, |b| b.1),
                    outcomes: b.map_or(0, |b| b.2),
                }
            })
            .collect();
        let prevented = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .healed
            .len();
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
            ..Summary::default()
        })
    }
}

/// What the action records show about the guard: actions failed or stuck, the most assets
/// with an action in flight at once (from request to verification, or to the end of a
/// failed one), pairs of actions on an asset closer than the cooldown, and blocks per rule.
fn guard_record(actions: &[Value], guard: &crate::config::GuardSettings) -> ChaosReport {
    let ran: Vec<&Value> = actions
        .iter()
        .filter(|a| {
            ["approved", "running", "succeeded", "failed"]
                .contains(&a["state"].as_str().unwrap_or(""))
        })
        .collect();
    // In flight: +1 at the request, -1 at the end; ends sort before starts at one instant.
    let mut events: Vec<(i64, i32, &str)> = Vec::new();
    for a in &ran {
        let asset = a["asset"].as_str().unwrap_or_default();
        let start = timestamp(&a["requested_at"]).unwrap_or(0);
        let end = if a["state"] == "succeeded" {
            timestamp(&a["verified_at"])
        } else {
            timestamp(&a["finished_at"])
        }
        .unwrap_or(i64::MAX);
        events.push((start, 1, asset));
        events.push((end, -1, asset));
    }
    events.sort_by_key(|e| (e.0, e.1));
    let mut in_flight: HashMap<&str, i32> = HashMap::new();
    let mut max_assets_in_flight = 0;
    for (_, delta, asset) in events {
        *in_flight.entry(asset).or_default() += delta;
        max_assets_in_flight =
            max_assets_in_flight.max(in_flight.values().filter(|&&n| n > 0).count());
    }
    let mut by_asset: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for a in ran
        .iter()
        .filter(|a| a["name"] != crate::actions::PAGE_HUMAN)
    {
        by_asset
            .entry(a["asset"].as_str().unwrap_or_default())
            .or_default()
            .push(timestamp(&a["requested_at"]).unwrap_or(0));
    }
    let cooldown_micros = guard.cooldown_secs * 1_000_000;
    let cooldown_violations = by_asset
        .values_mut()
        .map(|times| {
            times.sort_unstable();
            times
                .windows(2)
                .filter(|w| w[1] - w[0] < cooldown_micros)
                .count()
        })
        .sum();
    let mut blocked_by = BTreeMap::new();
    for a in actions.iter().filter(|a| a["state"] == "blocked") {
        let rule = a["guard_decision"]["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["passed"] == false)
            .and_then(|c| c["rule"].as_str())
            .unwrap_or("unknown");
        *blocked_by.entry(rule.to_owned()).or_insert(0) += 1;
    }
    ChaosReport {
        actions_failed: ran.iter().filter(|a| a["state"] == "failed").count(),
        actions_lost: ran.iter().filter(|a| a["result"]["lost"] == true).count(),
        actions_stuck: ran.iter().filter(|a| a["state"] == "running").count(),
        max_assets_in_flight,
        budget: guard.budget,
        cooldown_violations,
        blocked_by,
        ..ChaosReport::default()
    }
}

/// Prints the summary table.
pub fn print_summary(s: &Summary) {
    println!();
    println!("Vigil summary");
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
    if s.model_quality != (None, None) {
        println!(
            "  model: validation ROC AUC {}, average precision {}",
            fmt_opt(s.model_quality.0),
            fmt_opt(s.model_quality.1)
        );
    }
    println!();
    if s.operator_outcomes > 0 {
        println!(
            "  operators' records in the history: {} outcomes (what healed a past failure)",
            s.operator_outcomes
        );
    }
    println!(
        "  {:<15} {:<12} {:<14} {:<17} {:>8} {:>9}",
        "fault kind", "right", "before live", "after live", "P(heal)", "outcomes"
    );
    for l in &s.learned {
        let after = l.after.as_deref().unwrap_or("-");
        let mark = if after == l.right { "ok" } else { "" };
        println!(
            "  {:<15} {:<12} {:<14} {after:<14} {mark:<2} {:>8.2} {:>9}",
            l.kind,
            l.right,
            l.before_live.as_deref().unwrap_or("-"),
            l.mean,
            l.outcomes
        );
    }
    if let Some(c) = &s.chaos {
        println!();
        println!("Chaos");
        println!(
            "  database fault                       {} ({})",
            c.database_fault,
            if c.database_back {
                "it came back"
            } else {
                "it did NOT come back"
            }
        );
        println!(
            "  requests Vigil refused, sent again   {}",
            c.requests_retried
        );
        println!(
            "  live samples acknowledged / stored   {} / {} ({} lost)",
            c.samples_acknowledged,
            c.samples_stored,
            c.samples_acknowledged.saturating_sub(c.samples_stored)
        );
        println!(
            "  webhook 503s / hangs past timeout    {} / {}",
            c.receiver_failures, c.executor_timeouts
        );
        println!(
            "  actions failed (lost) / left running {} ({}) / {}",
            c.actions_failed, c.actions_lost, c.actions_stuck
        );
        println!(
            "  most assets in flight at once        {} (budget {})",
            c.max_assets_in_flight, c.budget
        );
        println!(
            "  actions closer than the cooldown     {}",
            c.cooldown_violations
        );
        let blocked: Vec<String> = c
            .blocked_by
            .iter()
            .map(|(rule, n)| format!("{rule} {n}"))
            .collect();
        println!(
            "  actions blocked, by rule             {}",
            if blocked.is_empty() {
                "none".to_owned()
            } else {
                blocked.join(", ")
            }
        );
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
