//! Isolation forest (Liu, Ting and Zhou, 2008), in linfa's params -> check -> fit style.
//!
//! Each tree isolates a random subsample of `sample_size` rows by splitting on a random
//! feature (one that varies in the node) at a uniform random threshold, down to a height of
//! ceil(log2(sample_size)). A point's anomaly score is 2^(-E[h(x)] / c(sample_size)), where
//! h(x) is its path length (plus c(leaf size) at a leaf): about 0.5 for normal points, towards
//! 1 for anomalies, as scikit-learn's `-score_samples`. Trees are fitted in parallel, each from
//! its own seed, so a fit is reproducible whatever the thread count. Scoring also explains:
//! each split on a path credits ln(n_parent / n_child) to its feature.

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use rand08::rngs::SmallRng;
use rand08::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::complete::LaidOut;
use super::{FitError, ParamsError};

/// Checked hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationForestValidParams {
    n_trees: usize,
    sample_size: usize,
    seed: u64,
}

/// Unchecked hyperparameters; [`IsolationForestParams::check`] validates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsolationForestParams(IsolationForestValidParams);

/// A fitted isolation forest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForest {
    params: IsolationForestValidParams,
    n_features: usize,
    /// Rows each tree was grown on (the sample size, or fewer rows when the data is small).
    tree_rows: usize,
    trees: Vec<Tree>,
    /// The trees laid out for scoring, derived from `trees` on first use.
    #[serde(skip)]
    complete: LaidOut<Complete>,
}

/// The trees as complete binary trees of their height limit, one after another, for scoring
/// without branches: tree `t`'s slot `s` is at `(t << height) + s`. Slot `s` below
/// `2^height - 1` splits on `features` at `thresholds` (children `2s + 1` when below, `2s + 2`
/// otherwise), and bottom slot `b` (below `2^height`) holds in `lengths` the path length of
/// the leaf above it. A leaf shallower than the limit fills every bottom slot under it with
/// its own path length, so the splits below it (placeholders) cannot change the answer. Every
/// row takes exactly `height` steps, with no unpredictable branch.
#[derive(Debug, Clone, PartialEq)]
struct Complete {
    height: u32,
    features: Vec<u32>,
    thresholds: Vec<f64>,
    lengths: Vec<f64>,
}

/// One tree as a flat node vector; node 0 is the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tree {
    nodes: Vec<Node>,
}

/// A split (`feature < u32::MAX`) or a leaf (`feature == u32::MAX`, `size` rows).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Node {
    feature: u32,
    threshold: f64,
    left: u32,
    right: u32,
    size: u32,
}

const LEAF: u32 = u32::MAX;

/// Rows walked down a tree together when scoring many.
const LANES: usize = 8;

impl IsolationForest {
    /// Defaults: n_trees = 100, sample_size = 256, seed = 0 (scikit-learn's n_estimators and
    /// max_samples).
    pub fn params() -> IsolationForestParams {
        IsolationForestParams(IsolationForestValidParams {
            n_trees: 100,
            sample_size: 256,
            seed: 0,
        })
    }

    /// The hyperparameters it was fitted with.
    pub fn valid_params(&self) -> &IsolationForestValidParams {
        &self.params
    }

    /// Number of features it expects.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Anomaly score of each row, in (0, 1]: about 0.5 normal, towards 1 anomalous.
    /// Blocks of rows run in parallel; within a block each tree walks every row before the
    /// next tree, so the tree stays in cache (the same sums, in the same order, as scoring
    /// row by row).
    pub fn score(&self, records: ArrayView2<f64>) -> Vec<f64> {
        const BLOCK: usize = 256;
        let c = average_path_length(self.tree_rows as f64);
        let mut out = vec![0.0; records.nrows()];
        out.par_chunks_mut(BLOCK)
            .enumerate()
            .for_each(|(b, scores)| {
                let block = records.slice_axis(
                    Axis(0),
                    ndarray::Slice::from(b * BLOCK..b * BLOCK + scores.len()),
                );
                let owned;
                let block = match block.as_slice() {
                    Some(rows) => rows,
                    None => {
                        owned = block.to_owned();
                        owned.as_slice().expect("an owned array is contiguous")
                    }
                };
                let d = records.ncols().max(1);
                match self.complete_trees() {
                    Some(complete) => {
                        let stride = d.next_power_of_two();
                        let groups = Complete::lay_out(block, d, stride);
                        let mut totals = vec![0.0; groups.len() / stride];
                        for t in 0..self.trees.len() {
                            complete.add_path_lengths(t, &mut totals, &groups, stride);
                        }
                        scores.copy_from_slice(&totals[..scores.len()]);
                    }
                    None => {
                        for tree in &self.trees {
                            for (total, row) in scores.iter_mut().zip(block.chunks_exact(d)) {
                                *total += tree.path_length(row, None);
                            }
                        }
                    }
                }
                for total in scores.iter_mut() {
                    *total = self.score_of_total(*total, c);
                }
            });
        out
    }

