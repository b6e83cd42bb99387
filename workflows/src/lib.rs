//! The advance's Temporal workflows, the pure model they run on, and what a Temporal server needs for them.
//!
//! The model they run on (terms, schedule, state changes, keys) is the `advances-model` crate: pure code.
//!
//! - [`AdvanceWorkflow`] and [`ReconcileWorkflow`]: deterministic workflow code; they read time only from the
//!   workflow's clock, make no I/O and draw no random numbers.
//! - [`activities`]: the activities' declarations (the worker in `advances-activities` implements them). Money
//!   moves only there, under keys made of business ids, so a retried activity never moves money twice.
//! - [`temporal`]: connecting to the server, the search attributes and the reconciliation Schedule (used by the
//!   API and the worker at start, never by workflow code).

pub mod activities;
pub mod advance_workflow;
pub mod reconcile_workflow;
pub mod temporal;

pub use advance_workflow::{AdvanceInput, AdvanceWorkflow};
pub use reconcile_workflow::ReconcileWorkflow;

/// The task queue the worker polls and the API starts workflows on.
pub const TASK_QUEUE: &str = "advances";

/// The workflow id of an advance.
pub fn workflow_id(advance_id: uuid::Uuid) -> String {
    format!("advance-{advance_id}")
}

/// The advance whose workflow id this is (`None` for any other workflow).
pub fn advance_of_workflow(workflow_id: &str) -> Option<uuid::Uuid> {
    workflow_id.strip_prefix("advance-")?.parse().ok()
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
