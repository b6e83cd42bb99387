//! HTTP conveniences for tests: whole responses, exact decimals, polling with a deadline.

use std::time::{Duration, Instant};

use anyhow::bail;
use rust_decimal::Decimal;
use serde_json::Value;

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    /// Reads a response; a body that is not JSON leaves `json` as `Null`.
    pub async fn read(response: reqwest::Response) -> anyhow::Result<Self> {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Self { status, headers, text, json })
    }

    /// A string field of the body, or "" when absent.
    pub fn str(&self, field: &str) -> &str {
        self.json.get(field).and_then(Value::as_str).unwrap_or_default()
    }

    /// The error code of an error body, or "" when the body is not one.
    pub fn error_code(&self) -> &str {
        self.json.pointer("/error/code").and_then(Value::as_str).unwrap_or_default()
    }

    /// A numeric field read exactly from the JSON text of the number; panics when it is not a number.
    pub fn decimal(&self, field: &str) -> Decimal {
        decimal_of(self.json.get(field).unwrap_or(&Value::Null))
    }
}

/// POSTs `body` as JSON to `url`, with an `Idempotency-Key` when given, and reads the whole answer.
pub async fn post_json(client: &reqwest::Client, url: &str, body: &Value, key: Option<&str>) -> anyhow::Result<Reply> {
    let mut request = client.post(url).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    Reply::read(request.send().await?).await
}

/// The exact decimal of a JSON number (read from its text, never through f64). Anything else panics with the
/// value: a test must never read a missing or mistyped field as some number.
pub fn decimal_of(value: &Value) -> Decimal {
    let text = match value {
        Value::Number(number) => number.to_string(),
        other => panic!("expected a JSON number, got {other}"),
    };
    Decimal::from_str_exact(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .unwrap_or_else(|error| panic!("{text} is not an exact decimal: {error}"))
}

/// A decimal written in a test; a typo panics instead of turning into zero.
pub fn dec(text: &str) -> Decimal {
    Decimal::from_str_exact(text).unwrap_or_else(|error| panic!("{text:?} is not a decimal: {error}"))
}

/// Polls `check` until it returns `Some`, or fails after `limit`.
pub async fn poll_until<T, F, Fut>(limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("condition not met within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `{base_url}/health` until it answers 200, or fails after `limit`.
pub async fn wait_healthy(client: &reqwest::Client, base_url: &str, limit: Duration) -> anyhow::Result<()> {
    poll_until(limit, || {
        let request = client.get(format!("{base_url}/health")).send();
        async move { Ok(request.await.ok().filter(|r| r.status().is_success()).map(|_| ())) }
    })
    .await
}
