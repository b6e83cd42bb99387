//! Events out, the same in both services.
//!
//! - [`outbox`]: each change writes its events in its own database transaction (a group commit, its group's
//!   in one statement).
//! - [`feed`] and [`watch`]: `GET /api/v1/events`, in position order ([`position`]), never past an event that
//!   may still commit, long-polling without holding a connection; events kept for `EVENT_RETENTION`.
//! - [`webhooks`]: each client's endpoints, deliveries signed per Standard Webhooks, at least once, retried
//!   for days, never to internal addresses.
//! - [`routes`]: the HTTP side; [`wire`]: what it says, for servers and clients alike.
//!
//! The tables (`events`, `event_horizon`, `webhook_*`, `alerts`) are created by each service's own migrations.

pub mod feed;
pub mod metrics;
pub mod outbox;
pub mod position;
pub mod routes;
pub mod settings;
pub mod subjects;
pub mod watch;
pub mod webhooks;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use service_kit::limits::ClientLimiter;
use service_kit::ApiError;
use sqlx::PgPool;
use tokio::task::JoinHandle;

pub use metrics::EventMetrics;
pub use outbox::NewEvent;
pub use position::Position;
pub use settings::EventSettings;
pub use subjects::{Subject, Subjects};

/// The scope of `GET /api/v1/events`.
pub const EVENTS_READ: &str = "events:read";
/// The scope of the webhook endpoints. An endpoint receives every event its types name, so making one is
/// reading the feed: a client with this scope sees what `events:read` shows.
pub const WEBHOOKS_MANAGE: &str = "webhooks:manage";
/// The event an operator's alert writes (both services).
pub const ALERT_RAISED: &str = "alert.raised";

/// The most types a filter or an endpoint names.
const MAX_TYPES: usize = 64;
/// Feed requests one client may have waiting at once.
const WAITERS_PER_CLIENT: usize = 8;

/// What the routes and the background tasks share: the pool, the settings, the service's event types.
#[derive(Clone)]
pub struct Events {
    pub pool: PgPool,
    pub settings: Arc<EventSettings>,
    /// Every event type this service writes: filters and endpoints may name only these.
    pub types: &'static [&'static str],
    pub metrics: EventMetrics,
    /// Renders the data of the events that refer to their object.
    pub subjects: subjects::SharedSubjects,
    watch: watch::FeedWatch,
    waiters: ClientLimiter,
    request_timeout: Duration,
}

impl Events {
    /// Starts the feed's watch (on the current runtime); `request_timeout` bounds a long poll.
    pub fn new(
        pool: PgPool,
        settings: EventSettings,
        types: &'static [&'static str],
        subjects: subjects::SharedSubjects,
        metrics: EventMetrics,
        request_timeout: Duration,
    ) -> Self {
        let watch = watch::FeedWatch::start(pool.clone(), settings.poll_interval);
        Self {
            pool,
            settings: Arc::new(settings),
            types,
            metrics,
            subjects,
            watch,
            waiters: ClientLimiter::new("waiting feed reads", WAITERS_PER_CLIENT, 1),
            request_timeout,
        }
    }

    /// The checked, deduplicated list of types a filter or endpoint names.
    pub fn check_types<'a>(&self, names: impl Iterator<Item = &'a str>) -> Result<Vec<String>, ApiError> {
        let mut types: Vec<String> = Vec::new();
        for name in names.map(str::trim) {
            if !self.types.contains(&name) {
                return Err(ApiError::validation(
                    "unknown_event_type",
                    format!("unknown event type {name:?}; this service writes {}", self.types.join(", ")),
                ));
            }
            if !types.iter().any(|t| t == name) {
                types.push(name.to_owned());
            }
        }
        if types.is_empty() || types.len() > MAX_TYPES {
            return Err(ApiError::validation("unknown_event_type", format!("name 1 to {MAX_TYPES} event types")));
        }
        Ok(types)
    }

    /// Starts the background work: webhook deliveries, and every few seconds the metrics and the pruning of
    /// events past `EVENT_RETENTION`. Abort the handles to stop.
    pub fn start_workers(&self) -> Vec<JoinHandle<()>> {
        self.settings.warn_if_relaxed();
        let deliveries = tokio::spawn(webhooks::deliver::run(
            self.pool.clone(),
            self.settings.webhooks.clone(),
            self.subjects.clone(),
            self.metrics.clone(),
        ));
        let upkeep = tokio::spawn(upkeep(self.pool.clone(), self.settings.clone(), self.metrics.clone()));
        vec![deliveries, upkeep]
    }
}

/// Prunes past retention and refreshes the gauges: every tenth of the retention, between 100 ms and 5 s.
async fn upkeep(pool: PgPool, settings: Arc<EventSettings>, metrics: EventMetrics) {
    let every = (settings.retention / 10).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match feed::prune(&pool, settings.retention, 5000, 20).await {
            Ok(0) => {}
            Ok(pruned) => {
                metrics.pruned.inc_by(pruned);
                tracing::info!(pruned, "deleted events past EVENT_RETENTION");
            }
            Err(error) => tracing::warn!(error = %error, "pruning events failed; will retry"),
        }
        match webhooks::store::backlog(&pool).await {
            Ok((pending, oldest)) => {
                metrics.pending.set(pending);
                metrics.oldest_undelivered.set(oldest);
            }
            Err(error) => tracing::warn!(error = %error, "reading the webhook backlog failed"),
        }
        match feed::held_back(&pool).await {
            Ok(held) => metrics.held_back.set(held.as_secs_f64()),
            Err(error) => tracing::warn!(error = %error, "reading the oldest writing transaction failed"),
        }
    }
}
