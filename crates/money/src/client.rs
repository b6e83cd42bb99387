//! What every typed client of our services shares (feature `client`): one HTTP client with a bearer token and
//! an optional private CA, and one reading of answers: the success as its type, anything else as the error
//! envelope. `ledger-contract`'s and `advances-contract`'s clients are thin layers on it.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ErrorBody;

/// How long an unused connection is kept for the next call.
const IDLE_CONNECTION: Duration = Duration::from_secs(5);

/// How a call to one of our services went wrong.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer (connection refused or cut, timeout): the outcome is unknown; retry with the same key.
    /// The URL is stripped from the error, so that credentials in a service's URL never reach a log.
    #[error("no answer from the {service}: {error}")]
    Transport { service: &'static str, error: reqwest::Error },
    /// The service answered with an error.
    #[error("the {service} answered {status}: {}: {}", body.error.code, body.error.message)]
    Api { service: &'static str, status: u16, body: ErrorBody },
    /// The service answered something that is not its contract (a proxy's page, a cut body).
    #[error("unreadable answer from the {service} (HTTP {status}): {detail}")]
    Unreadable { service: &'static str, status: u16, detail: String },
}

impl CallError {
    /// The HTTP status of an answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Transport { .. } => None,
            Self::Api { status, .. } | Self::Unreadable { status, .. } => Some(*status),
        }
    }

    /// Whether the same request, with the same key, may succeed if sent again: there was no answer or no
    /// readable one (the outcome is unknown), the key is still in flight (409), or the service was busy or
    /// failing (408, 429, 5xx). Any other answer is the service's decision on the request itself.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Unreadable { .. } => true,
            Self::Api { status, .. } => matches!(status, 408 | 409 | 429 | 500..=599),
        }
    }
}

/// A JSON client of one of our services.
#[derive(Clone)]
pub struct JsonClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    /// The service's name, in errors.
    service: &'static str,
}

impl JsonClient {
    /// `base` is the service's root (`http://…`, or `https://…` verified against the public roots plus the CA
    /// certificates in `ca_pem`); each call gives up after `timeout`.
    pub fn new(
        service: &'static str,
        base: &str,
        token: Option<String>,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, reqwest::Error> {
        // Idle connections are dropped before a service's own idle limit (its HTTP_HEADER_TIMEOUT, 10 s by
        // default) could close one just as a request is sent on it.
        let mut builder =
            reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).pool_idle_timeout(IDLE_CONNECTION);
        if let Some(pem) = ca_pem {
            for certificate in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        Ok(Self { http: builder.build()?, base: base.trim_end_matches('/').to_owned(), token, service })
    }

    /// A request to `path`, with the token and, when given, an `Idempotency-Key`.
    pub fn request(&self, method: Method, path: &str, key: Option<&str>) -> RequestBuilder {
        let mut builder = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            builder = builder.bearer_auth(token);
        }
        if let Some(key) = key {
            builder = builder.header("Idempotency-Key", key);
        }
        builder
    }

    /// Sends `builder` and reads `success` as `T`; also says whether the answer was a replay
    /// (`Idempotent-Replayed: true`).
    pub async fn call_replayed<T: DeserializeOwned>(
        &self,
        builder: RequestBuilder,
        success: StatusCode,
    ) -> Result<(T, bool), CallError> {
        let response = builder.send().await.map_err(|error| self.transport(error))?;
        let replayed = response.headers().get("idempotent-replayed").is_some_and(|value| value == "true");
        Ok((self.read(response, success).await?, replayed))
    }

    /// Sends `builder` and reads `success` as `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        builder: RequestBuilder,
        success: StatusCode,
    ) -> Result<T, CallError> {
        Ok(self.call_replayed(builder, success).await?.0)
    }

    /// `POST path` with a JSON body, expecting `success`.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        key: Option<&str>,
        success: StatusCode,
    ) -> Result<T, CallError> {
        self.call(self.request(Method::POST, path, key).json(body), success).await
    }

    /// `GET path` with `query`, expecting 200.
    pub async fn get<Q: Serialize + ?Sized, T: DeserializeOwned>(&self, path: &str, query: &Q) -> Result<T, CallError> {
        self.call(self.request(Method::GET, path, None).query(query), StatusCode::OK).await
    }

    fn transport(&self, error: reqwest::Error) -> CallError {
        CallError::Transport { service: self.service, error: error.without_url() }
    }
}

impl JsonClient {
    /// Reads `success` as `T`, and any other status as the service's error envelope.
    async fn read<T: DeserializeOwned>(&self, response: Response, success: StatusCode) -> Result<T, CallError> {
        let (service, status) = (self.service, response.status());
        let text = response.text().await.map_err(|error| self.transport(error))?;
        let unreadable = |error: serde_json::Error| CallError::Unreadable {
            service,
            status: status.as_u16(),
            detail: format!("{error}: {}", text.chars().take(200).collect::<String>()),
        };
        if status == success {
            return serde_json::from_str(&text).map_err(unreadable);
        }
        let body: ErrorBody = serde_json::from_str(&text).map_err(unreadable)?;
        Err(CallError::Api { service, status: status.as_u16(), body })
    }
}
