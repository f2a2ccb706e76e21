//! A fast path for parsing `POST /v1/score` (and `/v1/score/batch`) bodies in their usual
//! shape: `asset`, `window` (metric names to arrays of numbers) and optionally `asset_class`,
//! strings without escapes.
//!
//! serde_json spends most of its time on the window's numbers (with `float_roundtrip`, which
//! the model bundles need, every number takes its exact slow path). Here a number is checked
//! against JSON's grammar as it is read, and converted exactly: in one pass when that is
//! exact (see [`Cursor::number`]), else by the standard library's correctly rounded parser.
//! Either way it is the `f64` serde_json gives.
//!
//! It gives `None` for anything else (escapes, `timestamps`, unknown or repeated keys, a
//! value of the wrong type, a number out of range, broken JSON), and serde_json then parses
//! the body, errors included. It never gives a request serde_json would not give.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use super::{BatchRequest, ScoreRequest};
use crate::api::input::Budgeted;

/// The request, when `bytes` is in the shape this parser handles.
pub(super) fn parse(bytes: &[u8]) -> Option<ScoreRequest> {
    let mut c = Cursor {
        b: bytes,
        i: 0,
        budget: usize::MAX,
    };
    let request = c.request()?;
    c.end()?;
    Some(request)
}

/// The batch (`{"windows": [requests]}`), when every window is in the shape this parser
/// handles and the windows hold at most `max_values` numbers in all (past them it stops).
pub(super) fn parse_batch(bytes: &[u8], max_values: usize) -> Option<BatchRequest> {
    let mut c = Cursor {
        b: bytes,
        i: 0,
        budget: max_values,
    };
    c.eat(b'{')?;
    (c.string()? == "windows").then_some(())?;
    let mut windows = Vec::new();
    c.colon()?.list(b'[', b']', |c| {
        windows.push(c.request()?);
        Some(())
    })?;
    c.eat(b'}')?.end()?;
    Some(BatchRequest { windows })
}

/// A position in the body.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
    /// Numbers the windows may still hold.
    budget: usize,
}

impl<'a> Cursor<'a> {
    /// One score request's object.
    fn request(&mut self) -> Option<ScoreRequest> {
        let (mut asset, mut window, mut asset_class) = (None, None, None);
        self.list(b'{', b'}', |c| {
            match c.string()? {
                "asset" if asset.is_none() => asset = Some(c.colon()?.string()?.to_owned()),
                "window" if window.is_none() => window = Some(c.colon()?.window()?),
                "asset_class" if asset_class.is_none() => {
                    c.colon()?;
                    asset_class = Some(match c.peek()? {
                        b'n' => c.null().map(|()| None)?,
                        _ => Some(c.string()?.to_owned()),
                    });
                }
                _ => return None,
            }
            Some(())
        })?;
        Some(ScoreRequest {
            asset: asset?,
            window: window?,
            timestamps: None,
            asset_class: asset_class.flatten(),
        })
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
        self.b.get(self.i).copied()
    }

    /// Consumes `byte` (after whitespace).
    fn eat(&mut self, byte: u8) -> Option<&mut Self> {
        (self.peek()? == byte).then(|| {
            self.i += 1;
            self
        })
    }

    fn colon(&mut self) -> Option<&mut Self> {
        self.eat(b':')
    }

    fn null(&mut self) -> Option<()> {
        self.peek()?;
        self.b[self.i..].starts_with(b"null").then(|| self.i += 4)
    }