    /// Anomaly score of one row.
    pub fn score_one(&self, row: ArrayView1<f64>) -> f64 {
        let owned;
        let row = match row.as_slice() {
            Some(row) => row,
            None => {
                owned = row.to_vec();
                &owned
            }
        };
        let total: f64 = match self.complete_trees() {
            Some(complete) => complete.total_path_length(row),
            None => self.trees.iter().map(|t| t.path_length(row, None)).sum(),
        };
        self.score_of_total(total, average_path_length(self.tree_rows as f64))
    }

    /// The trees in scoring layout, built on first use; `None` when they are too tall for it
    /// (a complete tree of height h holds 2^h path lengths).
    fn complete_trees(&self) -> Option<&Complete> {
        const MAX_HEIGHT: u32 = 12;
        let height = (self.tree_rows as f64).log2().ceil() as u32;
        self.complete
            .0
            .get_or_init(|| (height <= MAX_HEIGHT).then(|| Complete::of(&self.trees, height)))
            .as_ref()
    }

    /// The score 2^(-E[h] / c) of a row whose path lengths over all trees sum to `total`.
    fn score_of_total(&self, total: f64, c: f64) -> f64 {
        2f64.powf(-(total / self.trees.len() as f64) / c)
    }

    /// Per-feature contributions to one row's isolation: each split on its paths credits
    /// ln(n_parent / n_child) to the split feature, averaged over trees. Larger means the
    /// feature did more to isolate the row.
    pub fn explain(&self, row: ArrayView1<f64>) -> Vec<f64> {
        let mut credit = vec![0.0; self.n_features];
        let row = row.to_vec();
        for tree in &self.trees {
            tree.path_length(&row, Some(&mut credit));
        }
        let n = self.trees.len() as f64;
        credit.iter_mut().for_each(|c| *c /= n);
        credit
    }
}

impl IsolationForestParams {
    /// Number of trees. Default 100.
    pub fn n_trees(mut self, n_trees: usize) -> Self {
        self.0.n_trees = n_trees;
        self
    }

    /// Rows sampled (without replacement) per tree. Default 256.
    pub fn sample_size(mut self, sample_size: usize) -> Self {
        self.0.sample_size = sample_size;
        self
    }

    /// Seed of the first tree; tree i uses seed + i. Default 0.
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }

    /// Validates the hyperparameters.
    pub fn check(self) -> Result<IsolationForestValidParams, ParamsError> {
        if self.0.n_trees == 0 {
            return Err(ParamsError::Zero("n_trees"));
        }
        if self.0.sample_size < 2 {
            return Err(ParamsError::TooSmall {
                name: "sample_size",
                min: 2,
                got: self.0.sample_size,
            });
        }
        Ok(self.0)
    }
}

impl IsolationForestValidParams {
    /// Fits on `records` (rows x features): needs at least 2 rows, and the rows the trees
    /// sample must be finite (only they are read).
    pub fn fit(&self, records: ArrayView2<f64>) -> Result<IsolationForest, FitError> {
        let (n_rows, n_features) = records.dim();
        super::check_records(
            records.slice_axis(Axis(0), ndarray::Slice::from(0..2.min(n_rows))),
            2,
        )
        .map_err(|e| match e {
            FitError::TooFewRows { min, .. } => FitError::TooFewRows { min, got: n_rows },
            other => other,
        })?;
        self.fit_rows(n_rows, n_features, &|sample| {
            records.select(Axis(0), sample)
        })
    }

