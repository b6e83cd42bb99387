//! A typed client of the accounts-service.

use std::time::Duration;

use money::ErrorBody;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::types::{
    Account, BankTransactionRequest, ByKeyQuery, ByKeysRequest, CreateAccountRequest, KeyTransactions, ReportPage,
    ReportQuery, Transaction, TransactionsByKey, TransactionsByKeys, TransferRequest,
};

/// How long an unused connection is kept for the next call.
const IDLE_CONNECTION: Duration = Duration::from_secs(5);

/// How a call went wrong.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// No answer (connection refused or cut, timeout): the outcome is unknown; retry with the same key.
    /// The URL is stripped from the error, so that credentials in `ACCOUNTS_URL` never reach a log.
    #[error("no answer from the accounts-service: {0}")]
    Transport(reqwest::Error),
    /// The service answered with an error.
    #[error("the accounts-service answered {status}: {}: {}", body.error.code, body.error.message)]
    Api { status: u16, body: ErrorBody },
    /// The service answered something that is not its contract (a proxy's page, a cut body).
    #[error("unreadable answer from the accounts-service (HTTP {status}): {detail}")]
    Unreadable { status: u16, detail: String },
}

impl From<reqwest::Error> for LedgerError {
    fn from(error: reqwest::Error) -> Self {
        Self::Transport(error.without_url())
    }
}

impl LedgerError {
    /// The HTTP status of an answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Transport(_) => None,
            Self::Api { status, .. } | Self::Unreadable { status, .. } => Some(*status),
        }
    }

    /// Whether the same request, with the same key, may succeed if sent again: there was no answer or no
    /// readable one (the outcome is unknown), the key is still in flight (409), or the service was busy or
    /// failing (408, 429, 5xx). Any other answer is the service's decision on the request itself.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(_) | Self::Unreadable { .. } => true,
            Self::Api { status, .. } => matches!(status, 408 | 409 | 429 | 500..=599),
        }
    }
}

/// A client of the accounts-service's REST API.
#[derive(Clone)]
pub struct LedgerClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
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
        // Idle connections are dropped before the service's own idle limit (its HTTP_HEADER_TIMEOUT, 10 s by
        // default) could close one just as a request is sent on it.
        let mut builder =
            reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).pool_idle_timeout(IDLE_CONNECTION);
        if let Some(pem) = ca_pem {
            for certificate in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        Ok(Self { http: builder.build()?, base: base.trim_end_matches('/').to_owned(), token })
    }

    fn request(&self, method: Method, path: &str, key: Option<&str>) -> RequestBuilder {
        let mut builder = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            builder = builder.bearer_auth(token);
        }
        if let Some(key) = key {
            builder = builder.header("Idempotency-Key", key);
        }
        builder
    }

    async fn call<T: DeserializeOwned>(builder: RequestBuilder, success: StatusCode) -> Result<T, LedgerError> {
        read(builder.send().await?, success).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        key: Option<&str>,
    ) -> Result<T, LedgerError> {
        Self::call(self.request(Method::POST, path, key).json(body), StatusCode::CREATED).await
    }

    /// `POST /api/v1/accounts`: a new account with a balance of 0.
    pub async fn create_account(&self, key: Option<&str>) -> Result<Account, LedgerError> {
        self.post("/api/v1/accounts", &CreateAccountRequest {}, key).await
    }

    /// `GET /api/v1/accounts/{id}`; an unknown account is `Api { status: 404, .. }`.
    pub async fn account(&self, account_id: Uuid) -> Result<Account, LedgerError> {
        let path = format!("/api/v1/accounts/{account_id}");
        Self::call(self.request(Method::GET, &path, None), StatusCode::OK).await
    }

    /// `POST /api/v1/transaction`: a transfer, at most once per key. Insufficient funds is a recorded
    /// transaction with `status: fail`, not an error.
    pub async fn transfer(&self, request: &TransferRequest, key: Option<&str>) -> Result<Transaction, LedgerError> {
        self.post("/api/v1/transaction", request, key).await
    }

    /// `POST /api/v1/bank_transactions`: money between the bank and an account, at most once per key.
    pub async fn bank_transaction(
        &self,
        request: &BankTransactionRequest,
        key: Option<&str>,
    ) -> Result<Transaction, LedgerError> {
        self.post("/api/v1/bank_transactions", request, key).await
    }

    /// `GET /api/v1/transactions/by_key`: what the ledger recorded under an idempotency key.
    pub async fn transactions_by_key(&self, key: &str) -> Result<Vec<Transaction>, LedgerError> {
        let query = ByKeyQuery { idempotency_key: key.to_owned() };
        let builder = self.request(Method::GET, "/api/v1/transactions/by_key", None).query(&query);
        let found: TransactionsByKey = Self::call(builder, StatusCode::OK).await?;
        Ok(found.transactions)
    }

    /// `POST /api/v1/transactions/by_keys`: the caller's transactions under each of up to
    /// [`crate::MAX_KEYS_PER_LOOKUP`] keys, one entry per distinct key in the order asked.
    pub async fn transactions_by_keys(&self, keys: &[String]) -> Result<Vec<KeyTransactions>, LedgerError> {
        let body = ByKeysRequest { idempotency_keys: keys.to_vec() };
        let builder = self.request(Method::POST, "/api/v1/transactions/by_keys", None).json(&body);
        let found: TransactionsByKeys = Self::call(builder, StatusCode::OK).await?;
        Ok(found.results)
    }

    /// `GET /api/v1/transactions`: one page of the report.
    pub async fn report(&self, query: &ReportQuery) -> Result<ReportPage, LedgerError> {
        Self::call(self.request(Method::GET, "/api/v1/transactions", None).query(query), StatusCode::OK).await
    }
}

/// Reads `success` as `T`, and any other status as the service's error envelope.
async fn read<T: DeserializeOwned>(response: Response, success: StatusCode) -> Result<T, LedgerError> {
    let status = response.status();
    let text = response.text().await?;
    let unreadable = |error: serde_json::Error| LedgerError::Unreadable {
        status: status.as_u16(),
        detail: format!("{error}: {}", text.chars().take(200).collect::<String>()),
    };
    if status == success {
        return serde_json::from_str(&text).map_err(unreadable);
    }
    let body: ErrorBody = serde_json::from_str(&text).map_err(unreadable)?;
    Err(LedgerError::Api { status: status.as_u16(), body })
}
