//! Request input: JSON and query extractors whose rejections are [`ApiError`]s (so a bad
//! body gets the JSON error body with a stable code, never axum's plain text), and the
//! validation rules for names that clients send.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Longest accepted asset, metric or class name.
pub const MAX_NAME_LEN: usize = 200;

/// `Json<T>` whose rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().map(|l| l.0);
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection, limit)),
        }
    }
}

/// The configured body limit, put in request extensions so that errors can name it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

fn json_rejection(rejection: JsonRejection, limit: Option<usize>) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("expected Content-Type: application/json".to_owned())
        }
        JsonRejection::JsonSyntaxError(e) => ApiError::MalformedJson(e.body_text()),
        JsonRejection::JsonDataError(e) => ApiError::InvalidBody(e.body_text()),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge(limit.unwrap_or_default())
        }
        other => ApiError::MalformedJson(other.body_text()),
    }
}

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

/// Checks an asset, metric or class name: 1 to 200 characters from `A-Z a-z 0-9 _ . : / -`,
/// starting with a letter or digit. This admits Prometheus instance labels such as
/// `host-1:9100` and metric names such as `node_memory_bytes`.
pub fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok =
        chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-'));
    if name.len() > MAX_NAME_LEN || !first_ok || !rest_ok {
        return Err(ApiError::invalid(
            field,
            format!(
                "{name:?} is not a valid name: 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 _ . : / -, \
                 starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_style_names_are_accepted() {
        for name in ["web-01", "host-1:9100", "node_memory_bytes", "pump/7", "a"] {
            assert!(check_name("asset", name).is_ok(), "{name}");
        }
    }

    #[test]
    fn odd_names_are_rejected() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        for name in ["", "-lead", "with space", "semi;colon", "é", long.as_str()] {
            assert!(check_name("asset", name).is_err(), "{name}");
        }
    }
}
