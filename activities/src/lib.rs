//! The advance workflows' activities, and the `advances-worker` process that runs them with the workflows.
//!
//! Every side effect of an advance happens in an activity. Money moves only through the accounts-service, keyed
//! by business ids (`advance-{id}-grant`, `payment-{payment_id}`): Temporal runs an activity at least once, the
//! key makes the money move at most once.
//!
//! - [`ledger`]: money moves; [`alerts`]: raising alerts; [`reconcile`]: reconciliation; [`metrics`]: counters;
//! - this file: the activities as Temporal registers them; [`worker`] and [`config`]: the process.

pub mod alerts;
pub mod config;
pub mod ledger;
pub mod metrics;
pub mod reconcile;
pub mod worker;

use std::sync::Arc;

use advances_model::{Advance, Alert, IdRange, Mirror, RangeProgress, ReconcileReport};
use advances_store::Store;
use advances_workflows::activities::{MoneyMove, MoneyOutcome};
use ledger_contract::LedgerClient;
use temporalio_common::error::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::ledger::MissingAccount;
pub use crate::metrics::ActivityMetrics;

/// The activities' dependencies.
pub struct Activities {
    pub ledger: LedgerClient,
    pub store: Store,
    pub metrics: ActivityMetrics,
}

/// A failure Temporal retries (with backoff, under the activity's retry policy).
pub(crate) fn retryable(error: impl std::fmt::Display) -> ActivityError {
    ActivityError::application(ApplicationFailure::new(error.to_string()))
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

    #[activity(definition = advances_workflows::activities::definitions::MirrorAdvance)]
    pub async fn mirror_advance(self: Arc<Self>, _ctx: ActivityContext, mirror: Mirror) -> Result<(), ActivityError> {
        self.store.mirror(&mirror).await.map_err(|error| retryable(format!("{error:#}")))?;
        Ok(())
    }

    #[activity(definition = advances_workflows::activities::definitions::RaiseAlert)]
    pub async fn raise_alert(self: Arc<Self>, _ctx: ActivityContext, alert: Alert) -> Result<(), ActivityError> {
        self.alert(&alert).await
    }

    #[activity(definition = advances_workflows::activities::definitions::Reconcile)]
    pub async fn reconcile(self: Arc<Self>, ctx: ActivityContext) -> Result<ReconcileReport, ActivityError> {
        let report = self.check_all(&ctx.client()).await.map_err(retryable)?;
        log_report("reconciliation done", &report);
        Ok(report)
    }

    #[activity(definition = advances_workflows::activities::definitions::ReconcileRange)]
    pub async fn reconcile_range(
        self: Arc<Self>,
        ctx: ActivityContext,
        range: IdRange,
    ) -> Result<ReconcileReport, ActivityError> {
        // A retry resumes after the last page its previous attempt heartbeated.
        let resumed: Option<RangeProgress> = ctx.heartbeat_details().deserialize().map_err(retryable)?;
        if let Some(progress) = &resumed {
            tracing::info!(range = range.describe(), next = ?progress.next, "reconciliation resumes");
        }
        let progress = resumed.unwrap_or(RangeProgress { next: Some(range.first), ..Default::default() });
        let report =
            self.check_range(range, progress, Some(&ctx)).await.map_err(|error| retryable(format!("{error:#}")))?;
        log_report(&format!("reconciliation of {} done", range.describe()), &report);
        Ok(report)
    }

    #[activity(definition = advances_workflows::activities::definitions::CheckWorkflows)]
    pub async fn check_workflows(self: Arc<Self>, ctx: ActivityContext) -> Result<ReconcileReport, ActivityError> {
        let report = self
            .check_running_workflows(&ctx.client(), Some(&ctx))
            .await
            .map_err(|error| retryable(format!("{error:#}")))?;
        log_report("workflow check done", &report);
        Ok(report)
    }
}

fn log_report(what: &str, report: &ReconcileReport) {
    tracing::info!(
        advances = report.advances_checked,
        payments = report.payments_checked,
        mismatches = report.mismatch_count,
        "{what}"
    );
}
