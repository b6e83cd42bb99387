//! Servicing, what a lender does beyond the schedule: `POST /api/v1/advances/{id}/reschedule`, `/prepay`,
//! `/write_off`, and `GET /api/v1/advances/{id}/payoff_quote`.

use advances_model::{Prepay, Reschedule, MAX_PAYMENTS};
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use chrono::{Duration, Utc};
use service_kit::extract::{ApiJson, ApiPath, ApiQuery};
use service_kit::{ApiError, ApiResult, ErrorBody};
use uuid::Uuid;

use super::commands::{note, send};
use crate::gateway::Command;
use crate::state::ApiState;
use advances_contract::{AdvanceView, PayoffQuote, PrepayRequest, QuoteQuery, RescheduleRequest, WriteOffRequest};

/// How far ahead a new first due time or a quote may be.
const MAX_AHEAD_DAYS: i64 = 365;

/// Re-spreads what is scheduled over new equal payments at the product's interval: for a customer in hardship.
/// A withdrawal under way is left alone; if it fails, its amount rolls into the new plan's first payment.
#[utoipa::path(
    post, path = "/api/v1/advances/{advance_id}/reschedule", tag = "advances",
    params(("advance_id" = Uuid, Path, description = "The advance's id")),
    request_body = RescheduleRequest,
    responses(
        (status = 200, description = "Rescheduled: the replaced payments are `superseded`, moved to the first new one", body = AdvanceView),
        (status = 400, description = "Malformed id or body", body = ErrorBody),
        (status = 404, description = "No such advance", body = ErrorBody),
        (status = 409, description = "The advance is not active, a prepayment is under way, or nothing is scheduled", body = ErrorBody),
        (status = 422, description = "`invalid_terms`: payments out of 1–520, or first_due_at out of range; `invalid_reason`", body = ErrorBody),
        (status = 503, description = "Temporal is unavailable", body = ErrorBody),
    )
)]
pub async fn reschedule_advance(
    State(state): State<ApiState>,
    ApiPath(advance_id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<RescheduleRequest>,
) -> ApiResult<Response> {
    if request.payments == 0 || request.payments > MAX_PAYMENTS {
        return Err(ApiError::validation("invalid_terms", format!("payments must be between 1 and {MAX_PAYMENTS}")));
    }
    if let Some(first) = request.first_due_at {
        let now = Utc::now();
        let lead = Duration::from_std(state.settings.first_due_min_lead).unwrap_or(Duration::MAX);
        let (earliest, latest) = (now + lead, now + Duration::days(MAX_AHEAD_DAYS));
        if first < earliest || first > latest {
            return Err(ApiError::validation(
                "invalid_terms",
                format!(
                    "first_due_at must be from {} to {} (FIRST_DUE_MIN_LEAD to {MAX_AHEAD_DAYS} days ahead)",
                    earliest.to_rfc3339(),
                    latest.to_rfc3339()
                ),
            ));
        }
    }
    let reason = note(request.reason, "")?;
    let reschedule = Reschedule { payments: request.payments, first_due_at: request.first_due_at, reason };
    send(&state, advance_id, Command::Reschedule(reschedule)).await
}

/// Collects an amount now, in one debit keyed like every payment, before anything else; on success the last
/// scheduled payments are reduced by it, and if the account cannot pay, nothing changes but a failed
/// `prepayment` payment with its reason.
#[utoipa::path(
    post, path = "/api/v1/advances/{advance_id}/prepay", tag = "advances",
    params(("advance_id" = Uuid, Path, description = "The advance's id")),
    request_body = PrepayRequest,
    responses(
        (status = 200, description = "The prepayment is scheduled, due now (poll the advance for its outcome)", body = AdvanceView),
        (status = 400, description = "Malformed id or body", body = ErrorBody),
        (status = 404, description = "No such advance", body = ErrorBody),
        (status = 409, description = "Not active, paused, a withdrawal under way, or more than is scheduled", body = ErrorBody),
        (status = 422, description = "`invalid_amount`, `invalid_reason`", body = ErrorBody),
        (status = 503, description = "Temporal is unavailable", body = ErrorBody),
    )
)]
pub async fn prepay_advance(
    State(state): State<ApiState>,
    ApiPath(advance_id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<PrepayRequest>,
) -> ApiResult<Response> {
    let amount =
        request.amount.validate().map_err(|error| ApiError::validation("invalid_amount", error.to_string()))?.value();
    let prepay = Prepay { amount, reason: note(request.reason, "")? };
    send(&state, advance_id, Command::Prepay(prepay)).await
}

/// Stops collection and records what is scheduled as written off; the advance is `written_off`. A withdrawal
/// under way finishes and is recorded (what it fails to collect is written off too).
#[utoipa::path(
    post, path = "/api/v1/advances/{advance_id}/write_off", tag = "advances",
    params(("advance_id" = Uuid, Path, description = "The advance's id")),
    request_body = WriteOffRequest,
    responses(
        (status = 200, description = "Written off; `written_off_amount` says how much", body = AdvanceView),
        (status = 400, description = "Malformed id or body", body = ErrorBody),
        (status = 404, description = "No such advance", body = ErrorBody),
        (status = 409, description = "The advance is not active", body = ErrorBody),
        (status = 422, description = "`invalid_reason`: a reason is required, at most 500 characters", body = ErrorBody),
        (status = 503, description = "Temporal is unavailable", body = ErrorBody),
    )
)]
pub async fn write_off_advance(
    State(state): State<ApiState>,
    ApiPath(advance_id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<WriteOffRequest>,
) -> ApiResult<Response> {
    if request.reason.trim().is_empty() {
        return Err(ApiError::validation("invalid_reason", "a write-off needs a reason"));
    }
    send(&state, advance_id, Command::WriteOff(note(Some(request.reason), "")?)).await
}

/// What `pay_off` would collect at `at` (default now), assuming the payments due before then are collected when
/// due; while the advance is paused, everything scheduled.
#[utoipa::path(
    get, path = "/api/v1/advances/{advance_id}/payoff_quote", tag = "advances",
    params(("advance_id" = Uuid, Path, description = "The advance's id"), QuoteQuery),
    responses(
        (status = 200, description = "The quote", body = PayoffQuote),
        (status = 400, description = "Malformed id or time", body = ErrorBody),
        (status = 404, description = "No such advance", body = ErrorBody),
        (status = 409, description = "The advance is not active, or a prepayment is under way", body = ErrorBody),
        (status = 422, description = "`invalid_at`: in the past or more than 365 days ahead", body = ErrorBody),
    )
)]
pub async fn payoff_quote(
    State(state): State<ApiState>,
    ApiPath(advance_id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<QuoteQuery>,
) -> ApiResult<Json<PayoffQuote>> {
    let now = Utc::now();
    let at = query.at.unwrap_or(now);
    // A minute of grace for the caller's clock.
    if at < now - Duration::minutes(1) || at > now + Duration::days(MAX_AHEAD_DAYS) {
        return Err(ApiError::validation("invalid_at", format!("at must be from now to {MAX_AHEAD_DAYS} days ahead")));
    }
    let advance = state.freshest(advance_id).await?;
    let amount = advance
        .payoff_quote(at.max(now))
        .map_err(|refusal| ApiError::Conflict { code: "advance_not_active", message: refusal.to_string() })?;
    Ok(Json(PayoffQuote { advance_id, at, amount }))
}
