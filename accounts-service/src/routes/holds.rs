//! `POST /api/v1/holds`, `POST /api/v1/holds/{id}/capture`, `POST /api/v1/holds/{id}/void`, `GET /api/v1/holds/{id}`.
//!
//! Every change goes through group commit like a transfer (`db::movements`), with the caller's idempotency keys.

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use ledger_contract::{
    scopes, CaptureRequest, Hold, HoldRequest, VoidRequest, DEFAULT_HOLD_EXPIRY_SECS, MAX_HOLD_EXPIRY_SECS,
};
use service_kit::auth::Caller;
use service_kit::extract::{ApiJson, ApiPath, OptionalIdempotencyKey};
use service_kit::{ApiError, ApiResult, ErrorBody};
use uuid::Uuid;

use super::transactions::{validate_amount, Validate, MAX_DESCRIPTION_CHARS};
use crate::db::holds;
use crate::domain::transfer::{CaptureCommand, HoldCommand, Movement, Release};
use crate::AppState;

impl Validate for HoldRequest {
    type Command = HoldCommand;

    fn validate(&self) -> ApiResult<HoldCommand> {
        let amount = validate_amount(&self.amount)?;
        let expires_in_secs = self.expires_in.unwrap_or(DEFAULT_HOLD_EXPIRY_SECS);
        if !(1..=MAX_HOLD_EXPIRY_SECS).contains(&expires_in_secs) {
            return Err(ApiError::validation(
                "invalid_expires_in",
                format!("expires_in must be 1 to {MAX_HOLD_EXPIRY_SECS} seconds (30 days), not {expires_in_secs}"),
            ));
        }
        let chars = self.reason.chars().count();
        if !(1..=MAX_DESCRIPTION_CHARS).contains(&chars) || self.reason.contains('\0') {
            return Err(ApiError::validation(
                "invalid_reason",
                format!("reason must be 1 to {MAX_DESCRIPTION_CHARS} characters, without NUL"),
            ));
        }
        Ok(HoldCommand { account_id: self.account_id, amount, expires_in_secs, description: self.reason.clone() })
    }
}

/// Reserves money on an account without moving it: what the account can spend (`balance - held`) shrinks by the
/// amount until the hold is captured, voided or expires. A hold the account cannot cover is recorded as failed.
#[utoipa::path(
    post, path = "/api/v1/holds", tag = "holds",
    request_body = HoldRequest,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]+$", description = "1 to 255 visible ASCII characters; the same key and request replays the first response")),
    responses(
        (status = 201, description = "Recorded: `status` is `pending`, or `fail` with a `reason`", body = Hold),
        (status = 400, description = "Malformed JSON, wrong types or malformed ids", body = ErrorBody),
        (status = 404, description = "The account does not exist", body = ErrorBody),
        (status = 409, description = "The same Idempotency-Key is still in flight", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 422, description = "Invalid amount, expires_in or reason, or key reused with another body", body = ErrorBody),
    )
)]
pub async fn place_hold(
    State(state): State<AppState>,
    caller: Caller,
    OptionalIdempotencyKey(key): OptionalIdempotencyKey,
    ApiJson(request): ApiJson<HoldRequest>,
) -> ApiResult<Response> {
    let command = request.validate()?;
    super::move_money(&state, &caller, Movement::Hold(command), key).await
}

/// Moves at most the held amount to another account (a transfer) or, without `dst_account_id`, to the bank (a
/// bank debit, which needs the scope `bank:write`), and releases the rest, in one database transaction.
#[utoipa::path(
    post, path = "/api/v1/holds/{hold_id}/capture", tag = "holds",
    request_body(content = Option<CaptureRequest>, description = "An empty body captures the whole hold to the bank"),
    params(
        ("hold_id" = Uuid, Path, description = "The hold's id"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]+$", description = "1 to 255 visible ASCII characters; the same key and request replays the first response"),
    ),
    responses(
        (status = 200, description = "Captured: the hold, with its capture's and release's transactions", body = Hold),
        (status = 400, description = "Malformed JSON, wrong types or malformed ids", body = ErrorBody),
        (status = 403, description = "A capture to the bank without the scope `bank:write`", body = ErrorBody),
        (status = 404, description = "The hold or the destination account does not exist", body = ErrorBody),
        (status = 409, description = "`hold_not_pending`: the hold was captured, voided, expired or failed; or the same Idempotency-Key is still in flight", body = ErrorBody),
        (status = 422, description = "Invalid amount, more than held, the hold's own account, or key reused with another body", body = ErrorBody),
    )
)]
pub async fn capture_hold(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(hold_id): ApiPath<Uuid>,
    OptionalIdempotencyKey(key): OptionalIdempotencyKey,
    ApiJson(request): ApiJson<CaptureRequest>,
) -> ApiResult<Response> {
    let amount = request.amount.as_ref().map(validate_amount).transpose()?;
    if request.dst_account_id.is_none() && !caller.may(scopes::BANK_WRITE) {
        return Err(ApiError::Forbidden(scopes::BANK_WRITE));
    }
    let command = CaptureCommand { hold_id, amount, dst_account_id: request.dst_account_id };
    super::move_money(&state, &caller, Movement::Capture(command), key).await
}

