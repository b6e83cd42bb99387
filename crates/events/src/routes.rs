//! `GET /api/v1/events` (scope `events:read`) and the webhook endpoints (scope `webhooks:manage`), the same in
//! both services.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use service_kit::auth::{scoped, Caller};
use service_kit::extract::{ApiJson, ApiPath, ApiQuery};
use service_kit::openapi::{BearerAuth, CommonResponses};
use service_kit::{ApiError, ApiResult, ErrorBody};
use tokio::time::Instant;
use utoipa::{IntoParams, OpenApi};
use uuid::Uuid;

use crate::feed::{self, ReadError, MAX_LIMIT};
use crate::position::Position;
use crate::webhooks::{address, sign, store};
use crate::wire::{EventPage, Replay, ReplayRequest, Webhook, WebhookList, WebhookRequest};
use crate::{Events, EVENTS_READ, WEBHOOKS_MANAGE};

/// The longest a feed request waits for new events.
pub const MAX_WAIT_SECS: u64 = 30;
/// The longest endpoint description.
const MAX_DESCRIPTION_CHARS: usize = 500;

/// The routes, for a service's router (whose state they do not need).
pub fn router<S: Clone + Send + Sync + 'static>(events: Events) -> Router<S> {
    Router::new()
        .route("/api/v1/events", scoped(get(feed), EVENTS_READ))
        .route("/api/v1/webhooks", scoped(post(create_webhook).get(list_webhooks), WEBHOOKS_MANAGE))
        .route("/api/v1/webhooks/{webhook_id}", scoped(delete(delete_webhook), WEBHOOKS_MANAGE))
        .route("/api/v1/webhooks/{webhook_id}/replay", scoped(post(replay_webhook), WEBHOOKS_MANAGE))
        .with_state(events)
}

/// The routes' part of a service's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(feed, create_webhook, list_webhooks, delete_webhook, replay_webhook),
    modifiers(&BearerAuth, &CommonResponses),
    security(("bearer" = [])),
    tags(
        (name = "events", description = "Every change, in an order no reader skips"),
        (name = "webhooks", description = "Events pushed to your endpoints, signed (Standard Webhooks)"),
    )
)]
pub struct EventsApi;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// Resume after this position (`next_cursor` or an event's `position`); absent, from the oldest event kept.
    #[param(pattern = "^[0-9a-f]{32}$")]
    pub after: Option<String>,
    /// Events per page, 1 to 1000 (100 by default).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Comma-separated event types; absent, every type.
    pub types: Option<String>,
    /// Seconds to wait for an event when there is none yet, 0 to 30 (0 by default).
    #[param(minimum = 0, maximum = 30)]
    pub wait: Option<u64>,
}

/// The events after a cursor, oldest first. A page never holds an event after one that is still to commit, so a
/// consumer that resumes from `next_cursor` never misses one. With `wait`, an empty answer comes only after
/// that many seconds without a new event.
#[utoipa::path(
    get, path = "/api/v1/events", tag = "events",
    params(FeedQuery),
    responses(
        (status = 200, description = "A page of events and the cursor to read on from", body = EventPage),
        (status = 400, description = "A malformed query (an unknown parameter, a number that is not one)", body = ErrorBody),
        (status = 410, description = "`cursor_expired`: events after the cursor were deleted (EVENT_RETENTION)", body = ErrorBody),
        (status = 422, description = "A malformed cursor, limit, wait or type", body = ErrorBody),
        (status = 429, description = "This client already waits on the feed from as many requests as allowed", body = ErrorBody),
    )
)]
pub async fn feed(
    State(events): State<Events>,
    caller: Caller,
    ApiQuery(query): ApiQuery<FeedQuery>,
) -> ApiResult<Json<EventPage>> {
    let after = match &query.after {
        Some(text) => parse_cursor(text)?,
        None => Position::START,
    };
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::validation("invalid_limit", format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let types = query.types.as_deref().map(|list| events.check_types(list.split(','))).transpose()?;
    let wait = query.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::validation("invalid_wait", format!("wait must be 0 to {MAX_WAIT_SECS} seconds")));
    }
    let _slot = (wait > 0).then(|| events.waiters.enter(&caller.name)).transpose()?;
    // At most EVENT_MAX_WAIT, and within the request's own time limit with a second to spare for the last read.
    let wait = Duration::from_secs(wait)
        .min(events.settings.max_wait)
        .min(events.request_timeout.saturating_sub(Duration::from_secs(1)));
    let deadline = Instant::now() + wait;
    let mut cursor = after;
    loop {
        let page = feed::read(&events.pool, events.subjects.as_ref(), cursor, limit, types.as_deref())
            .await
            .map_err(read_error)?;
        cursor = page.next;
        if !page.events.is_empty() || Instant::now() >= deadline || !events.watch.wait_past(cursor, deadline).await {
            return Ok(Json(EventPage { events: page.events, next_cursor: cursor.to_string() }));
        }
    }
}

