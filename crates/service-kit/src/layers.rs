//! The middleware every request passes: request ids, a trace line, panics as JSON 500s, metrics, the request
//! timeout, the body limit, JSON 404/405, and authentication in front of `/api/`.

use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_http::LatencyUnit;
use tracing::Level;

use crate::auth::{authenticate, Authenticator};
use crate::error::ApiError;
use crate::extract::MAX_BODY_BYTES;
use crate::metrics::HttpMetrics;

/// What the common middleware of a service needs: its time limit and its request metrics.
#[derive(Clone)]
pub struct HttpPolicy {
    pub request_timeout: Duration,
    pub metrics: HttpMetrics,
}

/// Puts authentication in front of every route of `api` (the `/api/` routes); each route then names its scope
/// with [`crate::auth::scoped`].
pub fn protect<S: Clone + Send + Sync + 'static>(api: Router<S>, auth: &Authenticator) -> Router<S> {
    api.route_layer(axum::middleware::from_fn_with_state(auth.clone(), authenticate))
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
