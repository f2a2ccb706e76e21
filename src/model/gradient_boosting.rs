//! Gradient-boosted regression trees (least squares), for time to failure and the failure
//! model's tree ensemble.
//!
//! Features are binned once into at most `n_bins` quantile bins; each round fits a tree of
//! depth `max_depth` to the residuals from per-bin histograms (sum and count of residuals),
//! choosing splits by variance reduction, on a seeded row subsample. Only the smaller child
//! of a split has its histograms counted; the larger's are the parent's minus those.
//! Predictions add `learning_rate` times every tree's leaf value to the mean target.

use ndarray::{ArrayView1, ArrayView2};
use rand08::SeedableRng;
use rand08::rngs::SmallRng;
use rand08::seq::index::sample;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::complete::LaidOut;
use super::{FitError, ParamsError};

/// Checked hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GradientBoostingValidParams {
    n_rounds: usize,
    learning_rate: f64,
    max_depth: usize,
    min_leaf: usize,
    subsample: f64,
    n_bins: usize,
    seed: u64,
}

/// Unchecked hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientBoostingParams(GradientBoostingValidParams);

/// A fitted ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradientBoosting {
    params: GradientBoostingValidParams,
    base: f64,
    trees: Vec<Vec<Node>>,
    /// The trees in [`Complete`] layout, built on first use (`None` when they cannot be: too
    /// deep, or none).
    #[serde(skip)]
    complete: LaidOut<Complete>,
}

/// All trees as complete binary trees of one depth, one after another, for walking without
/// branches or bounds checks: tree `t`'s slot `s` is at `(t << depth) + s`. A slot below
/// `2^depth - 1` splits on `features` at `thresholds` (children `2s + 1` when the value is
/// at most the threshold, `2s + 2` otherwise); bottom slot `b` (below `2^depth`) of tree `t`
/// holds in `values[(t << depth) + b]` the value of the leaf above it. A leaf shallower than
/// `depth` fills every bottom slot under it, so the placeholder splits below it cannot change
/// the answer.
#[derive(Debug, Clone)]
struct Complete {
    depth: u32,
    features: Vec<u32>,
    thresholds: Vec<f64>,
    values: Vec<f64>,
}

impl Complete {
    /// Deepest layout built: 2^12 slots a tree.
    const MAX_DEPTH: u32 = 12;

    /// Lays out `trees`, or `None` when one is deeper than [`Complete::MAX_DEPTH`].
    fn of(trees: &[Vec<Node>]) -> Option<Complete> {
        /// Depth of the subtree of `node`, `level` deep; `None` past the limit (so a
        /// malformed tree with a cycle ends too) or at an index out of range.
        fn depth(tree: &[Node], node: usize, level: u32) -> Option<u32> {
            let n = tree.get(node)?;
            if n.leaf {
                return Some(0);
            }
            if level >= Complete::MAX_DEPTH {
                return None;
            }
            let left = depth(tree, n.left as usize, level + 1)?;
            Some(left.max(depth(tree, n.right as usize, level + 1)?) + 1)
        }
        let depth = trees
            .iter()
            .try_fold(0, |d, t| Some(d.max(depth(t, 0, 0)?)))?;
        let size = 1usize << depth;
        let mut complete = Complete {
            depth,
            features: vec![0; trees.len() * size],
            thresholds: vec![f64::INFINITY; trees.len() * size],
            values: vec![0.0; trees.len() * size],
        };
        for (t, tree) in trees.iter().enumerate() {
            complete.place(t * size, tree, 0, 0, 0);
        }
        Some(complete)
    }

    /// Places the subtree of `node` at `slot`, `level` deep, in the tree starting at `base`.
    fn place(&mut self, base: usize, tree: &[Node], node: usize, slot: usize, level: u32) {
        let n = &tree[node];
        if n.leaf {
            // Every bottom slot under `slot`: the leftmost is (slot + 1) 2^(depth - level) - 1.
            let span = 1usize << (self.depth - level);
            let first = base + (slot + 1) * span - (1usize << self.depth);
            self.values[first..first + span].fill(n.value);
            return;
        }
        self.features[base + slot] = n.feature;
        self.thresholds[base + slot] = n.threshold;
        self.place(base, tree, n.left as usize, 2 * slot + 1, level + 1);
        self.place(base, tree, n.right as usize, 2 * slot + 2, level + 1);
    }

