//! The walk shared by forests laid out as complete binary trees of one depth, one tree after
//! another: tree `t`'s slot `s` is at `(t << depth) + s`; a slot below `2^depth - 1` splits
//! on `features` at `thresholds` (children `2s + 1` when `left(value, threshold)`, `2s + 2`
//! otherwise), and bottom slot `b` of tree `t` holds its leaf's value in
//! `leaves[(t << depth) + b]`. Every walk takes exactly `depth` steps, with no branch on the
//! data. The isolation forest (path lengths) and gradient boosting (leaf values) use it.

/// Trees one row walks down together.
const LANES: usize = 8;

/// A forest's trees in a layout of type `T`, derived from them on first use; `None` when
/// they cannot be laid out. It is derived, so it takes no part in equality.
#[derive(Debug, Clone)]
pub(super) struct LaidOut<T>(pub(super) std::sync::OnceLock<Option<T>>);

impl<T> Default for LaidOut<T> {
    fn default() -> Self {
        LaidOut(std::sync::OnceLock::new())
    }
}

impl<T> PartialEq for LaidOut<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A forest in complete layout, borrowed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout<'a> {
    /// Depth of every tree.
    pub depth: u32,
    /// Split features, `2^depth` slots a tree.
    pub features: &'a [u32],
    /// Split thresholds, as many.
    pub thresholds: &'a [f64],
    /// Leaf values of the bottom slots, as many.
    pub leaves: &'a [f64],
}

impl Layout<'_> {
    /// Folds `add` over the leaf values `row` reaches, tree by tree in order, from `init`.
    /// Trees go down in groups of [`LANES`], one level at a time, so the walks overlap
    /// instead of each waiting on the last; a group's slots span a power of two, so masked
    /// indices need no bounds checks.
    #[inline]
    pub fn fold(
        &self,
        row: &[f64],
        left: impl Fn(f64, f64) -> bool,
        init: f64,
        add: impl Fn(f64, f64) -> f64,
    ) -> f64 {
        let size = 1usize << self.depth;
        let splits = size - 1;
        let group = LANES * size;
        let mut acc = init;
        let mut features = self.features.chunks_exact(group);
        let mut thresholds = self.thresholds.chunks_exact(group);
        let mut leaves = self.leaves.chunks_exact(group);
        for ((features, thresholds), leaves) in
            (&mut features).zip(&mut thresholds).zip(&mut leaves)
        {
            let Some(mask) = features.len().checked_sub(1) else {
                return acc;
            };
            let (thresholds, leaves) = (&thresholds[..=mask], &leaves[..=mask]);
            let mut slots = [0usize; LANES];
            for _ in 0..self.depth {
                for (lane, slot) in slots.iter_mut().enumerate() {
                    let at = (lane * size + *slot) & mask;
                    let goes_left = left(row[features[at] as usize], thresholds[at]);
                    *slot = 2 * *slot + 2 - usize::from(goes_left);
                }
            }
            for (lane, slot) in slots.iter().enumerate() {
                acc = add(acc, leaves[(lane * size + slot - splits) & mask]);
            }
        }
        let first = self.features.len() / group * LANES;
        for t in first..self.features.len() / size {
            acc = add(acc, self.leaf(t, row, &left));
        }
        acc
    }

    /// The leaf value `row` reaches in tree `t`.
    pub fn leaf(&self, t: usize, row: &[f64], left: impl Fn(f64, f64) -> bool) -> f64 {
        let slots = (t << self.depth)..((t + 1) << self.depth);
        let (features, thresholds) = (
            &self.features[slots.clone()],
            &self.thresholds[slots.clone()],
        );
        let mut slot = 0usize;
        for _ in 0..self.depth {
            let goes_left = left(row[features[slot] as usize], thresholds[slot]);
            slot = 2 * slot + 2 - usize::from(goes_left);
        }
        self.leaves[slots][slot - ((1usize << self.depth) - 1)]
    }
}
