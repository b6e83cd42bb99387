//! `POST /api/v1/transaction` (between two accounts) and `POST /api/v1/bank_transactions`.

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use ledger_contract::{
    BankTransactionRequest, ByKeyQuery, ByKeysRequest, Direction, DirectionInput, KeyTransactions, Transaction,
    TransactionsByKey, TransactionsByKeys, TransferRequest, MAX_KEYS_PER_LOOKUP,
};
use money::{Amount, AmountInput};
use service_kit::auth::Caller;
use service_kit::extract::{ApiJson, ApiJsonUpTo, ApiQuery, OptionalIdempotencyKey};
use service_kit::{ApiError, ApiResult, ErrorBody, IdempotencyKey};

use crate::db::ledger;
use crate::domain::transfer::{BankCommand, Movement, TransferCommand};
use crate::AppState;

/// The longest bank transaction description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;

pub(crate) fn validate_amount(input: &AmountInput) -> ApiResult<Amount> {
    input.validate().map_err(|error| ApiError::validation("invalid_amount", error.to_string()))
}

fn validate_direction(input: &DirectionInput) -> ApiResult<Direction> {
    input.parse().map_err(|error| {
        ApiError::validation(
            "invalid_direction",
            format!("direction must be \"debit\" or \"credit\", not {:?}", error.value),
        )
    })
}

/// The ledger's rules for a request's fields: what turns a request of the contract into a command.
pub trait Validate {
    type Command;

    /// Applies every rule; a refusal records nothing.
    fn validate(&self) -> ApiResult<Self::Command>;
}

impl Validate for TransferRequest {
    type Command = TransferCommand;

    fn validate(&self) -> ApiResult<TransferCommand> {
        let amount = validate_amount(&self.amount)?;
        let direction = validate_direction(&self.direction)?;
        if self.src_account_id == self.dst_account_id {
            return Err(ApiError::validation("same_account", "src_account_id and dst_account_id must differ"));
        }
        Ok(TransferCommand {
            src_account_id: self.src_account_id,
            dst_account_id: self.dst_account_id,
            amount,
            direction,
        })
    }
}

impl Validate for BankTransactionRequest {
    type Command = BankCommand;

    fn validate(&self) -> ApiResult<BankCommand> {
        let amount = validate_amount(&self.amount)?;
        let direction = validate_direction(&self.direction)?;
        if let Some(reason) = &self.reason {
            if reason.chars().count() > MAX_DESCRIPTION_CHARS {
                return Err(ApiError::validation(
                    "invalid_reason",
                    format!("reason may be at most {MAX_DESCRIPTION_CHARS} characters"),
                ));
            }
            if reason.contains('\0') {
                return Err(ApiError::validation("invalid_reason", "reason may not contain NUL characters"));
            }
        }
        Ok(BankCommand { account_id: self.dst_account_id, amount, direction, description: self.reason.clone() })
    }
}

/// Moves money between two accounts, atomically. Insufficient funds is a recorded outcome (201, `status: fail`).
#[utoipa::path(
    post, path = "/api/v1/transaction", tag = "transactions",
    request_body = TransferRequest,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]+$", description = "1 to 255 visible ASCII characters; the same key and request replays the first response")),
    responses(
        (status = 201, description = "Recorded: `status` is `success`, or `fail` with a `reason`", body = Transaction),
        (status = 400, description = "Malformed JSON, wrong types or malformed ids", body = ErrorBody),
        (status = 404, description = "An account does not exist", body = ErrorBody),
        (status = 409, description = "The same Idempotency-Key is still in flight", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 422, description = "Invalid amount or direction, same accounts, or key reused with another body", body = ErrorBody),
    )
)]
pub async fn create_transfer(
    State(state): State<AppState>,
    caller: Caller,
    OptionalIdempotencyKey(key): OptionalIdempotencyKey,
    ApiJson(request): ApiJson<TransferRequest>,
) -> ApiResult<Response> {
    let command = request.validate()?;
    super::move_money(&state, &caller, Movement::Transfer(command), key).await
}

/// Moves money between the bank and one account. A debit that the balance cannot cover is recorded as failed.
#[utoipa::path(
    post, path = "/api/v1/bank_transactions", tag = "transactions",
    request_body = BankTransactionRequest,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]+$", description = "1 to 255 visible ASCII characters; the same key and request replays the first response")),
    responses(
        (status = 201, description = "Recorded: `status` is `success`, or `fail` with a `reason`", body = Transaction),
        (status = 400, description = "Malformed JSON, wrong types or malformed ids", body = ErrorBody),
        (status = 404, description = "The account does not exist", body = ErrorBody),
        (status = 409, description = "The same Idempotency-Key is still in flight", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 422, description = "Invalid amount, direction or reason, or key reused with another body", body = ErrorBody),
    )
)]
pub async fn create_bank_transaction(
    State(state): State<AppState>,
    caller: Caller,
    OptionalIdempotencyKey(key): OptionalIdempotencyKey,
    ApiJson(request): ApiJson<BankTransactionRequest>,
) -> ApiResult<Response> {
    let command = request.validate()?;
    super::move_money(&state, &caller, Movement::Bank(command), key).await
}

