//! `/health` and `/metrics` (no token needed).

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;
use service_kit::{health, ApiResult};
use utoipa::ToSchema;

use crate::state::ApiState;

/// The health check's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    pub database: String,
    pub temporal: String,
}

/// Checks the database and Temporal.
#[utoipa::path(
    get, path = "/health", tag = "system", security(()),
    responses(
        (status = 200, description = "Up", body = Health),
        (status = 503, description = "The database or Temporal does not answer", body = Health),
    )
)]
pub async fn health(State(state): State<ApiState>) -> Response {
    let database = health::check_database(state.store.pool()).await;
    let temporal = match state.temporal.check().await {
        Ok(()) => health::OK.to_owned(),
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), "health check: Temporal does not answer");
            health::UNAVAILABLE.to_owned()
        }
    };
    let status = health::status_of(&[&database, &temporal]);
    health::respond(status, Health { status, database, temporal })
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get, path = "/metrics", tag = "system", security(()),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<ApiState>) -> ApiResult<Response> {
    state.book_gauges.refresh(&state.store).await;
    service_kit::metrics::metrics_response(&state.registry)
}
