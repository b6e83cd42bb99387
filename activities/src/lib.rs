//! The advance workflows' activities, and the `advances-worker` process that runs them with the workflows.
//!
//! Every side effect of an advance happens in an activity. Money moves only through the accounts-service, keyed
//! by business ids (`advance-{id}-grant`, `payment-{payment_id}`): Temporal runs an activity at least once, the
//! key makes the money move at most once.

pub mod config;
pub mod ledger;
pub mod worker;

use std::sync::Arc;

use advances_store::Store;
use advances_workflows::activities::{Alert, AlertKind, MoneyMove, MoneyOutcome, ReconcileReport};
use advances_workflows::model::{grant_key, payment_key, Advance, AdvanceStatus, PaymentStatus};
use ledger_contract::{LedgerClient, TransactionStatus};
use prometheus::{IntCounterVec, Opts, Registry};
use rust_decimal::Decimal;
use temporalio_common::error::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::ledger::{CallError, MissingAccount};

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

/// The activities' dependencies.
pub struct Activities {
    pub ledger: LedgerClient,
    pub store: Store,
    pub metrics: ActivityMetrics,
}

fn retryable(error: impl std::fmt::Display) -> ActivityError {
    ActivityError::application(ApplicationFailure::new(error.to_string()))
}

impl Activities {
    async fn move_money(
        &self,
        ctx: &ActivityContext,
        operation: &str,
        request: MoneyMove,
        missing_account: MissingAccount,
    ) -> Result<MoneyOutcome, ActivityError> {
        let result = ledger::move_money(&self.ledger, &request, missing_account).await;
        let outcome = match &result {
            Ok(MoneyOutcome::Done { .. }) => "done",
            Ok(MoneyOutcome::Refused { .. }) => "refused",
            Err(CallError::Transient(_)) => "transient",
            Err(CallError::NeedsOperator(_)) => "needs_operator",
        };
        self.metrics.ledger_calls.with_label_values(&[operation, outcome]).inc();
        match result {
            Ok(outcome) => {
                tracing::info!(key = %request.idempotency_key, amount = %request.amount, ?outcome, "{operation}");
                Ok(outcome)
            }
            Err(CallError::Transient(error)) => {
                tracing::warn!(key = %request.idempotency_key, %error, "{operation} will be retried");
                Err(retryable(error))
            }
            Err(CallError::NeedsOperator(error)) => {
                // Not the client's failure: nothing is recorded as failed. The alert says why (once per cause),
                // and the activity keeps retrying with backoff until an operator has fixed it.
                let advance_id = ctx.info().workflow_id.as_deref().and_then(advances_workflows::advance_of_workflow);
                let alert = Alert {
                    advance_id,
                    kind: AlertKind::LedgerRefused,
                    message: format!(
                        "{operation} with key {} (account {}, {}): {error}; it is retried until this is fixed",
                        request.idempotency_key, request.account_id, request.amount
                    ),
                };
                self.alert(&alert).await?;
                Err(retryable(error))
            }
        }
    }

    /// Logs, counts and stores an alert.
    pub async fn alert(&self, alert: &Alert) -> Result<(), ActivityError> {
        let advance_id = alert.advance_id.map(|id| id.to_string()).unwrap_or_default();
        if self.store.insert_alert(alert).await.map_err(retryable)? {
            tracing::error!(advance_id, kind = %alert.kind, "ALERT: {}", alert.message);
            self.metrics.alerts.with_label_values(&[alert.kind.as_str()]).inc();
        }
        Ok(())
    }

