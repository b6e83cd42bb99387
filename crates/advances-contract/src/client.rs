//! A typed client of the advances API, on the HTTP layer every client of ours shares (`money::client`).

use std::time::Duration;

use money::client::{CallError, JsonClient};
use reqwest::StatusCode;
use uuid::Uuid;

use crate::types::{
    AdvanceList, AdvanceView, AlertList, AlertQuery, AlertView, CommandRequest, CreateAdvanceRequest, ExposureView,
    ListQuery, PayoffQuote, PrepayRequest, ProductList, ProductView, QuoteQuery, RescheduleRequest, WriteOffRequest,
};

/// How a call went wrong: no answer, an error answer, or an unreadable one (see [`CallError`]).
pub type AdvancesError = CallError;

/// The service's name in errors.
const SERVICE: &str = "advances-api";

/// A new advance, or the one an earlier request with the same key or id started.
#[derive(Debug, Clone)]
pub struct Created {
    pub advance: AdvanceView,
    /// `Idempotent-Replayed: true`: this is the advance an earlier request started.
    pub replayed: bool,
}

/// An operator's command on an advance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Cancel,
    PayOff,
    Pause,
    Resume,
}

impl Command {
    fn path(self) -> &'static str {
        match self {
            Self::Cancel => "cancel",
            Self::PayOff => "pay_off",
            Self::Pause => "pause",
            Self::Resume => "resume",
        }
    }
}

/// A client of the advances API.
#[derive(Clone)]
pub struct AdvancesClient {
    api: JsonClient,
}

impl AdvancesClient {
    /// `base` is the API's root (`http://127.0.0.1:8082`); each call gives up after `timeout`.
    pub fn new(base: &str, token: Option<String>, timeout: Duration) -> Result<Self, reqwest::Error> {
        Ok(Self { api: JsonClient::new(SERVICE, base, token, timeout, None)? })
    }

    /// `POST /api/v1/advances`: grants an advance (at most once per key or `advance_id`).
    pub async fn create_advance(
        &self,
        request: &CreateAdvanceRequest,
        key: Option<&str>,
    ) -> Result<Created, AdvancesError> {
        let builder = self.api.request(reqwest::Method::POST, "/api/v1/advances", key).json(request);
        let (advance, replayed) = self.api.call_replayed(builder, StatusCode::CREATED).await?;
        Ok(Created { advance, replayed })
    }

    /// `GET /api/v1/advances/{id}`; an unknown advance is `Api { status: 404, .. }`.
    pub async fn advance(&self, advance_id: Uuid) -> Result<AdvanceView, AdvancesError> {
        self.api.get(&format!("/api/v1/advances/{advance_id}"), &()).await
    }

    /// `GET /api/v1/advances`: newest first.
    pub async fn advances(&self, query: &ListQuery) -> Result<Vec<AdvanceView>, AdvancesError> {
        let list: AdvanceList = self.api.get("/api/v1/advances", query).await?;
        Ok(list.advances)
    }

    /// `GET /api/v1/alerts`: newest first.
    pub async fn alerts(&self, limit: Option<i64>) -> Result<Vec<AlertView>, AdvancesError> {
        let list: AlertList = self.api.get("/api/v1/alerts", &AlertQuery { limit }).await?;
        Ok(list.alerts)
    }

    /// `GET /api/v1/products`: the products that take new advances.
    pub async fn products(&self) -> Result<Vec<ProductView>, AdvancesError> {
        let list: ProductList = self.api.get("/api/v1/products", &()).await?;
        Ok(list.products)
    }

    /// `GET /api/v1/exposure`: the lender's book and its caps.
    pub async fn exposure(&self) -> Result<ExposureView, AdvancesError> {
        self.api.get("/api/v1/exposure", &()).await
    }

    /// `POST /api/v1/advances/{id}/reschedule`.
    pub async fn reschedule(
        &self,
        advance_id: Uuid,
        request: &RescheduleRequest,
    ) -> Result<AdvanceView, AdvancesError> {
        self.api.post(&format!("/api/v1/advances/{advance_id}/reschedule"), request, None, StatusCode::OK).await
    }

    /// `POST /api/v1/advances/{id}/prepay`.
    pub async fn prepay(&self, advance_id: Uuid, request: &PrepayRequest) -> Result<AdvanceView, AdvancesError> {
        self.api.post(&format!("/api/v1/advances/{advance_id}/prepay"), request, None, StatusCode::OK).await
    }

    /// `POST /api/v1/advances/{id}/write_off`.
    pub async fn write_off(&self, advance_id: Uuid, reason: &str) -> Result<AdvanceView, AdvancesError> {
        let body = WriteOffRequest { reason: reason.to_owned() };
        self.api.post(&format!("/api/v1/advances/{advance_id}/write_off"), &body, None, StatusCode::OK).await
    }

    /// `GET /api/v1/advances/{id}/payoff_quote`.
    pub async fn payoff_quote(
        &self,
        advance_id: Uuid,
        at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<PayoffQuote, AdvancesError> {
        self.api.get(&format!("/api/v1/advances/{advance_id}/payoff_quote"), &QuoteQuery { at }).await
    }

    /// `POST /api/v1/advances/{id}/cancel`, `/pay_off`, `/pause` or `/resume`, with an optional reason.
    pub async fn command(
        &self,
        advance_id: Uuid,
        command: Command,
        reason: Option<&str>,
    ) -> Result<AdvanceView, AdvancesError> {
        let path = format!("/api/v1/advances/{advance_id}/{}", command.path());
        let body = CommandRequest { reason: reason.map(str::to_owned) };
        self.api.post(&path, &body, None, StatusCode::OK).await
    }
}