    /// Fits on `n_rows` rows of `n_features` that `rows_of` makes on demand: each tree asks
    /// for the rows it samples only, so the whole matrix need never exist. The same forest
    /// as [`fit`](Self::fit) on the matrix whose rows `rows_of` gives.
    pub fn fit_rows(
        &self,
        n_rows: usize,
        n_features: usize,
        rows_of: &(dyn Fn(&[usize]) -> Array2<f64> + Sync),
    ) -> Result<IsolationForest, FitError> {
        if n_rows < 2 {
            return Err(FitError::TooFewRows {
                min: 2,
                got: n_rows,
            });
        }
        let tree_rows = self.sample_size.min(n_rows);
        let height_limit = (tree_rows as f64).log2().ceil() as usize;
        let trees = (0..self.n_trees)
            .into_par_iter()
            .map(|i| {
                let mut rng = SmallRng::seed_from_u64(self.seed.wrapping_add(i as u64));
                let sample = rand08::seq::index::sample(&mut rng, n_rows, tree_rows).into_vec();
                Tree::grow(rows_of(&sample), &sample, height_limit, &mut rng)
            })
            .collect::<Result<Vec<Tree>, FitError>>()?;
        Ok(IsolationForest {
            params: *self,
            n_features,
            tree_rows,
            trees,
            complete: LaidOut::default(),
        })
    }
}

impl Tree {
    /// Grows a tree on `local`, the rows `sample` of the records in a small matrix of their
    /// own, so that the splits scan memory that stays in cache.
    fn grow(
        local: Array2<f64>,
        sample: &[usize],
        height_limit: usize,
        rng: &mut SmallRng,
    ) -> Result<Tree, FitError> {
        debug_assert_eq!(local.nrows(), sample.len());
        super::check_selected(local.view(), sample, 1)?;
        let mut rows: Vec<usize> = (0..sample.len()).collect();
        let mut features: Vec<usize> = (0..local.ncols()).collect();
        let mut tree = Tree { nodes: Vec::new() };
        let mut grower = Grower {
            records: local.view(),
            features: &mut features,
            height_limit,
            rng,
        };
        tree.split(&mut grower, &mut rows, 0);
        Ok(tree)
    }

    /// Appends the subtree for `rows` and returns its index.
    fn split(&mut self, grower: &mut Grower, rows: &mut [usize], depth: usize) -> u32 {
        let index = self.nodes.len() as u32;
        self.nodes.push(Node {
            feature: LEAF,
            threshold: 0.0,
            left: 0,
            right: 0,
            size: rows.len() as u32,
        });
        if depth >= grower.height_limit || rows.len() <= 1 {
            return index;
        }
        let Some((feature, lo, hi)) = grower.draw_feature(rows) else {
            return index;
        };
        let records = grower.records;
        let threshold = grower.rng.gen_range(lo..hi);
        // Partition rows: < threshold to the left.
        let mut split_at = 0;
        for i in 0..rows.len() {
            if records[[rows[i], feature]] < threshold {
                rows.swap(i, split_at);
                split_at += 1;
            }
        }
        if split_at == 0 || split_at == rows.len() {
            return index;
        }
        let (left_rows, right_rows) = rows.split_at_mut(split_at);
        let left = self.split(grower, left_rows, depth + 1);
        let right = self.split(grower, right_rows, depth + 1);
        let node = &mut self.nodes[index as usize];
        node.feature = feature as u32;
        node.threshold = threshold;
        node.left = left;
        node.right = right;
        index
    }

    /// Path length of `row`, crediting splits to `credit` when given.
    fn path_length(&self, row: &[f64], mut credit: Option<&mut Vec<f64>>) -> f64 {
        let mut node = &self.nodes[0];
        let mut depth = 0.0;
        while node.feature != LEAF {
            let child = if row[node.feature as usize] < node.threshold {
                &self.nodes[node.left as usize]
            } else {
                &self.nodes[node.right as usize]
            };
            if let Some(credit) = credit.as_deref_mut() {
                credit[node.feature as usize] +=
                    (f64::from(node.size) / f64::from(child.size)).ln();
            }
            node = child;
            depth += 1.0;
        }
        depth + leaf_path_length(node.size)
    }
}

/// What growing one tree needs at every node.
struct Grower<'a> {
    /// The tree's sampled rows.
    records: ArrayView2<'a, f64>,
    /// Every feature index, in an order the draws permute.
    features: &'a mut [usize],
    height_limit: usize,
    rng: &'a mut SmallRng,
}

