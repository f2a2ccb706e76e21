//! The words every layer shares, kept at the bottom of the crate so that no two modules need
//! each other for them: the rule for asset, metric and class names, one metric's time
//! series, and how far an action may go on its own. It imports nothing from the crate.

use serde::{Deserialize, Serialize};

/// Longest asset, metric, class or action name, in bytes.
pub const MAX_NAME_LEN: usize = 200;

/// Checks an asset, metric or class name: 1 to 200 characters from `A-Z a-z 0-9 _ . : / -`,
/// starting with a letter, a digit or `_`. This admits Prometheus instance labels such as
/// `host-1:9100` and metric names such as `node_memory_bytes`.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    first_ok
        && name.len() <= MAX_NAME_LEN
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-'))
}

/// Why `name` is refused, in the words every error about a name uses.
pub fn name_rule(name: &str) -> String {
    format!(
        "{name:?} is not a valid name: 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 _ . : / -, \
         starting with a letter, digit or _"
    )
}

/// One metric's history: ascending Unix seconds and values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricHistory {
    /// Timestamps, Unix seconds, ascending.
    pub ts: Vec<i64>,
    /// The value at each timestamp.
    pub values: Vec<f64>,
}

impl MetricHistory {
    /// The same points in time order: a stable sort, so samples at the same second keep
    /// their order; nothing moves when they are in order already.
    pub fn into_time_order(self) -> Self {
        if self.ts.is_sorted() {
            return self;
        }
        let mut order: Vec<usize> = (0..self.ts.len()).collect();
        order.sort_by_key(|&k| self.ts[k]);
        MetricHistory {
            ts: order.iter().map(|&k| self.ts[k]).collect(),
            values: order.iter().map(|&k| self.values[k]).collect(),
        }
    }
}

/// How far an action may go on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Recommend only; nothing runs.
    Observe,
    /// Wait for an admin's approval (which expires).
    Approve,
    /// Run at once when the guard permits.
    Auto,
}

impl Mode {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Observe => "observe",
            Self::Approve => "approve",
            Self::Auto => "auto",
        }
    }
}
