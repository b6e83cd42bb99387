//! Extractors whose rejections are JSON errors ([`ApiError`]), never axum's plain text.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_LENGTH;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::idempotency_key::IdempotencyKey;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body of at most [`MAX_BODY_BYTES`]: too large → 413, not JSON or wrong shape → 400. The Content-Type
/// header is not checked (a client such as `curl -d` sends JSON labelled as a form); the body must parse as JSON
/// either way. An empty body counts as `{}`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        read_json(req, MAX_BODY_BYTES).await.map(ApiJson)
    }
}

/// As [`ApiJson`], for the few routes whose bodies may be larger: at most `MAX` bytes.
pub struct ApiJsonUpTo<T, const MAX: usize>(pub T);

impl<T: DeserializeOwned, S: Send + Sync, const MAX: usize> FromRequest<S> for ApiJsonUpTo<T, MAX> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        read_json(req, MAX).await.map(ApiJsonUpTo)
    }
}

async fn read_json<T: DeserializeOwned>(req: Request, max: usize) -> Result<T, ApiError> {
    let headers = req.headers();
    let declared_length = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared_length.is_some_and(|length| length > max) {
        return Err(ApiError::PayloadTooLarge(max));
    }
    // A body that streams past the limit without declaring its length is cut off here.
    let bytes: Bytes = axum::body::to_bytes(req.into_body(), max).await.map_err(|_| ApiError::PayloadTooLarge(max))?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
    serde_json::from_slice(bytes)
        .map_err(|error| ApiError::MalformedRequest(format!("request body is not valid: {error}")))
}

/// Query parameters; a malformed query string is a 400.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|rejection: QueryRejection| ApiError::MalformedRequest(rejection.body_text()))
    }
}

/// Path parameters; a malformed id is a 400.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|rejection: PathRejection| ApiError::MalformedRequest(rejection.body_text()))
    }
}

/// The optional `Idempotency-Key` header, validated (a bad one is a 422 `invalid_idempotency_key`).
pub struct OptionalIdempotencyKey(pub Option<IdempotencyKey>);

impl<S: Send + Sync> FromRequestParts<S> for OptionalIdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        match parts.headers.get("idempotency-key") {
            None => Ok(Self(None)),
            Some(value) => {
                let text = value.to_str().map_err(|_| {
                    ApiError::validation("invalid_idempotency_key", "Idempotency-Key must be visible ASCII")
                })?;
                Ok(Self(Some(IdempotencyKey::parse(text)?)))
            }
        }
    }
}