impl Grower<'_> {
    /// A feature drawn uniformly from those that vary over `rows`, with its range, as
    /// scikit-learn draws: features at random without replacement until one varies, so
    /// that usually only one feature is scanned. `None` when every feature is constant.
    fn draw_feature(&mut self, rows: &[usize]) -> Option<(usize, f64, f64)> {
        let mut remaining = self.features.len();
        while remaining > 0 {
            let k = self.rng.gen_range(0..remaining);
            let feature = self.features[k];
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            for &r in rows {
                let v = self.records[[r, feature]];
                lo = lo.min(v);
                hi = hi.max(v);
            }
            if hi > lo {
                return Some((feature, lo, hi));
            }
            // Constant here: out of this node's draws.
            self.features.swap(k, remaining - 1);
            remaining -= 1;
        }
        None
    }
}

impl Complete {
    /// Lays out `trees`, whose leaves are at most `height` deep.
    fn of(trees: &[Tree], height: u32) -> Complete {
        // One slot more than the splits per tree, so that slot indices can be masked.
        let slots = trees.len() << height;
        let mut complete = Complete {
            height,
            features: vec![0; slots],
            thresholds: vec![f64::INFINITY; slots],
            lengths: vec![0.0; slots],
        };
        for (t, tree) in trees.iter().enumerate() {
            complete.place(t << height, tree, 0, 0, 0);
        }
        complete
    }

    /// Places the subtree of `node` at `slot`, `depth` deep, in the tree starting at `base`.
    fn place(&mut self, base: usize, tree: &Tree, node: usize, slot: usize, depth: u32) {
        let n = &tree.nodes[node];
        if n.feature == LEAF || depth >= self.height {
            // Every bottom slot under `slot`: the leftmost is (slot + 1) 2^(height - depth) - 1.
            let span = 1usize << (self.height - depth);
            let first = base + (slot + 1) * span - 1 - self.splits();
            let length = f64::from(depth) + leaf_path_length(n.size);
            self.lengths[first..first + span].fill(length);
            return;
        }
        self.features[base + slot] = n.feature;
        self.thresholds[base + slot] = n.threshold;
        self.place(base, tree, n.left as usize, 2 * slot + 1, depth + 1);
        self.place(base, tree, n.right as usize, 2 * slot + 2, depth + 1);
    }

    /// Number of split slots of a tree, 2^height - 1 (the slots before the bottom ones).
    fn splits(&self) -> usize {
        (1 << self.height) - 1
    }

    /// Tree `t`'s features, thresholds and path lengths, 2^height slots each.
    fn tree(&self, t: usize) -> (&[u32], &[f64], &[f64]) {
        let slots = (t << self.height)..((t + 1) << self.height);
        (
            &self.features[slots.clone()],
            &self.thresholds[slots.clone()],
            &self.lengths[slots],
        )
    }

    /// Lays `rows` (`d` values each) out for [`Complete::add_path_lengths`]: groups of
    /// [`LANES`] rows, feature-major within a group (value `f` of the group's row `lane` at
    /// `f * LANES + lane`), `stride` (a power of two, at least `d`) features to a group, so
    /// that every group's length is a power of two. Rows and features beyond the input are
    /// zeros.
    fn lay_out(rows: &[f64], d: usize, stride: usize) -> Vec<f64> {
        let n = rows.len() / d;
        let mut out = vec![0.0; n.div_ceil(LANES) * LANES * stride];
        for (r, row) in rows.chunks_exact(d).enumerate() {
            let first = (r / LANES) * LANES * stride + r % LANES;
            for (f, &v) in row.iter().enumerate() {
                out[first + f * LANES] = v;
            }
        }
        out
    }

