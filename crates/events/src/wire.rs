//! What the feed and the webhook endpoints say on the wire: the one definition their server and their clients
//! (tests, the chaos checker, a consumer written in Rust) share.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

/// One change, as the feed and the webhooks carry it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Unique; also the `webhook-id` of every delivery of this event, retries included.
    pub id: Uuid,
    /// What happened, `object.verb`: `transaction.succeeded`, `hold.captured`, `payment.failed`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// When the change was made (UTC, in the API's format).
    #[serde(with = "money::timestamp")]
    #[schema(value_type = String, example = "2026-12-07 10:15:00.123")]
    pub created_at: DateTime<Utc>,
    /// Where the event stands in the feed: 32 hex digits, increasing; resume after it with `?after=`.
    #[schema(example = "00000000000004d2000000000000002a")]
    pub position: String,
    /// The object as the API's own `GET` returns it, at the moment of the change.
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
}

/// A page of the feed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    /// In position order; empty when nothing newer was visible within `wait`.
    pub events: Vec<Event>,
    /// Pass it as `after` to read on. Past the last event returned, or past events skipped by `types`.
    pub next_cursor: String,
}

/// `POST /api/v1/webhooks`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// Where deliveries are POSTed: `https://`, not resolving to a loopback, link-local or private address.
    #[schema(example = "https://example.com/hooks/ledger")]
    pub url: String,
    /// Only these event types; absent, every type.
    #[serde(default)]
    pub types: Option<Vec<String>>,
    #[serde(default)]
    pub description: Option<String>,
}

/// A webhook endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    /// The event types delivered; `null` for every type.
    pub types: Option<Vec<String>>,
    pub description: Option<String>,
    #[serde(with = "money::timestamp")]
    #[schema(value_type = String)]
    pub created_at: DateTime<Utc>,
    /// Set when deliveries failed for longer than the retry schedule: nothing more is sent.
    #[serde(with = "money::timestamp::option")]
    #[schema(value_type = Option<String>)]
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    /// Since when every delivery attempt has failed; `null` while deliveries succeed.
    #[serde(with = "money::timestamp::option")]
    #[schema(value_type = Option<String>)]
    pub failing_since: Option<DateTime<Utc>>,
    /// Deliveries waiting (due now or later).
    pub pending_deliveries: i64,
    /// The signing secret (`whsec_…`), shown only in the answer to the `POST` that made the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `GET /api/v1/webhooks`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

/// `POST /api/v1/webhooks/{id}/replay`: deliver again every retained event after `after`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// A position (32 hex digits); all zeros replays every retained event.
    pub after: String,
}

/// The answer to a replay.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Replay {
    pub webhook_id: Uuid,
    pub after: String,
    /// The events up to this position are replayed; later ones reach the endpoint the usual way.
    pub through: String,
}