    /// `open`, then items separated by commas (each read by `item`), then `close`.
    fn list(
        &mut self,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(open)?;
        if self.peek()? == close {
            self.i += 1;
            return Some(());
        }
        loop {
            item(self)?;
            match self.peek()? {
                b',' => self.i += 1,
                b if b == close => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Only whitespace is left.
    fn end(&mut self) -> Option<()> {
        self.peek().is_none().then_some(())
    }

    /// A string without escapes.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let rest = &self.b[self.i..];
        let len = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        self.i += len + 1;
        std::str::from_utf8(&rest[..len]).ok()
    }

    /// `{"metric": [numbers], ...}`, each metric once.
    fn window(&mut self) -> Option<BTreeMap<String, Budgeted<f64>>> {
        let mut window = BTreeMap::new();
        self.list(b'{', b'}', |c| {
            let Entry::Vacant(slot) = window.entry(c.string()?.to_owned()) else {
                return None;
            };
            slot.insert(Budgeted(c.colon()?.numbers()?));
            Some(())
        })?;
        Some(window)
    }

    /// `[numbers]`.
    fn numbers(&mut self) -> Option<Vec<f64>> {
        let mut values = Vec::with_capacity(64);
        self.list(b'[', b']', |c| {
            c.budget = c.budget.checked_sub(1)?;
            values.push(c.number()?);
            Some(())
        })?;
        Some(values)
    }

    /// A JSON number, finite as an `f64`. Up to 19 digits whose value is at most 2^53, with
    /// a decimal exponent within ±22, are read in the one pass (both factors of the last
    /// multiplication or division are exact, so it rounds once, correctly); other numbers by
    /// the standard library.
    fn number(&mut self) -> Option<f64> {
        self.peek()?;
        let (b, start) = (self.b, self.i);
        let mut i = start;
        let negative = b[i] == b'-';
        if negative {
            i += 1;
        }
        let (mut mantissa, mut digits) = (0u64, 0u32);
        let mut read_digits = |i: &mut usize| {
            let from = *i;
            while let Some(&d @ b'0'..=b'9') = b.get(*i) {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                *i += 1;
            }
            digits += (*i - from) as u32;
            *i - from
        };
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                read_digits(&mut i);
            }
            _ => return None,
        }
        let mut exponent = 0i64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let n = read_digits(&mut i);
            if n == 0 {
                return None;
            }
            exponent -= n as i64;
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            let sign = match b.get(i) {
                Some(b'-') => {
                    i += 1;
                    -1
                }
                Some(b'+') => {
                    i += 1;
                    1
                }
                _ => 1,
            };
            let from = i;
            let mut e = 0i64;
            while let Some(&d @ b'0'..=b'9') = b.get(i) {
                e = (e * 10 + i64::from(d - b'0')).min(1 << 32);
                i += 1;
            }
            if i == from {
                return None;
            }
            exponent += sign * e;
        }
        self.i = i;
        if digits <= 19 && mantissa <= 1 << 53 && exponent.abs() <= 22 {
            let power = POWERS_OF_TEN[exponent.unsigned_abs() as usize];
            let magnitude = if exponent < 0 {
                mantissa as f64 / power
            } else {
                mantissa as f64 * power
            };
            return Some(if negative { -magnitude } else { magnitude });
        }
        let value: f64 = std::str::from_utf8(&b[start..i]).ok()?.parse().ok()?;
        value.is_finite().then_some(value)
    }
}

