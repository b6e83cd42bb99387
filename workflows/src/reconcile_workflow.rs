//! ReconcileWorkflow: started by the `advances-reconcile` Schedule; one activity does the checking.

use std::time::Duration;

use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

use crate::activities::{AdvanceActivities, ReconcileReport};

#[workflow]
#[derive(Default)]
pub struct ReconcileWorkflow;

#[workflow_methods]
impl ReconcileWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<ReconcileReport> {
        let options = ActivityOptions::with_start_to_close_timeout(Duration::from_secs(600))
            .retry_policy(RetryPolicy::builder().maximum_attempts(3).build())
            .summary("Check every open advance against the ledger".to_owned())
            .build();
        Ok(ctx.execute_activity(AdvanceActivities::reconcile, (), options).await?)
    }
}
