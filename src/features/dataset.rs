//! Training data: from whole metric histories and incidents to labelled feature matrices.
//!
//! Per asset, each metric is put on the grid once ([`resample_grid`]); windows of
//! `schema.window` points end every `stride` grid points, and each becomes one row through
//! [`extract`], the same call real-time scoring makes. A window is labelled 1 when a failure
//! of its asset starts within `horizon_secs` after its end; windows that overlap an incident
//! are left out. The split is by time, never at random: with the cutoff at `train_frac` of the
//! time range, train windows end at least one horizon before the cutoff (no train label looks
//! past it) and validation windows start after it. Each window is compared with its asset's
//! own past ([`super::context`]), cut from the same grid.
//!
//! Operators' feedback adds windows of its own ([`Label`], from alerts people marked true or
//! false alarms): the window ending at the alert's grid point, labelled as they said (a
//! true alarm is a failure even when an action healed the asset and no incident followed),
//! with the failure kind they gave. [`Part::labelled`] marks them, and for a false alarm
//! also the negative windows of its episode (ending within one window before the alert), so
//! training can weigh the false alarm's pattern as hard negatives.
//!
//! [`build`] labels every window but makes no feature: [`Dataset::features`] makes the rows
//! asked for. Training reads a small share of its windows (the failure model's samples, the
//! isolation forest's, the calibration slice), so the full training matrix is never built.

use std::borrow::Borrow;

use ndarray::Array2;
use rayon::prelude::*;

use super::context::{
    BLOCK_SECS, BlockStats, Context, DAY_SECS, block_of, context_at, day_of, grid_blocks, week_at,
};
use super::{FeatureSchema, extract, resample_grid};

pub use crate::vocab::MetricHistory;

/// One asset's histories, aligned with the schema's metrics (`None`: never reported).
#[derive(Debug, Clone, PartialEq)]
pub struct AssetHistory {
    /// Asset name.
    pub asset: String,
    /// Per schema metric.
    pub metrics: Vec<Option<MetricHistory>>,
}

/// A failure of an asset.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Asset name.
    pub asset: String,
    /// Failure kind.
    pub kind: String,
    /// Start, Unix seconds.
    pub started: i64,
    /// End, Unix seconds, when known.
    pub resolved: Option<i64>,
}

/// What an operator said about one window (feedback on the alert it raised).
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// Asset name.
    pub asset: String,
    /// End of the window that raised the alert, Unix seconds.
    pub end: i64,
    /// A true alarm: a failure was coming (whether or not an incident was recorded).
    pub failure: bool,
    /// The failure kind the operator gave, if any.
    pub kind: Option<String>,
}

/// What became of the [`Label`]s given to [`build_labelled`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LabelUse {
    /// True and false alarms among the training windows.
    pub train: (u64, u64),
    /// True and false alarms among the validation windows.
    pub validation: (u64, u64),
    /// Labels with a failure kind that were used.
    pub kinds: u64,
    /// Left out: outside the data or the split, overlapping an incident, or a false alarm
    /// that an incident within the horizon contradicts.
    pub skipped: u64,
}

/// How windows are cut, labelled and split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DatasetParams {
    /// Label horizon: a failure within this many seconds after the window end is a 1.
    pub horizon_secs: i64,
    /// Grid points between consecutive window ends.
    pub stride: usize,
    /// Fraction of the time range before the train/validation cutoff.
    pub train_frac: f64,
    /// Time to failure is capped here: a window with no failure of its asset within this
    /// many seconds after it (and that much data after it) has this target.
    pub ttf_cap_secs: i64,
}

/// Labelled windows of one side of the split; [`Dataset::features`] makes their features.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// Labels.
    pub y: Vec<bool>,
    /// Index into [`Dataset::assets`] of each window's asset.
    pub asset: Vec<u32>,
    /// Window end, Unix seconds.
    pub end: Vec<i64>,
    /// Kind of the failure a positive window precedes (index into [`Dataset::kinds`]).
    pub kind: Vec<Option<u32>>,
    /// Seconds from the window end to the asset's next failure, capped at
    /// `ttf_cap_secs`; `None` when unknown (no failure follows, and the data ends before
    /// the cap).
    pub ttf: Vec<Option<f64>>,
    /// Windows with at least one missing metric.
    pub with_missing: usize,
    /// Windows labelled by an operator's feedback ([`Label`]), and the negative windows of a
    /// false alarm's episode.
    pub labelled: Vec<bool>,
    /// Each window's last point on its asset's grid.
    last_point: Vec<usize>,
}

