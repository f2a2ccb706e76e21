//! Models: the algorithms that learn from feature vectors. Plain synchronous code over
//! ndarray views (no IO): the isolation forest, the calibrated failure-probability model
//! the diagnosis tree, and gradient-boosted regression trees for time to failure.
//!
//! Every algorithm follows linfa's shape: unchecked params -> `check()` -> valid params ->
//! `fit()` -> fitted model, with typed errors for rejected values and data.

pub mod bundle;
mod complete;
pub mod diagnosis;
pub mod drift;
pub mod evaluation;
pub mod failure;
pub mod gradient_boosting;
pub mod isolation_forest;
pub mod streaming;

use ndarray::ArrayView2;

pub use diagnosis::Diagnosis;
pub use failure::FailureModel;
pub use gradient_boosting::GradientBoosting;
pub use isolation_forest::IsolationForest;

/// A hyperparameter that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// Must be at least 1.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// Outside its range.
    #[error("{0} must be {1}")]
    OutOfRange(&'static str, &'static str),
    /// Below its minimum.
    #[error("{name} must be at least {min}, got {got}")]
    TooSmall {
        /// The parameter.
        name: &'static str,
        /// Its minimum.
        min: usize,
        /// The value given.
        got: usize,
    },
}

/// Training data that cannot be fitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FitError {
    /// Fewer rows than the algorithm needs.
    #[error("need at least {min} rows, got {got}")]
    TooFewRows {
        /// The minimum.
        min: usize,
        /// Rows given.
        got: usize,
    },
    /// No feature columns.
    #[error("the records have no features")]
    NoFeatures,
    /// The labels hold one class only (in the fit or the calibration slice).
    #[error("the labels need both failures and normal windows")]
    OneClass,
    /// The solver failed.
    #[error("solver failed: {0}")]
    Solver(String),
    /// A NaN or infinite value.
    #[error("value at row {row}, column {col} is not finite")]
    NonFinite {
        row: usize,
        /// Column.
        col: usize,
    },
}

/// [`check_records`] on `records`, the rows `rows` of a larger set, copied out: an error
/// names the row of that set.
pub fn check_selected(
    records: ArrayView2<f64>,
    rows: &[usize],
    min_rows: usize,
) -> Result<(), FitError> {
    check_records(records, min_rows).map_err(|e| match e {
        FitError::NonFinite { row, col } => FitError::NonFinite {
            row: rows[row],
            col,
        },
        other => other,
    })
}

/// Checks that `records` has at least `min_rows` rows, some columns, and only finite values.
pub fn check_records(records: ArrayView2<f64>, min_rows: usize) -> Result<(), FitError> {
    let (rows, cols) = records.dim();
    if rows < min_rows {
        return Err(FitError::TooFewRows {
            min: min_rows,
            got: rows,
        });
    }
    if cols == 0 {
        return Err(FitError::NoFeatures);
    }
    // A contiguous matrix is scanned as one slice (much faster than indexed iteration).
    let bad = match records.as_slice() {
        Some(values) => values
            .iter()
            .position(|v| !v.is_finite())
            .map(|p| (p / cols, p % cols)),
        None => records
            .indexed_iter()
            .find(|(_, v)| !v.is_finite())
            .map(|(at, _)| at),
    };
    if let Some((row, col)) = bad {
        return Err(FitError::NonFinite { row, col });
    }
    Ok(())
}

/// `v` rounded to `decimals` places, for text: printed with `{}` it reads like `{:.N}`
/// without trailing zeros, and costs far less to format (the shortest-representation path
/// rather than exact fixed-precision formatting). Never negative zero.
pub(crate) fn rounded(v: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (v * scale).round() / scale + 0.0
}
