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

/// Longest series key (a metric name with its labels, `name{k="v",...}`), in bytes.
pub const MAX_SERIES_KEY_LEN: usize = 1000;

/// Most labels one series may carry (besides its name and the asset's labels).
pub const MAX_SERIES_LABELS: usize = 32;

/// One stored series of an asset: a metric name (the family, such as
/// `node_cpu_seconds_total`) and the labels that tell its series apart (`cpu`, `mode`).
/// Its canonical text, [`SeriesKey::key`], is the family alone when there are no labels,
/// else `family{a="x",b="y"}` with labels in name order and `\`, `"` and newlines escaped
/// as in Prometheus' text format; that text is the metric's name in the dictionary.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    /// The metric name.
    pub family: String,
    /// The series' labels.
    pub labels: std::collections::BTreeMap<String, String>,
}

impl SeriesKey {
    /// A series without labels.
    pub fn plain(family: &str) -> Self {
        Self {
            family: family.to_owned(),
            labels: Default::default(),
        }
    }

    /// Reads `family` or `family{k="v",...}`; labels may come in any order and a trailing
    /// comma is allowed. The family follows [`is_valid_name`]; label names are Prometheus'
    /// (`[A-Za-z_][A-Za-z0-9_]*`); values are any text without a NUL byte. Refuses more
    /// than [`MAX_SERIES_LABELS`] labels, a label given twice, and a key whose canonical
    /// text is longer than [`MAX_SERIES_KEY_LEN`].
    pub fn parse(text: &str) -> Result<Self, String> {
        let (family, rest) = match text.find('{') {
            Some(open) => (&text[..open], Some(&text[open + 1..])),
            None => (text, None),
        };
        if !is_valid_name(family) {
            return Err(name_rule(family));
        }
        let mut key = Self::plain(family);
        if let Some(mut rest) = rest {
            loop {
                rest = rest.trim_start();
                if let Some(after) = rest.strip_prefix('}') {
                    if !after.is_empty() {
                        return Err(format!("{text:?}: text after the closing brace"));
                    }
                    break;
                }
                let eq = rest
                    .find('=')
                    .ok_or_else(|| format!("{text:?}: a label needs name=\"value\""))?;
                let name = rest[..eq].trim();
                let value_text = rest[eq + 1..].trim_start();
                let (value, after) = unquote(value_text)
                    .ok_or_else(|| format!("{text:?}: label {name:?} needs a quoted value"))?;
                key.insert(name, value)?;
                rest = after.trim_start();
                rest = rest.strip_prefix(',').unwrap_or(rest);
                if rest.is_empty() {
                    return Err(format!("{text:?}: missing closing brace"));
                }
            }
        }
        key.checked()
    }

    /// Adds a label, refusing a malformed name, a NUL in the value or a repeated name.
    pub fn insert(&mut self, name: &str, value: String) -> Result<(), String> {
        if !is_label_name(name) {
            return Err(format!(
                "{name:?} is not a label name: [A-Za-z_][A-Za-z0-9_]*"
            ));
        }
        if value.contains('\0') {
            return Err(format!("label {name}: values may not hold a NUL byte"));
        }
        if self.labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} is given twice"));
        }
        Ok(())
    }

    /// The key if within [`MAX_SERIES_LABELS`] and [`MAX_SERIES_KEY_LEN`].
    pub fn checked(self) -> Result<Self, String> {
        if self.labels.len() > MAX_SERIES_LABELS {
            return Err(format!(
                "{}: {} labels, more than {MAX_SERIES_LABELS}",
                self.family,
                self.labels.len()
            ));
        }
        let len = self.key().len();
        if len > MAX_SERIES_KEY_LEN {
            return Err(format!(
                "{}: the series key is {len} bytes, more than {MAX_SERIES_KEY_LEN}",
                self.family
            ));
        }
        Ok(self)
    }

    /// The canonical text (see the type's documentation).
    pub fn key(&self) -> String {
        if self.labels.is_empty() {
            return self.family.clone();
        }
        let mut out = String::with_capacity(self.family.len() + 16 * self.labels.len());
        out.push_str(&self.family);
        out.push('{');
        for (i, (name, value)) in self.labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(name);
            out.push_str("=\"");
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
        out
    }
}

/// The canonical series key of `text` (see [`SeriesKey`]); a plain name is its own key.
pub fn canonical_series_key(text: &str) -> Result<String, String> {
    if !text.contains('{') {
        return if is_valid_name(text) {
            Ok(text.to_owned())
        } else {
            Err(name_rule(text))
        };
    }
    SeriesKey::parse(text).map(|k| k.key())
}

