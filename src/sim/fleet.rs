//! A seeded fleet simulator: assets of three classes reporting six metrics at a fixed step,
//! with daily and weekly seasonality, noise, benign events that must not alert (short spikes,
//! nightly backups), and fault scenarios whose precursors build up until a failure, unless the
//! right action is applied in time:
//!
//! | fault | precursor | right action |
//! |---|---|---|
//! | `memory_leak` | mem climbs | `restart` |
//! | `disk_filling` | disk climbs | `clean_disk` |
//! | `latency_creep` | latency grows quadratically | `scale_out` |
//! | `error_burst` | errors rise in bursts | `reroute` |
//! | `thermal_drift` | temp climbs | `throttle` |
//! | `bad_deploy` | errors and latency step up after a deploy | `rollback` |
//!
//! Every value is a pure function of (seed, asset, metric, time, fault state), so history
//! and live streams agree and any minute can be regenerated. No IO: `cli::simulate` writes
//! files or the database.

use std::f64::consts::TAU;

use crate::features::dataset::Failure;

/// The metrics every asset reports.
pub const METRICS: [&str; 6] = ["cpu", "mem", "disk", "latency_ms", "errors", "temp"];

/// Asset classes, assigned in turn.
pub const CLASSES: [&str; 3] = ["web", "db", "worker"];

/// A fault scenario's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// mem climbs.
    MemoryLeak,
    /// disk climbs.
    DiskFilling,
    /// latency grows.
    LatencyCreep,
    /// errors rise in bursts.
    ErrorBurst,
    /// temp climbs.
    ThermalDrift,
    /// errors and latency step up after a deploy.
    BadDeploy,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 6] = [
        Fault::MemoryLeak,
        Fault::DiskFilling,
        Fault::LatencyCreep,
        Fault::ErrorBurst,
        Fault::ThermalDrift,
        Fault::BadDeploy,
    ];

    /// The failure kind recorded in incidents.
    pub fn kind(self) -> &'static str {
        match self {
            Fault::MemoryLeak => "memory_leak",
            Fault::DiskFilling => "disk_filling",
            Fault::LatencyCreep => "latency_creep",
            Fault::ErrorBurst => "error_burst",
            Fault::ThermalDrift => "thermal_drift",
            Fault::BadDeploy => "bad_deploy",
        }
    }

    /// The one action that heals it.
    pub fn right_action(self) -> &'static str {
        match self {
            Fault::MemoryLeak => "restart",
            Fault::DiskFilling => "clean_disk",
            Fault::LatencyCreep => "scale_out",
            Fault::ErrorBurst => "reroute",
            Fault::ThermalDrift => "throttle",
            Fault::BadDeploy => "rollback",
        }
    }

    /// Minutes from the first precursor to the failure.
    pub fn lead_minutes(self) -> i64 {
        match self {
            Fault::MemoryLeak => 90,
            Fault::DiskFilling => 120,
            Fault::LatencyCreep => 60,
            Fault::ErrorBurst => 45,
            Fault::ThermalDrift => 75,
            Fault::BadDeploy => 50,
        }
    }
}

/// One planned fault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scenario {
    /// Index of the asset.
    pub asset: usize,
    pub fault: Fault,
    /// First precursor, Unix seconds.
    pub start: i64,
    /// The failure, unless healed before.
    pub fail_at: i64,
}

impl Scenario {
    /// Seconds the asset stays failed before it recovers on its own (a person fixes it).
    pub const DOWN_SECS: i64 = 1800;
}

/// Simulator settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetParams {
    pub assets: usize,
    /// Seconds between samples.
    pub step_secs: i64,
    /// Mean hours between faults on one asset.
    pub fault_every_hours: f64,
    /// Mean hours between benign spikes on one asset.
    pub benign_every_hours: f64,
    pub seed: u64,
}

impl Default for FleetParams {
    fn default() -> Self {
        Self {
            assets: 24,
            step_secs: 60,
            fault_every_hours: 60.0,
            benign_every_hours: 12.0,
            seed: 42,
        }
    }
}

/// A deterministic uniform number in [0, 1) from a key (splitmix64).
fn unit(mut x: u64) -> f64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn key(seed: u64, a: u64, b: u64, c: u64) -> u64 {
    seed.wrapping_mul(0x100_0000_01b3)
        ^ a.wrapping_mul(0x9e37_79b9)
        ^ b.wrapping_mul(0x85eb_ca6b)
        ^ c.wrapping_mul(0xc2b2_ae35)
}

/// A simulated fleet over a time range, with its planned faults and benign events.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The settings.
    pub params: FleetParams,
    /// Asset names.
    pub assets: Vec<String>,
    /// Planned faults, by start.
    pub scenarios: Vec<Scenario>,
    /// Benign spikes: (asset, metric index, start, minutes).
    pub benign: Vec<(usize, usize, i64, i64)>,
    /// Start of the range, Unix seconds (on the step grid).
    pub from: i64,
    /// End of the range (exclusive).
    pub to: i64,
}

