//! An asset's own recent past, which each window is compared with: the metric's mean and
//! standard deviation over the [`CONTEXT_BLOCKS`] hours before the window's hour, its mean
//! over the last of those hours (so that a level that moved recently shows apart from one that
//! has held for a day), and its mean and standard deviation over the [`WEEK_DAYS`] whole days
//! before the window's day (a level that crept up over a day, which the day's own past has
//! absorbed, still shows against the week).
//!
//! The past is cut in whole hours ([`BLOCK_SECS`], aligned to the Unix epoch): a window whose
//! first grid point falls in hour `b` is compared with the grid points of hours `b - 24 ..
//! b`. Both training (one long grid per asset) and serving (a grid read for the hours before
//! the window, cached per asset and hour) compute each hour's [`BlockStats`] from the same
//! grid values with the same function and merge them in the same order, so they agree bit for
//! bit. A past with fewer than an hour's worth of grid points is no context.
//!
//! This module does no IO.

use serde::{Deserialize, Serialize};

use super::resample_grid;
use crate::vocab::MetricHistory;

/// Length of one block of the past, in seconds.
pub const BLOCK_SECS: i64 = 3600;

/// Blocks of the past a window is compared with (24 hours).
pub const CONTEXT_BLOCKS: i64 = 24;

/// Length of one day, the block of the longer past.
pub const DAY_SECS: i64 = 86_400;

/// Days of the longer past.
pub const WEEK_DAYS: i64 = 7;

/// Count, mean and sum of squared deviations of the finite grid values of one block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockStats {
    pub n: u32,
    pub mean: f64,
    pub m2: f64,
}

impl BlockStats {
    /// The stats of `values`' finite values, in order (Welford's update).
    pub fn of(values: &[f64]) -> Self {
        let mut s = Self::default();
        for &v in values.iter().filter(|v| v.is_finite()) {
            s.n += 1;
            let d = v - s.mean;
            s.mean += d / f64::from(s.n);
            s.m2 += d * (v - s.mean);
        }
        s
    }

    /// The stats of both blocks' values together (Chan's update).
    pub fn merge(self, other: Self) -> Self {
        if other.n == 0 {
            return self;
        }
        if self.n == 0 {
            return other;
        }
        let n = f64::from(self.n + other.n);
        let d = other.mean - self.mean;
        Self {
            n: self.n + other.n,
            mean: self.mean + d * f64::from(other.n) / n,
            m2: self.m2 + other.m2 + d * d * f64::from(self.n) * f64::from(other.n) / n,
        }
    }
}

/// Mean and population standard deviation of a stretch of the past.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Spread {
    pub mean: f64,
    pub std: f64,
}

impl Spread {
    /// The spread of merged stats with at least `min` points (and at least 2).
    pub fn of(stats: BlockStats, min: i64) -> Option<Spread> {
        (i64::from(stats.n) >= min.max(2)).then(|| Spread {
            mean: stats.mean,
            std: (stats.m2 / f64::from(stats.n)).max(0.0).sqrt(),
        })
    }
}

/// What one metric's window is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Context {
    /// Mean over the past day's grid points.
    pub mean: f64,
    /// Population standard deviation over the same.
    pub std: f64,
    /// Mean over the last hour before the window's hour, when it has points.
    pub recent_mean: Option<f64>,
    /// The [`WEEK_DAYS`] whole days before the window's day, when they hold at least a day's
    /// worth of points.
    #[serde(default)]
    pub week: Option<Spread>,
}

impl Context {
    /// The context from the stats of the [`CONTEXT_BLOCKS`] blocks before a window's block,
    /// oldest first (a block without data has `n = 0`); `None` with fewer than an hour's worth
    /// of grid points of `step_secs`.
    pub fn from_blocks(blocks: &[BlockStats], step_secs: i64) -> Option<Context> {
        let all = merged(blocks);
        let day = Spread::of(all, min_points(step_secs))?;
        Some(Context {
            mean: day.mean,
            std: day.std,
            recent_mean: blocks.last().filter(|b| b.n > 0).map(|b| b.mean),
            week: None,
        })
    }
}

