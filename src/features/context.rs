//! An asset's own recent past, which each window is compared with: the metric's mean and
//! standard deviation over the [`CONTEXT_BLOCKS`] hours before the window's hour, and its mean
//! over the last of those hours (so that a level that moved recently shows apart from one that
//! has held for a day).
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

/// What one metric's window is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Context {
    /// Mean over the past day's grid points.
    pub mean: f64,
    /// Population standard deviation over the same.
    pub std: f64,
    /// Mean over the last hour before the window's hour, when it has points.
    pub recent_mean: Option<f64>,
}

impl Context {
    /// The context from the stats of the [`CONTEXT_BLOCKS`] blocks before a window's block,
    /// oldest first (a block without data has `n = 0`); `None` with fewer than an hour's worth
    /// of grid points of `step_secs`.
    pub fn from_blocks(blocks: &[BlockStats], step_secs: i64) -> Option<Context> {
        let all = blocks
            .iter()
            .fold(BlockStats::default(), |acc, b| acc.merge(*b));
        if i64::from(all.n) < min_points(step_secs) {
            return None;
        }
        Some(Context {
            mean: all.mean,
            std: (all.m2 / f64::from(all.n)).max(0.0).sqrt(),
            recent_mean: blocks.last().filter(|b| b.n > 0).map(|b| b.mean),
        })
    }
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
/// missing): the first block's number and each block's stats, in order.
pub fn grid_blocks(start: i64, step_secs: i64, values: &[f64]) -> (i64, Vec<BlockStats>) {
    let first = block_of(start);
    let mut blocks = Vec::new();
    let mut k = 0;
    while k < values.len() {
        let block = block_of(start + k as i64 * step_secs);
        let block_end = (block + 1) * BLOCK_SECS;
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
    for (i, slot) in past.iter_mut().enumerate() {
        let b = block - CONTEXT_BLOCKS + i as i64;
        if b >= first
            && let Some(stats) = blocks.get((b - first) as usize)
        {
            *slot = *stats;
        }
    }
    Context::from_blocks(&past, step_secs)
}

/// The first grid point of the past a window in block `block` is compared with, and the
/// number of grid points up to the block's start.
pub fn past_grid(block: i64, step_secs: i64) -> (i64, usize) {
    let from = (block - CONTEXT_BLOCKS) * BLOCK_SECS;
    let start = from.div_euclid(step_secs) * step_secs
        + if from.rem_euclid(step_secs) == 0 {
            0
        } else {
            step_secs
        };
    let end = block * BLOCK_SECS;
    let points = ((end - start) + step_secs - 1) / step_secs;
    (start, points.max(0) as usize)
}

/// The context of a window whose first grid point falls in block `block`, from one metric's
/// samples (`ts` ascending; they should reach `max_fill` steps before the past's start),
/// put on the grid as training puts them ([`resample_grid`]).
pub fn context_of_history(
    history: &MetricHistory,
    block: i64,
    step_secs: i64,
    max_fill: usize,
) -> Option<Context> {
    let (start, points) = past_grid(block, step_secs);
    let grid = resample_grid(
        &history.ts,
        &history.values,
        start,
        points,
        step_secs,
        max_fill,
    );
    let (first, blocks) = grid_blocks(start, step_secs, &grid);
    context_at(first, &blocks, block, step_secs)
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
        let (first, blocks) = grid_blocks(start, step, &grid);
        assert_eq!(blocks.len(), 48);
        assert_eq!(context_at(first, &blocks, block, step), Some(c));
        // Less than an hour of past is no context.
        assert_eq!(context_at(first, &blocks, first, step), None);
        assert!(context_at(first, &blocks, first + 1, step).is_some());
    }
}