impl Fleet {
    /// Plans faults and benign events on `[from, to)`. Fault arrivals per asset are
    /// exponential with mean `fault_every_hours`, kinds drawn uniformly; no two faults of an
    /// asset overlap.
    pub fn new(params: FleetParams, from: i64, to: i64) -> Self {
        let step = params.step_secs.max(1);
        let from = from.div_euclid(step) * step;
        let assets: Vec<String> = (0..params.assets)
            .map(|i| format!("{}-{i:02}", CLASSES[i % CLASSES.len()]))
            .collect();
        let mut scenarios = Vec::new();
        let mut benign = Vec::new();
        for a in 0..params.assets {
            let mut t = from;
            let mut n = 0u64;
            loop {
                let gap = -(1.0 - unit(key(params.seed, a as u64, 1, n))).ln()
                    * params.fault_every_hours
                    * 3600.0;
                let fault = Fault::ALL[(unit(key(params.seed, a as u64, 2, n)) * 6.0) as usize % 6];
                let start = (t + gap as i64).div_euclid(step) * step;
                let fail_at = start + fault.lead_minutes() * 60;
                if fail_at + Scenario::DOWN_SECS >= to {
                    break;
                }
                scenarios.push(Scenario {
                    asset: a,
                    fault,
                    start,
                    fail_at,
                });
                t = fail_at + Scenario::DOWN_SECS + 3600;
                n += 1;
            }
            let mut t = from;
            let mut n = 0u64;
            loop {
                let gap = -(1.0 - unit(key(params.seed, a as u64, 3, n))).ln()
                    * params.benign_every_hours
                    * 3600.0;
                t += gap as i64;
                if t >= to {
                    break;
                }
                // Benign spikes hit cpu or latency, for 3 to 8 minutes.
                let metric = if unit(key(params.seed, a as u64, 4, n)) < 0.5 {
                    0
                } else {
                    3
                };
                let minutes = 3 + (unit(key(params.seed, a as u64, 5, n)) * 6.0) as i64;
                benign.push((a, metric, t.div_euclid(step) * step, minutes));
                n += 1;
            }
        }
        scenarios.sort_by_key(|s| s.start);
        Self {
            params,
            assets,
            scenarios,
            benign,
            from,
            to,
        }
    }