    /// `base` plus `rate` times each tree's leaf value for `row`, in tree order.
    fn predict(&self, row: &[f64], base: f64, rate: f64) -> f64 {
        let layout = super::complete::Layout {
            depth: self.depth,
            features: &self.features,
            thresholds: &self.thresholds,
            leaves: &self.values,
        };
        layout.fold(row, |v, t| v <= t, base, |sum, value| sum + rate * value)
    }
}

/// A split (`feature`, rows with value `<= threshold` go left) or a leaf (`value`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Node {
    leaf: bool,
    feature: u32,
    threshold: f64,
    left: u32,
    right: u32,
    value: f64,
}

impl GradientBoosting {
    /// Defaults: n_rounds = 300, learning_rate = 0.05, max_depth = 5, min_leaf = 20,
    /// subsample = 0.8, n_bins = 64, seed = 0.
    pub fn params() -> GradientBoostingParams {
        GradientBoostingParams(GradientBoostingValidParams {
            n_rounds: 300,
            learning_rate: 0.05,
            max_depth: 5,
            min_leaf: 20,
            subsample: 0.8,
            n_bins: 64,
            seed: 0,
        })
    }

    /// Prediction for one row.
    pub fn predict_one(&self, row: ArrayView1<f64>) -> f64 {
        match row.as_slice() {
            Some(row) => self.predict_slice(row),
            None => self.predict_slice(&row.to_vec()),
        }
    }

    /// Per-input contributions to the prediction for `row` (Saabas): along each tree's
    /// path, the change of the node value at each split is credited to the split's input,
    /// times the learning rate. They sum to the prediction minus the mean target.
    pub fn contributions(&self, row: &[f64]) -> Vec<f64> {
        let mut credit = vec![0.0; row.len()];
        let rate = self.params.learning_rate;
        for tree in &self.trees {
            let mut node = &tree[0];
            while !node.leaf {
                let child = if row[node.feature as usize] <= node.threshold {
                    &tree[node.left as usize]
                } else {
                    &tree[node.right as usize]
                };
                credit[node.feature as usize] += rate * (child.value - node.value);
                node = child;
            }
            // The root's value is the tree's mean residual (about 0): it belongs to no input.
        }
        credit
    }

    /// Prediction for one row given as a slice: the trees are walked in [`Complete`]
    /// layout, or node by node when they cannot be laid out; leaves add up in tree order
    /// either way.
    pub fn predict_slice(&self, row: &[f64]) -> f64 {
        let rate = self.params.learning_rate;
        let complete = self.complete.0.get_or_init(|| Complete::of(&self.trees));
        match complete {
            Some(complete) if !row.is_empty() => complete.predict(row, self.base, rate),
            _ => self.trees.iter().fold(self.base, |sum, tree| {
                let mut node = &tree[0];
                while !node.leaf {
                    let left = row[node.feature as usize] <= node.threshold;
                    node = &tree[if left { node.left } else { node.right } as usize];
                }
                sum + rate * node.value
            }),
        }
    }

    /// Predictions for many rows.
    pub fn predict(&self, records: ArrayView2<f64>) -> Vec<f64> {
        (0..records.nrows())
            .into_par_iter()
            .map(|i| self.predict_one(records.row(i)))
            .collect()
    }
}

impl GradientBoostingParams {
    /// Boosting rounds. Default 300.
    pub fn n_rounds(mut self, n: usize) -> Self {
        self.0.n_rounds = n;
        self
    }

    /// Shrinkage of each tree. Default 0.05.
    pub fn learning_rate(mut self, rate: f64) -> Self {
        self.0.learning_rate = rate;
        self
    }

