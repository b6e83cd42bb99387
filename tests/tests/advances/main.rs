//! The advances, in one test binary (one link of the Temporal SDK instead of two):
//!
//! - [`workflows`]: AdvanceWorkflow and ReconcileWorkflow started directly on Temporal, with the recorded
//!   histories that must keep replaying.
//! - [`end_to_end`]: the same through the advances-api, as an operator runs it.
//! - [`lending`]: products, exposure caps under concurrency, and the book.
//!
//! Both run on a [`Stack`]: the accounts-service, advances-worker and advances-api binaries, a Temporal dev
//! server and real PostgreSQL, with payment intervals of a second or less; every wait polls with a deadline.

mod end_to_end;
mod lending;
mod reconcile;
mod transport;
mod workflows;

use std::time::Duration;

use advances_workflows::temporal::{connect, TemporalSettings};
use system_tests::Stack;

/// How long a test waits for an advance to get somewhere.
const LONG: Duration = Duration::from_secs(60);

/// A client of the stack's Temporal server, for starting, querying and counting workflows directly.
async fn temporal_client(stack: &Stack) -> anyhow::Result<temporalio_client::Client> {
    connect(&TemporalSettings::at(&stack.temporal.address)?, "system-tests", Duration::from_secs(30)).await
}