    /// Adds the path length of each row of `groups` ([`Complete::lay_out`] with `stride`) to
    /// its total. A group's [`LANES`] rows go down together, one level at a time, so their
    /// walks are independent chains the processor overlaps instead of waiting on one at a
    /// time.
    fn add_path_lengths(&self, t: usize, totals: &mut [f64], groups: &[f64], stride: usize) {
        let (features, thresholds, lengths) = self.tree(t);
        let thresholds = &thresholds[..features.len()];
        // A split slot is below 2^height, the slices' length, so masks leave the indices
        // unchanged; they bound them by the lengths, which the compiler can see. So does a
        // value's index within its group, whose length is a power of two too.
        let Some(mask) = features.len().checked_sub(1) else {
            return;
        };
        for (group, totals) in groups
            .chunks_exact(LANES * stride)
            .zip(totals.chunks_exact_mut(LANES))
        {
            let Some(within) = group.len().checked_sub(1) else {
                return;
            };
            // Every row takes the first two levels through the same three slots, so they are
            // decided from three columns (no dependent loads), the rest walked lane by lane.
            let mut slots = [0usize; LANES];
            let mut levels = 0;
            if self.height >= 2 {
                let column = |s: usize| {
                    let first = (features[s & mask] as usize * LANES) & within;
                    (&group[first..first + LANES], thresholds[s & mask])
                };
                let ((c0, t0), (c1, t1), (c2, t2)) = (column(0), column(1), column(2));
                for (lane, slot) in slots.iter_mut().enumerate() {
                    let (s, below) = if c0[lane] < t0 {
                        (1, c1[lane] < t1)
                    } else {
                        (2, c2[lane] < t2)
                    };
                    *slot = 2 * s + 2 - usize::from(below);
                }
                levels = 2;
            }
            for _ in levels..self.height {
                for (lane, slot) in slots.iter_mut().enumerate() {
                    let s = *slot & mask;
                    let value = group[(features[s] as usize * LANES + lane) & within];
                    *slot = 2 * s + 2 - usize::from(value < thresholds[s]);
                }
            }
            for (total, slot) in totals.iter_mut().zip(slots) {
                *total += lengths[slot - self.splits()];
            }
        }
    }

    /// The trees as a [`super::complete::Layout`] of path lengths.
    fn layout(&self) -> super::complete::Layout<'_> {
        super::complete::Layout {
            depth: self.height,
            features: &self.features,
            thresholds: &self.thresholds,
            leaves: &self.lengths,
        }
    }

    /// The sum of `row`'s path lengths over the trees, in tree order.
    fn total_path_length(&self, row: &[f64]) -> f64 {
        self.layout()
            .fold(row, |v, t| v < t, 0.0, |total, length| total + length)
    }

    /// Path length of `row` in tree `t`: as [`Tree::path_length`], in `height` branch-free
    /// steps.
    #[cfg(test)]
    fn path_length(&self, t: usize, row: &[f64]) -> f64 {
        self.layout().leaf(t, row, |v, t| v < t)
    }
}

/// [`average_path_length`] of a leaf's row count, from a table for the usual sizes (it is
/// taken once per tree for every scored row).
fn leaf_path_length(size: u32) -> f64 {
    const TABLED: usize = 4096;
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| (0..TABLED).map(|n| average_path_length(n as f64)).collect());
    match table.get(size as usize) {
        Some(&c) => c,
        None => average_path_length(f64::from(size)),
    }
}

/// c(n): the average path length of an unsuccessful search in a binary search tree of n
/// points, which normalises path lengths (scikit-learn's `_average_path_length`).
fn average_path_length(n: f64) -> f64 {
    if n <= 1.0 {
        0.0
    } else if n <= 2.0 {
        1.0
    } else {
        2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
    }
}

#[cfg(test)]
mod tests {
    use rand08::Rng;

    use super::*;

    /// 500 inliers around the origin and 5 planted outliers far away, in 4 dimensions.
    fn data() -> Array2<f64> {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut rows = Vec::new();
        for _ in 0..500 {
            for _ in 0..4 {
                rows.push(rng.gen_range(-1.0..1.0));
            }
        }
        for k in 0..5 {
            rows.extend([6.0 + k as f64, -6.0, 5.0, 7.0]);
        }
        Array2::from_shape_vec((505, 4), rows).unwrap()
    }

    #[test]
    fn planted_outliers_score_above_every_inlier() {
        let x = data();
        let forest = IsolationForest::params()
            .check()
            .unwrap()
            .fit(x.view())
            .unwrap();
        let scores = forest.score(x.view());
        let max_inlier = scores[..500].iter().cloned().fold(f64::MIN, f64::max);
        let min_outlier = scores[500..].iter().cloned().fold(f64::MAX, f64::min);
        assert!(min_outlier > max_inlier, "{min_outlier} vs {max_inlier}");
        assert!(min_outlier > 0.6);
        let mean_inlier: f64 = scores[..500].iter().sum::<f64>() / 500.0;
        assert!((0.35..0.55).contains(&mean_inlier), "{mean_inlier}");
    }