    /// Checks every open advance: its payments must sum to its amount (paid + scheduled + processing), its
    /// grant and every paid payment must match exactly one successful ledger transaction with its key, and no
    /// failed payment may have one.
    pub async fn check_all(&self) -> anyhow::Result<ReconcileReport> {
        let mut report = ReconcileReport::default();
        for open in self.store.open_advances().await? {
            let (advance_id, account_id, amount) = (open.advance_id, open.account_id, open.amount);
            report.advances_checked += 1;
            let payments = self.store.payments(advance_id).await?;
            let owed: Decimal = payments.iter().filter(|p| p.status.is_owed()).map(|p| p.amount).sum();
            if owed != amount {
                report.mismatches.push(Alert {
                    advance_id: Some(advance_id),
                    kind: AlertKind::FormulaMismatch,
                    message: format!(
                        "advance {advance_id}: paid + scheduled + processing = {owed}, but the advance is {amount}"
                    ),
                });
            }
            for payment in payments.iter().filter(|p| p.status == PaymentStatus::Failed) {
                report.payments_checked += 1;
                let rows = self.ledger.transactions_by_key(&payment_key(payment.id)).await?;
                if let Some(moved) = rows.iter().find(|row| row.status == TransactionStatus::Success) {
                    report.mismatches.push(Alert {
                        advance_id: Some(advance_id),
                        kind: AlertKind::LedgerMismatch,
                        message: format!(
                            "advance {advance_id} payment {} is recorded as failed, but the ledger moved {} in \
                             transaction {}",
                            payment.number, moved.amount, moved.transaction_id
                        ),
                    });
                }
            }
            let mut expected = vec![(grant_key(advance_id), None, "grant".to_owned())];
            for payment in payments.iter().filter(|p| p.status == PaymentStatus::Paid) {
                report.payments_checked += 1;
                expected.push((payment_key(payment.id), Some(payment), format!("payment {}", payment.number)));
            }
            for (key, payment, what) in expected {
                if payment.is_none() && open.status == AdvanceStatus::Granting {
                    continue;
                }
                let rows = self.ledger.transactions_by_key(&key).await?;
                let successes: Vec<_> = rows.iter().filter(|row| row.status == TransactionStatus::Success).collect();
                let problem = match (successes.as_slice(), payment) {
                    ([one], Some(payment)) if one.transaction_id != payment.transaction_id.unwrap_or_default() => {
                        Some(format!(
                            "the ledger's transaction is {}, the payment says {:?}",
                            one.transaction_id, payment.transaction_id
                        ))
                    }
                    ([one], Some(payment))
                        if one.amount.value() != payment.amount || one.dst_account_id != account_id =>
                    {
                        Some(format!("the ledger moved {} on account {}", one.amount, one.dst_account_id))
                    }
                    ([one], None) if one.amount.value() != amount || one.dst_account_id != account_id => {
                        Some(format!("the ledger granted {} to account {}", one.amount, one.dst_account_id))
                    }
                    ([_], _) => None,
                    (many, _) => Some(format!("{} successful ledger transactions with key {key}", many.len())),
                };
                if let Some(problem) = problem {
                    report.mismatches.push(Alert {
                        advance_id: Some(advance_id),
                        kind: AlertKind::LedgerMismatch,
                        message: format!("advance {advance_id} {what}: {problem}"),
                    });
                }
            }
        }
        Ok(report)
    }
}

#[activities]
impl Activities {
    #[activity(definition = advances_workflows::activities::definitions::Grant)]
    pub async fn grant(
        self: Arc<Self>,
        ctx: ActivityContext,
        request: MoneyMove,
    ) -> Result<MoneyOutcome, ActivityError> {
        // The account of a grant may not exist: the grant is then refused, and the advance fails.
        self.move_money(&ctx, "grant", request, MissingAccount::IsARefusal).await
    }

    #[activity(definition = advances_workflows::activities::definitions::Collect)]
    pub async fn collect(
        self: Arc<Self>,
        ctx: ActivityContext,
        request: MoneyMove,
    ) -> Result<MoneyOutcome, ActivityError> {
        // A granted account that has vanished is a fault for an operator, not the client's failure to pay.
        self.move_money(&ctx, "collect", request, MissingAccount::IsAFault).await
    }

    #[activity(definition = advances_workflows::activities::definitions::RecordAdvance)]
    pub async fn record_advance(self: Arc<Self>, _ctx: ActivityContext, advance: Advance) -> Result<(), ActivityError> {
        self.store.record(&advance).await.map_err(retryable)?;
        Ok(())
    }

    #[activity(definition = advances_workflows::activities::definitions::RaiseAlert)]
    pub async fn raise_alert(self: Arc<Self>, _ctx: ActivityContext, alert: Alert) -> Result<(), ActivityError> {
        self.alert(&alert).await
    }

    #[activity(definition = advances_workflows::activities::definitions::Reconcile)]
    pub async fn reconcile(self: Arc<Self>, _ctx: ActivityContext) -> Result<ReconcileReport, ActivityError> {
        let report = self.check_all().await.map_err(retryable)?;
        for alert in &report.mismatches {
            self.alert(alert).await?;
        }
        tracing::info!(
            advances = report.advances_checked,
            payments = report.payments_checked,
            mismatches = report.mismatches.len(),
            "reconciliation done"
        );
        Ok(report)
    }
}
