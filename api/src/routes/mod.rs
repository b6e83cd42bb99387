//! One module per resource; what the store's and Temporal's answers mean to a client is decided here.

pub mod advances;
pub mod alerts;
pub mod book;
pub mod commands;
pub mod servicing;
pub mod system;

use advances_model::Advance;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use service_kit::{ApiError, ApiResult};

use crate::views::advance_view;

/// The most advances or alerts one list returns.
pub const MAX_LIMIT: i64 = 1000;
const DEFAULT_LIMIT: i64 = 100;

fn limit(value: Option<i64>) -> ApiResult<i64> {
    let limit = value.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::validation("invalid_limit", format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    Ok(limit)
}

fn advance_response(status: StatusCode, advance: &Advance, replayed: bool) -> Response {
    let mut response = (status, Json(advance_view(advance))).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}
