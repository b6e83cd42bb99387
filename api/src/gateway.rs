//! The API's calls to Temporal: starting an advance's workflow and waiting for its grant, its live state,
//! whether it runs, and operator commands (workflow updates). Handlers never call the SDK themselves.

use std::time::Duration;

use advances_model::{Advance, AdvanceStatus, AdvanceTerms, Prepay, Reschedule};
use advances_workflows::temporal::{self, NotRunning};
use advances_workflows::{search, workflow_id, AdvanceInput, AdvanceWorkflow};
use service_kit::{ApiError, ApiResult};
use temporalio_client::errors::{WorkflowStartError, WorkflowUpdateError, WorkflowUpdateWithStartError};
use temporalio_client::{
    Client, RpcOptions, WorkflowExecuteUpdateOptions, WorkflowIdConflictPolicy, WorkflowIdReusePolicy,
    WorkflowQueryOptions, WorkflowUpdateWithStartOptions,
};
use temporalio_common::search_attributes::SearchAttributes;
use uuid::Uuid;

/// How long a query to a running workflow may take before the database's copy answers instead.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// An operator's command, sent to the workflow as an update with its input (the operator's note, at least).
#[derive(Debug, Clone)]
pub enum Command {
    Cancel(String),
    PayOff(String),
    Pause(String),
    Resume(String),
    Reschedule(Reschedule),
    Prepay(Prepay),
    WriteOff(String),
}

/// How an operator command did not apply.
#[derive(Debug)]
pub enum Refused {
    /// The workflow refused it (the advance is not active, already paused, nothing to pay...): the reason.
    NotApplicable(String),
    /// The advance's workflow is not running.
    NotRunning,
}

/// Temporal, as the API uses it.
#[derive(Clone)]
pub struct Gateway {
    client: Client,
    namespace: String,
    task_queue: String,
    /// How long `POST /advances` waits for the grant (`GRANT_WAIT`).
    grant_wait: Duration,
}

impl Gateway {
    pub fn new(client: Client, namespace: String, task_queue: String, grant_wait: Duration) -> Self {
        Self { client, namespace, task_queue, grant_wait }
    }

    /// Starts the advance's workflow and waits for its grant in one call (update-with-start: the start and the
    /// `await_grant` update together), for at most `GRANT_WAIT`. A workflow already running with this id is
    /// joined, not started again; one that has closed is left alone. Returns the advance once its grant is
    /// decided, or `None` when the answer must come from the database (it has closed, or the grant takes longer).
    pub async fn start(&self, terms: &AdvanceTerms) -> ApiResult<Option<Advance>> {
        let attributes = SearchAttributes::new([
            search::ACCOUNT_ID.value_set(terms.account_id.to_string()),
            search::STATUS.value_set(AdvanceStatus::Granting.as_str().to_owned()),
        ]);
        let options = WorkflowUpdateWithStartOptions::new(
            self.task_queue.clone(),
            workflow_id(terms.advance_id),
            WorkflowIdConflictPolicy::UseExisting,
        )
        .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
        .search_attributes(attributes)
        .static_summary(format!("Advance of {} to account {}", terms.amount, terms.account_id))
        .build();
        let call = self.client.execute_update_with_start_workflow(
            AdvanceWorkflow::run,
            AdvanceInput::from(terms.clone()),
            AdvanceWorkflow::await_grant,
            (),
            options,
        );
        let advance_id = terms.advance_id;
        match tokio::time::timeout(self.grant_wait, call).await {
            Ok(Ok(advance)) => Ok(advance),
            // It ran and has closed: the database's copy answers.
            Ok(Err(WorkflowUpdateWithStartError::Start(WorkflowStartError::AlreadyStarted { .. }))) => Ok(None),
            // It started; only the wait for the grant failed.
            Ok(Err(WorkflowUpdateWithStartError::Update(error))) => {
                tracing::debug!(%advance_id, %error, "waiting for the grant failed; answering from the database");
                Ok(None)
            }
            Ok(Err(error)) => {
                tracing::warn!(%advance_id, %error, "starting the advance workflow failed");
                Err(ApiError::UpstreamUnavailable("Temporal".into()))
            }
            // The grant takes longer than GRANT_WAIT, or Temporal does not answer: which is it?
            Err(_) => match temporal::advance_not_running(&self.client, advance_id).await {
                Ok(Some(NotRunning::Missing)) => {
                    tracing::warn!(%advance_id, "Temporal did not start the advance workflow in time");
                    Err(ApiError::UpstreamUnavailable("Temporal".into()))
                }
                Ok(_) => Ok(None),
                Err(error) => {
                    tracing::warn!(%advance_id, error = format!("{error:#}"), "Temporal does not answer");
                    Err(ApiError::UpstreamUnavailable("Temporal".into()))
                }
            },
        }
    }

