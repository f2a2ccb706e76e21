//! `vigil replay`: the learning loop's benchmark on a generated stream (no database).

use clap::Args;

use crate::sim::replay::{self, KINDS, ReplayParams};

/// Flags of `vigil replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Incidents in the action stream.
    #[arg(long, default_value_t = 600)]
    pub incidents: usize,
    /// Labelled alerts fed back to the threshold adapter.
    #[arg(long, default_value_t = 200)]
    pub labelled_alerts: usize,
    /// Seed of the generated streams.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also run this many seeds (seed, seed + 1, ...) and print one summary line each.
    #[arg(long, default_value_t = 10)]
    pub seeds: u64,
}

/// `vigil replay`.
pub fn replay(args: &ReplayArgs) -> anyhow::Result<()> {
    let params = ReplayParams {
        incidents: args.incidents,
        labelled_alerts: args.labelled_alerts,
        seed: args.seed,
        ..ReplayParams::default()
    };
    println!(
        "Action choice: {} incidents over {} failure kinds, each with one right action (heals \
         with p = {}, any other with p = {}); Thompson sampling from uniform priors.",
        params.incidents,
        KINDS.len(),
        params.p_right,
        params.p_wrong
    );
    let actions = replay::replay_actions(&params);
    println!(
        "{:>12} {:>14} {:>18}",
        "incidents", "right action", "cumulative regret"
    );
    for b in &actions.blocks {
        println!(
            "{:>5}..{:<5} {:>13.0}% {:>18.1}",
            b.from,
            b.to,
            100.0 * b.right,
            b.cumulative_regret
        );
    }
    println!(
        "Right action after the 20th incident of each kind: {:.1}% (target 90%).",
        100.0 * actions.right_after_20
    );
    println!();
    println!(
        "Thresholds: {} labelled alerts (plus missed failures) fed to the adapter, one failure \
         in {:.0} windows; evaluated on the same {} windows before and after.",
        params.labelled_alerts,
        1.0 / params.failure_rate,
        params.eval_windows
    );
    let t = replay::replay_thresholds(&params);
    println!(
        "{:>10} {:>10} {:>13} {:>15}",
        "", "threshold", "false alarms", "failures caught"
    );
    println!(
        "{:>10} {:>10.3} {:>13} {:>9} of {}",
        "before", t.before, t.false_alarms.0, t.caught.0, t.failures
    );
    println!(
        "{:>10} {:>10.3} {:>13} {:>9} of {}",
        "after", t.after, t.false_alarms.1, t.caught.1, t.failures
    );
    let fewer = 1.0 - t.false_alarms.1 as f64 / t.false_alarms.0.max(1) as f64;
    let kept = t.caught.1 as f64 / t.caught.0.max(1) as f64;
    println!(
        "False alarms down {:.1}% (target 50%), failures caught {:.1}% of before (target 95%), \
         {} threshold moves.",
        100.0 * fewer,
        100.0 * kept,
        t.moves
    );
    if args.seeds > 1 {
        println!();
        println!(
            "{:>6} {:>16} {:>18} {:>20}",
            "seed", "right after 20", "false alarms down", "failures kept"
        );
        let (mut met_actions, mut met_thresholds) = (0, 0);
        for seed in args.seed..args.seed + args.seeds {
            let p = ReplayParams {
                seed,
                ..params.clone()
            };
            let a = replay::replay_actions(&p);
            let t = replay::replay_thresholds(&p);
            let fewer = 1.0 - t.false_alarms.1 as f64 / t.false_alarms.0.max(1) as f64;
            let kept = t.caught.1 as f64 / t.caught.0.max(1) as f64;
            met_actions += usize::from(a.right_after_20 >= 0.9);
            met_thresholds += usize::from(fewer >= 0.5 && kept >= 0.95);
            println!(
                "{seed:>6} {:>15.1}% {:>17.1}% {:>19.1}%",
                100.0 * a.right_after_20,
                100.0 * fewer,
                100.0 * kept
            );
        }
        println!(
            "Seeds meeting the action target: {met_actions} of {}; the threshold targets (both): \
             {met_thresholds} of {}.",
            args.seeds, args.seeds
        );
    }
    Ok(())
}
