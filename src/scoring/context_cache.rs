//! Each asset's past, as serving compares windows with it ([`crate::features::context`]):
//! read from the asset's stored samples of the day before a window's hour, put on the grid
//! as training puts them, and kept per asset until the hour (or the active model) changes,
//! so that scoring reads an asset's past once an hour, not once per window.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::features::context::{
    Spread, block_of, context_of_history, day_of, past_grid, week_grid, week_of_history,
};
use crate::features::{Context, FeatureSchema};

/// Assets kept at most; past it the cache starts over (a fleet that large re-reads each
/// asset's past at most once an hour anyway).
const MAX_ASSETS: usize = 100_000;

/// An asset's past per metric (`None`: no stored sample in it).
pub type Past = Option<Arc<BTreeMap<String, Context>>>;

/// An asset's week per metric.
pub type Week = Option<Arc<BTreeMap<String, Spread>>>;

#[derive(Debug)]
struct Entry<T> {
    model_id: i64,
    block: i64,
    past: T,
}

/// A cache of the assets' pasts (`T`: [`Past`] by hour, [`Week`] by day).
#[derive(Debug)]
pub struct ContextCache<T> {
    entries: Mutex<HashMap<String, Entry<T>>>,
}

impl<T> Default for ContextCache<T> {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
        }
    }
}

impl<T: Clone> ContextCache<T> {
    /// The cached past of `asset` for a window in block `block` under model `model_id`.
    pub fn get(&self, asset: &str, model_id: i64, block: i64) -> Option<T> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(asset)
            .filter(|e| e.model_id == model_id && e.block == block)
            .map(|e| e.past.clone())
    }

    /// Keeps `past` as the past of `asset` for block `block` under model `model_id`.
    pub fn put(&self, asset: &str, model_id: i64, block: i64, past: T) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ASSETS && !entries.contains_key(asset) {
            entries.clear();
        }
        entries.insert(
            asset.to_owned(),
            Entry {
                model_id,
                block,
                past,
            },
        );
    }
}

/// The first grid point of a window of `schema` ending at `end` (Unix seconds).
pub fn window_start(schema: &FeatureSchema, end: i64) -> i64 {
    let end = end.div_euclid(schema.step_secs) * schema.step_secs;
    end - (schema.window as i64 - 1) * schema.step_secs
}

/// The hour block of a window of `schema` ending at `end`.
pub fn window_block(schema: &FeatureSchema, end: i64) -> i64 {
    block_of(window_start(schema, end))
}

/// The day of a window of `schema` ending at `end`.
pub fn window_day(schema: &FeatureSchema, end: i64) -> i64 {
    day_of(window_start(schema, end))
}

/// The grid (first and last point) a past of grid `grid` (first point, points) is read on:
/// from `max_fill` steps before its first point (which a carried-forward value may come from)
/// to its last.
fn read_grid((start, points): (i64, usize), step_secs: i64, max_fill: usize) -> (i64, i64) {
    let last = start + (points.max(1) as i64 - 1) * step_secs;
    (start - max_fill as i64 * step_secs, last)
}

/// The grid the day's past of a window in block `block` is read on.
pub fn past_read_grid(block: i64, step_secs: i64, max_fill: usize) -> (i64, i64) {
    read_grid(past_grid(block, step_secs), step_secs, max_fill)
}

/// The grid the week's past of a window in day `day` is read on.
pub fn week_read_grid(day: i64, step_secs: i64, max_fill: usize) -> (i64, i64) {
    read_grid(week_grid(day, step_secs), step_secs, max_fill)
}

/// The pasts of a window in block `block` from the asset's series read on
/// [`past_read_grid`], each with its metric's week from `week`; `None` when no metric has one.
pub fn past_of(
    series: &[(String, crate::vocab::MetricHistory)],
    block: i64,
    week: &Week,
    schema: &FeatureSchema,
) -> Past {
    let pasts: BTreeMap<String, Context> = series
        .iter()
        .filter_map(|(metric, history)| {
            let mut c = context_of_history(history, block, schema.step_secs, schema.max_fill)?;
            c.week = week.as_ref().and_then(|w| w.get(metric).copied());
            Some((metric.clone(), c))
        })
        .collect();
    (!pasts.is_empty()).then(|| Arc::new(pasts))
}

/// The weeks of a window in day `day` from the asset's series read on [`week_read_grid`];
/// `None` when no metric has one.
pub fn week_of(
    series: &[(String, crate::vocab::MetricHistory)],
    day: i64,
    schema: &FeatureSchema,
) -> Week {
    let weeks: BTreeMap<String, Spread> = series
        .iter()
        .filter_map(|(metric, history)| {
            let w = week_of_history(history, day, schema.step_secs, schema.max_fill)?;
            Some((metric.clone(), w))
        })
        .collect();
    (!weeks.is_empty()).then(|| Arc::new(weeks))
}
