//! A typed client of the accounts-service, on the HTTP layer every client of ours shares (`money::client`).

use std::time::Duration;

use money::client::{CallError, JsonClient};
use reqwest::StatusCode;
use uuid::Uuid;

use crate::holds::{CaptureRequest, Hold, HoldRequest, VoidRequest};
use crate::types::{
    Account, AccountQuery, BankTransactionRequest, ByKeyQuery, ByKeysRequest, CreateAccountRequest, KeyTransactions,
    ReportPage, ReportQuery, Statement, StatementQuery, Transaction, TransactionsByKey, TransactionsByKeys,
    TransferRequest,
};

/// How a call went wrong: no answer, an error answer, or an unreadable one (see [`CallError`]).
pub type LedgerError = CallError;

/// The service's name in errors.
const SERVICE: &str = "accounts-service";

/// A client of the accounts-service's REST API.
#[derive(Clone)]
pub struct LedgerClient {
    api: JsonClient,
}

impl LedgerClient {
    /// `base` is the service's root (`http://127.0.0.1:8081`, or `https://…`, verified against the public
    /// roots); each call gives up after `timeout`.
    pub fn new(base: &str, token: Option<String>, timeout: Duration) -> Result<Self, reqwest::Error> {
        Self::with_ca(base, token, timeout, None)
    }

    /// As [`LedgerClient::new`], trusting also the CA certificates in `ca_pem` (a private CA of an internal
    /// network) for an `https://` base.
    pub fn with_ca(
        base: &str,
        token: Option<String>,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self { api: JsonClient::new(SERVICE, base, token, timeout, ca_pem)? })
    }

    /// `POST /api/v1/accounts`: a new account with a balance of 0.
    pub async fn create_account(&self, key: Option<&str>) -> Result<Account, LedgerError> {
        self.api.post("/api/v1/accounts", &CreateAccountRequest {}, key, StatusCode::CREATED).await
    }

    /// `GET /api/v1/accounts/{id}`; an unknown account is `Api { status: 404, .. }`.
    pub async fn account(&self, account_id: Uuid) -> Result<Account, LedgerError> {
        self.api.get(&format!("/api/v1/accounts/{account_id}"), &()).await
    }

    /// `GET /api/v1/accounts/{id}?as_of=`: the account with its balance at `as_of`.
    pub async fn account_as_of(&self, account_id: Uuid, as_of: &str) -> Result<Account, LedgerError> {
        let query = AccountQuery { as_of: Some(as_of.to_owned()) };
        self.api.get(&format!("/api/v1/accounts/{account_id}"), &query).await
    }

    /// `GET /api/v1/accounts/{id}/statement`: one page of the account's statement.
    pub async fn statement(&self, account_id: Uuid, query: &StatementQuery) -> Result<Statement, LedgerError> {
        self.api.get(&format!("/api/v1/accounts/{account_id}/statement"), query).await
    }

    /// `POST /api/v1/transaction`: a transfer, at most once per key. Insufficient funds is a recorded
    /// transaction with `status: fail`, not an error.
    pub async fn transfer(&self, request: &TransferRequest, key: Option<&str>) -> Result<Transaction, LedgerError> {
        self.api.post("/api/v1/transaction", request, key, StatusCode::CREATED).await
    }

    /// `POST /api/v1/bank_transactions`: money between the bank and an account, at most once per key.
    pub async fn bank_transaction(
        &self,
        request: &BankTransactionRequest,
        key: Option<&str>,
    ) -> Result<Transaction, LedgerError> {
        self.api.post("/api/v1/bank_transactions", request, key, StatusCode::CREATED).await
    }

    /// `GET /api/v1/transactions/by_key`: what the ledger recorded under an idempotency key.
    pub async fn transactions_by_key(&self, key: &str) -> Result<Vec<Transaction>, LedgerError> {
        let query = ByKeyQuery { idempotency_key: key.to_owned() };
        let found: TransactionsByKey = self.api.get("/api/v1/transactions/by_key", &query).await?;
        Ok(found.transactions)
    }

    /// `POST /api/v1/transactions/by_keys`: the caller's transactions under each of up to
    /// [`crate::MAX_KEYS_PER_LOOKUP`] keys, one entry per distinct key in the order asked.
    pub async fn transactions_by_keys(&self, keys: &[String]) -> Result<Vec<KeyTransactions>, LedgerError> {
        let body = ByKeysRequest { idempotency_keys: keys.to_vec() };
        let found: TransactionsByKeys =
            self.api.post("/api/v1/transactions/by_keys", &body, None, StatusCode::OK).await?;
        Ok(found.results)
    }

    /// `POST /api/v1/holds`: reserves money, at most once per key. A hold the account cannot cover is a recorded
    /// hold with `status: fail`, not an error.
    pub async fn place_hold(&self, request: &HoldRequest, key: Option<&str>) -> Result<Hold, LedgerError> {
        self.api.post("/api/v1/holds", request, key, StatusCode::CREATED).await
    }

    /// `POST /api/v1/holds/{id}/capture`, at most once per key.
    pub async fn capture_hold(
        &self,
        hold_id: Uuid,
        request: &CaptureRequest,
        key: Option<&str>,
    ) -> Result<Hold, LedgerError> {
        self.api.post(&format!("/api/v1/holds/{hold_id}/capture"), request, key, StatusCode::OK).await
    }

    /// `POST /api/v1/holds/{id}/void`, at most once per key.
    pub async fn void_hold(&self, hold_id: Uuid, key: Option<&str>) -> Result<Hold, LedgerError> {
        self.api.post(&format!("/api/v1/holds/{hold_id}/void"), &VoidRequest {}, key, StatusCode::OK).await
    }

    /// `GET /api/v1/holds/{id}`.
    pub async fn hold(&self, hold_id: Uuid) -> Result<Hold, LedgerError> {
        self.api.get(&format!("/api/v1/holds/{hold_id}"), &()).await
    }

    /// `GET /api/v1/transactions`: one page of the report.
    pub async fn report(&self, query: &ReportQuery) -> Result<ReportPage, LedgerError> {
        self.api.get("/api/v1/transactions", query).await
    }
}
