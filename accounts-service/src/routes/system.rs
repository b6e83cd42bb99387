//! `GET /health` and `GET /metrics`.

use axum::extract::State;
use axum::response::Response;
use service_kit::health::{self, Health};
use service_kit::{metrics, ApiResult};

use crate::AppState;

/// Checks that the database answers (within the pool's acquire timeout).
#[utoipa::path(
    get, path = "/health", tag = "system", security(()),
    responses(
        (status = 200, description = "The service and its database are up", body = Health),
        (status = 503, description = "The database does not answer", body = Health),
    )
)]
pub async fn health(State(state): State<AppState>) -> Response {
    health::database_only(&state.pool).await
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get, path = "/metrics", tag = "system", security(()),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> ApiResult<Response> {
    state.metrics.db_pool_size.set(i64::from(state.pool.size()));
    state.metrics.db_pool_idle.set(state.pool.num_idle() as i64);
    metrics::metrics_response(&state.metrics.registry)
}
