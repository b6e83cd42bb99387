//! Prometheus metrics, one registry per application instance (so tests can run many side by side).

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Request counts and latencies by route, method and status: the same names in every service.
#[derive(Clone)]
pub struct HttpMetrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
}

impl HttpMetrics {
    /// Creates the HTTP metrics in `registry`.
    pub fn register(registry: &Registry) -> anyhow::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route, method and status"),
            &["method", "route", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency by route, method and status")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["method", "route", "status"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { requests, duration })
    }
}

/// The Prometheus text exposition of every metric in `registry`.
pub fn render(registry: &Registry) -> anyhow::Result<String> {
    let mut buffer = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut buffer)?;
    Ok(String::from_utf8(buffer)?)
}

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    pub http: HttpMetrics,
    pub ledger_transactions: IntCounterVec,
    pub db_pool_size: IntGauge,
    pub db_pool_idle: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new();
        let http = HttpMetrics::register(&registry)?;
        let ledger_transactions = IntCounterVec::new(
            Opts::new(
                "ledger_transactions_total",
                "Ledger writes by kind (transfer, bank) and outcome (success, insufficient_funds, replayed)",
            ),
            &["kind", "outcome"],
        )?;
        let db_pool_size = IntGauge::new("db_pool_connections", "Open database connections")?;
        let db_pool_idle = IntGauge::new("db_pool_idle_connections", "Idle database connections")?;
        registry.register(Box::new(ledger_transactions.clone()))?;
        registry.register(Box::new(db_pool_size.clone()))?;
        registry.register(Box::new(db_pool_idle.clone()))?;
        Ok(Self { registry, http, ledger_transactions, db_pool_size, db_pool_idle })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> anyhow::Result<String> {
        render(&self.registry)
    }
}
