//! Drift: how far live windows have moved from the windows a model was built on, by the
//! population stability index (PSI) of each feature and of the failure probability.
//!
//! At training, [`Reference::of`] cuts each feature's values on the reference windows (the
//! validation windows, the latest part of the history) into bins at its deciles, and keeps
//! the share of windows in each bin. Serving counts live windows per bin
//! ([`Reference::bins`]); [`psi`] compares the counts with the shares:
//! `sum((live - expected) * ln(live / expected))`, shares floored at 1e-4. Rules of thumb:
//! below 0.1 no shift, 0.1 to 0.25 a moderate one, above 0.25 a large one.

use serde::{Deserialize, Serialize};

/// Bins of one quantity: cut points and the reference share of each bin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bins {
    /// Ascending cut points; bin `k` holds values above `edges[k - 1]` up to `edges[k]`.
    pub edges: Vec<f64>,
    /// Share of the reference values in each bin (`edges.len() + 1` of them).
    pub expected: Vec<f64>,
}

impl Bins {
    /// Bins at the `bins`-quantiles of the finite `values` (ties merge bins); `None` when
    /// there is no finite value.
    pub fn of(values: &[f64], bins: usize) -> Option<Bins> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        // Each cut point is the largest value of its quantile, so a bin holds its share.
        let mut edges: Vec<f64> = (1..bins.max(1))
            .map(|k| sorted[(k * sorted.len() / bins.max(1)).saturating_sub(1)])
            .collect();
        edges.dedup();
        let mut counts = vec![0_u64; edges.len() + 1];
        let reference = Bins {
            edges,
            expected: Vec::new(),
        };
        for &v in &sorted {
            counts[reference.bin(v)] += 1;
        }
        let n = sorted.len() as f64;
        Some(Bins {
            expected: counts.iter().map(|&c| c as f64 / n).collect(),
            ..reference
        })
    }

    /// The bin of `v` (a value that is not finite goes to the last bin).
    pub fn bin(&self, v: f64) -> usize {
        if v.is_nan() {
            return self.edges.len();
        }
        self.edges.partition_point(|&e| e < v)
    }

    /// Number of bins.
    pub fn len(&self) -> usize {
        self.edges.len() + 1
    }

    /// Never true: there is always at least one bin.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What drift is measured against: bins of every feature and of the probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// One per feature of the schema, in order (`None`: no finite value to bin).
    pub features: Vec<Option<Bins>>,
    /// The failure probability's bins.
    pub score: Bins,
    /// How many reference windows.
    pub windows: u64,
}

/// Deciles.
const BINS: usize = 10;

impl Reference {
    /// From the reference windows' features (`columns[f]` holds feature `f` of every window)
    /// and probabilities.
    pub fn of(columns: &[Vec<f64>], probabilities: &[f64]) -> Option<Reference> {
        Some(Reference {
            features: columns.iter().map(|c| Bins::of(c, BINS)).collect(),
            score: Bins::of(probabilities, BINS)?,
            windows: probabilities.len() as u64,
        })
    }

    /// The bin of each feature (`u16::MAX` where it has no bins), then of the probability.
    pub fn bins(&self, features: &[f64], probability: f64) -> Vec<u16> {
        let mut bins: Vec<u16> = self
            .features
            .iter()
            .zip(features)
            .map(|(b, &v)| b.as_ref().map_or(u16::MAX, |b| b.bin(v) as u16))
            .collect();
        bins.push(self.score.bin(probability) as u16);
        bins
    }

    /// Empty counts shaped like this reference: per feature, then the probability.
    pub fn empty_counts(&self) -> Vec<Vec<u64>> {
        self.features
            .iter()
            .map(|b| vec![0; b.as_ref().map_or(0, Bins::len)])
            .chain(std::iter::once(vec![0; self.score.len()]))
            .collect()
    }
}

/// Adds one window's [`Reference::bins`] to `counts` (shaped by [`Reference::empty_counts`]).
pub fn count(counts: &mut [Vec<u64>], bins: &[u16]) {
    for (c, &b) in counts.iter_mut().zip(bins) {
        if let Some(slot) = c.get_mut(b as usize) {
            *slot += 1;
        }
    }
}