impl Part {
    /// Number of windows.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// True when there is no window.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Number of positive windows.
    pub fn positives(&self) -> usize {
        self.y.iter().filter(|&&y| y).count()
    }

    /// This part's windows followed by `other`'s (both of one [`Dataset`]): the training
    /// and validation windows together, for a model fitted again on all of them.
    pub fn joined(&self, other: &Part) -> Part {
        Part {
            y: [&self.y[..], &other.y].concat(),
            asset: [&self.asset[..], &other.asset].concat(),
            end: [&self.end[..], &other.end].concat(),
            kind: [&self.kind[..], &other.kind].concat(),
            ttf: [&self.ttf[..], &other.ttf].concat(),
            with_missing: self.with_missing + other.with_missing,
            labelled: [&self.labelled[..], &other.labelled].concat(),
            last_point: [&self.last_point[..], &other.last_point].concat(),
        }
    }
}

/// The training and validation parts, with what produced them.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The schema the features follow.
    pub schema: FeatureSchema,
    /// Asset names.
    pub assets: Vec<String>,
    /// Failure kinds.
    pub kinds: Vec<String>,
    /// Train/validation cutoff, Unix seconds.
    pub cutoff: i64,
    /// First and last sample time, Unix seconds.
    pub range: (i64, i64),
    /// Windows before the cutoff.
    pub train: Part,
    /// Windows after the cutoff.
    pub validation: Part,
    /// What became of the operators' labels.
    pub labels: LabelUse,
    /// Each asset's metrics on the grid, per schema metric.
    grids: Vec<Vec<Option<Grid>>>,
    /// Each asset's first grid point, Unix seconds.
    starts: Vec<i64>,
}

impl Dataset {
    /// The features of windows `rows` of `part` (one of this dataset's), one row each in
    /// the order given, made by [`extract`] in parallel.
    pub fn features(&self, part: &Part, rows: &[usize]) -> Array2<f64> {
        const CHUNK: usize = 256;
        let n_features = self.schema.len();
        let mut x = vec![0.0; rows.len() * n_features];
        x.par_chunks_mut((CHUNK * n_features).max(1))
            .zip(rows.par_chunks(CHUNK))
            .for_each(|(block, rows)| {
                let mut window: Vec<Option<&[f64]>> = vec![None; self.schema.metrics.len()];
                let mut contexts = Vec::with_capacity(self.schema.metrics.len());
                for (row, &i) in block.chunks_exact_mut(n_features.max(1)).zip(rows) {
                    let asset = part.asset[i] as usize;
                    let first_point = part.last_point[i] + 1 - self.schema.window;
                    window_of(
                        &self.grids[asset],
                        first_point,
                        part.last_point[i],
                        &mut window,
                    );
                    let at = self.starts[asset] + first_point as i64 * self.schema.step_secs;
                    self.contexts_into(asset, at, &mut contexts);
                    // Cannot fail: windows without a usable metric were left out.
                    let _ = extract(&self.schema, &window, &contexts, row);
                }
            });
        Array2::from_shape_vec((rows.len(), n_features), x).expect("rows have the schema's width")
    }

    /// Asset `asset`'s past of each schema metric for a window starting at `at` (Unix
    /// seconds).
    fn contexts_into(&self, asset: usize, at: i64, out: &mut Vec<Option<Context>>) {
        out.clear();
        let grids = &self.grids[asset];
        let step = self.schema.step_secs;
        out.extend((0..self.schema.metrics.len()).map(|m| {
            let g = grids.get(m)?.as_ref()?;
            let mut context = context_at(g.first_block, &g.blocks, block_of(at), step)?;
            context.week = week_at(g.first_day, &g.days, day_of(at), step);
            Some(context)
        }));
    }

    /// Each asset's past of each schema metric as a window starting after its data would
    /// see it: what scoring uses for an asset with nothing ingested since training.
    pub fn latest_contexts(&self) -> Vec<Vec<Option<Context>>> {
        (0..self.assets.len())
            .map(|asset| {
                let points = self.grids[asset]
                    .iter()
                    .flatten()
                    .map(|g| g.values.len())
                    .max()
                    .unwrap_or(0);
                let after = self.starts[asset] + points as i64 * self.schema.step_secs;
                let mut out = Vec::new();
                self.contexts_into(asset, after, &mut out);
                out
            })
            .collect()
    }

