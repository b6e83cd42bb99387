//! Operator commands: `POST /api/v1/advances/{id}/cancel`, `/pay_off`, `/pause`, `/resume`.

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

async fn command(state: &ApiState, advance_id: Uuid, command: Command, request: CommandRequest) -> ApiResult<Response> {
    let note = request.reason.unwrap_or_default();
    if note.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::validation(
            "invalid_reason",
            format!("reason may be at most {MAX_REASON_CHARS} characters"),
        ));
    }
    let stored = state.store.get(advance_id).await?;
    let stored = stored.ok_or_else(|| ApiError::NotFound(format!("advance {advance_id} does not exist")))?;
    let not_active = |detail: String| ApiError::Conflict { code: "advance_not_active", message: detail };
    if !stored.status.is_open() {
        return Err(not_active(format!("the advance is {}, not active", stored.status.as_str())));
    }
    let note = match command {
        Command::Cancel if note.is_empty() => "cancelled by an operator".to_owned(),
        Command::Pause if note.is_empty() => "paused by an operator".to_owned(),
        _ => note,
    };
    match state.temporal.command(advance_id, command, note).await? {
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
    command(&state, advance_id, Command::Cancel, request).await
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
    command(&state, advance_id, Command::PayOff, request).await
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
    command(&state, advance_id, Command::Pause, request).await
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
    command(&state, advance_id, Command::Resume, request).await
}
