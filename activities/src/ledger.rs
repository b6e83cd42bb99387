//! Moving money through the ledger's typed client, and what each of its answers means to an activity.

use advances_workflows::activities::{MoneyMove, MoneyOutcome};
use ledger_contract::{BankTransactionRequest, LedgerClient, LedgerError, Transaction, TransactionStatus};
use money::Amount;

/// How a call to the ledger went wrong.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The outcome is unknown or the service is unavailable: retry with the same key.
    #[error("accounts-service unavailable: {0}")]
    Transient(String),
    /// The ledger refused the request itself (not the money movement): retrying cannot help.
    #[error("accounts-service refused the request: {0}")]
    Definitive(String),
}

impl From<LedgerError> for CallError {
    /// What the client says may succeed on a retry is transient, and so are 401/403 (a token for an operator to
    /// fix; the payment must wait for it, not fail). Any other refusal is definitive.
    fn from(error: LedgerError) -> Self {
        if error.is_retryable() || matches!(error.status(), Some(401 | 403)) {
            Self::Transient(error.to_string())
        } else {
            Self::Definitive(error.to_string())
        }
    }
}

/// Moves money between the bank and an account, at most once per key. A debit the balance cannot cover and an
/// unknown account are refusals (outcomes); anything that leaves the outcome unknown is transient.
pub async fn move_money(client: &LedgerClient, request: &MoneyMove) -> Result<MoneyOutcome, CallError> {
    let amount = Amount::try_from(request.amount)
        .map_err(|error| CallError::Definitive(format!("{} is not a valid amount: {error}", request.amount)))?;
    let body = BankTransactionRequest::new(request.account_id, amount, request.direction, Some(request.reason.clone()));
    match client.bank_transaction(&body, Some(&request.idempotency_key)).await {
        Ok(Transaction { status: TransactionStatus::Success, transaction_id, .. }) => {
            Ok(MoneyOutcome::Done { transaction_id })
        }
        Ok(Transaction { status: TransactionStatus::Fail, reason, .. }) => {
            Ok(MoneyOutcome::Refused { reason: reason.unwrap_or_else(|| "refused".to_owned()) })
        }
        Err(LedgerError::Api { status: 404, body }) => {
            Ok(MoneyOutcome::Refused { reason: format!("{}: {}", body.error.code, body.error.message) })
        }
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use money::ErrorBody;

    fn answered(status: u16) -> CallError {
        LedgerError::Api { status, body: ErrorBody::new("code", "message") }.into()
    }

    #[test]
    fn answers_that_leave_the_outcome_open_are_transient_and_refusals_are_definitive() {
        for status in [401, 403, 408, 409, 429, 500, 503] {
            assert!(matches!(answered(status), CallError::Transient(_)), "{status}");
        }
        for status in [400, 413, 422] {
            assert!(matches!(answered(status), CallError::Definitive(_)), "{status}");
        }
        let unreadable = LedgerError::Unreadable { status: 201, detail: "<html>".into() };
        assert!(matches!(CallError::from(unreadable), CallError::Transient(_)));
    }
}
