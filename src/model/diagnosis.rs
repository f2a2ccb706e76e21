//! Diagnosis: a decision tree (linfa-trees, CART with Gini) that predicts the kind of the
//! failure a window precedes, from the same features as the failure model. The fitted tree
//! is kept as a flat node list with the training class counts of every node, so that a
//! diagnosis comes with a confidence (the share of its kind in the leaf) and the rule path
//! that led there, and the whole tree prints as human-readable rules.

use linfa::prelude::*;
use linfa_trees::{DecisionTree, TreeNode};
use ndarray::{Array1, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use super::{FitError, ParamsError, rounded};

/// Checked hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DiagnosisValidParams {
    max_depth: usize,
    min_weight_leaf: f32,
}

/// Unchecked hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiagnosisParams(DiagnosisValidParams);

/// A fitted diagnosis tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    params: DiagnosisValidParams,
    kinds: Vec<String>,
    feature_names: Vec<String>,
    nodes: Vec<Node>,
}

/// A split (`leaf == false`: rows with `feature <= threshold` go left) or a leaf; `counts`
/// are the training rows of each kind that reached the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Node {
    leaf: bool,
    feature: usize,
    threshold: f64,
    left: usize,
    right: usize,
    prediction: usize,
    counts: Vec<u32>,
}

/// What the tree says about one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Diagnosed {
    /// The predicted failure kind.
    pub kind: String,
    /// Share of that kind among the training windows of the leaf.
    pub confidence: f64,
    /// The conditions on the path from the root, e.g. `mem_slope > 0.31`.
    pub rules: Vec<String>,
}

/// Per-kind quality on validation windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindScore {
    /// Failure kind.
    pub kind: String,
    /// Windows truly of this kind.
    pub support: u64,
    /// Of the windows diagnosed as this kind, the share that were.
    pub precision: Option<f64>,
    /// Of the windows of this kind, the share diagnosed so.
    pub recall: Option<f64>,
}

impl Diagnosis {
    /// Defaults: max_depth = 6, min_weight_leaf = 5.
    pub fn params() -> DiagnosisParams {
        DiagnosisParams(DiagnosisValidParams {
            max_depth: 6,
            min_weight_leaf: 5.0,
        })
    }

    /// The kinds it can name.
    pub fn kinds(&self) -> &[String] {
        &self.kinds
    }

    /// Diagnoses one window.
    pub fn diagnose(&self, row: ArrayView1<f64>) -> Diagnosed {
        let mut rules = Vec::new();
        let mut node = &self.nodes[0];
        while !node.leaf {
            let name = &self.feature_names[node.feature];
            if row[node.feature] <= node.threshold {
                rules.push(format!("{name} <= {}", rounded(node.threshold, 4)));
                node = &self.nodes[node.left];
            } else {
                rules.push(format!("{name} > {}", rounded(node.threshold, 4)));
                node = &self.nodes[node.right];
            }
        }
        let total: u32 = node.counts.iter().sum();
        Diagnosed {
            kind: self.kinds[node.prediction].clone(),
            confidence: if total == 0 {
                0.0
            } else {
                f64::from(node.counts[node.prediction]) / f64::from(total)
            },
            rules,
        }
    }

    fn predict_index(&self, row: ArrayView1<f64>) -> usize {
        let mut node = &self.nodes[0];
        while !node.leaf {
            node = if row[node.feature] <= node.threshold {
                &self.nodes[node.left]
            } else {
                &self.nodes[node.right]
            };
        }
        node.prediction
    }

    /// Per-kind precision and recall on `features` whose true kinds are `kinds` (indexes
    /// into [`Diagnosis::kinds`]).
    pub fn evaluate(&self, features: ArrayView2<f64>, kinds: &[usize]) -> Vec<KindScore> {
        let k = self.kinds.len();
        let (mut tp, mut predicted, mut actual) = (vec![0u64; k], vec![0u64; k], vec![0u64; k]);
        for (row, &truth) in features.axis_iter(Axis(0)).zip(kinds) {
            let guess = self.predict_index(row);
            predicted[guess] += 1;
            actual[truth] += 1;
            if guess == truth {
                tp[guess] += 1;
            }
        }
        (0..k)
            .map(|i| KindScore {
                kind: self.kinds[i].clone(),
                support: actual[i],
                precision: (predicted[i] > 0).then(|| tp[i] as f64 / predicted[i] as f64),
                recall: (actual[i] > 0).then(|| tp[i] as f64 / actual[i] as f64),
            })
            .collect()
    }

    /// The whole tree as indented rules, with the training counts of each leaf.
    pub fn rules(&self) -> String {
        let mut out = String::new();
        self.write_rules(0, 0, &mut out);
        out
    }

    fn write_rules(&self, index: usize, depth: usize, out: &mut String) {
        let node = &self.nodes[index];
        let indent = "  ".repeat(depth);
        if node.leaf {
            let total: u32 = node.counts.iter().sum();
            out.push_str(&format!(
                "{indent}=> {} ({} of {} training windows)\n",
                self.kinds[node.prediction], node.counts[node.prediction], total
            ));
            return;
        }
        let name = &self.feature_names[node.feature];
        out.push_str(&format!("{indent}if {name} <= {:.4}:\n", node.threshold));
        self.write_rules(node.left, depth + 1, out);
        out.push_str(&format!("{indent}else ({name} > {:.4}):\n", node.threshold));
        self.write_rules(node.right, depth + 1, out);
    }
}

impl DiagnosisParams {
    /// Deepest rule path. Default 6.
    pub fn max_depth(mut self, max_depth: usize) -> Self {
        self.0.max_depth = max_depth;
        self
    }

    /// Fewest training windows in a leaf. Default 5.
    pub fn min_weight_leaf(mut self, weight: f32) -> Self {
        self.0.min_weight_leaf = weight;
        self
    }

