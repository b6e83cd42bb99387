//! `POST /api/v1/advances`, `GET /api/v1/advances/{id}`, `GET /api/v1/advances`.

use advances_model::{Advance, AdvanceStatus, AdvanceTerms, RequestError};
use advances_store::{products, Registered};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use ledger_contract::LedgerError;
use rust_decimal::Decimal;
use service_kit::auth::Caller;
use service_kit::extract::{ApiJson, ApiPath, ApiQuery, OptionalIdempotencyKey};
use service_kit::{ApiError, ApiResult, ErrorBody};
use uuid::Uuid;

use crate::state::ApiState;
use crate::views::advance_view;
use advances_contract::{AdvanceList, AdvanceView, CreateAdvanceRequest, ListQuery};

/// Grants an advance under a product and schedules its payments, as a durable Temporal workflow.
#[utoipa::path(
    post, path = "/api/v1/advances", tag = "advances",
    request_body = CreateAdvanceRequest,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]+$", description = "The same key is the same advance: it never starts twice")),
    responses(
        (status = 201, description = "Started; `status` is `active` once the grant is made (`granting` if it took longer than GRANT_WAIT)", body = AdvanceView),
        (status = 400, description = "Malformed JSON or ids", body = ErrorBody),
        (status = 404, description = "The account does not exist", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 422, description = "`invalid_amount` (not an amount, or outside the product's bounds), `unknown_product` (none such, or retired), `invalid_terms` (first_due_at out of range), `limit_exceeded` (an exposure cap: nothing was started and the key stays unused), or the key/advance id already used for another advance", body = ErrorBody),
        (status = 503, description = "The accounts-service, Temporal or the database is unavailable", body = ErrorBody),
    )
)]
pub async fn create_advance(
    State(state): State<ApiState>,
    caller: Caller,
    OptionalIdempotencyKey(key): OptionalIdempotencyKey,
    ApiJson(request): ApiJson<CreateAdvanceRequest>,
) -> ApiResult<Response> {
    let amount =
        request.amount.validate().map_err(|error| ApiError::validation("invalid_amount", error.to_string()))?.value();
    let advance_id = request
        .advance_id
        .or_else(|| key.as_ref().map(|key| advance_id_for_key(&caller.name, key.as_str())))
        .unwrap_or_else(Uuid::new_v4);
    // A retry of an accepted request is answered as before, whatever became of its product or the caps since.
    let (created, terms) = match state.store.terms(advance_id).await? {
        Some(existing) => (false, same_request(existing, &request, amount)?),
        None => {
            let terms = new_terms(&state, advance_id, &request, amount).await?;
            account_exists(&state, terms.account_id).await?;
            match state.store.register(&Advance::new(terms.clone()), &state.settings.caps).await? {
                Registered::Created => (true, terms),
                Registered::Exists(existing) => (false, same_request(*existing, &request, amount)?),
                Registered::Refused(exceeded) => {
                    tracing::info!(account_id = %terms.account_id, %exceeded, "advance refused by an exposure cap");
                    return Err(ApiError::validation("limit_exceeded", exceeded.to_string()));
                }
            }
        }
    };
    let decided = match state.temporal.start(&terms).await {
        Ok(decided) => decided,
        Err(error) => {
            if created {
                state.store.forget_unstarted(terms.advance_id).await?;
            }
            return Err(error);
        }
    };
    let advance = match decided {
        Some(advance) => advance,
        None => match state.temporal.live(terms.advance_id).await {
            Some(live) => live,
            None => state.store.get(terms.advance_id).await?.unwrap_or_else(|| Advance::new(terms.clone())),
        },
    };
    Ok(super::advance_response(StatusCode::CREATED, &advance, !created))
}