    #[test]
    fn the_complete_layout_walks_to_the_same_path_lengths() {
        let x = data();
        let mut rng = SmallRng::seed_from_u64(11);
        // Probe rows inside and far outside the data, and on split thresholds exactly.
        let mut probes: Vec<Vec<f64>> = (0..300)
            .map(|_| (0..4).map(|_| rng.gen_range(-8.0..8.0)).collect())
            .collect();
        for (sample_size, rows) in [(256, 505), (64, 505), (256, 40), (2, 505)] {
            let forest = IsolationForest::params()
                .sample_size(sample_size)
                .check()
                .unwrap()
                .fit(x.slice_axis(Axis(0), ndarray::Slice::from(..rows)))
                .unwrap();
            let complete = forest.complete_trees().expect("short trees are laid out");
            for (t, tree) in forest.trees.iter().enumerate() {
                if let Some(split) = tree.nodes.iter().find(|n| n.feature != LEAF) {
                    let mut probe = vec![0.0; 4];
                    probe[split.feature as usize] = split.threshold;
                    probes.push(probe);
                }
                for probe in &probes {
                    assert_eq!(
                        tree.path_length(probe, None),
                        complete.path_length(t, probe)
                    );
                }
            }
            // Many rows at once (in lanes, and the rows left over) score as one at a time.
            let many = forest.score(x.view());
            for (row, score) in x.rows().into_iter().zip(many) {
                assert_eq!(forest.score_one(row), score);
            }
        }
    }

    #[test]
    fn rows_of_any_width_score_in_lanes_as_one_at_a_time() {
        let x = data();
        // Widths that are not powers of two are padded in the lanes' layout.
        for width in [1, 3] {
            let x = x.slice_axis(Axis(1), ndarray::Slice::from(..width));
            let forest = IsolationForest::params().check().unwrap().fit(x).unwrap();
            let many = forest.score(x);
            assert_eq!(many.len(), x.nrows());
            for (row, score) in x.rows().into_iter().zip(many) {
                assert_eq!(forest.score_one(row), score);
            }
        }
    }

    #[test]
    fn the_same_seed_fits_the_same_forest() {
        let x = data();
        let a = IsolationForest::params()
            .seed(3)
            .check()
            .unwrap()
            .fit(x.view())
            .unwrap();
        let b = IsolationForest::params()
            .seed(3)
            .check()
            .unwrap()
            .fit(x.view())
            .unwrap();
        let c = IsolationForest::params()
            .seed(4)
            .check()
            .unwrap()
            .fit(x.view())
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let json = serde_json::to_string(&a).unwrap();
        let back: IsolationForest = serde_json::from_str(&json).unwrap();
        assert_eq!(back.score(x.view()), a.score(x.view()));
    }

    #[test]
    fn explanations_credit_the_feature_that_isolates() {
        let mut x = data();
        // Outlier only in feature 2.
        x.row_mut(504)
            .assign(&ndarray::arr1(&[0.0, 0.0, 40.0, 0.0]));
        let forest = IsolationForest::params()
            .check()
            .unwrap()
            .fit(x.view())
            .unwrap();
        let credit = forest.explain(x.row(504));
        let top = credit
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(top, 2, "{credit:?}");
    }

    #[test]
    fn bad_params_and_data_are_refused() {
        assert_eq!(
            IsolationForest::params().n_trees(0).check(),
            Err(ParamsError::Zero("n_trees"))
        );
        assert!(matches!(
            IsolationForest::params().sample_size(1).check(),
            Err(ParamsError::TooSmall { .. })
        ));
        let valid = IsolationForest::params().check().unwrap();
        assert!(matches!(
            valid.fit(Array2::zeros((1, 3)).view()),
            Err(FitError::TooFewRows { .. })
        ));
        let mut x = data();
        x[[3, 1]] = f64::NAN;
        assert!(matches!(
            valid.fit(x.view()),
            Err(FitError::NonFinite { row: 3, col: 1 })
        ));
    }
}