    /// Validates the hyperparameters.
    pub fn check(self) -> Result<DiagnosisValidParams, ParamsError> {
        if self.0.max_depth == 0 {
            return Err(ParamsError::Zero("max_depth"));
        }
        if self.0.min_weight_leaf.is_nan() || self.0.min_weight_leaf < 1.0 {
            return Err(ParamsError::OutOfRange("min_weight_leaf", "at least 1"));
        }
        Ok(self.0)
    }
}

impl DiagnosisValidParams {
    /// Fits on `features` of windows before failures, their `kinds` (indexes into
    /// `kind_names`), and the feature names used in rules.
    pub fn fit(
        &self,
        features: ArrayView2<f64>,
        kinds: &[usize],
        kind_names: &[String],
        feature_names: &[String],
    ) -> Result<Diagnosis, FitError> {
        super::check_records(features, 2)?;
        if kinds.iter().any(|&k| k >= kind_names.len()) || feature_names.len() != features.ncols() {
            return Err(FitError::Solver(
                "kinds or feature names do not match the data".to_owned(),
            ));
        }
        let targets: Array1<usize> = kinds.iter().copied().collect();
        let dataset = Dataset::new(features.to_owned(), targets);
        let tree: DecisionTree<f64, usize> = DecisionTree::params()
            .max_depth(Some(self.max_depth))
            .min_weight_leaf(self.min_weight_leaf)
            .fit(&dataset)
            .map_err(|e| FitError::Solver(e.to_string()))?;
        let mut nodes = Vec::new();
        flatten(tree.root_node(), kind_names.len(), &mut nodes);
        let mut diagnosis = Diagnosis {
            params: *self,
            kinds: kind_names.to_vec(),
            feature_names: feature_names.to_vec(),
            nodes,
        };
        for (row, &kind) in features.axis_iter(Axis(0)).zip(kinds) {
            let mut index = 0;
            loop {
                let node = &mut diagnosis.nodes[index];
                node.counts[kind] += 1;
                if node.leaf {
                    break;
                }
                index = if row[node.feature] <= node.threshold {
                    node.left
                } else {
                    node.right
                };
            }
        }
        Ok(diagnosis)
    }
}

/// Appends `node` and its subtree in pre-order; returns its index.
fn flatten(node: &TreeNode<f64, usize>, n_kinds: usize, out: &mut Vec<Node>) -> usize {
    let index = out.len();
    let (feature, threshold, _) = node.split();
    out.push(Node {
        leaf: true,
        feature,
        threshold,
        left: 0,
        right: 0,
        prediction: node.prediction().unwrap_or(0),
        counts: vec![0; n_kinds],
    });
    let children = node.children();
    if let (false, Some(left), Some(right)) = (node.is_leaf(), children[0], children[1]) {
        let left = flatten(left, n_kinds, out);
        let right = flatten(right, n_kinds, out);
        let flat = &mut out[index];
        flat.leaf = false;
        flat.left = left;
        flat.right = right;
    }
    index
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;
    use rand08::rngs::SmallRng;
    use rand08::{Rng, SeedableRng};

    use super::*;

    /// Three kinds, each announced by one feature rising: kind k raises feature k.
    fn planted(seed: u64, n: usize) -> (Array2<f64>, Vec<usize>) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut rows = Vec::new();
        let mut kinds = Vec::new();
        for i in 0..n {
            let kind = i % 3;
            for f in 0..4 {
                let signal = if f == kind { 3.0 } else { 0.0 };
                rows.push(signal + rng.gen_range(-1.0..1.0));
            }
            kinds.push(kind);
        }
        (Array2::from_shape_vec((n, 4), rows).unwrap(), kinds)
    }

    fn names() -> (Vec<String>, Vec<String>) {
        (
            vec!["memory_leak".into(), "disk_full".into(), "thermal".into()],
            vec![
                "mem_slope".into(),
                "disk_mean".into(),
                "temp_mean".into(),
                "noise".into(),
            ],
        )
    }

    #[test]
    fn the_tree_recovers_planted_kinds_with_readable_rules() {
        let (x, y) = planted(1, 300);
        let (kinds, features) = names();
        let tree = Diagnosis::params()
            .check()
            .unwrap()
            .fit(x.view(), &y, &kinds, &features)
            .unwrap();
        let (x_val, y_val) = planted(2, 300);
        for score in tree.evaluate(x_val.view(), &y_val) {
            assert!(score.recall.unwrap() > 0.9, "{score:?}");
            assert!(score.precision.unwrap() > 0.9, "{score:?}");
        }
        let diagnosed = tree.diagnose(ndarray::arr1(&[3.0, 0.0, 0.0, 0.0]).view());
        assert_eq!(diagnosed.kind, "memory_leak");
        assert!(diagnosed.confidence > 0.8);
        assert!(
            diagnosed.rules.iter().any(|r| r.starts_with("mem_slope")),
            "{:?}",
            diagnosed.rules
        );
        let rules = tree.rules();
        assert!(
            rules.contains("if ") && rules.contains("=> thermal"),
            "{rules}"
        );
        let json = serde_json::to_string(&tree).unwrap();
        assert_eq!(serde_json::from_str::<Diagnosis>(&json).unwrap(), tree);
    }

    #[test]
    fn bad_params_and_labels_are_refused() {
        assert!(Diagnosis::params().max_depth(0).check().is_err());
        assert!(Diagnosis::params().min_weight_leaf(0.0).check().is_err());
        let (x, _) = planted(1, 30);
        let (kinds, features) = names();
        let valid = Diagnosis::params().check().unwrap();
        assert!(valid.fit(x.view(), &[7; 30], &kinds, &features).is_err());
    }
}