/// The terms of a new advance: its product's (which must take new advances), checked against the request.
async fn new_terms(
    state: &ApiState,
    advance_id: Uuid,
    request: &CreateAdvanceRequest,
    amount: Decimal,
) -> ApiResult<AdvanceTerms> {
    let name = request.product.as_deref().unwrap_or(&state.settings.default_product);
    let product = match products::find(state.store.pool(), name).await? {
        Some(stored) if stored.retired_at.is_none() => stored.product,
        _ => {
            return Err(ApiError::validation(
                "unknown_product",
                format!("product {name:?} does not exist or is retired; GET /api/v1/products lists those that lend"),
            ))
        }
    };
    product.admits(amount, request.first_due_at, Utc::now(), state.settings.first_due_min_lead).map_err(|refusal| {
        let code = match refusal {
            RequestError::Amount { .. } => "invalid_amount",
            RequestError::FirstDue { .. } => "invalid_terms",
        };
        ApiError::validation(code, refusal.to_string())
    })?;
    let terms = product.terms(advance_id, request.account_id, amount, request.first_due_at);
    terms.validate().map_err(|error| ApiError::validation("invalid_amount", error.to_string()))?;
    Ok(terms)
}

/// An advance with this id exists: the request must be the one that started it (same account and amount, and
/// the same product and first due time where it names them), else its key or id was used for another one.
fn same_request(existing: AdvanceTerms, request: &CreateAdvanceRequest, amount: Decimal) -> ApiResult<AdvanceTerms> {
    let same = existing.account_id == request.account_id
        && existing.amount == amount
        && request.product.as_ref().is_none_or(|product| existing.product.as_ref() == Some(product))
        && request.first_due_at.is_none_or(|first| existing.first_due_at == Some(first));
    if same {
        Ok(existing)
    } else {
        Err(ApiError::IdempotencyKeyReused)
    }
}

async fn account_exists(state: &ApiState, account_id: Uuid) -> ApiResult<()> {
    match state.ledger.account(account_id).await {
        Ok(_) => Ok(()),
        Err(LedgerError::Api { status: 404, .. }) => {
            Err(ApiError::NotFound(format!("account {account_id} does not exist")))
        }
        Err(error) => {
            tracing::warn!(%error, "checking the account failed");
            Err(ApiError::UpstreamUnavailable("the accounts-service".into()))
        }
    }
}

/// Reads an advance: the live workflow state while it runs, the stored state once it has closed.
#[utoipa::path(
    get, path = "/api/v1/advances/{advance_id}", tag = "advances",
    params(("advance_id" = Uuid, Path, description = "The advance's id")),
    responses(
        (status = 200, description = "The advance and every payment", body = AdvanceView),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 404, description = "No such advance", body = ErrorBody),
    )
)]
pub async fn get_advance(State(state): State<ApiState>, ApiPath(advance_id): ApiPath<Uuid>) -> ApiResult<Response> {
    Ok((StatusCode::OK, Json(state.current(advance_id).await?)).into_response())
}

/// A stable id for advances created with an `Idempotency-Key`: the same client's same key is the same advance;
/// another client's same key is another advance.
pub fn advance_id_for_key(client: &str, key: &str) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x5f0c_8a2e_6b1d_4c3a_9e7f_2d4b_8a6c_1e30);
    // A NUL cannot occur in a client name or a key, so no two (client, key) pairs share a name.
    Uuid::new_v5(&NAMESPACE, format!("{client}\0{key}").as_bytes())
}

/// Lists advances newest first, from the database's copy of each workflow's state.
#[utoipa::path(
    get, path = "/api/v1/advances", tag = "advances",
    params(ListQuery),
    responses(
        (status = 200, description = "The advances", body = AdvanceList),
        (status = 400, description = "Malformed parameter", body = ErrorBody),
        (status = 422, description = "Unknown status or limit out of range", body = ErrorBody),
    )
)]
pub async fn list_advances(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<AdvanceList>> {
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(AdvanceStatus::parse(text).ok_or_else(|| {
            let known: Vec<&str> = AdvanceStatus::ALL.iter().map(|status| status.as_str()).collect();
            ApiError::validation("invalid_status", format!("status {text:?} is not one of {}", known.join(", ")))
        })?),
    };
    let advances = state.store.list(query.account_id, status, super::limit(query.limit)?).await?;
    Ok(Json(AdvanceList { advances: advances.iter().map(advance_view).collect() }))
}