    /// The running workflow's own state, if it answers in time.
    pub async fn live(&self, advance_id: Uuid) -> Option<Advance> {
        let handle = self.client.get_workflow_handle::<AdvanceWorkflow>(workflow_id(advance_id));
        let options =
            WorkflowQueryOptions::builder().rpc_options(RpcOptions::builder().timeout(QUERY_TIMEOUT).build()).build();
        match handle.query(AdvanceWorkflow::state, (), options).await {
            Ok(state) => state,
            Err(error) => {
                tracing::debug!(%advance_id, %error, "query failed; answering from the database");
                None
            }
        }
    }

    /// Why an advance's workflow is not running (`None` while it runs, or when Temporal cannot be asked: the
    /// database's copy answers then).
    pub async fn not_running(&self, advance_id: Uuid) -> Option<NotRunning> {
        temporal::advance_not_running(&self.client, advance_id).await.unwrap_or_else(|error| {
            tracing::debug!(%advance_id, error = format!("{error:#}"), "describe failed; answering from the database");
            None
        })
    }

    /// Sends an operator's command to the advance's workflow; answers the advance as the command left it.
    pub async fn command(&self, advance_id: Uuid, command: Command) -> ApiResult<Result<Advance, Refused>> {
        let handle = self.client.get_workflow_handle::<AdvanceWorkflow>(workflow_id(advance_id));
        let options = WorkflowExecuteUpdateOptions::default();
        let result = match command {
            Command::Cancel(note) => handle.execute_update(AdvanceWorkflow::cancel, note, options).await,
            Command::PayOff(note) => handle.execute_update(AdvanceWorkflow::pay_off, note, options).await,
            Command::Pause(note) => handle.execute_update(AdvanceWorkflow::pause, note, options).await,
            Command::Resume(note) => handle.execute_update(AdvanceWorkflow::resume, note, options).await,
            Command::Reschedule(request) => handle.execute_update(AdvanceWorkflow::reschedule, request, options).await,
            Command::Prepay(request) => handle.execute_update(AdvanceWorkflow::prepay, request, options).await,
            Command::WriteOff(note) => handle.execute_update(AdvanceWorkflow::write_off, note, options).await,
        };
        match result {
            Ok(Some(advance)) => Ok(Ok(advance)),
            Ok(None) => Ok(Err(Refused::NotApplicable("the advance is not active".into()))),
            Err(WorkflowUpdateError::Failed(failure)) => Ok(Err(Refused::NotApplicable(failure.message.clone()))),
            Err(WorkflowUpdateError::NotFound(_)) => Ok(Err(Refused::NotRunning)),
            Err(error) => {
                tracing::warn!(%advance_id, %error, "operator command failed");
                Err(ApiError::UpstreamUnavailable("Temporal".into()))
            }
        }
    }

    /// Whether Temporal answers for the namespace (the health check).
    pub async fn check(&self) -> anyhow::Result<()> {
        temporal::check(&self.client, &self.namespace).await
    }
}