fn merged(blocks: &[BlockStats]) -> BlockStats {
    blocks
        .iter()
        .fold(BlockStats::default(), |acc, b| acc.merge(*b))
}

/// Fewest grid points a context needs: an hour's worth, and at least 2.
pub fn min_points(step_secs: i64) -> i64 {
    (BLOCK_SECS / step_secs.max(1)).max(2)
}

/// The block a time (Unix seconds) falls in.
pub fn block_of(t: i64) -> i64 {
    t.div_euclid(BLOCK_SECS)
}

/// Per-block stats of one metric's grid (`values[k]` at `start + k * step_secs`, NaN where
/// missing), in blocks of `block_secs` aligned to the epoch: the first block's number and each
/// block's stats, in order.
pub fn grid_blocks(
    start: i64,
    step_secs: i64,
    values: &[f64],
    block_secs: i64,
) -> (i64, Vec<BlockStats>) {
    let first = start.div_euclid(block_secs);
    let mut blocks = Vec::new();
    let mut k = 0;
    while k < values.len() {
        let block = (start + k as i64 * step_secs).div_euclid(block_secs);
        let block_end = (block + 1) * block_secs;
        // Grid points before the block's end.
        let end = (((block_end - start) + step_secs - 1) / step_secs).min(values.len() as i64);
        let end = end as usize;
        blocks.resize((block - first) as usize, BlockStats::default());
        blocks.push(BlockStats::of(&values[k..end]));
        k = end;
    }
    (first, blocks)
}

/// The context of a window whose first grid point falls in block `block`, from per-block
/// stats that start at block `first` ([`grid_blocks`]); blocks outside them count as empty.
pub fn context_at(
    first: i64,
    blocks: &[BlockStats],
    block: i64,
    step_secs: i64,
) -> Option<Context> {
    let mut past = [BlockStats::default(); CONTEXT_BLOCKS as usize];
    fill(&mut past, first, blocks, block);
    Context::from_blocks(&past, step_secs)
}

/// Fills `past` with the stats of the blocks just before `block` (oldest first), from
/// stats that start at block `first`; blocks outside them stay empty.
fn fill(past: &mut [BlockStats], first: i64, blocks: &[BlockStats], block: i64) {
    let len = past.len() as i64;
    for (i, slot) in past.iter_mut().enumerate() {
        let b = block - len + i as i64;
        if b >= first
            && let Some(stats) = blocks.get((b - first) as usize)
        {
            *slot = *stats;
        }
    }
}

/// The longer past of a window whose first grid point falls in day `day`, from per-day stats
/// that start at day `first` ([`grid_blocks`] with [`DAY_SECS`]): `None` with less than a
/// day's worth of points.
pub fn week_at(first: i64, days: &[BlockStats], day: i64, step_secs: i64) -> Option<Spread> {
    let mut past = [BlockStats::default(); WEEK_DAYS as usize];
    fill(&mut past, first, days, day);
    Spread::of(merged(&past), DAY_SECS / step_secs.max(1))
}

/// The day a time (Unix seconds) falls in.
pub fn day_of(t: i64) -> i64 {
    t.div_euclid(DAY_SECS)
}

/// The grid points from `from` (Unix seconds, rounded up to the grid) to before `to`: the
/// first one and how many.
pub fn grid_between(from: i64, to: i64, step_secs: i64) -> (i64, usize) {
    let start = from.div_euclid(step_secs) * step_secs
        + if from.rem_euclid(step_secs) == 0 {
            0
        } else {
            step_secs
        };
    let points = ((to - start) + step_secs - 1) / step_secs;
    (start, points.max(0) as usize)
}

/// The grid of the day's past of a window in block `block`.
pub fn past_grid(block: i64, step_secs: i64) -> (i64, usize) {
    grid_between(
        (block - CONTEXT_BLOCKS) * BLOCK_SECS,
        block * BLOCK_SECS,
        step_secs,
    )
}

/// The grid of the week's past of a window in day `day`.
pub fn week_grid(day: i64, step_secs: i64) -> (i64, usize) {
    grid_between((day - WEEK_DAYS) * DAY_SECS, day * DAY_SECS, step_secs)
}

