//! HTTP plumbing: extractors whose rejections are JSON errors, and the middleware every request passes.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::de::DeserializeOwned;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_http::LatencyUnit;
use tracing::Level;

use crate::db::idempotency::{IdempotencyKey, StoredResponse};
use crate::error::ApiError;
use crate::metrics::HttpMetrics;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body: too large → 413, not JSON or wrong shape → 400. The Content-Type header is not checked (a
/// client such as `curl -d` sends JSON labelled as a form); the body must parse as JSON either way.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let headers = req.headers();
        let declared_length = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared_length.is_some_and(|length| length > MAX_BODY_BYTES) {
            return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
        }
        // A body that streams past the limit without declaring its length is cut off here.
        let bytes: Bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::PayloadTooLarge(MAX_BODY_BYTES))?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        serde_json::from_slice(bytes)
            .map(ApiJson)
            .map_err(|error| ApiError::MalformedRequest(format!("request body is not valid: {error}")))
    }
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

/// The optional `Idempotency-Key` header, validated.
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
                IdempotencyKey::parse(text).map(|key| Self(Some(key)))
            }
        }
    }
}

/// Sends a stored response; a replay says so in `Idempotent-Replayed: true`.
pub fn stored_response(response: StoredResponse, replayed: bool) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    (response.status, headers, response.body).into_response()
}

/// What the common middleware of a service needs: its token, its time limit and its request metrics.
#[derive(Clone)]
pub struct HttpPolicy {
    pub api_token: Option<String>,
    pub request_timeout: Duration,
    pub metrics: HttpMetrics,
}

/// Puts `API_TOKEN` in front of every route of `api` (the `/api/` routes).
pub fn protect<S: Clone + Send + Sync + 'static>(api: Router<S>, policy: &HttpPolicy) -> Router<S> {
    api.route_layer(axum::middleware::from_fn_with_state(policy.clone(), require_token))
}

/// The layers every service shares: JSON 404/405, the body limit, the request timeout, metrics, panics as
/// JSON 500s, request ids and a trace line per request.
pub fn standard_layers<S: Clone + Send + Sync + 'static>(router: Router<S>, policy: &HttpPolicy) -> Router<S> {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(policy.clone(), request_timeout))
        .layer(axum::middleware::from_fn_with_state(policy.clone(), record_metrics))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let request_id = req
                        .extensions()
                        .get::<RequestId>()
                        .and_then(|id| id.header_value().to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id)
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO).latency_unit(LatencyUnit::Micros)),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// When `API_TOKEN` is set, every `/api/` request needs `Authorization: Bearer <token>`.
pub async fn require_token(State(policy): State<HttpPolicy>, req: Request, next: Next) -> Response {
    let Some(expected) = policy.api_token.as_deref() else {
        return next.run(req).await;
    };
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// Compares without an early exit, so response time does not reveal how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for (i, byte) in b.iter().enumerate() {
        difference |= usize::from(a.get(i).copied().unwrap_or(0) ^ byte);
    }
    difference == 0
}

/// Bounds the time to produce a response; a streamed download's body is not counted.
pub async fn request_timeout(State(policy): State<HttpPolicy>, req: Request, next: Next) -> Response {
    let limit = policy.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(limit.as_secs()).into_response(),
    }
}

/// Counts requests and their latency by matched route (never by raw path, which would explode the labels).
pub async fn record_metrics(State(policy): State<HttpPolicy>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [method.as_str(), route.as_str(), status.as_str()];
    policy.metrics.requests.with_label_values(&labels).inc();
    policy.metrics.duration.with_label_values(&labels).observe(started.elapsed().as_secs_f64());
    response
}

/// The JSON 404 for paths no route matches.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

/// The JSON 405 for a known path with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The JSON 500 for a handler that panicked (the panic itself is logged).
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    ApiError::Internal(anyhow::anyhow!("handler panicked: {detail}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"secret"));
    }
}
