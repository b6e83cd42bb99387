//! The events' metrics, registered in the service's own registry.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct EventMetrics {
    /// Deliveries waiting (due now or later), not counting dead ones.
    pub pending: IntGauge,
    /// How long the oldest waiting delivery has waited.
    pub oldest_undelivered: Gauge,
    /// Failed attempts by endpoint id.
    pub failures: IntCounterVec,
    /// Deliveries that arrived.
    pub delivered: IntCounter,
    /// How long the oldest database transaction that has written anything has run: the feed cannot pass it.
    pub held_back: Gauge,
    /// Events deleted past `EVENT_RETENTION`.
    pub pruned: IntCounter,
}

impl EventMetrics {
    pub fn register(registry: &Registry) -> anyhow::Result<Self> {
        let metrics = Self {
            pending: IntGauge::new("webhook_deliveries_pending", "Webhook deliveries waiting (not dead)")?,
            oldest_undelivered: Gauge::new(
                "webhook_oldest_undelivered_seconds",
                "How long the oldest waiting webhook delivery has waited",
            )?,
            failures: IntCounterVec::new(
                Opts::new("webhook_delivery_failures_total", "Failed webhook delivery attempts by endpoint"),
                &["endpoint"],
            )?,
            delivered: IntCounter::new("webhook_deliveries_total", "Webhook deliveries that arrived (2xx)")?,
            held_back: Gauge::new(
                "events_feed_held_back_seconds",
                "Age of the oldest database transaction that has written: the event feed cannot pass it",
            )?,
            pruned: IntCounter::new("events_pruned_total", "Events deleted past EVENT_RETENTION")?,
        };
        registry.register(Box::new(metrics.pending.clone()))?;
        registry.register(Box::new(metrics.oldest_undelivered.clone()))?;
        registry.register(Box::new(metrics.failures.clone()))?;
        registry.register(Box::new(metrics.delivered.clone()))?;
        registry.register(Box::new(metrics.held_back.clone()))?;
        registry.register(Box::new(metrics.pruned.clone()))?;
        Ok(metrics)
    }
}