    /// The features of every window of `part`.
    pub fn all_features(&self, part: &Part) -> Array2<f64> {
        self.features(part, &(0..part.len()).collect::<Vec<_>>())
    }
}

/// The windows of one asset on one side of the split, before their features: each one's
/// last grid point and labels.
#[derive(Default)]
struct Rows {
    last_point: Vec<usize>,
    y: Vec<bool>,
    end: Vec<i64>,
    kind: Vec<Option<u32>>,
    ttf: Vec<Option<f64>>,
    with_missing: usize,
    labelled: Vec<bool>,
}

impl Rows {
    fn reserve(&mut self, rows: usize) {
        self.last_point.reserve_exact(rows);
        self.y.reserve_exact(rows);
        self.end.reserve_exact(rows);
        self.kind.reserve_exact(rows);
        self.ttf.reserve_exact(rows);
        self.labelled.reserve_exact(rows);
    }
}

/// Builds the dataset. `failures` may be in any order; unknown assets are ignored.
pub fn build<H: Borrow<AssetHistory> + Sync>(
    schema: &FeatureSchema,
    histories: &[H],
    failures: &[Failure],
    params: &DatasetParams,
) -> Dataset {
    build_labelled(schema, histories, failures, &[], params)
}

/// [`build`], plus one window for each operator's label.
pub fn build_labelled<H: Borrow<AssetHistory> + Sync>(
    schema: &FeatureSchema,
    histories: &[H],
    failures: &[Failure],
    labels: &[Label],
    params: &DatasetParams,
) -> Dataset {
    let range = time_range(histories);
    let cutoff = range.0 + ((range.1 - range.0) as f64 * params.train_frac) as i64;
    let mut kinds: Vec<String> = failures
        .iter()
        .map(|f| f.kind.clone())
        .chain(labels.iter().filter_map(|l| l.kind.clone()))
        .collect();
    kinds.sort();
    kinds.dedup();
    let per_asset: Vec<AssetWindows> = histories
        .par_iter()
        .map(|history| {
            let history = history.borrow();
            let mut mine: Vec<&Failure> = failures
                .iter()
                .filter(|f| f.asset == history.asset)
                .collect();
            mine.sort_by_key(|f| f.started);
            let said: Vec<&Label> = labels.iter().filter(|l| l.asset == history.asset).collect();
            asset_windows(schema, history, &mine, &said, &kinds, params, cutoff)
        })
        .collect();
    let train = part(&per_asset, |a| &a.train);
    let validation = part(&per_asset, |a| &a.validation);
    let mut use_ = LabelUse::default();
    for a in &per_asset {
        let u = a.labels;
        use_.train = (use_.train.0 + u.train.0, use_.train.1 + u.train.1);
        use_.validation = (
            use_.validation.0 + u.validation.0,
            use_.validation.1 + u.validation.1,
        );
        use_.kinds += u.kinds;
    }
    // Labels of assets without history are skipped too.
    let used = use_.train.0 + use_.train.1 + use_.validation.0 + use_.validation.1;
    use_.skipped = labels.len() as u64 - used;
    let (starts, grids) = per_asset.into_iter().map(|a| (a.start, a.grids)).unzip();
    Dataset {
        schema: schema.clone(),
        assets: histories.iter().map(|h| h.borrow().asset.clone()).collect(),
        kinds,
        train,
        validation,
        labels: use_,
        starts,
        grids,
        cutoff,
        range,
    }
}

fn time_range<H: Borrow<AssetHistory>>(histories: &[H]) -> (i64, i64) {
    let mut range = (i64::MAX, i64::MIN);
    for metric in histories
        .iter()
        .flat_map(|h| h.borrow().metrics.iter().flatten())
    {
        if let (Some(first), Some(last)) = (metric.ts.first(), metric.ts.last()) {
            range.0 = range.0.min(*first);
            range.1 = range.1.max(*last);
        }
    }
    if range.0 > range.1 { (0, 0) } else { range }
}

/// One asset's grids (from `start`), and its windows on each side of the split.
struct AssetWindows {
    start: i64,
    grids: Vec<Option<Grid>>,
    train: Rows,
    validation: Rows,
    labels: LabelUse,
}