    /// Depth of each tree. Default 5.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.0.max_depth = depth;
        self
    }

    /// Fewest rows in a leaf. Default 20.
    pub fn min_leaf(mut self, n: usize) -> Self {
        self.0.min_leaf = n;
        self
    }

    /// Fraction of rows each round sees. Default 0.8.
    pub fn subsample(mut self, fraction: f64) -> Self {
        self.0.subsample = fraction;
        self
    }

    /// Seed of the row subsampling. Default 0.
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }

    /// Validates the hyperparameters.
    pub fn check(self) -> Result<GradientBoostingValidParams, ParamsError> {
        let p = self.0;
        if p.n_rounds == 0 {
            return Err(ParamsError::Zero("n_rounds"));
        }
        if p.max_depth == 0 {
            return Err(ParamsError::Zero("max_depth"));
        }
        if p.min_leaf == 0 {
            return Err(ParamsError::Zero("min_leaf"));
        }
        if !(p.learning_rate > 0.0 && p.learning_rate <= 1.0) {
            return Err(ParamsError::OutOfRange("learning_rate", "in (0, 1]"));
        }
        if !(p.subsample > 0.0 && p.subsample <= 1.0) {
            return Err(ParamsError::OutOfRange("subsample", "in (0, 1]"));
        }
        if !(2..=256).contains(&p.n_bins) {
            return Err(ParamsError::OutOfRange("n_bins", "between 2 and 256"));
        }
        Ok(p)
    }
}

impl GradientBoostingValidParams {
    /// Fits `targets` from `records`.
    pub fn fit(
        &self,
        records: ArrayView2<f64>,
        targets: &[f64],
    ) -> Result<GradientBoosting, FitError> {
        super::check_records(records, 2 * self.min_leaf)?;
        if targets.len() != records.nrows() || targets.iter().any(|t| !t.is_finite()) {
            return Err(FitError::Solver(
                "targets must be finite, one per row".to_owned(),
            ));
        }
        let (n, d) = records.dim();
        // Bin edges per feature: quantiles of the training values.
        let edges: Vec<Vec<f64>> = (0..d)
            .map(|f| {
                let mut values: Vec<f64> = records.column(f).to_vec();
                values.sort_by(f64::total_cmp);
                let mut cuts: Vec<f64> = (1..self.n_bins)
                    .map(|b| values[(b * (n - 1)) / self.n_bins])
                    .collect();
                cuts.dedup();
                cuts
            })
            .collect();
        // Row-major bins: a histogram pass reads each row's bins together.
        let mut bins: Vec<u8> = Vec::with_capacity(n * d);
        for row in records.rows() {
            bins.extend(
                row.iter()
                    .zip(&edges)
                    .map(|(&v, edges)| edges.partition_point(|&e| e < v) as u8),
            );
        }
        let base = targets.iter().sum::<f64>() / n as f64;
        let mut prediction = vec![base; n];
        let mut trees = Vec::with_capacity(self.n_rounds);
        let mut rng = SmallRng::seed_from_u64(self.seed);
        let n_sub = ((n as f64) * self.subsample).round().max(1.0) as usize;
        for _ in 0..self.n_rounds {
            let residual: Vec<f64> = targets
                .iter()
                .zip(&prediction)
                .map(|(t, p)| t - p)
                .collect();
            // In row order, the histograms read the bin columns and residuals front to back
            // (partitioning keeps the order in every node) instead of at random.
            let mut rows = sample(&mut rng, n, n_sub).into_vec();
            rows.sort_unstable();
            let tree = self.grow(&bins, &edges, &residual, rows);
            for (i, p) in prediction.iter_mut().enumerate() {
                let mut node = &tree[0];
                while !node.leaf {
                    // value <= edges[b] exactly when its bin is <= b: the same routing as
                    // the binned split.
                    node = if records[[i, node.feature as usize]] <= node.threshold {
                        &tree[node.left as usize]
                    } else {
                        &tree[node.right as usize]
                    };
                }
                *p += self.learning_rate * node.value;
            }
            trees.push(tree);
        }
        Ok(GradientBoosting {
            params: *self,
            base,
            trees,
            complete: LaidOut::default(),
        })
    }

    /// Grows one tree on `rows`, depth-first.
    fn grow(
        &self,
        bins: &[u8],
        edges: &[Vec<f64>],
        residual: &[f64],
        rows: Vec<usize>,
    ) -> Vec<Node> {
        let mut nodes = Vec::new();
        let grower = Grower {
            params: self,
            bins,
            edges,
            residual,
        };
        grower.split(rows, None, 0, &mut nodes);
        nodes
    }
}

/// Per feature, per bin: the sum of residuals and the row count.
type Histograms = Vec<Vec<(f64, usize)>>;

