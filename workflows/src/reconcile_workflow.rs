//! ReconcileWorkflow: started by the `advances-reconcile` Schedule. The open advances are checked in id ranges
//! by parallel activities that page and heartbeat (a retry resumes where the last attempt stopped), beside one
//! activity that checks their workflows run.

use std::time::Duration;

use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

use crate::activities::AdvanceActivities;
use advances_model::{IdRange, ReconcileReport};

#[workflow]
#[derive(Default)]
pub struct ReconcileWorkflow;

/// The patch under which a run checks in parallel ranges; runs started before it check in one activity.
pub const RECONCILE_IN_RANGES: &str = "reconcile-in-ranges";

/// How many ranges are checked at once. Each keeps a few ledger lookups in flight, so a handful keeps both
/// databases and the ledger busy on a small machine (see BENCHMARKS.md).
pub const RECONCILE_RANGES: u32 = 4;

/// A range's activity heartbeats after every page (a second or so); missing this long, it is retried and
/// resumes from its last heartbeat.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);

fn paging_options(summary: String) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(6 * 3600))
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .retry_policy(RetryPolicy::builder().maximum_attempts(10).maximum_interval(Duration::from_secs(60)).build())
        .summary(summary)
        .build()
}

#[workflow_methods]
impl ReconcileWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<ReconcileReport> {
        if !ctx.patched(RECONCILE_IN_RANGES) {
            let options = ActivityOptions::with_start_to_close_timeout(Duration::from_secs(600))
                .retry_policy(RetryPolicy::builder().maximum_attempts(3).build())
                .summary("Check every open advance against the ledger".to_owned())
                .build();
            return Ok(ctx.execute_activity(AdvanceActivities::reconcile, (), options).await?);
        }
        let workflows = ctx.execute_activity(
            AdvanceActivities::check_workflows,
            (),
            paging_options("Check that every open advance's workflow runs".to_owned()),
        );
        let ranges = IdRange::split(RECONCILE_RANGES).into_iter().map(|range| {
            let summary = format!("Check open advances {} against the ledger", range.describe());
            ctx.execute_activity(AdvanceActivities::reconcile_range, range, paging_options(summary))
        });
        let (workflows, ranges) =
            temporalio_sdk::workflows::join!(workflows, temporalio_sdk::workflows::join_all(ranges));
        let mut report = workflows?;
        for range in ranges {
            report.merge(range?);
        }
        Ok(report)
    }
}