/// One metric on the grid, with the count of gap points (NaN) before each point (a window
/// has a gap when the counts at its two ends differ) and the stats of each block of the grid,
/// from which each window's past is cut.
#[derive(Debug, Clone, PartialEq)]
struct Grid {
    values: Vec<f64>,
    gaps: Vec<u32>,
    first_block: i64,
    blocks: Vec<BlockStats>,
    first_day: i64,
    days: Vec<BlockStats>,
}

impl Grid {
    fn new(values: Vec<f64>, start: i64, step_secs: i64) -> Self {
        let mut gaps = Vec::with_capacity(values.len() + 1);
        gaps.push(0);
        for v in &values {
            gaps.push(gaps[gaps.len() - 1] + u32::from(v.is_nan()));
        }
        let (first_block, blocks) = grid_blocks(start, step_secs, &values, BLOCK_SECS);
        let (first_day, days) = grid_blocks(start, step_secs, &values, DAY_SECS);
        Self {
            values,
            gaps,
            first_block,
            blocks,
            first_day,
            days,
        }
    }
}

/// Points each metric's slot of `window` at its values over grid points `first..=last`, or
/// `None` where the metric is absent or has a gap there.
fn window_of<'a>(
    grids: &'a [Option<Grid>],
    first: usize,
    last: usize,
    window: &mut [Option<&'a [f64]>],
) {
    for (slot, grid) in window.iter_mut().zip(grids) {
        *slot = grid
            .as_ref()
            .filter(|g| g.gaps[last + 1] == g.gaps[first])
            .map(|g| &g.values[first..=last]);
    }
}

fn asset_windows(
    schema: &FeatureSchema,
    history: &AssetHistory,
    failures: &[&Failure],
    labels: &[&Label],
    kinds: &[String],
    params: &DatasetParams,
    cutoff: i64,
) -> AssetWindows {
    let step = schema.step_secs;
    let w = schema.window;
    let (mut train, mut validation) = (Rows::default(), Rows::default());
    let (first, last) = time_range(std::slice::from_ref(history));
    if last <= first {
        return AssetWindows {
            start: first,
            grids: Vec::new(),
            train,
            validation,
            labels: LabelUse::default(),
        };
    }
    let start = first.div_euclid(step) * step + if first.rem_euclid(step) == 0 { 0 } else { step };
    let n_points = ((last - start) / step + 1).max(0) as usize;
    let grids: Vec<Option<Grid>> = history
        .metrics
        .iter()
        .map(|m| {
            m.as_ref().map(|m| {
                Grid::new(
                    resample_grid(&m.ts, &m.values, start, n_points, step, schema.max_fill),
                    start,
                    step,
                )
            })
        })
        .collect();
    let last_points = (w.saturating_sub(1)..n_points).step_by(params.stride.max(1));
    let end_of = |last_point: usize| start + last_point as i64 * step;
    let start_of = |end: i64| end - (w as i64 - 1) * step;
    // Which part a window ending at `end` goes to: Some(true) train (its horizon ends before
    // the cutoff), Some(false) validation (it starts after the cutoff), None neither.
    let in_train = |end: i64| {
        if end <= cutoff - params.horizon_secs {
            Some(true)
        } else if start_of(end) > cutoff {
            Some(false)
        } else {
            None
        }
    };
    // Room for every window on each side of the cutoff, so the rows never regrow.
    let (n_train, n_validation) = last_points.clone().fold((0, 0), |(t, v), last_point| {
        match in_train(end_of(last_point)) {
            Some(true) => (t + 1, v),
            Some(false) => (t, v + 1),
            None => (t, v),
        }
    });
    train.reserve(n_train);
    validation.reserve(n_validation);
    let mut window: Vec<Option<&[f64]>> = vec![None; schema.metrics.len()];
    // Adds the window ending at `last_point` (labelled by `label` when an operator labelled
    // it); false when it is left out.
    let mut add = |last_point: usize, label: Option<&Label>| -> bool {
        let end = end_of(last_point);
        let window_start = start_of(end);
        let rows = match in_train(end) {
            Some(true) => &mut train,
            Some(false) => &mut validation,
            None => return false,
        };
        let overlaps = failures
            .iter()
            .any(|f| f.started <= end && f.resolved.unwrap_or(f.started) >= window_start);
        if overlaps {
            return false;
        }
        let following = failures.iter().find(|f| f.started > end);
        let next = following.filter(|f| f.started <= end + params.horizon_secs);
        let mut ttf = match following {
            Some(f) => Some((f.started - end).min(params.ttf_cap_secs) as f64),
            None if last - end >= params.ttf_cap_secs => Some(params.ttf_cap_secs as f64),
            None => None,
        };
        let mut y = next.is_some();
        let mut kind = next.map(|f| f.kind.as_str());
        if let Some(label) = label {
            if !label.failure && next.is_some() {
                // A false alarm that an incident within the horizon contradicts.
                return false;
            }
            if label.failure && next.is_none() {
                // A failure was coming, though none was recorded (an action may have healed
                // it): when is not known.
                ttf = None;
            }
            y = label.failure;
            if label.failure {
                kind = label.kind.as_deref().or(kind);
            }
        }
        window_of(&grids, last_point + 1 - w, last_point, &mut window);
        // As `extract` would: a window with no usable metric is refused.
        let usable = window.iter().filter(|slot| slot.is_some()).count();
        if usable == 0 {
            return false;
        }
        if usable < window.len() {
            rows.with_missing += 1;
        }
        rows.last_point.push(last_point);
        rows.y.push(y);
        rows.end.push(end);
        rows.kind.push(
            kind.and_then(|k| kinds.iter().position(|known| known == k))
                .map(|k| k as u32),
        );
        rows.ttf.push(ttf);
        rows.labelled.push(label.is_some());
        true
    };
    for last_point in last_points {
        add(last_point, None);
    }
    let mut use_ = LabelUse::default();
    for label in labels {
        // The grid point at or before the labelled window's end.
        let offset = label.end - start;
        let last_point = offset.div_euclid(step);
        let usable = offset >= 0
            && (last_point as usize) < n_points
            && last_point as usize + 1 >= w
            && add(last_point as usize, Some(label));
        if !usable {
            use_.skipped += 1;
            continue;
        }
        let side = if in_train(end_of(last_point as usize)) == Some(true) {
            &mut use_.train
        } else {
            &mut use_.validation
        };
        if label.failure {
            side.0 += 1;
        } else {
            side.1 += 1;
        }
        use_.kinds += u64::from(label.failure && label.kind.is_some());
    }
    // A false alarm speaks for its episode: the windows that led up to the alert (ending
    // within one window before it) are marked too, so the model learns the pattern rather
    // than one window.
    for label in labels.iter().filter(|l| !l.failure) {
        let since = label.end - w as i64 * step;
        for rows in [&mut train, &mut validation] {
            for i in 0..rows.end.len() {
                if rows.end[i] > since && rows.end[i] <= label.end && !rows.y[i] {
                    rows.labelled[i] = true;
                }
            }
        }
    }
    AssetWindows {
        start,
        grids,
        train,
        validation,
        labels: use_,
    }
}

