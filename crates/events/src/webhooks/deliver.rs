//! The delivery worker, one per instance: every `WEBHOOK_INTERVAL` it queues new events for their endpoints
//! ([`store::fan_out`]) and takes the due deliveries of every endpoint it is not already sending to, each
//! endpoint's in a task of its own, in the feed's order. An attempt is one POST with the Standard Webhooks
//! headers, answered 2xx within `WEBHOOK_TIMEOUT`; anything else is a failure: the delivery waits its turn in
//! the retry schedule, the endpoint's other deliveries wait (at most a minute) so that a dead endpoint costs
//! one attempt at a time, and an endpoint failing longer than the whole schedule is disabled.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::redirect::Policy;
use sqlx::PgPool;
use uuid::Uuid;

use super::address::{self, GuardedResolver};
use super::sign;
use super::store::{self, AfterFailure, Due};
use crate::metrics::EventMetrics;
use crate::position::Position;
use crate::settings::WebhookSettings;
use crate::subjects::SharedSubjects;
use crate::wire::Event;

/// Deliveries taken for one endpoint at a time.
const PER_ENDPOINT: i64 = 16;
/// Events queued by one fan-out step, and steps a tick.
const FAN_OUT_BATCH: i64 = 1000;
const FAN_OUT_STEPS: usize = 20;
/// The longest an endpoint rests after a failure before its other deliveries are tried.
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// Runs the worker until the task is aborted.
pub async fn run(pool: PgPool, settings: WebhookSettings, subjects: SharedSubjects, metrics: EventMetrics) {
    let client = match http_client(&settings) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(error = %error, "the webhook HTTP client cannot be built; no webhooks will be sent");
            return;
        }
    };
    let settings = Arc::new(settings);
    let busy: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    // Long enough for a whole batch to time out one by one: a lease outlives only a dead instance.
    let lease = settings.timeout * (PER_ENDPOINT as u32 + 1);
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        for _ in 0..FAN_OUT_STEPS {
            match store::fan_out(&pool, FAN_OUT_BATCH).await {
                Ok(Some(queued)) if queued as i64 >= FAN_OUT_BATCH => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(error = %error, "queueing webhook deliveries failed; will retry");
                    break;
                }
            }
        }
        let taken: Vec<Uuid> = busy.lock().map(|b| b.iter().copied().collect()).unwrap_or_default();
        if taken.len() >= settings.concurrency {
            continue;
        }
        let due = match store::claim(&pool, subjects.as_ref(), PER_ENDPOINT, lease, &taken, None).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(error = %error, "taking due webhook deliveries failed; will retry");
                continue;
            }
        };
        for (endpoint, batch) in by_endpoint(due) {
            if let Ok(mut busy) = busy.lock() {
                busy.insert(endpoint);
            }
            let (pool, client, settings, subjects, metrics, busy) =
                (pool.clone(), client.clone(), settings.clone(), subjects.clone(), metrics.clone(), busy.clone());
            tokio::spawn(async move {
                // While the endpoint keeps up, its next batch follows at once, not at the next tick.
                let mut batch = batch;
                while send_batch(&pool, &client, &settings, &metrics, batch).await {
                    batch = match store::claim(&pool, subjects.as_ref(), PER_ENDPOINT, lease, &[], Some(endpoint)).await
                    {
                        Ok(next) if !next.is_empty() => next,
                        Ok(_) => break,
                        Err(error) => {
                            tracing::warn!(error = %error, "taking due webhook deliveries failed; will retry");
                            break;
                        }
                    };
                }
                if let Ok(mut busy) = busy.lock() {
                    busy.remove(&endpoint);
                }
            });
        }
    }
}

/// The client every delivery goes through: no redirects, and names resolved only to public addresses.
fn http_client(settings: &WebhookSettings) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
        .dns_resolver(Arc::new(GuardedResolver { allow_insecure: settings.allow_insecure }))
        .user_agent("ledger-webhooks/1")
        .build()
}

fn by_endpoint(due: Vec<Due>) -> Vec<(Uuid, Vec<Due>)> {
    let mut batches: Vec<(Uuid, Vec<Due>)> = Vec::new();
    for delivery in due {
        match batches.last_mut() {
            Some((endpoint, batch)) if *endpoint == delivery.endpoint_id => batch.push(delivery),
            _ => batches.push((delivery.endpoint_id, vec![delivery])),
        }
    }
    batches
}

/// Sends one endpoint's deliveries in order and records those that arrived in one transaction; at the first
/// failure the rest are given back untried. True when every one arrived and was recorded.
async fn send_batch(
    pool: &PgPool,
    client: &reqwest::Client,
    settings: &WebhookSettings,
    metrics: &EventMetrics,
    batch: Vec<Due>,
) -> bool {
    let mut sent = 0;
    let mut failure = None;
    for due in &batch {
        match attempt(client, settings, due).await {
            Ok(()) => sent += 1,
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    // Recorded after the requests: a crash in between sends them again (at least once, never lost).
    if let Err(error) = store::delivered(pool, &batch[..sent]).await {
        tracing::warn!(error = %error, "recording webhook deliveries failed; they will be sent again");
        return false;
    }
    metrics.delivered.inc_by(sent as u64);
    let Some(error) = failure else { return true };
    let due = &batch[sent];
    metrics.failures.with_label_values(&[&due.endpoint_id.to_string()]).inc();
    let retry_in = settings.retry_schedule.get(due.attempts.max(0) as usize).copied();
    let pause = retry_in.unwrap_or(MAX_PAUSE).min(MAX_PAUSE);
    tracing::info!(webhook_id = %due.endpoint_id, attempt = due.attempts + 1, ?retry_in, error = %error, "a webhook delivery failed");
    match store::failed(pool, due, &error, retry_in, pause, settings.disable_after()).await {
        Ok(AfterFailure::Disabled) => {
            tracing::warn!(webhook_id = %due.endpoint_id, "the webhook endpoint was disabled")
        }
        Ok(AfterFailure::Retrying) => {}
        Err(error) => {
            tracing::warn!(error = %error, "recording a failed webhook delivery failed; its lease will run out")
        }
    }
    if let Err(error) = store::release(pool, &batch[sent + 1..]).await {
        tracing::warn!(error = %error, "giving back untried webhook deliveries failed; their leases will run out");
    }
    false
}

/// One POST of one event, signed; `Err` says why it did not count as delivered.
async fn attempt(client: &reqwest::Client, settings: &WebhookSettings, due: &Due) -> Result<(), String> {
    let Some(event) = &due.event else {
        return Err("the event was deleted (EVENT_RETENTION) before it could be delivered".into());
    };
    let url = address::check_url(&due.url, settings.allow_insecure).map_err(|refused| refused.to_string())?;
    let position = Position::from_columns(&due.xid, due.seq).map_err(|error| error.to_string())?;
    let body = Event {
        id: event.id,
        kind: event.kind.clone(),
        created_at: event.created_at,
        position: position.to_string(),
        data: event.data.clone(),
    };
    let body = serde_json::to_vec(&body).map_err(|error| error.to_string())?;
    let id = event.id.to_string();
    let timestamp = chrono::Utc::now().timestamp();
    let signature = sign::signature(&due.secret, &id, timestamp, &body).map_err(|error| error.to_string())?;
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|error| with_causes(&error))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the endpoint answered {status}"))
    }
}

/// An error with its causes (reqwest's own message omits them: "error sending request" says nothing alone).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