fn parse_cursor(text: &str) -> ApiResult<Position> {
    text.parse()
        .map_err(|error: crate::position::BadPosition| ApiError::validation("invalid_cursor", error.to_string()))
}

fn read_error(error: ReadError) -> ApiError {
    match error {
        ReadError::Expired(_) => ApiError::Gone { code: "cursor_expired", message: error.to_string() },
        ReadError::Db(error) => error.into(),
    }
}

/// Makes an endpoint that receives every later event (of `types`, if given). The answer holds its signing
/// secret, which is never shown again.
#[utoipa::path(
    post, path = "/api/v1/webhooks", tag = "webhooks",
    request_body = WebhookRequest,
    responses(
        (status = 201, description = "The endpoint, with its signing secret (`whsec_…`, shown once)", body = Webhook),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 422, description = "`invalid_webhook_url` (not https, internal address, unresolvable), `unknown_event_type`, `invalid_description` or `too_many_webhooks`", body = ErrorBody),
    )
)]
pub async fn create_webhook(
    State(events): State<Events>,
    caller: Caller,
    ApiJson(request): ApiJson<WebhookRequest>,
) -> ApiResult<(StatusCode, Json<Webhook>)> {
    let insecure = events.settings.webhooks.allow_insecure;
    let refused = |refused: address::Refused| ApiError::validation("invalid_webhook_url", refused.to_string());
    let url = address::check_url(&request.url, insecure).map_err(refused)?;
    address::check_resolved(&url, insecure).await.map_err(refused)?;
    let types = request.types.as_ref().map(|types| events.check_types(types.iter().map(String::as_str))).transpose()?;
    if let Some(description) = &request.description {
        if description.chars().count() > MAX_DESCRIPTION_CHARS || description.contains('\0') {
            return Err(ApiError::validation(
                "invalid_description",
                format!("description must be at most {MAX_DESCRIPTION_CHARS} characters, without NUL"),
            ));
        }
    }
    let secret = sign::new_secret()?;
    let new = store::NewEndpoint {
        client: &caller.name,
        url: url.as_str(),
        types: types.as_deref(),
        description: request.description.as_deref(),
        secret: &secret,
    };
    match store::create(&events.pool, &new, events.settings.webhooks.per_client).await {
        Ok(webhook) => Ok((StatusCode::CREATED, Json(webhook))),
        Err(error @ store::CreateError::TooMany(_)) => {
            Err(ApiError::validation("too_many_webhooks", error.to_string()))
        }
        Err(store::CreateError::Db(error)) => Err(error.into()),
    }
}

/// This client's endpoints (never another client's), without their secrets.
#[utoipa::path(
    get, path = "/api/v1/webhooks", tag = "webhooks",
    responses((status = 200, description = "This client's endpoints", body = WebhookList))
)]
pub async fn list_webhooks(State(events): State<Events>, caller: Caller) -> ApiResult<Json<WebhookList>> {
    Ok(Json(WebhookList { webhooks: store::list(&events.pool, &caller.name).await? }))
}

/// Deletes one of this client's endpoints, with its waiting deliveries.
#[utoipa::path(
    delete, path = "/api/v1/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A malformed id", body = ErrorBody),
        (status = 404, description = "This client has no such endpoint", body = ErrorBody),
    )
)]
pub async fn delete_webhook(
    State(events): State<Events>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    if store::delete(&events.pool, &caller.name, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no webhook endpoint {id} of this client")))
    }
}

/// Delivers again every retained event after `after` (of the endpoint's types), and enables the endpoint if it
/// was disabled. Events already delivered are delivered again, with their own `webhook-id`.
#[utoipa::path(
    post, path = "/api/v1/webhooks/{webhook_id}/replay", tag = "webhooks",
    params(("webhook_id" = Uuid, Path, description = "The endpoint's id")),
    request_body = ReplayRequest,
    responses(
        (status = 202, description = "The replay is queued", body = Replay),
        (status = 400, description = "A malformed id or body", body = ErrorBody),
        (status = 404, description = "This client has no such endpoint", body = ErrorBody),
        (status = 410, description = "`cursor_expired`: events after the cursor were deleted", body = ErrorBody),
        (status = 422, description = "A malformed cursor", body = ErrorBody),
    )
)]
pub async fn replay_webhook(
    State(events): State<Events>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<ReplayRequest>,
) -> ApiResult<(StatusCode, Json<Replay>)> {
    let after = parse_cursor(&request.after)?;
    match store::replay(&events.pool, &caller.name, id, after).await {
        Ok(through) => Ok((
            StatusCode::ACCEPTED,
            Json(Replay { webhook_id: id, after: after.to_string(), through: through.to_string() }),
        )),
        Err(error @ store::ReplayError::NotFound(_)) => Err(ApiError::NotFound(error.to_string())),
        Err(error @ store::ReplayError::Expired(_)) => {
            Err(ApiError::Gone { code: "cursor_expired", message: error.to_string() })
        }
        Err(store::ReplayError::Db(error)) => Err(error.into()),
    }
}
