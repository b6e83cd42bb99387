//! The activities the workflows call, declared here and implemented by the worker (`advances-activities`).

use ledger_contract::Direction;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use temporalio_macros::activity_definitions;
use temporalio_sdk::activities::ActivityError;
use uuid::Uuid;

use advances_model::{Advance, Alert, IdRange, Mirror, ReconcileReport};

/// One bank transaction, with the key that makes it happen at most once. `direction` is the ledger's own:
/// `credit` gives to the account (a grant), `debit` takes from it (a payment).
///
/// The amount stays a plain decimal in workflow histories (as recorded since the first version); the activity
/// turns it into a checked `money::Amount` before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyMove {
    pub idempotency_key: String,
    pub account_id: Uuid,
    pub amount: Decimal,
    pub direction: Direction,
    pub reason: String,
}

/// What the ledger did with a [`MoneyMove`]. Transient failures are not outcomes: the activity fails and
/// Temporal retries it with the same key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum MoneyOutcome {
    /// The money moved.
    Done { transaction_id: Uuid },
    /// The ledger refused for good (insufficient funds, unknown account); nothing moved.
    Refused { reason: String },
}

/// The activities' declarations; the worker registers their implementations under the same names.
pub struct AdvanceActivities;

#[activity_definitions]
impl AdvanceActivities {
    /// Credits the advance to the account.
    #[activity(name = "grant")]
    pub fn grant(request: MoneyMove) -> Result<MoneyOutcome, ActivityError> {
        unimplemented!()
    }

    /// Debits one payment from the account.
    #[activity(name = "collect")]
    pub fn collect(request: MoneyMove) -> Result<MoneyOutcome, ActivityError> {
        unimplemented!()
    }

    /// Mirrors the advance's whole state into the `advances` database (ignored if a newer revision is there).
    /// Scheduled only by runs recorded before [`crate::advance_workflow::SMALL_HISTORY_PATCH`]; kept so that
    /// they finish.
    #[activity(name = "record_advance")]
    pub fn record_advance(advance: Advance) -> Result<(), ActivityError> {
        unimplemented!()
    }

    /// Mirrors the advance into the `advances` database: its whole state first, then each change (ignored if
    /// a newer revision is there).
    #[activity(name = "mirror_advance")]
    pub fn mirror_advance(mirror: Mirror) -> Result<(), ActivityError> {
        unimplemented!()
    }

    /// Raises an alert.
    #[activity(name = "raise_alert")]
    pub fn raise_alert(alert: Alert) -> Result<(), ActivityError> {
        unimplemented!()
    }

    /// Checks every open advance against the seed's formula, the ledger and Temporal in one activity. Scheduled
    /// only by runs started before [`crate::reconcile_workflow::RECONCILE_IN_RANGES`]; kept so that they finish.
    #[activity(name = "reconcile")]
    pub fn reconcile() -> Result<ReconcileReport, ActivityError> {
        unimplemented!()
    }

    /// Checks the open advances of one id range against the seed's formula and the ledger, page by page,
    /// heartbeating its progress so that a retry resumes where it stopped.
    #[activity(name = "reconcile_range")]
    pub fn reconcile_range(range: IdRange) -> Result<ReconcileReport, ActivityError> {
        unimplemented!()
    }

    /// Checks that every advance the database says is open has a running workflow.
    #[activity(name = "check_workflows")]
    pub fn check_workflows() -> Result<ReconcileReport, ActivityError> {
        unimplemented!()
    }
}

/// The activities' marker types, for the worker's `#[activity(definition = …)]` implementations.
pub mod definitions {
    pub use super::advance_activities::{
        CheckWorkflows, Collect, Grant, MirrorAdvance, RaiseAlert, Reconcile, ReconcileRange, RecordAdvance,
    };
}
