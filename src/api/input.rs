//! Request input: JSON and query extractors whose rejections are [`ApiError`]s (so a bad
//! body gets the JSON error body with a stable code, never axum's plain text), and the
//! validation rules for names that clients send.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use chrono::DateTime;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde::de::{self, Deserializer, Visitor};
use serde_json::error::Category;
use std::fmt;

use super::error::ApiError;
use crate::ingest;

/// JSON body extractor whose rejections are [`ApiError`]s: a wrong content type is 415, a
/// body over the limit 413, broken JSON 400 `malformed_json`, JSON of the wrong shape 422
/// `invalid_body`, and the non-standard `NaN`/`Infinity` tokens that some JSON encoders
/// write 422 `non_finite_value`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse_json(&json_body(req, state).await?).map(Self)
    }
}

/// Reads a JSON body: a wrong content type is 415, a body over the limit 413.
pub async fn json_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    if !is_json(req.headers()) {
        return Err(ApiError::UnsupportedMediaType(
            "expected Content-Type: application/json".to_owned(),
        ));
    }
    let body = read_body(req, state).await?;
    check_no_nul(&body)?;
    Ok(body)
}

/// Refuses a JSON body with a NUL character in a string (`\u0000`): PostgreSQL stores no NUL
/// in text or jsonb, so such a value would fail only when written (a 500, or a lost score
/// batch), after other parts of the request had taken effect.
fn check_no_nul(body: &[u8]) -> Result<(), ApiError> {
    let mut at = 0;
    while let Some(offset) = body[at..].iter().position(|&b| b == b'\\') {
        let start = at + offset;
        let run = body[start..].iter().take_while(|&&b| b == b'\\').count();
        let end = start + run;
        // An odd run of backslashes escapes what follows; an even one is literal backslashes.
        if run % 2 == 1 && body[end..].starts_with(b"u0000") {
            return Err(ApiError::invalid(
                "body",
                "strings must not contain the NUL character (\\u0000)",
            ));
        }
        at = end;
    }
    Ok(())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// Reads the whole body, mapping the body limit to 413 `payload_too_large`.
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let limit = req
        .extensions()
        .get::<BodyLimit>()
        .map(|l| l.0)
        .unwrap_or_default();
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::UnreadableBody(rejection.body_text())
        }
    })
}

/// Parses JSON with the error mapping of [`ApiJson`].
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        Category::Data => ApiError::InvalidBody(e.to_string()),
        Category::Syntax => match non_finite_token(bytes, e.line(), e.column()) {
            Some(token) => ApiError::NonFinite(format!(
                "line {} column {}: {token} is not a JSON number; send finite values only",
                e.line(),
                e.column()
            )),
            None => ApiError::MalformedJson(e.to_string()),
        },
        Category::Eof | Category::Io => ApiError::MalformedJson(e.to_string()),
    })
}

/// The `NaN`/`Infinity` token at a syntax error position (1-based line and column), if any.
fn non_finite_token(bytes: &[u8], line: usize, column: usize) -> Option<&'static str> {
    let text = std::str::from_utf8(bytes).ok()?;
    let line_text = text.lines().nth(line.checked_sub(1)?)?;
    // serde_json reports the column of the first unexpected byte; look a little around it.
    let start = column.saturating_sub(3).min(line_text.len());
    let rest = line_text.get(start..)?;
    ["-Infinity", "Infinity", "NaN"]
        .into_iter()
        .find(|token| rest.find(token).is_some_and(|at| at <= 3))
}

/// Parses JSON like [`parse_json`], allowing at most `max_items` elements in all the
/// [`Budgeted`] arrays of `T` together: past that, parsing stops at once with `too_many()`,
/// so an oversized batch is refused after reading `max_items` elements, not after building
/// the whole body in memory.
pub fn parse_json_within<T: DeserializeOwned>(
    bytes: &[u8],
    max_items: usize,
    too_many: impl FnOnce() -> ApiError,
) -> Result<T, ApiError> {
    BUDGET.with(|b| b.set(Some(max_items)));
    EXCEEDED.with(|e| e.set(false));
    let parsed = parse_json(bytes);
    BUDGET.with(|b| b.set(None));
    if EXCEEDED.with(std::cell::Cell::take) {
        return Err(too_many());
    }
    parsed
}