/// What growing one tree reads at every node.
struct Grower<'a> {
    params: &'a GradientBoostingValidParams,
    /// Row-major bin of every row and feature.
    bins: &'a [u8],
    edges: &'a [Vec<f64>],
    residual: &'a [f64],
}

/// Features whose histograms one task counts.
const FEATURE_BLOCK: usize = 16;

impl Grower<'_> {
    /// The histograms of `rows`, blocks of features in parallel. Each task reads every row's
    /// bins of its features together: consecutive rows (often in the same bin of a feature)
    /// then update different bins in turn instead of waiting on one another's sums. Each
    /// bin still sums its rows in row order.
    fn histograms(&self, rows: &[usize]) -> Histograms {
        let d = self.edges.len();
        let blocks: Vec<Histograms> = (0..d.div_ceil(FEATURE_BLOCK))
            .into_par_iter()
            .map(|block| {
                let first = block * FEATURE_BLOCK;
                let edges = &self.edges[first..(first + FEATURE_BLOCK).min(d)];
                let mut hists: Histograms = edges
                    .iter()
                    .map(|e| vec![(0.0, 0usize); e.len() + 1])
                    .collect();
                for &i in rows {
                    let residual = self.residual[i];
                    let row = &self.bins[i * d + first..i * d + first + edges.len()];
                    for (hist, &bin) in hists.iter_mut().zip(row) {
                        let bin = &mut hist[bin as usize];
                        bin.0 += residual;
                        bin.1 += 1;
                    }
                }
                hists
            })
            .collect();
        blocks.into_iter().flatten().collect()
    }

    /// The bin of row `i`'s `feature`.
    fn bin(&self, i: usize, feature: usize) -> usize {
        self.bins[i * self.edges.len() + feature] as usize
    }

    /// Whether a node of `n_rows` rows, `depth` deep, may split (else it is a leaf).
    fn may_split(&self, n_rows: usize, depth: usize) -> bool {
        depth < self.params.max_depth && n_rows >= 2 * self.params.min_leaf
    }

    /// Appends the subtree for `rows` and returns its index. `histograms` are those of
    /// `rows` when the parent derived them (a node's two children's histograms add up to
    /// its own, so only the smaller child's are counted).
    fn split(
        &self,
        rows: Vec<usize>,
        histograms: Option<Histograms>,
        depth: usize,
        nodes: &mut Vec<Node>,
    ) -> u32 {
        let params = self.params;
        let index = nodes.len() as u32;
        let (sum, count) = rows
            .iter()
            .fold((0.0, 0usize), |(s, c), &i| (s + self.residual[i], c + 1));
        nodes.push(Node {
            leaf: true,
            feature: 0,
            threshold: 0.0,
            left: 0,
            right: 0,
            value: sum / count.max(1) as f64,
        });
        if !self.may_split(count, depth) {
            return index;
        }
        let histograms = histograms.unwrap_or_else(|| self.histograms(&rows));
        let parent_score = sum * sum / count as f64;
        // Best split: (gain, feature, last bin going left); ties go to the lower feature.
        let mut best: Option<(f64, usize, usize)> = None;
        for (f, hist) in histograms.iter().enumerate() {
            let (mut left_sum, mut left_count) = (0.0, 0usize);
            for (b, &(bin_sum, bin_count)) in hist.iter().enumerate().take(hist.len() - 1) {
                left_sum += bin_sum;
                left_count += bin_count;
                let right_count = count - left_count;
                if left_count < params.min_leaf || right_count < params.min_leaf {
                    continue;
                }
                let right_sum = sum - left_sum;
                let gain = left_sum * left_sum / left_count as f64
                    + right_sum * right_sum / right_count as f64
                    - parent_score;
                if best.is_none_or(|(g, _, _)| gain > g) {
                    best = Some((gain, f, b));
                }
            }
        }
        let Some((gain, feature, bin)) = best else {
            return index;
        };
        if gain <= 1e-12 {
            return index;
        }
        let (left_rows, right_rows): (Vec<usize>, Vec<usize>) =
            rows.iter().partition(|&&i| self.bin(i, feature) <= bin);
        // Children that will split need histograms: count the smaller child's, and take the
        // larger's as the difference. When neither child can split, neither needs any.
        let (left_hist, right_hist) = if self.may_split(left_rows.len(), depth + 1)
            || self.may_split(right_rows.len(), depth + 1)
        {
            let left_smaller = left_rows.len() <= right_rows.len();
            let small = self.histograms(if left_smaller {
                &left_rows
            } else {
                &right_rows
            });
            let large: Histograms = histograms
                .into_iter()
                .zip(&small)
                .map(|(mut parent, small)| {
                    for (p, s) in parent.iter_mut().zip(small) {
                        p.0 -= s.0;
                        p.1 -= s.1;
                    }
                    parent
                })
                .collect();
            if left_smaller {
                (Some(small), Some(large))
            } else {
                (Some(large), Some(small))
            }
        } else {
            (None, None)
        };
        let left = self.split(left_rows, left_hist, depth + 1, nodes);
        let right = self.split(right_rows, right_hist, depth + 1, nodes);
        let node = &mut nodes[index as usize];
        node.leaf = false;
        node.feature = feature as u32;
        // Bin b holds values in (edges[b-1], edges[b]]: the split value is edges[b].
        node.threshold = self.edges[feature][bin];
        node.left = left;
        node.right = right;
        index
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;
    use rand08::Rng;

    use super::*;

    fn data(seed: u64, n: usize) -> (Array2<f64>, Vec<f64>) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for _ in 0..n {
            let (a, b, c): (f64, f64, f64) = (
                rng.gen_range(0.0..10.0),
                rng.gen_range(0.0..10.0),
                rng.gen_range(0.0..1.0),
            );
            x.extend([a, b, c]);
            y.push(3.0 * a + if b > 5.0 { 20.0 } else { 0.0 } + rng.gen_range(-1.0..1.0));
        }
        (Array2::from_shape_vec((n, 3), x).unwrap(), y)
    }

    #[test]
    fn boosting_fits_a_nonlinear_function() {
        let (x, y) = data(1, 2000);
        let model = GradientBoosting::params()
            .check()
            .unwrap()
            .fit(x.view(), &y)
            .unwrap();
        let (x_test, y_test) = data(2, 500);
        let predictions = model.predict(x_test.view());
        let rmse = (predictions
            .iter()
            .zip(&y_test)
            .map(|(p, t)| (p - t).powi(2))
            .sum::<f64>()
            / 500.0)
            .sqrt();
        assert!(rmse < 2.0, "rmse {rmse}");
        // The trees walked in lanes, laid out as complete trees (300 of them: 37 groups of 8
        // and 4 walked alone), give what walking each tree to its leaf gives.
        assert!(model.complete.0.get().is_some_and(Option::is_some));
        for (row, &prediction) in x_test.rows().into_iter().zip(&predictions) {
            let mut walked = model.base;
            for tree in &model.trees {
                let mut node = &tree[0];
                while !node.leaf {
                    let left = row[node.feature as usize] <= node.threshold;
                    node = &tree[if left { node.left } else { node.right } as usize];
                }
                walked += model.params.learning_rate * node.value;
            }
            assert_eq!(walked, prediction);
        }
        let json = serde_json::to_string(&model).unwrap();
        let back: GradientBoosting = serde_json::from_str(&json).unwrap();
        assert_eq!(back.predict(x_test.view()), predictions);
    }

    #[test]
    fn malformed_trees_are_not_laid_out() {
        let split = Node {
            leaf: false,
            feature: 0,
            threshold: 0.5,
            left: 0,
            right: 1,
            value: 0.0,
        };
        let leaf = Node {
            leaf: true,
            value: 1.0,
            ..split
        };
        // A cycle, and a child index out of range.
        assert!(Complete::of(&[vec![split, leaf]]).is_none());
        assert!(Complete::of(&[vec![Node { right: 7, ..split }, leaf]]).is_none());
        assert!(Complete::of(&[vec![Node { left: 1, ..split }, leaf]]).is_some());
    }

    #[test]
    fn bad_params_are_refused() {
        assert!(GradientBoosting::params().n_rounds(0).check().is_err());
        assert!(
            GradientBoosting::params()
                .learning_rate(0.0)
                .check()
                .is_err()
        );
        assert!(GradientBoosting::params().subsample(1.5).check().is_err());
        let valid = GradientBoosting::params().check().unwrap();
        let (x, _) = data(1, 100);
        assert!(valid.fit(x.view(), &[f64::NAN; 100]).is_err());
    }
}
