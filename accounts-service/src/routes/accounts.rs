//! `POST /api/v1/accounts`, `GET /api/v1/accounts/{id}`.

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use ledger_contract::{Account, CreateAccountRequest};
use service_kit::auth::Caller;
use service_kit::extract::{ApiJson, ApiPath, OptionalIdempotencyKey};
use service_kit::{ApiResult, ErrorBody};
use uuid::Uuid;

use crate::db::ledger;
use crate::AppState;

/// Opens an account with a balance of 0.
#[utoipa::path(
    post, path = "/api/v1/accounts", tag = "accounts",
    request_body(content = Option<CreateAccountRequest>, description = "An empty object; an empty body counts as one"),
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]+$", description = "1 to 255 visible ASCII characters; the same key and request replays the first response")),
    responses(
        (status = 201, description = "Account created", body = Account),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 422, description = "Idempotency-Key reused with another request", body = ErrorBody),
    )
)]
pub async fn create_account(
    State(state): State<AppState>,
    caller: Caller,
    OptionalIdempotencyKey(key): OptionalIdempotencyKey,
    ApiJson(_request): ApiJson<CreateAccountRequest>,
) -> ApiResult<Response> {
    super::create_account(&state, &caller, key).await
}

/// Reads an account and its balance.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account_id}", tag = "accounts",
    params(("account_id" = Uuid, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The account", body = Account),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
    )
)]
pub async fn get_account(
    State(state): State<AppState>,
    ApiPath(account_id): ApiPath<Uuid>,
) -> ApiResult<Json<Account>> {
    Ok(Json(ledger::get_account(&state.pool, account_id).await?))
}