/// Finds the transactions the caller recorded under one of its `Idempotency-Key`s, for reconciliation: an empty
/// list when none. Another client's transactions are never shown, whatever their key.
#[utoipa::path(
    get, path = "/api/v1/transactions/by_key", tag = "transactions",
    params(ByKeyQuery),
    responses(
        (status = 200, description = "The caller's transactions made with this key (at most one)", body = TransactionsByKey),
        (status = 400, description = "Missing parameter", body = ErrorBody),
        (status = 422, description = "Not a valid key", body = ErrorBody),
    )
)]
pub async fn transactions_by_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ByKeyQuery>,
) -> ApiResult<Json<TransactionsByKey>> {
    let key = IdempotencyKey::parse(&query.idempotency_key)?;
    let transactions = ledger::transactions_by_key(&state.pool, &caller.name, &key).await?;
    Ok(Json(TransactionsByKey { transactions }))
}

/// The largest `by_keys` body: room for 1 000 keys of 255 characters.
pub const BY_KEYS_MAX_BODY: usize = 512 * 1024;

/// Finds the transactions the caller recorded under each of up to 1 000 of its keys (`ledger::transactions_by_keys`).
#[utoipa::path(
    post, path = "/api/v1/transactions/by_keys", tag = "transactions",
    request_body = ByKeysRequest,
    responses(
        (status = 200, description = "One entry per distinct key, in the order asked", body = TransactionsByKeys),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body over 512 KiB", body = ErrorBody),
        (status = 422, description = "No keys, more than 1 000, or one that is not a valid key", body = ErrorBody),
    )
)]
pub async fn transactions_by_keys(
    State(state): State<AppState>,
    caller: Caller,
    ApiJsonUpTo(request): ApiJsonUpTo<ByKeysRequest, BY_KEYS_MAX_BODY>,
) -> ApiResult<Json<TransactionsByKeys>> {
    let asked = request.idempotency_keys.len();
    if !(1..=MAX_KEYS_PER_LOOKUP).contains(&asked) {
        return Err(ApiError::validation(
            "invalid_keys",
            format!("idempotency_keys must hold 1 to {MAX_KEYS_PER_LOOKUP} keys, not {asked}"),
        ));
    }
    let mut keys: Vec<IdempotencyKey> = Vec::with_capacity(asked);
    for text in &request.idempotency_keys {
        let key = IdempotencyKey::parse(text)?;
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let texts: Vec<&str> = keys.iter().map(IdempotencyKey::as_str).collect();
    let mut found = ledger::transactions_by_keys(&state.pool, &caller.name, &texts).await?;
    let results = texts
        .iter()
        .map(|key| KeyTransactions {
            idempotency_key: (*key).to_owned(),
            transactions: found.extract_if(.., |(k, _)| k == key).map(|(_, t)| t).collect(),
        })
        .collect();
    Ok(Json(TransactionsByKeys { results }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(json: &str) -> Result<ApiResult<TransferCommand>, serde_json::Error> {
        serde_json::from_str::<TransferRequest>(json).map(|request| request.validate())
    }

    fn code(result: ApiResult<TransferCommand>) -> &'static str {
        result.err().map(|e| e.code()).unwrap_or("ok")
    }

    const A: &str = "0190f6f0-0000-7000-8000-000000000001";
    const B: &str = "0190f6f0-0000-7000-8000-000000000002";

    fn body(amount: &str, direction: &str) -> String {
        format!(r#"{{"src_account_id":"{A}","dst_account_id":"{B}","amount":{amount},"direction":"{direction}"}}"#)
    }

    #[test]
    fn a_valid_transfer_is_accepted() {
        assert_eq!(code(transfer(&body("12.3", "debit")).expect("json")), "ok");
        assert_eq!(code(transfer(&body("\"0.01\"", "credit")).expect("json")), "ok");
    }

    #[test]
    fn each_bad_amount_is_a_validation_error() {
        for amount in ["0", "-5", "\"NaN\"", "1e400", "1.001", "1000000000000.01", "\"abc\""] {
            assert_eq!(code(transfer(&body(amount, "debit")).expect("json")), "invalid_amount", "{amount}");
        }
    }

    #[test]
    fn an_unknown_direction_is_a_validation_error() {
        assert_eq!(code(transfer(&body("1", "sideways")).expect("json")), "invalid_direction");
    }

    #[test]
    fn the_same_account_on_both_sides_is_a_validation_error() {
        let json = format!(r#"{{"src_account_id":"{A}","dst_account_id":"{A}","amount":1,"direction":"debit"}}"#);
        assert_eq!(code(transfer(&json).expect("json")), "same_account");
    }

    #[test]
    fn wrong_types_and_unknown_fields_do_not_deserialize() {
        assert!(transfer(&body("true", "debit")).is_err());
        assert!(transfer(&format!(
            r#"{{"src_account_id":"nope","dst_account_id":"{B}","amount":1,"direction":"debit"}}"#
        ))
        .is_err());
        assert!(transfer(&format!(r#"{{"src_account_id":"{A}","dst_account_id":"{B}","amount":1,"direction":5}}"#))
            .is_err());
        assert!(transfer(&format!(r#"{{"src_account_id":"{A}","dst_account_id":"{B}","amount":1}}"#)).is_err());
        assert!(transfer(&format!(
            r#"{{"src_account_id":"{A}","dst_account_id":"{B}","amount":1,"direction":"debit","x":1}}"#
        ))
        .is_err());
    }

    #[test]
    fn a_bank_reason_over_500_characters_is_a_validation_error() {
        let json =
            |reason: &str| format!(r#"{{"dst_account_id":"{A}","amount":1,"direction":"credit","reason":"{reason}"}}"#);
        let parse = |json: String| serde_json::from_str::<BankTransactionRequest>(&json).expect("json").validate();
        assert!(parse(json(&"r".repeat(500))).is_ok());
        assert_eq!(parse(json(&"r".repeat(501))).err().map(|e| e.code()), Some("invalid_reason"));
    }
}