/// The population stability index of live `counts` against the `expected` shares; `None`
/// without live windows or when the shapes differ.
pub fn psi(expected: &[f64], counts: &[u64]) -> Option<f64> {
    let n: u64 = counts.iter().sum();
    if n == 0 || expected.len() != counts.len() {
        return None;
    }
    const FLOOR: f64 = 1e-4;
    Some(
        expected
            .iter()
            .zip(counts)
            .map(|(&e, &c)| {
                let (e, a) = (e.max(FLOOR), (c as f64 / n as f64).max(FLOOR));
                (a - e) * (a / e).ln()
            })
            .sum(),
    )
}

/// Drift of live `counts` (per feature, then the probability) against `reference`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Live windows counted.
    pub windows: u64,
    /// PSI of the failure probability.
    pub score_psi: Option<f64>,
    /// The largest PSI of any feature.
    pub max_feature_psi: Option<f64>,
    /// The features that moved most: (name, PSI), largest first, at most 5.
    pub top_features: Vec<(String, f64)>,
}

impl Measured {
    /// The larger PSI, of the probability or of any feature (0 when neither is known).
    pub fn largest(&self) -> f64 {
        self.score_psi
            .unwrap_or(0.0)
            .max(self.max_feature_psi.unwrap_or(0.0))
    }
}

/// Measures `counts` against `reference`; `names` are the features' names.
pub fn measure(reference: &Reference, counts: &[Vec<u64>], names: &[String]) -> Measured {
    let n = reference.features.len();
    let mut features: Vec<(String, f64)> = reference
        .features
        .iter()
        .zip(counts)
        .zip(names)
        .filter_map(|((b, c), name)| Some((name.clone(), psi(&b.as_ref()?.expected, c)?)))
        .collect();
    features.sort_by(|a, b| b.1.total_cmp(&a.1));
    Measured {
        windows: counts.get(n).map_or(0, |c| c.iter().sum()),
        score_psi: counts
            .get(n)
            .and_then(|c| psi(&reference.score.expected, c)),
        max_feature_psi: features.first().map(|f| f.1),
        top_features: features.into_iter().take(5).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_distribution_has_no_drift_and_a_shifted_one_has_much() {
        let reference: Vec<f64> = (0..1000).map(|i| (i % 100) as f64).collect();
        let bins = Bins::of(&reference, 10).unwrap();
        assert_eq!(bins.len(), 10);
        assert!(bins.expected.iter().all(|&e| (e - 0.1).abs() < 1e-9));
        let counts_of = |values: &[f64]| {
            let mut c = vec![0; bins.len()];
            for &v in values {
                c[bins.bin(v)] += 1;
            }
            c
        };
        let same: Vec<f64> = (0..500).map(|i| ((i * 7) % 100) as f64).collect();
        assert!(psi(&bins.expected, &counts_of(&same)).unwrap() < 0.05);
        let shifted: Vec<f64> = same.iter().map(|v| v + 50.0).collect();
        assert!(psi(&bins.expected, &counts_of(&shifted)).unwrap() > 1.0);
        assert_eq!(psi(&bins.expected, &[0; 10]), None);
        // A constant feature has one bin, and no drift while it stays constant.
        let constant = Bins::of(&[3.0; 50], 10).unwrap();
        assert_eq!(constant.len(), 2);
        assert_eq!(constant.bin(3.0), 0);
        assert_eq!(constant.bin(4.0), 1);
    }

    #[test]
    fn measure_ranks_the_features_that_moved() {
        let a: Vec<f64> = (0..200).map(f64::from).collect();
        let p: Vec<f64> = (0..200).map(|i| f64::from(i) / 200.0).collect();
        let reference = Reference::of(&[a.clone(), a.clone()], &p).unwrap();
        let mut counts = reference.empty_counts();
        for i in 0..100 {
            let v = f64::from(i * 2);
            count(
                &mut counts,
                &reference.bins(&[v, v + 1000.0], f64::from(i) / 100.0),
            );
        }
        let m = measure(&reference, &counts, &["steady".into(), "moved".into()]);
        assert_eq!(m.windows, 100);
        assert_eq!(m.top_features[0].0, "moved");
        assert!(m.max_feature_psi.unwrap() > 1.0);
        assert!(m.top_features[1].1 < 0.05, "{m:?}");
        assert!(m.score_psi.unwrap() < 0.1, "{m:?}");
    }
}
