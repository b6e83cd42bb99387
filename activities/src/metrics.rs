//! The worker's counters on `/metrics`.

use prometheus::{IntCounterVec, Opts, Registry};

/// Counters the worker exposes on `/metrics`.
#[derive(Clone)]
pub struct ActivityMetrics {
    pub registry: Registry,
    /// Alerts raised, by kind (`defaulted`, `formula_mismatch`, `ledger_mismatch`, `ledger_refused`).
    pub alerts: IntCounterVec,
    /// Ledger calls by operation and outcome (`done`, `refused`, `transient`, `needs_operator`).
    pub ledger_calls: IntCounterVec,
}

impl ActivityMetrics {
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new();
        let alerts = IntCounterVec::new(Opts::new("advances_alerts_total", "Alerts raised, by kind"), &["kind"])?;
        let ledger_calls = IntCounterVec::new(
            Opts::new("advances_ledger_calls_total", "Calls to the accounts-service, by operation and outcome"),
            &["operation", "outcome"],
        )?;
        registry.register(Box::new(alerts.clone()))?;
        registry.register(Box::new(ledger_calls.clone()))?;
        Ok(Self { registry, alerts, ledger_calls })
    }
}
