//! The one error type of our services: each variant has one HTTP status and one stable machine code.

use axum::http::header::{CONNECTION, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use money::ErrorBody;

/// Every way a request can fail. Clients see `{"error":{"code","message"}}` ([`ErrorBody`]), never plain text.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    MalformedRequest(String),
    #[error("{message}")]
    Validation { code: &'static str, message: String },
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("this client's credential lacks the scope {0}")]
    Forbidden(&'static str),
    #[error("too many concurrent {what} for this client; retry in {retry_after_secs} s")]
    TooManyRequests { what: &'static str, retry_after_secs: u64 },
    #[error("{0}")]
    NotFound(String),
    #[error("this endpoint does not accept that method")]
    MethodNotAllowed,
    #[error("a request with this Idempotency-Key is still being processed; retry later")]
    IdempotencyInFlight,
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request took longer than {0} s")]
    Timeout(u64),
    #[error("the service is busy or its database is unavailable; retry later")]
    Unavailable(#[source] sqlx::Error),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// What was asked for existed once and is gone for good (an event cursor past retention).
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    #[error("{0} is unavailable; retry later")]
    UpstreamUnavailable(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A 422 with a specific code.
    pub fn validation(code: &'static str, message: impl Into<String>) -> Self {
        Self::Validation { code, message: message.into() }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedRequest(_) => StatusCode::BAD_REQUEST,
            Self::Validation { .. } | Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::IdempotencyInFlight | Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Gone { .. } => StatusCode::GONE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Timeout(_) | Self::Unavailable(_) | Self::UpstreamUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedRequest(_) => "malformed_request",
            Self::Validation { code, .. } => code,
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::TooManyRequests { .. } => "too_many_requests",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::IdempotencyInFlight => "idempotency_key_in_flight",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::Timeout(_) => "timeout",
            Self::Unavailable(_) | Self::UpstreamUnavailable(_) => "unavailable",
            Self::Conflict { code, .. } | Self::Gone { code, .. } => code,
            Self::Internal(_) => "internal",
        }
    }
}

/// Database errors are internal unless they mean "busy": a pool timeout or a lost connection is a 503
/// that the client may retry (with its Idempotency-Key).
impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => Self::Unavailable(error),
            sqlx::Error::Database(_)
                if crate::sqlstate::of(&error).as_deref() == Some(crate::sqlstate::QUERY_CANCELED) =>
            {
                Self::Unavailable(error)
            }
            _ => Self::Internal(error.into()),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        Self::Internal(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(cause) => tracing::error!(error = format!("{cause:#}"), "internal error"),
            Self::Unavailable(cause) => tracing::warn!(error = %cause, "database unavailable"),
            Self::UpstreamUnavailable(what) => tracing::warn!(upstream = %what, "upstream unavailable"),
            _ => tracing::debug!(code = self.code(), message = %self, "request refused"),
        }
        let mut response = (status, Json(ErrorBody::new(self.code(), self.to_string()))).into_response();
        if let Self::TooManyRequests { retry_after_secs, .. } = self {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        if matches!(self, Self::Unauthorized) {
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(self, Self::PayloadTooLarge(_)) {
            // The body was not read, so the connection cannot carry another request: say so, or a client that
            // pools connections sends its next request into a socket the server is closing.
            response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;