thread_local! {
    /// Elements that [`Budgeted`] arrays may still take during [`parse_json_within`] on
    /// this thread (`None`: no budget). Parsing is synchronous, so the budget cannot leak
    /// to another request.
    static BUDGET: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    /// Whether the budget ran out.
    static EXCEEDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// An array whose elements count against the budget of [`parse_json_within`] (outside
/// it, a plain `Vec`).
#[derive(Debug, Clone)]
pub struct Budgeted<T>(pub Vec<T>);

impl<T> Default for Budgeted<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> std::ops::Deref for Budgeted<T> {
    type Target = Vec<T>;

    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Budgeted<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        Vec::<T>::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        Vec::<T>::json_schema(generator)
    }

    fn inline_schema() -> bool {
        Vec::<T>::inline_schema()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Budgeted<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SeqVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for SeqVisitor<T> {
            type Value = Budgeted<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Budgeted<T>, A::Error> {
                let mut items = Vec::new();
                loop {
                    let spent = BUDGET.with(|b| match b.get() {
                        None => Ok(()),
                        Some(0) => Err(()),
                        Some(n) => {
                            b.set(Some(n - 1));
                            Ok(())
                        }
                    });
                    // Whether another element follows is only known by reading it; the
                    // budget is checked before, so at most one element past it is read.
                    let Some(item) = seq.next_element()? else {
                        return Ok(Budgeted(items));
                    };
                    if spent.is_err() {
                        EXCEEDED.with(|e| e.set(true));
                        return Err(de::Error::custom("too many elements"));
                    }
                    items.push(item);
                }
            }
        }
        deserializer.deserialize_seq(SeqVisitor(std::marker::PhantomData))
    }
}

/// The configured body limit, put in request extensions so that errors can name it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// `Query<T>` whose rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection: QueryRejection| ApiError::BadQuery(rejection.body_text()))
    }
}

/// `Path<T>` whose rejections are [`ApiError`]s (400 `invalid_path` in the JSON error body,
/// for example a non-numeric id).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection| ApiError::BadPath(rejection.body_text()))
    }
}

/// A list route's page size: `limit` when given (1 to 1000), else `default`.
pub fn page_limit(limit: Option<i64>, default: i64) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(default);
    if (1..=1000).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::BadQuery("limit must be 1 to 1000".to_owned()))
    }
}

/// Checks an asset, metric or class name sent by a client (rules in
/// [`crate::vocab::is_valid_name`]).
pub fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    if crate::vocab::is_valid_name(name) {
        return Ok(());
    }
    Err(ApiError::invalid(field, crate::vocab::name_rule(name)))
}

/// A timestamp as Unix seconds or an RFC 3339 string, in microseconds since the epoch.
/// An unreadable one becomes `None` and is reported with its position.
#[derive(Debug, Clone, Copy)]
pub struct Timestamp(pub Option<i64>);

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Unix seconds, or an RFC 3339 string",
            "oneOf": [
                { "type": "number" },
                { "type": "string", "format": "date-time" }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TsVisitor;
        impl Visitor<'_> for TsVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("Unix seconds or an RFC 3339 string")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Timestamp, E> {
                Ok(Timestamp(ingest::seconds_to_micros(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v.checked_mul(1_000_000)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                Ok(Timestamp(
                    i64::try_from(v).ok().and_then(|v| v.checked_mul(1_000_000)),
                ))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Ok(Timestamp(
                    DateTime::parse_from_rfc3339(v)
                        .ok()
                        .map(|t| t.timestamp_micros()),
                ))
            }
        }
        deserializer.deserialize_any(TsVisitor)
    }
}

impl Timestamp {
    /// The time, if it is in the range samples are accepted in (`ingest.min_timestamp` to
    /// `ingest.max_future_secs` from now): else 422 `timestamp_out_of_range`.
    pub fn in_range(
        self,
        field: &str,
        settings: &crate::config::IngestSettings,
    ) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
        let time = self.required(field)?;
        ingest::Limits::new(settings, chrono::Utc::now())
            .check_time(time.timestamp_micros(), || field.to_owned())?;
        Ok(time)
    }

    /// The time, or an [`ApiError::Invalid`] naming `field`.
    pub fn required(self, field: &str) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
        self.0
            .and_then(chrono::DateTime::from_timestamp_micros)
            .ok_or_else(|| {
                ApiError::invalid(field, "not a time (Unix seconds or RFC 3339 expected)")
            })
    }
}

/// Parses a time given in a query string: RFC 3339 (`2024-01-01T00:00:00Z`) or Unix seconds.
pub fn parse_time_param(
    field: &str,
    text: &str,
) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    ingest::files::parse_timestamp(text)
        .and_then(chrono::DateTime::from_timestamp_micros)
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                format!("{text:?} is not a time (RFC 3339 or Unix seconds)"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_infinity_tokens_are_named() {
        for (body, token) in [
            ("{\"v\": [1.0, NaN]}", "NaN"),
            ("{\"v\": [Infinity]}", "Infinity"),
            ("{\"v\": [2, -Infinity]}", "-Infinity"),
        ] {
            let err = parse_json::<serde_json::Value>(body.as_bytes()).unwrap_err();
            assert!(
                matches!(&err, ApiError::NonFinite(m) if m.contains(token)),
                "{body}: {err}"
            );
        }
    }

    #[test]
    fn other_syntax_errors_stay_malformed() {
        let err = parse_json::<serde_json::Value>(b"{\"v\": [1.0,, 2]}").unwrap_err();
        assert!(matches!(err, ApiError::MalformedJson(_)), "{err}");
        let err = parse_json::<Vec<f64>>(b"{\"v\": 1}").unwrap_err();
        assert!(matches!(err, ApiError::InvalidBody(_)), "{err}");
    }
}