/// 10^0 to 10^22, each exact as an `f64`.
const POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::input::parse_json;

    /// The fast parse, and serde_json's, of `body`.
    fn both(body: &str) -> (Option<ScoreRequest>, Option<ScoreRequest>) {
        (parse(body.as_bytes()), parse_json(body.as_bytes()).ok())
    }

    /// The same request, every number to the bit.
    fn same(a: &ScoreRequest, b: &ScoreRequest) -> bool {
        let bits = |w: &BTreeMap<String, Budgeted<f64>>| {
            w.iter()
                .map(|(k, v)| (k.clone(), v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()))
                .collect::<Vec<_>>()
        };
        a.asset == b.asset
            && a.asset_class == b.asset_class
            && a.timestamps.is_none()
            && b.timestamps.is_none()
            && bits(&a.window) == bits(&b.window)
    }

    #[test]
    fn numbers_read_as_serde_json_reads_them() {
        let numbers = [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1",
            "-1",
            "40.7275",
            "1e3",
            "1E-3",
            "2.5e+2",
            "-0e5",
            "0.1",
            "0.30000000000000004",
            "9007199254740993",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "123456789012345678901234567890",
            "1.7976931348623157e308",
            "5e-324",
            "1e-400",
            "2.2250738585072011e-308",
            "4.9406564584124654e-324",
            "0.000001",
            "123.456e-7",
        ];
        for n in numbers {
            let body = format!(r#"{{"asset": "a", "window": {{"m": [{n}, {n}]}}}}"#);
            let (fast, serde) = both(&body);
            let (fast, serde) = (fast.expect(n), serde.expect(n));
            assert!(
                same(&fast, &serde),
                "{n}: {:?} vs {:?}",
                fast.window,
                serde.window
            );
        }
    }

    #[test]
    fn the_usual_shape_parses_as_serde_json_parses_it() {
        let mut state = 17u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 11
        };
        for _ in 0..200 {
            let metric = |name: &str, next: &mut dyn FnMut() -> u64| {
                let values: Vec<String> = (0..60)
                    .map(|_| {
                        let x = (next() as f64 / (1u64 << 53) as f64 - 0.3)
                            * 10f64.powi((next() % 12) as i32 - 4);
                        match next() % 4 {
                            0 => format!("{x}"),
                            1 => format!("{x:.4}"),
                            2 => format!("{x:e}"),
                            _ => format!("{}", x.round() as i64),
                        }
                    })
                    .collect();
                format!("\"{name}\" :[ {} ]", values.join(" , "))
            };
            let class = if next() % 2 == 0 {
                r#", "asset_class": "pump""#
            } else {
                ""
            };
            let body = format!(
                "{{ \"window\":{{{}, {}}}{class},\n\"asset\":\"asset-{}\" }}\n",
                metric("cpu", &mut next),
                metric("mem", &mut next),
                next() % 100
            );
            let (fast, serde) = both(&body);
            let (fast, serde) = (fast.expect(&body), serde.expect(&body));
            assert!(same(&fast, &serde), "{body}");
        }
    }

    #[test]
    fn batches_parse_as_serde_json_parses_them() {
        for body in [
            r#"{"windows": []}"#,
            concat!(
                r#" {"windows": [{"asset": "a", "window": {"m": [1, 2.5]}},"#,
                r#" {"window": {}, "asset": "b", "asset_class": "c"}]} "#
            ),
        ] {
            let fast = parse_batch(body.as_bytes(), usize::MAX).expect(body);
            let serde: BatchRequest = parse_json(body.as_bytes()).expect(body);
            assert_eq!(fast.windows.len(), serde.windows.len(), "{body}");
            for (a, b) in fast.windows.iter().zip(&serde.windows) {
                assert!(same(a, b), "{body}");
            }
        }
        for body in [
            r#"{"windows": [{"asset": "a", "window": {"m": [1]}, "timestamps": [1]}]}"#,
            r#"{"windows": [{"asset": "a", "window": {"m": [1]}}], "extra": 1}"#,
            r#"{"windows": [{"asset": "a", "window": {"m": [1]}},]}"#,
            r#"{"windows": {}}"#,
            r#"{"windows": []"#,
        ] {
            assert!(parse_batch(body.as_bytes(), usize::MAX).is_none(), "{body}");
        }
    }

    #[test]
    fn other_shapes_are_left_to_serde_json() {
        for body in [
            r#"{"asset": "a", "window": {"m": [1, 2]}, "timestamps": [1, 2]}"#,
            r#"{"asset": "a", "window": {"m": [1, 2]}, "extra": 1}"#,
            r#"{"asset": "a", "asset": "b", "window": {"m": [1]}}"#,
            r#"{"asset": "a", "window": {"m": [1], "m": [2]}}"#,
            r#"{"asset": "a\u0041", "window": {"m": [1]}}"#,
            r#"{"asset": "a", "window": {"m": [1, null]}}"#,
            r#"{"asset": "a", "window": {"m": [1e400]}}"#,
            r#"{"asset": "a", "window": {"m": [NaN]}}"#,
            r#"{"asset": "a", "window": {"m": [01]}}"#,
            r#"{"asset": "a", "window": {"m": [1.]}}"#,
            r#"{"asset": "a", "window": {"m": [.5]}}"#,
            r#"{"asset": "a", "window": {"m": [+1]}}"#,
            r#"{"asset": "a", "window": {"m": [1,]}}"#,
            r#"{"asset": "a", "window": {"m": [1]}} x"#,
            r#"{"asset": "a", "window": {"m": [1]}"#,
            r#"{"window": {"m": [1]}}"#,
            r#"{"asset": 7, "window": {"m": [1]}}"#,
            r#"{"asset": "a", "window": {"m": [1]}, "asset_class": nul}"#,
            "{\"asset\": \"a\tb\", \"window\": {\"m\": [1]}}",
            "",
        ] {
            assert!(parse(body.as_bytes()).is_none(), "{body}");
        }
        // Shapes it does handle, as serde_json does.
        for body in [
            r#"{"asset": "a", "window": {}}"#,
            r#"{"asset": "a", "window": {"m": []}, "asset_class": null}"#,
        ] {
            let (fast, serde) = both(body);
            assert!(same(&fast.expect(body), &serde.expect(body)), "{body}");
        }
    }
}
