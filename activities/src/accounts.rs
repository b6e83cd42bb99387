//! The accounts-service client the activities move money with.

use std::time::Duration;

use advances_workflows::activities::{Direction, MoneyMove, MoneyOutcome};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde::{de, Deserialize, Deserializer};
use serde_json::json;
use serde_json::value::RawValue;
use uuid::Uuid;

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

/// One ledger transaction as the accounts-service reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct LedgerTransaction {
    pub transaction_id: Uuid,
    pub dst_account_id: Uuid,
    #[serde(deserialize_with = "exact_decimal")]
    pub amount: Decimal,
    pub direction: String,
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Reads a JSON number (or string) as an exact decimal: the ledger writes amounts as exact JSON numbers.
fn exact_decimal<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
    let raw = Box::<RawValue>::deserialize(deserializer)?;
    raw.get().trim_matches('"').parse().map_err(de::Error::custom)
}

#[derive(Deserialize)]
struct ByKey {
    transactions: Vec<LedgerTransaction>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// A client for the accounts-service's REST API.
#[derive(Clone)]
pub struct AccountsClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl AccountsClient {
    /// `base` is the service's root (`http://127.0.0.1:8081`); each call gives up after `timeout`.
    pub fn new(base: &str, token: Option<String>, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).build()?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned(), token })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Moves money between the bank and an account, at most once per key. A debit the balance cannot cover
    /// and an unknown account are refusals; anything that leaves the outcome unknown is transient.
    pub async fn bank_transaction(&self, request: &MoneyMove) -> Result<MoneyOutcome, CallError> {
        let body = json!({
            "dst_account_id": request.account_id,
            "amount": request.amount.to_string(),
            "direction": match request.direction { Direction::Credit => "credit", Direction::Debit => "debit" },
            "reason": request.reason,
        });
        let response = self
            .request(reqwest::Method::POST, "/api/v1/bank_transactions")
            .header("Idempotency-Key", &request.idempotency_key)
            .json(&body)
            .send()
            .await
            .map_err(|error| CallError::Transient(error.to_string()))?;
        let status = response.status();
        let text = response.text().await.map_err(|error| CallError::Transient(error.to_string()))?;
        if status == StatusCode::CREATED {
            let transaction: LedgerTransaction = serde_json::from_str(&text)
                .map_err(|error| CallError::Transient(format!("unreadable reply ({error}): {text}")))?;
            return Ok(match transaction.status.as_str() {
                "success" => MoneyOutcome::Done { transaction_id: transaction.transaction_id },
                _ => MoneyOutcome::Refused { reason: transaction.reason.unwrap_or_else(|| "refused".to_owned()) },
            });
        }
        let detail = serde_json::from_str::<ErrorBody>(&text)
            .map(|body| format!("{}: {}", body.error.code, body.error.message))
            .unwrap_or_else(|_| format!("HTTP {status}: {text}"));
        match status {
            StatusCode::NOT_FOUND => Ok(MoneyOutcome::Refused { reason: detail }),
            // 409: the same key is still in flight; 401/403: a token to fix; 408/429/5xx: try again.
            StatusCode::CONFLICT
            | StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::REQUEST_TIMEOUT
            | StatusCode::TOO_MANY_REQUESTS => Err(CallError::Transient(detail)),
            status if status.is_server_error() => Err(CallError::Transient(detail)),
            _ => Err(CallError::Definitive(detail)),
        }
    }

    /// Whether an account exists.
    pub async fn account_exists(&self, account_id: Uuid) -> Result<bool, CallError> {
        let response = self
            .request(reqwest::Method::GET, &format!("/api/v1/accounts/{account_id}"))
            .send()
            .await
            .map_err(|error| CallError::Transient(error.to_string()))?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            status => Err(CallError::Transient(format!("HTTP {status} reading account {account_id}"))),
        }
    }

    /// The transactions the ledger recorded under a key.
    pub async fn transactions_by_key(&self, key: &str) -> Result<Vec<LedgerTransaction>, CallError> {
        let response = self
            .request(reqwest::Method::GET, "/api/v1/transactions/by_key")
            .query(&[("idempotency_key", key)])
            .send()
            .await
            .map_err(|error| CallError::Transient(error.to_string()))?;
        if response.status() != StatusCode::OK {
            return Err(CallError::Transient(format!("HTTP {} looking up key {key}", response.status())));
        }
        let body: ByKey = response.json().await.map_err(|error| CallError::Transient(error.to_string()))?;
        Ok(body.transactions)
    }
}
