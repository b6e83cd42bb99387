//! The ledger's metrics, one registry per application instance (so tests can run many side by side).

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use service_kit::metrics::HttpMetrics;

/// The service's metrics: the kit's HTTP ones plus the ledger's own.
pub struct Metrics {
    pub registry: Registry,
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
}
