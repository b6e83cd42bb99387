//! The activities the workflows call, declared here and implemented by the worker (`advances-activities`).

use ledger_contract::Direction;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use temporalio_macros::activity_definitions;
use temporalio_sdk::activities::ActivityError;
use uuid::Uuid;

use crate::model::{Advance, Mirror};

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

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Too many extra payments failed in a row.
    Defaulted,
    /// paid + scheduled + processing differs from the advance's amount.
    FormulaMismatch,
    /// The grant or a paid payment does not match exactly one successful ledger transaction, or a failed
    /// payment has one.
    LedgerMismatch,
    /// The ledger refused a grant or a collection for a reason only an operator can fix (a token, a scope, a
    /// key taken): the activity retries until it is fixed.
    LedgerRefused,
    /// The database says the advance is open, but its workflow is not running (terminated, timed out, failed,
    /// completed without its last mirror, or missing): nothing would collect it.
    WorkflowNotRunning,
}

impl AlertKind {
    pub const ALL: [Self; 5] =
        [Self::Defaulted, Self::FormulaMismatch, Self::LedgerMismatch, Self::LedgerRefused, Self::WorkflowNotRunning];

    /// The name in logs, metrics, the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Defaulted => "defaulted",
            Self::FormulaMismatch => "formula_mismatch",
            Self::LedgerMismatch => "ledger_mismatch",
            Self::LedgerRefused => "ledger_refused",
            Self::WorkflowNotRunning => "workflow_not_running",
        }
    }
}

impl std::fmt::Display for AlertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for AlertKind {
    type Error = ledger_contract::UnknownValue;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or(ledger_contract::UnknownValue { what: "alert kind", value: text })
    }
}

/// An alert for operators: an ERROR log line, a counter and a row in `alerts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub advance_id: Option<Uuid>,
    pub kind: AlertKind,
    pub message: String,
}

/// What a reconciliation run found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    pub advances_checked: u64,
    pub payments_checked: u64,
    pub mismatches: Vec<Alert>,
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

    /// Checks every open advance against the seed's formula and the ledger.
    #[activity(name = "reconcile")]
    pub fn reconcile() -> Result<ReconcileReport, ActivityError> {
        unimplemented!()
    }
}

/// The activities' marker types, for the worker's `#[activity(definition = …)]` implementations.
pub mod definitions {
    pub use super::advance_activities::{Collect, Grant, MirrorAdvance, RaiseAlert, Reconcile, RecordAdvance};
}
