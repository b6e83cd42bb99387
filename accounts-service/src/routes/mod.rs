//! One module per resource; what the database's answers mean to a client is decided here.

pub mod accounts;
pub mod reports;
pub mod system;
pub mod transactions;

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use service_kit::auth::Caller;
use service_kit::{ApiError, ApiResult, IdempotencyKey};

use crate::db::batch::Queued;
use crate::db::idempotency::StoredResponse;
use crate::db::ledger::{self, Command, Outcome, Requester};
use crate::db::DbError;
use crate::AppState;

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::AccountNotFound(_) => ApiError::NotFound(error.to_string()),
            DbError::SnapshotNotFound => {
                ApiError::NotFound("unknown or expired report snapshot; request page 1 without one".into())
            }
            DbError::KeyInFlight => ApiError::IdempotencyInFlight,
            DbError::KeyReused => ApiError::IdempotencyKeyReused,
            DbError::Inconsistent(_) => ApiError::Internal(error.into()),
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

/// Runs a ledger command for `caller` with its optional key and counts what it did.
pub(crate) async fn run_command(
    state: &AppState,
    caller: &Caller,
    command: Command,
    key: Option<IdempotencyKey>,
) -> ApiResult<Response> {
    let wait = state.settings.idempotency_wait;
    let requester = Requester { client: &caller.name, key: key.as_ref() };
    let status = StatusCode::CREATED.as_u16();
    let queued = match (&state.committer, &command) {
        (Some(committer), Command::Transfer(t)) => Some((committer, Queued::Transfer(t.clone()))),
        (Some(committer), Command::Bank(b)) => Some((committer, Queued::Bank(b.clone()))),
        _ => None,
    };
    let reply = match queued {
        Some((committer, queued)) => committer.submit(queued, requester, status).await?,
        None => ledger::execute(&state.pool, &command, requester, wait, status).await?,
    };
    let kind = match command {
        Command::CreateAccount => "account",
        Command::Transfer(_) => "transfer",
        Command::Bank(_) => "bank",
    };
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