    /// The asset's class.
    pub fn class(&self, asset: usize) -> &'static str {
        CLASSES[asset % CLASSES.len()]
    }

    /// The value of `metric` of `asset` at `ts`. `healed` gives, per scenario index, when an
    /// action healed it (its precursors stop; no failure follows).
    pub fn value(
        &self,
        asset: usize,
        metric: usize,
        ts: i64,
        healed: &dyn Fn(usize) -> Option<i64>,
    ) -> f64 {
        let seed = self.params.seed;
        let level = |k: u64| unit(key(seed, asset as u64, 10 + metric as u64, k));
        let day = (ts as f64 / 86_400.0 + level(1)) * TAU;
        let week = (ts as f64 / 604_800.0) * TAU;
        let noise = unit(key(seed, asset as u64, 100 + metric as u64, ts as u64)) - 0.5;
        // Base levels and daily swings differ per asset and metric.
        let mut v = match metric {
            0 => 30.0 + 20.0 * level(0) + 15.0 * day.sin() + 3.0 * week.sin() + 6.0 * noise,
            1 => 40.0 + 20.0 * level(0) + 3.0 * day.sin() + 3.0 * noise,
            2 => 35.0 + 25.0 * level(0) + 0.5 * day.sin() + 0.6 * noise,
            3 => 80.0 + 60.0 * level(0) + 20.0 * day.sin() + 12.0 * noise,
            4 => (1.0 + 2.0 * level(0) + 1.5 * noise + 0.8 * day.sin()).max(0.0),
            _ => 45.0 + 10.0 * level(0) + 4.0 * day.sin() + 1.0 * noise,
        };
        // Nightly backup: disk and cpu rise for an hour after 02:00 (benign, every day).
        let minute_of_day = ts.rem_euclid(86_400) / 60;
        if (120..180).contains(&minute_of_day) && (metric == 0 || metric == 2) {
            v += if metric == 0 { 12.0 } else { 2.0 };
        }
        for &(a, m, start, minutes) in &self.benign {
            if a == asset && m == metric && ts >= start && ts < start + minutes * 60 {
                v += if m == 0 { 35.0 } else { 150.0 };
            }
        }
        for (i, s) in self.scenarios.iter().enumerate() {
            if s.asset != asset || ts < s.start {
                continue;
            }
            let stop = healed(i).unwrap_or(s.fail_at + Scenario::DOWN_SECS);
            if ts >= stop {
                continue;
            }
            let r = ((ts - s.start) as f64 / (s.fail_at - s.start) as f64).min(1.0);
            let burst = unit(key(seed, asset as u64, 7, ts as u64));
            v += match (s.fault, metric) {
                (Fault::MemoryLeak, 1) => 45.0 * r,
                (Fault::DiskFilling, 2) => 55.0 * r,
                (Fault::LatencyCreep, 3) => 400.0 * r * r,
                (Fault::ErrorBurst, 4) => 40.0 * r * r * (0.5 + burst),
                (Fault::ThermalDrift, 5) => 30.0 * r,
                (Fault::BadDeploy, 4) => 10.0 + 15.0 * r,
                (Fault::BadDeploy, 3) => 90.0 + 60.0 * r,
                _ => 0.0,
            };
        }
        v
    }

    /// Grid times of the range.
    pub fn times(&self) -> impl Iterator<Item = i64> + '_ {
        (self.from..self.to).step_by(self.params.step_secs.max(1) as usize)
    }

    /// What an operator recorded after scenario `i` failed, for about `share` of failures
    /// (seeded): the actions tried, in order, up to two wrong ones and last the fault's right
    /// action, which healed it. The history's incident outcomes (`vigil simulate`).
    pub fn operator_record(&self, i: usize, share: f64) -> Option<Vec<&'static str>> {
        let seed = self.params.seed;
        if unit(key(seed, i as u64, 7, 0)) >= share {
            return None;
        }
        let right = self.scenarios.get(i)?.fault.right_action();
        let wrong: Vec<&'static str> = Fault::ALL
            .iter()
            .map(|f| f.right_action())
            .filter(|&a| a != right)
            .collect();
        let n_wrong = (unit(key(seed, i as u64, 7, 1)) * 3.0) as usize;
        let mut tried = Vec::new();
        for k in 0..n_wrong {
            let pick = unit(key(seed, i as u64, 7, 2 + k as u64)) * wrong.len() as f64;
            let pick = wrong[(pick as usize).min(wrong.len() - 1)];
            if !tried.contains(&pick) {
                tried.push(pick);
            }
        }
        tried.push(right);
        Some(tried)
    }

    /// The failures of the range when nothing heals anything.
    pub fn failures(&self) -> Vec<Failure> {
        self.scenarios
            .iter()
            .map(|s| Failure {
                asset: self.assets[s.asset].clone(),
                kind: s.fault.kind().to_owned(),
                started: s.fail_at,
                resolved: Some(s.fail_at + Scenario::DOWN_SECS),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_records_end_with_the_right_action() {
        let fleet = fleet();
        let records: Vec<_> = (0..fleet.scenarios.len())
            .filter_map(|i| fleet.operator_record(i, 0.5).map(|r| (i, r)))
            .collect();
        assert!(records.len() > fleet.scenarios.len() / 5, "{records:?}");
        assert!(records.len() < fleet.scenarios.len(), "{records:?}");
        assert!(records.iter().any(|(_, r)| r.len() > 1), "some wrong tries");
        for (i, tried) in &records {
            let right = fleet.scenarios[*i].fault.right_action();
            assert_eq!(tried.last(), Some(&right));
            assert_eq!(tried.iter().filter(|&&a| a == right).count(), 1);
            assert!(tried.len() <= 3);
        }
        assert!(fleet.operator_record(0, 0.0).is_none());
        assert_eq!(fleet.operator_record(0, 1.0), fleet.operator_record(0, 1.0));
    }

    fn fleet() -> Fleet {
        let params = FleetParams {
            assets: 6,
            ..FleetParams::default()
        };
        Fleet::new(params, 1_700_000_000, 1_700_000_000 + 20 * 86_400)
    }

    #[test]
    fn the_same_seed_gives_the_same_fleet_and_values() {
        let (a, b) = (fleet(), fleet());
        assert_eq!(a.scenarios, b.scenarios);
        let none = |_| None;
        assert_eq!(
            a.value(2, 3, a.from + 600, &none),
            b.value(2, 3, b.from + 600, &none)
        );
        assert!(!a.scenarios.is_empty());
        let kinds: std::collections::HashSet<_> = a.scenarios.iter().map(|s| s.fault).collect();
        assert!(kinds.len() >= 4, "faults vary: {kinds:?}");
    }

    #[test]
    fn precursors_build_up_and_stop_when_healed() {
        let f = fleet();
        let s = f.scenarios[0];
        let metric = match s.fault {
            Fault::MemoryLeak => 1,
            Fault::DiskFilling => 2,
            Fault::LatencyCreep | Fault::BadDeploy => 3,
            Fault::ErrorBurst => 4,
            Fault::ThermalDrift => 5,
        };
        let none = |_| None;
        let before = f.value(s.asset, metric, s.start - 60, &none);
        let late = f.value(s.asset, metric, s.fail_at - 60, &none);
        assert!(late > before + 5.0, "{:?}: {before} -> {late}", s.fault);
        let healed_at = s.start + 300;
        let healed = |i: usize| (i == 0).then_some(healed_at);
        let after = f.value(s.asset, metric, s.fail_at - 60, &healed);
        assert!(
            (after - before).abs() < late - before,
            "healing stops the precursor"
        );
        // No overlapping faults on one asset, and each ends before the range does.
        for w in f.scenarios.windows(2) {
            if w[0].asset == w[1].asset {
                assert!(w[1].start > w[0].fail_at);
            }
        }
        assert!(f.scenarios.iter().all(|s| s.fail_at < f.to));
        assert_eq!(f.failures().len(), f.scenarios.len());
    }
}