/// Releases a pending hold: what the account can spend grows back by its amount.
#[utoipa::path(
    post, path = "/api/v1/holds/{hold_id}/void", tag = "holds",
    request_body(content = Option<VoidRequest>, description = "An empty object; an empty body counts as one"),
    params(
        ("hold_id" = Uuid, Path, description = "The hold's id"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]+$", description = "1 to 255 visible ASCII characters; the same key and request replays the first response"),
    ),
    responses(
        (status = 200, description = "Voided: the hold, with its release's transaction", body = Hold),
        (status = 400, description = "Malformed body or id", body = ErrorBody),
        (status = 404, description = "The hold does not exist", body = ErrorBody),
        (status = 409, description = "`hold_not_pending`: the hold was captured, voided, expired or failed; or the same Idempotency-Key is still in flight", body = ErrorBody),
        (status = 422, description = "Key reused with another request", body = ErrorBody),
    )
)]
pub async fn void_hold(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(hold_id): ApiPath<Uuid>,
    OptionalIdempotencyKey(key): OptionalIdempotencyKey,
    ApiJson(_request): ApiJson<VoidRequest>,
) -> ApiResult<Response> {
    super::move_money(&state, &caller, Movement::Release { hold_id, why: Release::Void }, key).await
}

/// Reads a hold as it stands.
#[utoipa::path(
    get, path = "/api/v1/holds/{hold_id}", tag = "holds",
    params(("hold_id" = Uuid, Path, description = "The hold's id")),
    responses(
        (status = 200, description = "The hold", body = Hold),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 404, description = "No such hold", body = ErrorBody),
    )
)]
pub async fn get_hold(State(state): State<AppState>, ApiPath(hold_id): ApiPath<Uuid>) -> ApiResult<Json<Hold>> {
    Ok(Json(holds::get(&state.pool, hold_id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(json: &str) -> &'static str {
        let request: HoldRequest = serde_json::from_str(json).expect("json");
        request.validate().err().map(|e| e.code()).unwrap_or("ok")
    }

    const A: &str = "0190f6f0-0000-7000-8000-000000000001";

    #[test]
    fn a_hold_lasts_one_second_to_thirty_days_with_a_reason_of_1_to_500_characters() {
        let body = |rest: &str| format!(r#"{{"account_id":"{A}","amount":"10.00"{rest}}}"#);
        assert_eq!(code(&body(r#","reason":"card""#)), "ok");
        assert_eq!(code(&body(r#","reason":"card","expires_in":1"#)), "ok");
        assert_eq!(code(&body(r#","reason":"card","expires_in":2592000"#)), "ok");
        assert_eq!(code(&body(r#","reason":"card","expires_in":2592001"#)), "invalid_expires_in");
        assert_eq!(code(&body(r#","reason":"card","expires_in":0"#)), "invalid_expires_in");
        assert_eq!(code(&body(r#","reason":"""#)), "invalid_reason");
        assert_eq!(code(&body(&format!(r#","reason":"{}""#, "r".repeat(501)))), "invalid_reason");
        assert_eq!(code(&format!(r#"{{"account_id":"{A}","amount":"0","reason":"x"}}"#)), "invalid_amount");
        assert!(serde_json::from_str::<HoldRequest>(&body("")).is_err(), "reason is required");
        assert!(serde_json::from_str::<HoldRequest>(&body(r#","reason":"x","expires_in":-1"#)).is_err());
    }
}
