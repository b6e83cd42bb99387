//! `/health` plumbing: each service names its checks; the answer is 200 when all say `ok`, else 503.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// The answer of a check that passed.
pub const OK: &str = "ok";

/// The answer of a check that failed. Why is logged, never answered: a raw error can name hosts, users or
/// file paths, and `/health` needs no token.
pub const UNAVAILABLE: &str = "unavailable";

/// `ok`, or `unavailable` when the database did not answer (within the pool's acquire timeout).
pub async fn check_database(pool: &sqlx::PgPool) -> String {
    match sqlx::query("SELECT 1").execute(pool).await {
        Ok(_) => OK.to_owned(),
        Err(error) => {
            tracing::warn!(error = %error, "health check: the database does not answer");
            UNAVAILABLE.to_owned()
        }
    }
}

/// `"ok"` or `"unavailable"`, as the `status` field of a health answer.
pub fn status_of(checks: &[&str]) -> &'static str {
    if checks.iter().all(|check| *check == OK) {
        "ok"
    } else {
        "unavailable"
    }
}

/// Sends `body` with 200 when its `status` is `ok`, else 503.
pub fn respond<T: Serialize>(status: &str, body: T) -> Response {
    let code = if status == OK { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
}

/// The health answer of a service whose only dependency is its database.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// `ok` or `unavailable` (the reason is in the log).
    pub database: String,
}

/// `/health` for a service whose only dependency is its database.
pub async fn database_only(pool: &sqlx::PgPool) -> Response {
    let database = check_database(pool).await;
    let status = status_of(&[&database]);
    respond(status, Health { status, database })
}
