//! Moving money through the ledger's typed client, and what each of its answers means to an activity.

use advances_model::{Alert, AlertKind};
use advances_workflows::activities::{MoneyMove, MoneyOutcome};
use ledger_contract::{BankTransactionRequest, LedgerClient, LedgerError, Transaction, TransactionStatus};
use money::Amount;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::{retryable, Activities};

/// How a call to the ledger went wrong. Neither is the client's failure: the payment waits, and Temporal
/// retries the activity with the same key, with backoff, for as long as it takes.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The outcome is unknown or the service is unavailable: a retry may settle it.
    #[error("accounts-service unavailable: {0}")]
    Transient(String),
    /// The ledger refused the request itself (a 401, 403, 422 of any kind, a 404 on a granted account...).
    /// Only an operator can fix that (a token, a scope, a key taken by someone else), so it raises an alert
    /// naming the cause, and the payment is never recorded as failed for it.
    #[error("the accounts-service refused the request ({0}); an operator must fix this")]
    NeedsOperator(String),
}

impl From<LedgerError> for CallError {
    fn from(error: LedgerError) -> Self {
        if error.is_retryable() {
            Self::Transient(error.to_string())
        } else {
            Self::NeedsOperator(error.to_string())
        }
    }
}

/// Whether an unknown account is an answer (the account of a grant that never happened may not exist) or a
/// fault (the account of a granted advance must).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingAccount {
    IsARefusal,
    IsAFault,
}

/// Moves money between the bank and an account, at most once per key. Only a debit the balance cannot cover
/// (and, for a grant, an unknown account) is a refusal, an outcome the workflow records; every other answer
/// is a [`CallError`].
pub async fn move_money(
    client: &LedgerClient,
    request: &MoneyMove,
    missing_account: MissingAccount,
) -> Result<MoneyOutcome, CallError> {
    let amount = Amount::try_from(request.amount)
        .map_err(|error| CallError::NeedsOperator(format!("{} is not a valid amount: {error}", request.amount)))?;
    let body = BankTransactionRequest::new(request.account_id, amount, request.direction, Some(request.reason.clone()));
    match client.bank_transaction(&body, Some(&request.idempotency_key)).await {
        Ok(Transaction { status: TransactionStatus::Success, transaction_id, .. }) => {
            Ok(MoneyOutcome::Done { transaction_id })
        }
        Ok(Transaction { status: TransactionStatus::Fail, reason, .. }) => {
            Ok(MoneyOutcome::Refused { reason: reason.unwrap_or_else(|| "refused".to_owned()) })
        }
        Err(LedgerError::Api { status: 404, body, .. }) if missing_account == MissingAccount::IsARefusal => {
            Ok(MoneyOutcome::Refused { reason: format!("{}: {}", body.error.code, body.error.message) })
        }
        Err(error) => Err(error.into()),
    }
}

impl Activities {
    pub(crate) async fn move_money(
        &self,
        ctx: &ActivityContext,
        operation: &str,
        request: MoneyMove,
        missing_account: MissingAccount,
    ) -> Result<MoneyOutcome, ActivityError> {
        let result = move_money(&self.ledger, &request, missing_account).await;
        let outcome = match &result {
            Ok(MoneyOutcome::Done { .. }) => "done",
            Ok(MoneyOutcome::Refused { .. }) => "refused",
            Err(CallError::Transient(_)) => "transient",
            Err(CallError::NeedsOperator(_)) => "needs_operator",
        };
        self.metrics.ledger_calls.with_label_values(&[operation, outcome]).inc();
        match result {
            Ok(outcome) => {
                tracing::info!(key = %request.idempotency_key, amount = %request.amount, ?outcome, "{operation}");
                Ok(outcome)
            }
            Err(CallError::Transient(error)) => {
                tracing::warn!(key = %request.idempotency_key, %error, "{operation} will be retried");
                Err(retryable(error))
            }
            Err(CallError::NeedsOperator(error)) => {
                // Not the client's failure: nothing is recorded as failed. The alert says why (once per cause),
                // and the activity keeps retrying with backoff until an operator has fixed it.
                let advance_id = ctx.info().workflow_id.as_deref().and_then(advances_workflows::advance_of_workflow);
                let alert = Alert {
                    advance_id,
                    kind: AlertKind::LedgerRefused,
                    message: format!(
                        "{operation} with key {} (account {}, {}): {error}; it is retried until this is fixed",
                        request.idempotency_key, request.account_id, request.amount
                    ),
                };
                self.alert(&alert).await?;
                Err(retryable(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use money::ErrorBody;

    fn answered(status: u16) -> CallError {
        LedgerError::Api { service: "accounts-service", status, body: ErrorBody::new("code", "message") }.into()
    }

    #[test]
    fn answers_that_leave_the_outcome_open_are_transient_and_refusals_need_an_operator() {
        for status in [408, 409, 429, 500, 503] {
            assert!(matches!(answered(status), CallError::Transient(_)), "{status}");
        }
        for status in [400, 401, 403, 404, 413, 422] {
            assert!(matches!(answered(status), CallError::NeedsOperator(_)), "{status}");
        }
        let unreadable = LedgerError::Unreadable { service: "accounts-service", status: 201, detail: "<html>".into() };
        assert!(matches!(CallError::from(unreadable), CallError::Transient(_)));
    }
}
