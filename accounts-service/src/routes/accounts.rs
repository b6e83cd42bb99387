//! `POST /api/v1/accounts`, `GET /api/v1/accounts/{id}`.

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use chrono::Utc;
use ledger_contract::{Account, AccountQuery, CreateAccountRequest};
use rust_decimal::Decimal;
use service_kit::auth::Caller;
use service_kit::extract::{ApiJson, ApiPath, ApiQuery, OptionalIdempotencyKey};
use service_kit::{ApiError, ApiResult, ErrorBody};
use uuid::Uuid;

use super::reports::parse_optional_timestamp;
use crate::db::{ledger, statements};
use crate::domain::book::Key;
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

/// Reads an account and its balance, now or (with `as_of`) at any past time, archived days included.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account_id}", tag = "accounts",
    params(("account_id" = Uuid, Path, description = "The account's id"), AccountQuery),
    responses(
        (status = 200, description = "The account", body = Account),
        (status = 400, description = "Malformed id or time", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 409, description = "`as_of` falls where days were archived before balances were recorded", body = ErrorBody),
        (status = 422, description = "`as_of` in the future", body = ErrorBody),
        (status = 503, description = "The archive cannot be read now; retry", body = ErrorBody),
    )
)]
pub async fn get_account(
    State(state): State<AppState>,
    ApiPath(account_id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<AccountQuery>,
) -> ApiResult<Json<Account>> {
    let Some(as_of) = parse_optional_timestamp("as_of", query.as_of.as_deref())? else {
        return Ok(Json(ledger::get_account(&state.pool, account_id).await?));
    };
    if as_of > Utc::now() {
        return Err(ApiError::validation("as_of_in_future", "as_of must not be in the future"));
    }
    let account = ledger::get_account(&state.report_pool, account_id).await?;
    // The balance after the account's newest row dated `as_of` or before; 0 before its first.
    let found = statements::last_before(state.book(), account_id, Key::after(as_of)).await?;
    let balance = found.map_or(Decimal::ZERO, |(_, balance)| balance);
    Ok(Json(Account { balance, as_of: Some(as_of), held_balance: None, available_balance: None, ..account }))
}
