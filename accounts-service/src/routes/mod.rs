//! One module per resource.

pub mod accounts;
pub mod reports;
pub mod system;
pub mod transactions;

use axum::response::Response;

use crate::db::idempotency::IdempotencyKey;
use crate::db::ledger::{self, Command, Outcome};
use crate::error::ApiResult;
use crate::http::stored_response;
use crate::AppState;

/// Runs a ledger command with its optional key and counts what it did.
pub(crate) async fn run_command(
    state: &AppState,
    command: Command,
    key: Option<IdempotencyKey>,
) -> ApiResult<Response> {
    let reply = ledger::execute(&state.pool, &command, key.as_ref(), state.settings.idempotency_wait).await?;
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
    Ok(stored_response(reply.response, reply.outcome.is_none()))
}
