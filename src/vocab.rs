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
