//! The ledger's metrics, one registry per application instance (so tests can run many side by side).

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};
use service_kit::metrics::HttpMetrics;

/// The service's metrics: the kit's HTTP ones plus the ledger's own.
pub struct Metrics {
    pub registry: Registry,
    pub http: HttpMetrics,
    pub ledger_transactions: IntCounterVec,
    pub db_pool_size: IntGauge,
    pub db_pool_idle: IntGauge,
    /// Requests per committed batch.
    pub batch_size: Histogram,
    /// Requests waiting for a committer.
    pub batch_waiting: IntGauge,
    /// How far the report seal's frontier trails the clock (a new report counts that much traffic row by row).
    pub seal_lag: Gauge,
    /// How long the oldest pending hold has been past its `expires_at` (0 when none): the expiry task is stuck
    /// when this grows beyond `HOLD_EXPIRY_INTERVAL`.
    pub holds_overdue: Gauge,
    /// The event feed's and the webhooks'.
    pub events: events::EventMetrics,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new();
        let http = HttpMetrics::register(&registry)?;
        let ledger_transactions = IntCounterVec::new(
            Opts::new(
                "ledger_transactions_total",
                "Ledger writes by kind (transfer, bank, hold, capture, void, expiry) and outcome (success, \
                 insufficient_funds, replayed)",
            ),
            &["kind", "outcome"],
        )?;
        let db_pool_size = IntGauge::new("db_pool_connections", "Open database connections")?;
        let db_pool_idle = IntGauge::new("db_pool_idle_connections", "Idle database connections")?;
        registry.register(Box::new(ledger_transactions.clone()))?;
        registry.register(Box::new(db_pool_size.clone()))?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("ledger_batch_size", "Transfers and bank transactions per database transaction")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]),
        )?;
        registry.register(Box::new(db_pool_idle.clone()))?;
        let batch_waiting =
            IntGauge::new("ledger_batch_waiting", "Transfers and bank transactions waiting for a committer")?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(batch_waiting.clone()))?;
        let seal_lag = Gauge::new(
            "report_seal_lag_seconds",
            "How far the report seal trails the clock: a long-running database transaction holds it back",
        )?;
        registry.register(Box::new(seal_lag.clone()))?;
        let holds_overdue = Gauge::new(
            "ledger_holds_overdue_seconds",
            "How long the oldest pending hold has been past its expiry (0 when none): the expiry task is behind",
        )?;
        registry.register(Box::new(holds_overdue.clone()))?;
        let events = events::EventMetrics::register(&registry)?;
        Ok(Self {
            registry,
            http,
            ledger_transactions,
            db_pool_size,
            db_pool_idle,
            batch_size,
            batch_waiting,
            seal_lag,
            holds_overdue,
            events,
        })
    }
}
