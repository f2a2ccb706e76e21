//! The one place that knows HTTP status codes: every error a handler, extractor or
//! middleware returns is an [`ApiError`], sent as `{"code", "message"}`. Clients branch on
//! `code`, which is stable; `message` is for people. A 5xx gets a generic message and the
//! cause goes to the log.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::config::Scope;
use crate::store;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No `Authorization: Bearer` header.
    #[error("this route needs a bearer token (Authorization: Bearer <token>)")]
    MissingToken,
    /// The token is not one of the configured ones.
    #[error("the bearer token is not valid")]
    InvalidToken,
    /// The token is valid but lacks the scope.
    #[error("the token lacks the {0} scope")]
    MissingScope(Scope),
    /// No route matches the path.
    #[error("no route for {0}")]
    NoRoute(String),
    /// The route exists but not with this method.
    #[error("method {0} is not allowed on this route")]
    MethodNotAllowed(String),
    /// A named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The body is not JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The request body could not be read (the client stopped sending, a broken chunked
    /// encoding).
    #[error("the request body could not be read: {0}")]
    UnreadableBody(String),
    /// The body has the wrong content type.
    #[error("unsupported content type: {0}")]
    UnsupportedMediaType(String),
    /// The body exceeds the configured limit.
    #[error("request body exceeds the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// `NaN` or `Infinity` where a number belongs.
    #[error("non-finite value: {0}")]
    NonFinite(String),
    /// JSON that does not have the expected shape.
    #[error("invalid body: {0}")]
    InvalidBody(String),
    /// A field's value is not acceptable.
    #[error("{field}: {reason}")]
    Invalid {
        /// The offending field.
        field: String,
        /// Why, in words for people; clients branch on the code, never on this.
        reason: String,
    },
    /// A path parameter cannot be parsed (a non-numeric id).
    #[error("invalid path: {0}")]
    BadPath(String),
    /// The query string cannot be parsed.
    #[error("invalid query: {0}")]
    BadQuery(String),
    /// The request took longer than the configured timeout.
    #[error("the request timed out")]
    Timeout,
    /// The database has been down longer than `database.unhealthy_after_secs`.
    #[error("unhealthy: the database has not answered for {0} s")]
    DatabaseDown(u64),
    /// A score batch holds more values than it may.
    #[error("the batch holds more than {0} values in all; split it")]
    TooManyValues(usize),
    /// Every bulk request's turn is taken (`http.max_bulk_requests`) and none came free in
    /// time: retry.
    #[error("busy: {0} bulk requests are in progress; retry shortly")]
    Busy(usize),
    /// The service is not ready (database unreachable or migrations pending).
    #[error("not ready: {0}")]
    NotReady(String),
    /// A sample or batch refused by the ingestion rules.
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    /// A remote-write body that cannot be decoded.
    #[error(transparent)]
    RemoteWrite(#[from] crate::ingest::remote_write::DecodeError),
    /// A window that cannot be scored.
    #[error(transparent)]
    Window(#[from] crate::features::WindowError),
    /// An asset class no asset has.
    #[error("unknown asset class {0:?}: no asset has it (set one with PUT /v1/assets/{{name}})")]
    UnknownClass(String),
    /// The request conflicts with stored state (e.g. an idempotency key reused for other
    /// content).
    #[error("{0}")]
    Conflict(String),
    /// A model whose artifact cannot be loaded may not become active.
    #[error("{0}")]
    Unloadable(String),
    /// The safety guard refused (e.g. approving an action while the kill switch is on).
    #[error("{0}")]
    GuardRefused(String),
    /// A storage error.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A bug or an unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The JSON error body.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl From<crate::actions::ActionError> for ApiError {
    fn from(e: crate::actions::ActionError) -> Self {
        use crate::actions::ActionError;
        match e {
            ActionError::Store(store::Error::NotFound(what)) => Self::NotFound(what),
            ActionError::Store(e) => Self::Store(e),
            e @ ActionError::NotAwaiting(_) => Self::Conflict(e.to_string()),
            e @ ActionError::Refused { .. } => Self::GuardRefused(e.to_string()),
            e @ ActionError::NotInCatalog(_) => Self::Conflict(e.to_string()),
        }
    }
}

impl From<crate::scoring::ScoringError> for ApiError {
    fn from(e: crate::scoring::ScoringError) -> Self {
        use crate::scoring::ScoringError;
        match e {
            ScoringError::Invalid { field, reason } => Self::Invalid { field, reason },
            ScoringError::NotFound(what) => Self::NotFound(what),
            ScoringError::UnknownClass(class) => Self::UnknownClass(class),
            ScoringError::Window(e) => Self::Window(e),
            ScoringError::Timestamp(e) => Self::Ingest(e),
            ScoringError::Store(e) => Self::Store(e),
        }
    }
}

impl ApiError {
    /// The status and stable code of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::MissingToken => (StatusCode::UNAUTHORIZED, "missing_token"),
            Self::InvalidToken => (StatusCode::UNAUTHORIZED, "invalid_token"),
            Self::MissingScope(_) => (StatusCode::FORBIDDEN, "insufficient_scope"),
            Self::NoRoute(_) => (StatusCode::NOT_FOUND, "no_route"),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::UnknownClass(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_asset_class"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::GuardRefused(_) => (StatusCode::CONFLICT, "guard_refused"),
            Self::Unloadable(_) => (StatusCode::CONFLICT, "model_unloadable"),
            Self::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            Self::UnreadableBody(_) => (StatusCode::BAD_REQUEST, "unreadable_body"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            Self::TooManyValues(_) => (StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large"),
            Self::NonFinite(_) => (StatusCode::UNPROCESSABLE_ENTITY, "non_finite_value"),
            Self::Ingest(err) => match err {
                crate::ingest::IngestError::TooLarge { .. } => {
                    (StatusCode::PAYLOAD_TOO_LARGE, err.code())
                }
                _ => (StatusCode::UNPROCESSABLE_ENTITY, err.code()),
            },
            Self::RemoteWrite(err) => {
                use crate::ingest::remote_write::DecodeError;
                match err {
                    DecodeError::Snappy(_) => (StatusCode::BAD_REQUEST, "invalid_snappy"),
                    DecodeError::TooLarge { .. } | DecodeError::TooMany { .. } => {
                        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
                    }
                    DecodeError::Protobuf(_) => (StatusCode::BAD_REQUEST, "invalid_protobuf"),
                }
            }
            Self::Window(err) => {
                use crate::features::WindowError;
                let code = match err {
                    WindowError::WrongLength { .. } => "wrong_window_length",
                    WindowError::NonFinite { .. } => "non_finite_value",
                    WindowError::NothingUsable(_) => "no_usable_metric",
                    WindowError::Gap { .. } => "window_gap",
                };
                (StatusCode::UNPROCESSABLE_ENTITY, code)
            }
            Self::InvalidBody(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            Self::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_value"),
            Self::BadQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            Self::BadPath(_) => (StatusCode::BAD_REQUEST, "invalid_path"),
            Self::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            Self::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            Self::DatabaseDown(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_down"),
            Self::Store(err) => match err {
                store::Error::Duplicate { .. } => (StatusCode::CONFLICT, "duplicate"),
                store::Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
                store::Error::Constraint { .. } => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "constraint_violation")
                }
                store::Error::Unavailable(_) | store::Error::Down(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
                }
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            },
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// Shorthand for [`ApiError::Invalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl ApiError {
    /// The body this error is answered with (5xx causes are logged, not sent).
    pub fn body(&self) -> ErrorBody {
        let (status, code) = self.status_and_code();
        ErrorBody {
            code,
            message: self.public_message(status),
        }
    }

    fn public_message(&self, status: StatusCode) -> String {
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %self, ?self, "request failed");
            "internal error; the cause is in the server log".to_owned()
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %self, "request failed: unavailable");
            match self {
                Self::Store(_) => "the database is unavailable; retry later".to_owned(),
                other => other.to_string(),
            }
        } else {
            self.to_string()
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = self.public_message(status);
        let mut response = (status, Json(ErrorBody { code, message })).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_is_a_conflict() {
        let err = ApiError::from(store::Error::Duplicate {
            constraint: "asset_name_key".into(),
        });
        assert_eq!(err.status_and_code(), (StatusCode::CONFLICT, "duplicate"));
    }

    #[test]
    fn unavailable_database_is_retryable() {
        let err = ApiError::from(store::Error::Unavailable(sqlx::Error::PoolTimedOut));
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
    }
}