/// The day's past ([`Context`], without `week`) of a window whose first grid point falls in
/// block `block`, from one metric's samples (`ts` ascending; they should reach `max_fill`
/// steps before the past's start), put on the grid as training puts them ([`resample_grid`]).
pub fn context_of_history(
    history: &MetricHistory,
    block: i64,
    step_secs: i64,
    max_fill: usize,
) -> Option<Context> {
    let grid = past_grid(block, step_secs);
    let (first, blocks) = history_blocks(history, grid, step_secs, max_fill, BLOCK_SECS);
    context_at(first, &blocks, block, step_secs)
}

/// The week's past of a window whose first grid point falls in day `day`, from one metric's
/// samples, as [`context_of_history`] reads them.
pub fn week_of_history(
    history: &MetricHistory,
    day: i64,
    step_secs: i64,
    max_fill: usize,
) -> Option<Spread> {
    let grid = week_grid(day, step_secs);
    let (first, days) = history_blocks(history, grid, step_secs, max_fill, DAY_SECS);
    week_at(first, &days, day, step_secs)
}

/// [`grid_blocks`] of one metric's samples put on the grid `(start, points)`.
fn history_blocks(
    history: &MetricHistory,
    (start, points): (i64, usize),
    step_secs: i64,
    max_fill: usize,
    block_secs: i64,
) -> (i64, Vec<BlockStats>) {
    let grid = resample_grid(
        &history.ts,
        &history.values,
        start,
        points,
        step_secs,
        max_fill,
    );
    grid_blocks(start, step_secs, &grid, block_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_blocks_match_the_whole() {
        let values: Vec<f64> = (0..100).map(|k| ((k * 37) % 11) as f64 + 1e6).collect();
        let whole = BlockStats::of(&values);
        let parts = BlockStats::of(&values[..30]).merge(BlockStats::of(&values[30..]));
        assert_eq!(whole.n, parts.n);
        assert!((whole.mean - parts.mean).abs() < 1e-6);
        assert!((whole.m2 - parts.m2).abs() < 1e-6 * whole.m2);
        assert_eq!(BlockStats::of(&[f64::NAN]).n, 0);
    }

    #[test]
    fn a_day_of_history_gives_the_context_of_the_next_hour() {
        let step = 60;
        let block = 1000;
        // Two days of samples: 1.0 until the last hour before `block`, then 3.0.
        let ts: Vec<i64> = ((block - 48) * BLOCK_SECS..block * BLOCK_SECS)
            .step_by(step as usize)
            .collect();
        let values: Vec<f64> = ts
            .iter()
            .map(|&t| {
                if t >= (block - 1) * BLOCK_SECS {
                    3.0
                } else {
                    1.0
                }
            })
            .collect();
        let history = MetricHistory { ts, values };
        let c = context_of_history(&history, block, step, 2).unwrap();
        assert!((c.mean - (23.0 + 3.0) / 24.0).abs() < 1e-12);
        assert_eq!(c.recent_mean, Some(3.0));
        // The same from one long grid, as training cuts it.
        let start = history.ts[0];
        let grid = resample_grid(&history.ts, &history.values, start, 48 * 60, step, 2);
        let (first, blocks) = grid_blocks(start, step, &grid, BLOCK_SECS);
        assert_eq!(blocks.len(), 48);
        assert_eq!(context_at(first, &blocks, block, step), Some(c));
        // Less than an hour of past is no context.
        assert_eq!(context_at(first, &blocks, first, step), None);
        assert!(context_at(first, &blocks, first + 1, step).is_some());
        // The week: the whole days before the window's day, from the same samples or grid.
        let day = day_of(block * BLOCK_SECS);
        let week = week_of_history(&history, day, step, 2).unwrap();
        let (first_day, days) = grid_blocks(start, step, &grid, DAY_SECS);
        assert_eq!(week_at(first_day, &days, day, step), Some(week));
        let points = grid[..((day * DAY_SECS - start) / step) as usize].to_vec();
        let whole = BlockStats::of(&points);
        assert!((week.mean - whole.mean).abs() < 1e-12);
    }
}
