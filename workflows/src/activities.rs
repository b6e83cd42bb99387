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

/// What a reconciliation run found. Every mismatch is raised as an alert (a row, a log line, a counter) when it
/// is found; the report counts them all and carries the first [`ReconcileReport::MAX_LISTED`], so that a run
/// that finds a million never puts a million alerts into a workflow's history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    pub advances_checked: u64,
    pub payments_checked: u64,
    pub mismatches: Vec<Alert>,
    /// Every mismatch found, listed or not (absent in reports of versions that listed them all).
    #[serde(default)]
    pub mismatch_count: u64,
}

impl ReconcileReport {
    pub const MAX_LISTED: usize = 100;

    /// Counts a mismatch, listing it while there is room.
    pub fn found(&mut self, alert: Alert) {
        self.mismatch_count += 1;
        if self.mismatches.len() < Self::MAX_LISTED {
            self.mismatches.push(alert);
        }
    }

    /// Adds another part's findings (a range of advances, the workflows' check).
    pub fn merge(&mut self, other: ReconcileReport) {
        self.advances_checked += other.advances_checked;
        self.payments_checked += other.payments_checked;
        self.mismatch_count += other.mismatch_count;
        let room = Self::MAX_LISTED.saturating_sub(self.mismatches.len());
        self.mismatches.extend(other.mismatches.into_iter().take(room));
    }
}

/// A slice of the advances' id space, both ends included (ids compare as 128-bit numbers, as PostgreSQL
/// compares uuids). Reconciliation checks the slices in parallel activities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub first: Uuid,
    pub last: Uuid,
}

impl IdRange {
    /// The whole id space in `parts` slices of equal width (at least one).
    pub fn split(parts: u32) -> Vec<IdRange> {
        let parts = u128::from(parts.max(1));
        let width = u128::MAX / parts;
        (0..parts)
            .map(|part| {
                let first = part * width + part;
                let last = if part + 1 == parts { u128::MAX } else { (part + 1) * width + part };
                IdRange { first: Uuid::from_u128(first), last: Uuid::from_u128(last) }
            })
            .collect()
    }

    /// The range's line in the Web UI ("00000000…3fffffff").
    pub fn describe(&self) -> String {
        let (first, last) = (self.first.simple().to_string(), self.last.simple().to_string());
        format!("{}…{}", &first[..8], &last[..8])
    }
}

/// How far a range's check has come, recorded with each heartbeat: a retried activity resumes at `next`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeProgress {
    /// The first id not checked yet (`None` once the range is done).
    pub next: Option<Uuid>,
    pub report: ReconcileReport,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranges_cover_every_id_once_in_order() {
        for parts in [1, 2, 3, 4, 7] {
            let ranges = IdRange::split(parts);
            assert_eq!(ranges.len(), parts as usize);
            assert_eq!(ranges[0].first, Uuid::nil());
            assert_eq!(ranges[ranges.len() - 1].last, Uuid::max());
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].last.as_u128() + 1, pair[1].first.as_u128(), "{parts}: {pair:?}");
            }
            assert!(ranges.iter().all(|range| range.first <= range.last));
        }
        assert_eq!(IdRange::split(0).len(), 1);
        assert_eq!(IdRange::split(4)[1].describe(), "40000000…7fffffff");
    }

    #[test]
    fn a_report_counts_every_mismatch_and_lists_the_first_hundred() {
        let alert = |n: usize| Alert { advance_id: None, kind: AlertKind::FormulaMismatch, message: n.to_string() };
        let mut report = ReconcileReport::default();
        (0..150).for_each(|n| report.found(alert(n)));
        let mut other = ReconcileReport { advances_checked: 5, ..Default::default() };
        other.found(alert(999));
        report.merge(other);
        assert_eq!((report.mismatch_count, report.mismatches.len(), report.advances_checked), (151, 100, 5));
    }
}