/// One side of the split: every asset's windows (`side` picks them) in asset order.
fn part(assets: &[AssetWindows], side: impl Fn(&AssetWindows) -> &Rows) -> Part {
    let n: usize = assets.iter().map(|a| side(a).y.len()).sum();
    let mut part = Part {
        y: Vec::with_capacity(n),
        asset: Vec::with_capacity(n),
        end: Vec::with_capacity(n),
        kind: Vec::with_capacity(n),
        ttf: Vec::with_capacity(n),
        with_missing: 0,
        labelled: Vec::with_capacity(n),
        last_point: Vec::with_capacity(n),
    };
    for (index, asset) in assets.iter().enumerate() {
        let rows = side(asset);
        part.asset
            .extend(std::iter::repeat_n(index as u32, rows.y.len()));
        part.y.extend(&rows.y);
        part.end.extend(&rows.end);
        part.kind.extend(&rows.kind);
        part.ttf.extend(&rows.ttf);
        part.last_point.extend(&rows.last_point);
        part.labelled.extend(&rows.labelled);
        part.with_missing += rows.with_missing;
    }
    part
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::resample;

    fn schema() -> FeatureSchema {
        FeatureSchema::new(vec!["cpu".into(), "mem".into()], 5, 60, 2)
    }

    /// One asset, 200 minutes, cpu every minute (one minute missing), mem every 2 minutes.
    fn history() -> AssetHistory {
        let cpu_ts: Vec<i64> = (0..200).filter(|&k| k != 50).map(|k| k * 60 + 3).collect();
        let mem_ts: Vec<i64> = (0..100).map(|k| k * 120).collect();
        AssetHistory {
            asset: "a".into(),
            metrics: vec![
                Some(MetricHistory {
                    values: cpu_ts.iter().map(|&t| (t as f64 / 600.0).sin()).collect(),
                    ts: cpu_ts,
                }),
                Some(MetricHistory {
                    values: mem_ts.iter().map(|&t| t as f64 / 100.0).collect(),
                    ts: mem_ts,
                }),
            ],
        }
    }

    fn params() -> DatasetParams {
        DatasetParams {
            horizon_secs: 600,
            stride: 1,
            train_frac: 0.7,
            ttf_cap_secs: 3600,
        }
    }

    #[test]
    fn operators_labels_add_windows_and_mark_a_false_alarm_s_episode() {
        let failures = vec![Failure {
            asset: "a".into(),
            kind: "leak".into(),
            started: 100 * 60,
            resolved: Some(101 * 60),
        }];
        let label = |end_minute: i64, failure: bool, kind: Option<&str>| Label {
            asset: "a".into(),
            end: end_minute * 60 + 30,
            failure,
            kind: kind.map(str::to_owned),
        };
        let labels = vec![
            // A true alarm with no incident after it (healed), and a kind.
            label(40, true, Some("overheat")),
            // A false alarm.
            label(70, false, None),
            // A false alarm an incident within the horizon contradicts.
            label(95, false, None),
            // Outside the data.
            label(500, false, None),
            // An asset without history.
            Label {
                asset: "b".into(),
                ..label(60, false, None)
            },
        ];
        let plain = build(&schema(), &[history()], &failures, &params());
        let data = build_labelled(&schema(), &[history()], &failures, &labels, &params());
        assert_eq!(data.train.len(), plain.train.len() + 2);
        assert_eq!(
            data.labels,
            LabelUse {
                train: (1, 1),
                validation: (0, 0),
                kinds: 1,
                skipped: 3,
            }
        );
        assert!(data.kinds.contains(&"overheat".to_owned()));
        let n = data.train.len();
        // The added rows come last: the true alarm, then the false alarm.
        assert_eq!(&data.train.y[n - 2..], &[true, false]);
        assert_eq!(data.train.end[n - 2], 40 * 60);
        assert_eq!(
            data.train.ttf[n - 2],
            None,
            "when it would have failed is unknown"
        );
        assert_eq!(
            data.train.kind[n - 2].map(|k| data.kinds[k as usize].as_str()),
            Some("overheat")
        );
        // The false alarm's episode: the windows ending within one window before it.
        let marked: Vec<i64> = (0..n)
            .filter(|&i| data.train.labelled[i] && !data.train.y[i])
            .map(|i| data.train.end[i] / 60)
            .collect();
        assert_eq!(marked, vec![66, 67, 68, 69, 70, 70]);
        assert!(plain.train.labelled.iter().all(|&l| !l));
    }

    /// [`history`] with a failure at minute 160.
    fn one_leak_at_160_minutes() -> Dataset {
        let failures = vec![Failure {
            asset: "a".into(),
            kind: "leak".into(),
            started: 160 * 60,
            resolved: None,
        }];
        build(&schema(), &[history()], &failures, &params())
    }

    #[test]
    fn joined_parts_keep_each_window_s_features() {
        let data = one_leak_at_160_minutes();
        let all = data.train.joined(&data.validation);
        assert_eq!(all.len(), data.train.len() + data.validation.len());
        assert_eq!(
            all.positives(),
            data.train.positives() + data.validation.positives()
        );
        assert!(data.validation.positives() > 0);
        let x = data.all_features(&all);
        let (train_x, validation_x) = x.view().split_at(ndarray::Axis(0), data.train.len());
        assert_eq!(train_x, data.all_features(&data.train));
        assert_eq!(validation_x, data.all_features(&data.validation));
        assert_eq!(&all.end[data.train.len()..], &data.validation.end[..]);
    }

    #[test]
    fn windows_are_split_by_time_and_labelled_by_horizon() {
        let data = one_leak_at_160_minutes();
        assert!(data.train.end.iter().all(|&e| e <= data.cutoff - 600));
        assert!(data.validation.end.iter().all(|&e| e - 240 > data.cutoff));
        // Positives: windows ending in [150 min, 160 min).
        let positives: Vec<i64> = data
            .validation
            .end
            .iter()
            .zip(&data.validation.y)
            .filter(|(_, y)| **y)
            .map(|(e, _)| *e / 60)
            .collect();
        assert_eq!(positives, (150..160).collect::<Vec<_>>());
        assert!(
            data.validation
                .kind
                .iter()
                .flatten()
                .all(|&k| data.kinds[k as usize] == "leak")
        );
        // Windows containing the failure are left out.
        assert!(
            !data
                .validation
                .end
                .iter()
                .any(|&e| (160 * 60..164 * 60 + 1).contains(&e))
        );
    }

    #[test]
    fn rows_asked_for_are_those_of_the_whole_matrix_in_the_order_asked() {
        let data = build(&schema(), &[history()], &[], &params());
        let all = data.all_features(&data.train);
        assert_eq!(all.nrows(), data.train.len());
        // More rows than one parallel chunk, out of order and repeated.
        let rows: Vec<usize> = (0..600).map(|k| (k * 7919) % data.train.len()).collect();
        let some = data.features(&data.train, &rows);
        assert_eq!(some.dim(), (rows.len(), data.schema.len()));
        for (k, &i) in rows.iter().enumerate() {
            assert_eq!(some.row(k), all.row(i), "row {i}");
        }
        assert_eq!(data.features(&data.validation, &[]).nrows(), 0);
    }

    /// Checks that every window's row of `data` equals the row serving would compute from
    /// `history`'s samples; returns how many windows had a day's past and a week's.
    fn rows_equal_the_serving_path(
        schema: &FeatureSchema,
        history: &AssetHistory,
        data: &Dataset,
    ) -> (usize, usize) {
        use crate::features::context::{context_of_history, week_of_history};
        let (mut with_day, mut with_week) = (0, 0);
        for part in [&data.train, &data.validation] {
            let all = data.all_features(part);
            for i in 0..part.len() {
                let end = part.end[i];
                let at = end - (schema.window as i64 - 1) * schema.step_secs;
                let (step, fill) = (schema.step_secs, schema.max_fill);
                let mut windows = Vec::new();
                let mut contexts = Vec::new();
                for (m, name) in history.metrics.iter().zip(&schema.metrics) {
                    let m = m.as_ref().unwrap();
                    windows.push(resample(name, &m.ts, &m.values, end, schema).ok());
                    // As serving computes it: from the samples, for this window's hour and day.
                    contexts.push(
                        context_of_history(m, block_of(at), step, fill).map(|mut c| {
                            c.week = week_of_history(m, day_of(at), step, fill);
                            c
                        }),
                    );
                }
                with_day += usize::from(contexts.iter().all(Option::is_some));
                with_week +=
                    usize::from(contexts.iter().all(|c| c.is_some_and(|c| c.week.is_some())));
                let window: Vec<Option<&[f64]>> = windows.iter().map(|w| w.as_deref()).collect();
                let mut row = vec![0.0; schema.len()];
                extract(schema, &window, &contexts, &mut row).unwrap();
                assert_eq!(
                    row.as_slice(),
                    all.row(i).to_slice().unwrap(),
                    "bit-identical"
                );
            }
        }
        (with_day, with_week)
    }

    #[test]
    fn training_rows_equal_the_scoring_path_for_the_same_window() {
        let schema = schema();
        let history = history();
        let data = build(&schema, std::slice::from_ref(&history), &[], &params());
        let (with_day, _) = rows_equal_the_serving_path(&schema, &history, &data);
        assert!(with_day > 50, "{with_day} windows had a past");
        // Nine days every 5 minutes (jittered, some missing), so that windows have a week.
        let schema = FeatureSchema::new(vec!["cpu".into(), "mem".into()], 5, 300, 2);
        let ts: Vec<i64> = (0..9 * 288)
            .filter(|k| k % 97 != 0)
            .map(|k| k * 300 + (k * 37) % 120)
            .collect();
        let series = |f: fn(f64) -> f64| MetricHistory {
            values: ts.iter().map(|&t| f(t as f64)).collect(),
            ts: ts.clone(),
        };
        let long = AssetHistory {
            asset: "a".into(),
            metrics: vec![
                Some(series(|t| 50.0 + 10.0 * (t / 7200.0).sin())),
                Some(series(|t| 1e6 + t / 1000.0)),
            ],
        };
        let params = DatasetParams {
            stride: 13,
            ..params()
        };
        let data = build(&schema, std::slice::from_ref(&long), &[], &params);
        let (with_day, with_week) = rows_equal_the_serving_path(&schema, &long, &data);
        assert!(
            with_week > 100 && with_day >= with_week,
            "{with_day} {with_week}"
        );
    }
}
