//! Each asset's past, as serving compares windows with it ([`crate::features::context`]):
//! read from the asset's stored samples of the day before a window's hour, put on the grid
//! as training puts them, and kept per asset until the hour (or the active model) changes,
//! so that scoring reads an asset's past once an hour, not once per window.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::features::context::{block_of, context_of_history, past_grid};
use crate::features::{Context, FeatureSchema};

/// Assets kept at most; past it the cache starts over (a fleet that large re-reads each
/// asset's past at most once an hour anyway).
const MAX_ASSETS: usize = 100_000;

/// An asset's past per metric (`None`: no stored sample in it).
pub type Past = Option<Arc<BTreeMap<String, Context>>>;

#[derive(Debug)]
struct Entry {
    model_id: i64,
    block: i64,
    past: Past,
}

/// The cache of the assets' pasts.
#[derive(Debug, Default)]
pub struct ContextCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl ContextCache {
    /// The cached past of `asset` for a window in block `block` under model `model_id`.
    pub fn get(&self, asset: &str, model_id: i64, block: i64) -> Option<Past> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(asset)
            .filter(|e| e.model_id == model_id && e.block == block)
            .map(|e| e.past.clone())
    }

    /// Keeps `past` as the past of `asset` for block `block` under model `model_id`.
    pub fn put(&self, asset: &str, model_id: i64, block: i64, past: Past) {
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

/// The block of a window of `schema` ending at `end` (Unix seconds): the block of its first
/// grid point.
pub fn window_block(schema: &FeatureSchema, end: i64) -> i64 {
    let end = end.div_euclid(schema.step_secs) * schema.step_secs;
    block_of(end - (schema.window as i64 - 1) * schema.step_secs)
}

/// The grid the past of a window in block `block` is read on: from `max_fill` steps before
/// the past's first grid point (which a carried-forward value may come from) to its last.
pub fn past_read_grid(block: i64, step_secs: i64, max_fill: usize) -> (i64, i64) {
    let (start, points) = past_grid(block, step_secs);
    let last = start + (points.max(1) as i64 - 1) * step_secs;
    (start - max_fill as i64 * step_secs, last)
}

/// The pasts of a window in block `block` from the asset's series read on
/// [`past_read_grid`]; `None` when no metric has one.
pub fn past_of(
    series: &[(String, crate::vocab::MetricHistory)],
    block: i64,
    schema: &FeatureSchema,
) -> Past {
    let pasts: BTreeMap<String, Context> = series
        .iter()
        .filter_map(|(metric, history)| {
            let c = context_of_history(history, block, schema.step_secs, schema.max_fill)?;
            Some((metric.clone(), c))
        })
        .collect();
    (!pasts.is_empty()).then(|| Arc::new(pasts))
}