/// A Prometheus label name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reads a double-quoted value with `\\`, `\"` and `\n` escapes from the front of
/// `text`; returns it and the rest.
fn unquote(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &body[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

/// What Prometheus' metadata says about one metric family (`metric_family` rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyMeta {
    /// `counter`, `gauge`, `histogram`, `gaugehistogram`, `summary`, `info`, `stateset` or
    /// `unknown`.
    pub kind: &'static str,
    /// Help text.
    pub help: Option<String>,
    /// Unit.
    pub unit: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_key_is_canonical_whatever_the_label_order() {
        let key = SeriesKey::parse(r#"node_cpu_seconds_total{mode="idle", cpu="0",}"#).unwrap();
        assert_eq!(key.family, "node_cpu_seconds_total");
        assert_eq!(key.key(), r#"node_cpu_seconds_total{cpu="0",mode="idle"}"#);
        assert_eq!(SeriesKey::parse(&key.key()).unwrap(), key);
        assert_eq!(canonical_series_key("up").unwrap(), "up");
        assert_eq!(SeriesKey::parse("up{}").unwrap().key(), "up");
    }

    #[test]
    fn label_values_round_trip_with_escapes() {
        let mut key = SeriesKey::plain("x");
        key.insert("path", "C:\\a \"b\"\nc,}".to_owned()).unwrap();
        let text = key.key();
        assert_eq!(text, r#"x{path="C:\\a \"b\"\nc,}"}"#);
        assert_eq!(SeriesKey::parse(&text).unwrap(), key);
    }

    #[test]
    fn malformed_and_oversized_keys_are_refused() {
        for bad in [
            "",
            "{a=\"b\"}",
            "x{a=b}",
            "x{a=\"b\"",
            "x{a=\"b\"} tail",
            "x{1a=\"b\"}",
            "x{a=\"b\",a=\"c\"}",
            "x y",
        ] {
            assert!(SeriesKey::parse(bad).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..=MAX_SERIES_LABELS)
            .map(|i| format!("l{i}=\"v\""))
            .collect();
        assert!(SeriesKey::parse(&format!("x{{{}}}", many.join(","))).is_err());
        let long = format!("x{{a=\"{}\"}}", "v".repeat(MAX_SERIES_KEY_LEN));
        assert!(SeriesKey::parse(&long).is_err());
    }
}

/// How values combine: within a group of series, or across groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// The sum.
    #[default]
    Sum,
    /// The mean.
    Avg,
    /// The largest.
    Max,
    /// The smallest.
    Min,
    /// How many series (or groups) have a value.
    Count,
}

/// Which series of an asset enter a derived metric, and how each is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// A metric family, or several as `a|b`.
    pub name: String,
    /// Label matchers: `"v"` equals v, `"a|b"` is one of them, `"!v"` and `"!a|b"` none of
    /// them. A label the series lacks has the value `""`.
    #[serde(default, rename = "match")]
    pub matchers: std::collections::BTreeMap<String, String>,
    /// Read each series as its per-second rate (counters), resets handled as PromQL's
    /// `rate()` does.
    #[serde(default)]
    pub rate: bool,
    /// How the series of one group combine. Default sum.
    #[serde(default)]
    pub within: Combine,
}

/// One model input derived from an asset's stored series (`[[features.metrics]]`): the
/// selected series (rates when `rate`), combined within groups of equal `by` labels,
/// optionally divided group by group by another selection, then aggregated across groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivedMetric {
    /// The model input's name.
    #[serde(rename = "as")]
    pub as_name: String,
    /// A metric family, or several as `a|b`.
    pub name: String,
    /// Label matchers, as in [`Selection::matchers`].
    #[serde(default, rename = "match")]
    pub matchers: std::collections::BTreeMap<String, String>,
    /// Rates of counters.
    #[serde(default)]
    pub rate: bool,
    /// How the series of one group combine. Default sum.
    #[serde(default)]
    pub within: Combine,
    /// The labels whose values make a group. Default none: one group of all.
    #[serde(default)]
    pub by: Vec<String>,
    /// Divide each group by the same group of this selection.
    #[serde(default)]
    pub divide_by: Option<Selection>,
    /// How the groups combine into the one value. Default avg.
    #[serde(default = "default_across")]
    pub aggregate: Combine,
}

fn default_across() -> Combine {
    Combine::Avg
}

impl DerivedMetric {
    /// The numerator as a selection.
    pub fn selection(&self) -> Selection {
        Selection {
            name: self.name.clone(),
            matchers: self.matchers.clone(),
            rate: self.rate,
            within: self.within,
        }
    }
}

/// What the models see of an asset's stored series (`[features]`), saved with each model
/// so that scoring derives exactly what training did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelInputs {
    /// The derived metrics. Default: node_exporter's and Vigil's own (see
    /// [`ModelInputs::default`]).
    pub metrics: Vec<DerivedMetric>,
    /// An asset none of whose series any derived metric selects keeps its unlabelled
    /// series as model inputs (counters as `<name>:rate`). Default true.
    pub passthrough: bool,
    /// The range of rates, in seconds; 0 is four grid steps. Default 0.
    pub rate_range_secs: i64,
    /// Families read as counters besides those named `*_total`, `*_count`, `*_sum`:
    /// training adds those that remote-write metadata calls counters.
    pub counters: Vec<String>,
}

impl Default for ModelInputs {
    fn default() -> Self {
        let sel = |name: &str, matchers: &[(&str, &str)], rate: bool, within: Combine| Selection {
            name: name.to_owned(),
            matchers: matchers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            rate,
            within,
        };
        let derived =
            |as_name: &str, s: Selection, by: &[&str], divide_by: Option<Selection>, aggregate| {
                DerivedMetric {
                    as_name: as_name.to_owned(),
                    name: s.name,
                    matchers: s.matchers,
                    rate: s.rate,
                    within: s.within,
                    by: by.iter().map(|b| (*b).to_owned()).collect(),
                    divide_by,
                    aggregate,
                }
            };
        const VIRTUAL_FS: &str = "!tmpfs|ramfs|devtmpfs|overlay|squashfs|nsfs|proc|sysfs|cgroup|cgroup2|autofs|fuse.lxcfs";
        let cpu = "node_cpu_seconds_total";
        Self {
            metrics: vec![
                derived(
                    "cpu_busy_fraction",
                    sel(cpu, &[("mode", "!idle|iowait|steal")], true, Combine::Sum),
                    &["cpu"],
                    Some(sel(cpu, &[], true, Combine::Sum)),
                    Combine::Avg,
                ),
                derived(
                    "memory_available_fraction",
                    sel("node_memory_MemAvailable_bytes", &[], false, Combine::Sum),
                    &[],
                    Some(sel("node_memory_MemTotal_bytes", &[], false, Combine::Sum)),
                    Combine::Avg,
                ),
                derived(
                    "filesystem_free_fraction_min",
                    sel(
                        "node_filesystem_avail_bytes",
                        &[("fstype", VIRTUAL_FS)],
                        false,
                        Combine::Sum,
                    ),
                    &["device", "mountpoint"],
                    Some(sel(
                        "node_filesystem_size_bytes",
                        &[("fstype", VIRTUAL_FS)],
                        false,
                        Combine::Sum,
                    )),
                    Combine::Min,
                ),
                derived(
                    "disk_io_time_fraction_max",
                    sel("node_disk_io_time_seconds_total", &[], true, Combine::Sum),
                    &["device"],
                    None,
                    Combine::Max,
                ),
                derived(
                    "network_errors_per_second",
                    sel(
                        "node_network_receive_errs_total|node_network_transmit_errs_total",
                        &[("device", "!lo")],
                        true,
                        Combine::Sum,
                    ),
                    &[],
                    None,
                    Combine::Sum,
                ),
                derived(
                    "load1_per_core",
                    sel("node_load1", &[], false, Combine::Sum),
                    &[],
                    Some(sel(cpu, &[("mode", "idle")], false, Combine::Count)),
                    Combine::Avg,
                ),
                derived(
                    "vigil_requests_per_second",
                    sel("vigil_http_requests_total", &[], true, Combine::Sum),
                    &[],
                    None,
                    Combine::Sum,
                ),
                derived(
                    "vigil_server_error_fraction",
                    sel(
                        "vigil_http_requests_total",
                        &[("status", "500|502|503|504")],
                        true,
                        Combine::Sum,
                    ),
                    &[],
                    Some(sel("vigil_http_requests_total", &[], true, Combine::Sum)),
                    Combine::Avg,
                ),
                derived(
                    "vigil_samples_skipped_per_second",
                    sel("vigil_samples_skipped_total", &[], true, Combine::Sum),
                    &[],
                    None,
                    Combine::Sum,
                ),
            ],
            passthrough: true,
            rate_range_secs: 0,
            counters: Vec::new(),
        }
    }
}
