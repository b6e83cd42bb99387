//! Operator commands: `POST /api/v1/advances/{id}/cancel`, `/pay_off`, `/pause`, `/resume`; and what every
//! command shares (the note, sending it, what a refusal means).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use service_kit::extract::{ApiJson, ApiPath};
use service_kit::{ApiError, ApiResult, ErrorBody};
use uuid::Uuid;

use crate::gateway::{Command, Refused};
use crate::state::ApiState;
use advances_contract::{AdvanceView, CommandRequest};

/// The longest note an operator may give with a command, in characters.
const MAX_REASON_CHARS: usize = 500;

/// An operator's note: at most [`MAX_REASON_CHARS`]; `default` when none is given.
pub(super) fn note(reason: Option<String>, default: &str) -> ApiResult<String> {
    let note = reason.unwrap_or_default();
    if note.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::validation(
            "invalid_reason",
            format!("reason may be at most {MAX_REASON_CHARS} characters"),
        ));
    }
    Ok(if note.is_empty() { default.to_owned() } else { note })
}

/// Sends a command to an active advance's workflow; answers the advance as it left it. A refusal is 409 with
/// the model's reason.
pub(super) async fn send(state: &ApiState, advance_id: Uuid, command: Command) -> ApiResult<Response> {
    let stored = state.store.get(advance_id).await?;
    let stored = stored.ok_or_else(|| ApiError::NotFound(format!("advance {advance_id} does not exist")))?;
    let not_active = |detail: String| ApiError::Conflict { code: "advance_not_active", message: detail };
    if !stored.status.is_open() {
        return Err(not_active(format!("the advance is {}, not active", stored.status.as_str())));
    }
    match state.temporal.command(advance_id, command).await? {
        Ok(advance) => Ok(super::advance_response(StatusCode::OK, &advance, false)),
        Err(Refused::NotApplicable(reason)) => Err(not_active(reason)),
        Err(Refused::NotRunning) => Err(not_active("the advance's workflow is not running".into())),
    }
}

/// Stops future collection of an active advance; a withdrawal already under way finishes and is recorded.
#[utoipa::path(
    post, path = "/api/v1/advances/{advance_id}/cancel", tag = "advances",
    params(("advance_id" = Uuid, Path, description = "The advance's id")),
    request_body(content = Option<CommandRequest>, description = "Optional; an empty body counts as {}"),
    responses(
        (status = 200, description = "Cancelled", body = AdvanceView),
        (status = 400, description = "Malformed id or body", body = ErrorBody),
        (status = 404, description = "No such advance", body = ErrorBody),
        (status = 409, description = "The advance is not active", body = ErrorBody),
        (status = 422, description = "Reason over 500 characters", body = ErrorBody),
        (status = 503, description = "Temporal is unavailable", body = ErrorBody),
    )
)]
pub async fn cancel_advance(
    State(state): State<ApiState>,
    ApiPath(advance_id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<CommandRequest>,
) -> ApiResult<Response> {
    send(&state, advance_id, Command::Cancel(note(request.reason, "cancelled by an operator")?)).await
}

/// Collects everything outstanding now, in one withdrawal (if it fails, it rolls over like any payment).
#[utoipa::path(
    post, path = "/api/v1/advances/{advance_id}/pay_off", tag = "advances",
    params(("advance_id" = Uuid, Path, description = "The advance's id")),
    request_body(content = Option<CommandRequest>, description = "Optional; an empty body counts as {}"),
    responses(
        (status = 200, description = "The outstanding amount is now one payment, due now", body = AdvanceView),
        (status = 400, description = "Malformed id or body", body = ErrorBody),
        (status = 404, description = "No such advance", body = ErrorBody),
        (status = 409, description = "The advance is not active or nothing is scheduled", body = ErrorBody),
        (status = 422, description = "Reason over 500 characters", body = ErrorBody),
        (status = 503, description = "Temporal is unavailable", body = ErrorBody),
    )
)]
pub async fn pay_off_advance(
    State(state): State<ApiState>,
    ApiPath(advance_id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<CommandRequest>,
) -> ApiResult<Response> {
    send(&state, advance_id, Command::PayOff(note(request.reason, "")?)).await
}

/// Stops collection of an active advance until it is resumed; a withdrawal already under way finishes.
#[utoipa::path(
    post, path = "/api/v1/advances/{advance_id}/pause", tag = "advances",
    params(("advance_id" = Uuid, Path, description = "The advance's id")),
    request_body(content = Option<CommandRequest>, description = "Optional; an empty body counts as {}"),
    responses(
        (status = 200, description = "Paused; `paused_since` is set", body = AdvanceView),
        (status = 400, description = "Malformed id or body", body = ErrorBody),
        (status = 404, description = "No such advance", body = ErrorBody),
        (status = 409, description = "The advance is not active, or already paused", body = ErrorBody),
        (status = 422, description = "Reason over 500 characters", body = ErrorBody),
        (status = 503, description = "Temporal is unavailable", body = ErrorBody),
    )
)]
pub async fn pause_advance(
    State(state): State<ApiState>,
    ApiPath(advance_id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<CommandRequest>,
) -> ApiResult<Response> {
    send(&state, advance_id, Command::Pause(note(request.reason, "paused by an operator")?)).await
}

/// Continues collection of a paused advance: every payment still scheduled moves later by the time it was paused.
#[utoipa::path(
    post, path = "/api/v1/advances/{advance_id}/resume", tag = "advances",
    params(("advance_id" = Uuid, Path, description = "The advance's id")),
    request_body(content = Option<CommandRequest>, description = "Optional; an empty body counts as {}"),
    responses(
        (status = 200, description = "Resumed, with the shifted due times", body = AdvanceView),
        (status = 400, description = "Malformed id or body", body = ErrorBody),
        (status = 404, description = "No such advance", body = ErrorBody),
        (status = 409, description = "The advance is not active, or not paused", body = ErrorBody),
        (status = 422, description = "Reason over 500 characters", body = ErrorBody),
        (status = 503, description = "Temporal is unavailable", body = ErrorBody),
    )
)]
pub async fn resume_advance(
    State(state): State<ApiState>,
    ApiPath(advance_id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<CommandRequest>,
) -> ApiResult<Response> {
    send(&state, advance_id, Command::Resume(note(request.reason, "")?)).await
}
