//! The advance's Temporal workflows and the pure schedule they run on.
//!
//! Workflow code here is deterministic: it reads time only from the workflow's clock, makes no I/O and
//! draws no random numbers. Money moves only in activities (declared in [`activities`], implemented by the
//! worker), under keys made of business ids so that a retried activity never moves money twice.

pub mod activities;
pub mod advance;
pub mod reconcile;
pub mod schedule;

pub use advance::AdvanceWorkflow;
pub use reconcile::ReconcileWorkflow;

/// The task queue the worker polls and the API starts workflows on.
pub const TASK_QUEUE: &str = "advances";

/// The workflow id of an advance.
pub fn workflow_id(advance_id: uuid::Uuid) -> String {
    format!("advance-{advance_id}")
}

/// The Temporal Schedule that runs reconciliation.
pub const RECONCILE_SCHEDULE_ID: &str = "advances-reconcile";

/// Search attributes that make advances filterable in the Temporal Web UI (keywords).
pub mod search {
    use temporalio_common::search_attributes::SearchAttributeKey;

    pub const ACCOUNT_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("AdvanceAccountId");
    pub const STATUS: SearchAttributeKey<String> = SearchAttributeKey::keyword("AdvanceStatus");
    /// Their names, for registering them with a server.
    pub const NAMES: [&str; 2] = ["AdvanceAccountId", "AdvanceStatus"];
}
