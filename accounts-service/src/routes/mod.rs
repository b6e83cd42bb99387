//! One module per resource; what the database's answers mean to a client is decided here.

pub mod accounts;
pub mod holds;
pub mod reports;
pub mod statements;
pub mod system;
pub mod transactions;

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use service_kit::auth::Caller;
use service_kit::{ApiError, ApiResult, IdempotencyKey};

use crate::db::idempotency::{ClientKey, StoredResponse};
use crate::db::ledger::{self, Outcome, Reply};
use crate::db::movements::{self, MoneyRequest};
use crate::db::DbError;
use crate::domain::transfer::Movement;
use crate::AppState;

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::AccountNotFound(_) | DbError::HoldNotFound(_) => ApiError::NotFound(error.to_string()),
            DbError::HoldNotPending(..) => ApiError::Conflict { code: "hold_not_pending", message: error.to_string() },
            DbError::CaptureOverHold(_) => ApiError::validation("capture_exceeds_hold", error.to_string()),
            DbError::CaptureToOwnAccount => ApiError::validation("same_account", error.to_string()),
            DbError::SnapshotNotFound => {
                ApiError::NotFound("unknown or expired report snapshot; request page 1 without one".into())
            }
            DbError::KeyInFlight => ApiError::IdempotencyInFlight,
            DbError::KeyReused => ApiError::IdempotencyKeyReused,
            DbError::Inconsistent(_) => ApiError::Internal(error.into()),
            DbError::NoBook(_) => ApiError::Conflict { code: "archived_without_balances", message: error.to_string() },
            DbError::ArchiveUnavailable(_) => {
                tracing::error!(%error, "answering 503");
                ApiError::UpstreamUnavailable("the archive".into())
            }
            DbError::CommitUnknown(_) => {
                tracing::warn!(%error, "answering 503: retry with the same Idempotency-Key to learn the outcome");
                ApiError::UpstreamUnavailable("the database".into())
            }
            DbError::ReplicaBehind => {
                tracing::warn!(%error, "answering 503");
                ApiError::UpstreamUnavailable("the report replica".into())
            }
            DbError::Sqlx(error) => error.into(),
        }
    }
}

/// Moves money for `caller`, through the committers when they run (else as a group of one on this task), and
/// answers what it did.
pub(crate) async fn move_money(
    state: &AppState,
    caller: &Caller,
    movement: Movement,
    key: Option<IdempotencyKey>,
) -> ApiResult<Response> {
    let (kind, status) = match movement {
        Movement::Transfer(_) => ("transfer", StatusCode::CREATED),
        Movement::Bank(_) => ("bank", StatusCode::CREATED),
        Movement::Hold(_) => ("hold", StatusCode::CREATED),
        Movement::Capture(_) => ("capture", StatusCode::OK),
        Movement::Release { .. } => ("void", StatusCode::OK),
    };
    let request = MoneyRequest { movement, client: caller.name.clone(), key, reply_status: status.as_u16() };
    let reply = match &state.committer {
        Some(committer) => committer.submit(request).await?,
        None => movements::apply_alone(&state.pool, &request, state.settings.idempotency_wait).await?,
    };
    answer(state, kind, reply)
}

/// Opens an account for `caller`, once per key.
pub(crate) async fn create_account(
    state: &AppState,
    caller: &Caller,
    key: Option<IdempotencyKey>,
) -> ApiResult<Response> {
    let key = key.as_ref().map(|key| ClientKey { client: &caller.name, key });
    let status = StatusCode::CREATED.as_u16();
    let reply = ledger::create_account(&state.pool, key, state.settings.idempotency_wait, status).await?;
    answer(state, "account", reply)
}

/// Counts what a command did and sends its response.
fn answer(state: &AppState, kind: &str, reply: Reply) -> ApiResult<Response> {
    let outcome = match reply.outcome {
        None => "replayed",
        Some(Outcome::AccountCreated) => "created",
        Some(Outcome::Success) => "success",
        Some(Outcome::InsufficientFunds) => "insufficient_funds",
    };
    state.metrics.ledger_transactions.with_label_values(&[kind, outcome]).inc();
    stored_response(reply.response, reply.outcome.is_none())
}

/// Sends a stored response; a replay says so in `Idempotent-Replayed: true`.
fn stored_response(response: StoredResponse, replayed: bool) -> ApiResult<Response> {
    let status = StatusCode::from_u16(response.status_code)
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("stored status {} is not HTTP", response.status_code)))?;
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok((status, headers, response.body).into_response())
}
