//! `vigil simulate`: a month (by default) of simulated fleet history with planted faults,
//! written as CSV files that `vigil import` and `vigil train --input` read, or stored in the
//! database directly; or, with `--live URL`, a live stream to a running Vigil with a webhook
//! receiver that heals an asset when Vigil's action fits its fault.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use chrono::Utc;
use clap::Args;

use crate::config::Settings;
use crate::sim::fleet::{Fleet, FleetParams, METRICS};
use crate::sim::history::store_history;

/// Flags of `vigil simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Assets in the fleet (classes web, db, worker in turn).
    #[arg(long, default_value_t = 24)]
    pub assets: usize,
    /// Days of history, ending now (at the last whole minute).
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Seed: the same seed gives the same fleet, faults and values.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Mean hours between faults on one asset [default: 60, or 8 with --live].
    #[arg(long, value_name = "HOURS")]
    pub fault_every_hours: Option<f64>,
    /// End of the history (RFC 3339 or Unix seconds) [default: now]. With a fixed end, the
    /// same flags give the same files.
    #[arg(long, value_name = "TIME")]
    pub end: Option<String>,
    /// Share of failures after which an operator recorded what they tried and which action
    /// healed it (stored as incident outcomes, which the action policy learns from; only
    /// when storing into the database).
    #[arg(long, default_value_t = 0.5, value_name = "SHARE")]
    pub operator_records: f64,
    /// Write samples.csv (asset,metric,ts,value) and incidents.csv here instead of storing
    /// into the database.
    #[arg(long, value_name = "DIR", conflicts_with = "live")]
    pub out: Option<PathBuf>,
    /// Live mode: stream samples to the Vigil at this URL in accelerated time (instead of
    /// writing history), answer its actions with a webhook receiver, open an incident for
    /// each failure, label its alerts from the simulator's truth, and print a summary.
    /// Point the catalog's webhook actions (restart, clean_disk, scale_out, reroute,
    /// throttle, rollback) at the receiver.
    #[arg(long, value_name = "URL")]
    pub live: Option<String>,
    /// Live mode: simulated hours to stream.
    #[arg(long, default_value_t = 2)]
    pub live_hours: u32,
    /// Live mode: first simulated minute (RFC 3339 or Unix seconds) [default: --live-hours
    /// before now]. Start after the stored history's end.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Live mode: real milliseconds per simulated minute.
    #[arg(long, default_value_t = 40)]
    pub minute_ms: u64,
    /// Live mode: where the webhook receiver listens (its path is /action).
    #[arg(long, default_value = "127.0.0.1:9099", value_name = "ADDR")]
    pub receiver: std::net::SocketAddr,
    /// Live mode: bearer token for Vigil (scopes ingest and feedback).
    #[arg(long, env = "VIGIL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Live mode: seconds to wait after the stream for the last actions to be verified.
    #[arg(long, default_value_t = 60)]
    pub wait_secs: u64,
}

impl SimulateArgs {
    /// The history these flags describe, ending at `end`.
    pub fn fleet(&self, end: i64) -> Fleet {
        Fleet::new(self.params(60.0), end - i64::from(self.days) * 86_400, end)
    }

    fn params(&self, default_fault_every_hours: f64) -> FleetParams {
        FleetParams {
            assets: self.assets,
            fault_every_hours: self.fault_every_hours.unwrap_or(default_fault_every_hours),
            seed: self.seed,
            ..FleetParams::default()
        }
    }
}

fn parse_time(flag: &str, t: &str) -> anyhow::Result<i64> {
    crate::ingest::files::parse_timestamp(t)
        .map(|micros| micros.div_euclid(1_000_000))
        .with_context(|| format!("{flag} {t:?} is not RFC 3339 or Unix seconds"))
}

/// `vigil simulate --live`.
async fn live(settings: Settings, args: &SimulateArgs, url: &str) -> anyhow::Result<()> {
    let span = i64::from(args.live_hours.max(1)) * 3600;
    let from = match &args.from {
        Some(t) => parse_time("--from", t)?,
        None => Utc::now().timestamp() - span,
    } / 60
        * 60;
    let fleet = Fleet::new(args.params(8.0), from, from + span);
    let say = |m: &str| println!("{m}");
    let remote = super::demo::Remote {
        url: url.to_owned(),
        token: args.token.clone(),
        receiver: args.receiver,
        minute_ms: args.minute_ms,
        final_wait: std::time::Duration::from_secs(args.wait_secs),
    };
    let summary = super::demo::stream_remote(settings, &remote, fleet, &say).await?;
    super::demo::print_summary(&summary);
    Ok(())
}

/// `vigil simulate`.
pub async fn simulate(settings: Settings, args: &SimulateArgs) -> anyhow::Result<()> {
    if let Some(url) = &args.live {
        return live(settings, args, url).await;
    }
    let end = match &args.end {
        Some(t) => parse_time("--end", t)?,
        None => Utc::now().timestamp(),
    } / 60
        * 60;
    let fleet = args.fleet(end);
    let samples = fleet.times().count() * fleet.assets.len() * METRICS.len();
    match &args.out {
        Some(dir) => write_files(&fleet, dir, samples as u64)?,
        None => {
            let database = crate::store::Database::open(&settings)
                .await
                .context("opening the database")?;
            let result = store_history(
                &database.store,
                &settings,
                &fleet,
                args.operator_records,
                true,
            )
            .await;
            database.close().await?;
            let outcomes = result?;
            println!("recorded {outcomes} operator outcomes (what healed a failure)");
        }
    }
    println!(
        "simulated {} assets x {} metrics over {} days: {} samples, {} faults ending in failures",
        fleet.assets.len(),
        METRICS.len(),
        args.days,
        samples,
        fleet.scenarios.len()
    );
    Ok(())
}

fn write_files(fleet: &Fleet, dir: &std::path::Path, total: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("samples.csv");
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "asset,metric,ts,value")?;
    let progress = crate::progress::counter(total, "writing samples");
    let none = |_| None;
    for (a, asset) in fleet.assets.iter().enumerate() {
        for ts in fleet.times() {
            for (m, metric) in METRICS.iter().enumerate() {
                writeln!(
                    out,
                    "{asset},{metric},{ts},{:.3}",
                    fleet.value(a, m, ts, &none)
                )?;
            }
            progress.inc(METRICS.len() as u64);
        }
    }
    out.flush()?;
    progress.finish_and_clear();
    let path = dir.join("incidents.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    writeln!(out, "asset,kind,started_at,resolved_at")?;
    for f in fleet.failures() {
        writeln!(
            out,
            "{},{},{},{}",
            f.asset,
            f.kind,
            f.started,
            f.resolved.unwrap_or(f.started)
        )?;
    }
    out.flush()?;
    println!(
        "wrote {} and {}",
        dir.join("samples.csv").display(),
        path.display()
    );
    Ok(())
}
