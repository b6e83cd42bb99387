//! `GET /api/v1/alerts`.

use axum::extract::State;
use axum::Json;
use service_kit::extract::ApiQuery;
use service_kit::{ApiResult, ErrorBody};

use crate::state::ApiState;
use crate::views::alert_view;
use advances_contract::{AlertList, AlertQuery};

/// Lists alerts newest first: defaults and reconciliation mismatches.
#[utoipa::path(
    get, path = "/api/v1/alerts", tag = "advances",
    params(AlertQuery),
    responses(
        (status = 200, description = "The alerts", body = AlertList),
        (status = 400, description = "Malformed parameter", body = ErrorBody),
        (status = 422, description = "Limit out of range", body = ErrorBody),
    )
)]
pub async fn list_alerts(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<AlertQuery>,
) -> ApiResult<Json<AlertList>> {
    let alerts = state.store.alerts(super::limit(query.limit)?).await?;
    Ok(Json(AlertList { alerts: alerts.into_iter().map(alert_view).collect() }))
}
