//! Connecting to Temporal, and what the server must have before advances run: search attributes and the
//! reconciliation Schedule. Process wiring for the API and the worker; workflow code never calls it.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use temporalio_client::envconfig::LoadClientConfigProfileOptions;
use temporalio_client::errors::WorkflowInteractionError;
use temporalio_client::schedules::{CreateScheduleOptions, ScheduleAction, ScheduleSpec};
use temporalio_client::tonic::{Code, Request};
use temporalio_client::{Client, ClientOptions, ConnectionOptions, WorkflowDescribeOptions, WorkflowExecutionStatus};
use temporalio_common::envconfig::load_client_config_profile;
use temporalio_common::protos::temporal::api::enums::v1::IndexedValueType;
use temporalio_common::protos::temporal::api::operatorservice::v1::{
    AddSearchAttributesRequest, ListSearchAttributesRequest,
};

use crate::{search, ReconcileWorkflow};

/// The variables of the Temporal SDKs' own environment configuration that we pass through (the same names
/// as every Temporal SDK and the `temporal` CLI): where the server is, TLS, mTLS and an API key.
pub const SDK_VARIABLES: [&str; 14] = [
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_API_KEY",
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_CERT_DATA",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_DATA",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_SERVER_CA_CERT_DATA",
    "TEMPORAL_TLS_SERVER_NAME",
    "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION",
    "TEMPORAL_CONFIG_FILE",
    "TEMPORAL_PROFILE",
];

/// Where Temporal is, how to reach it safely, and which queue the advances use.
#[derive(Clone)]
pub struct TemporalSettings {
    /// The frontend (`TEMPORAL_ADDRESS`, default `localhost:7233`), for logs.
    pub address: String,
    /// `TEMPORAL_NAMESPACE`, default `default`.
    pub namespace: String,
    /// `TEMPORAL_TASK_QUEUE`, default `advances`.
    pub task_queue: String,
    /// The connection as the SDK's environment configuration describes it: target, TLS (a CA, a client
    /// certificate and key for mTLS, a server name) and an API key (which turns TLS on, as Temporal Cloud needs).
    connection: ConnectionOptions,
}

/// Never prints the API key or the client key.
impl std::fmt::Debug for TemporalSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporalSettings")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .field("task_queue", &self.task_queue)
            .field("tls", &self.tls())
            .field("mtls", &self.mtls())
            .field("api_key", &self.connection.api_key.as_ref().map(|_| "(set)"))
            .finish()
    }
}

impl TemporalSettings {
    /// Reads [`SDK_VARIABLES`] and `TEMPORAL_TASK_QUEUE` through `lookup`, with the SDK's own rules: TLS is on
    /// when any `TEMPORAL_TLS_*` is set or an API key is, unless `TEMPORAL_TLS=false`; a file is read only
    /// when `TEMPORAL_CONFIG_FILE` names one.
    pub fn read(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let mut env: HashMap<String, String> =
            SDK_VARIABLES.iter().filter_map(|name| Some(((*name).to_owned(), lookup(name)?))).collect();
        let address = env.entry("TEMPORAL_ADDRESS".to_owned()).or_insert_with(|| "localhost:7233".to_owned()).clone();
        let options =
            LoadClientConfigProfileOptions::builder().disable_file(!env.contains_key("TEMPORAL_CONFIG_FILE")).build();
        let profile = load_client_config_profile(options, Some(&env))
            .map_err(|error| anyhow::anyhow!("reading Temporal's settings: {error:?}"))?;
        let namespace = profile.namespace.clone().unwrap_or_else(|| "default".to_owned());
        let connection = ConnectionOptions::try_from(profile)
            .map_err(|error| anyhow::anyhow!("reading Temporal's settings: {error:?}"))?;
        Ok(Self {
            address,
            namespace,
            task_queue: lookup("TEMPORAL_TASK_QUEUE").unwrap_or_else(|| crate::TASK_QUEUE.to_owned()),
            connection,
        })
    }

    /// The defaults, with the frontend at `address` (a test's or a benchmark's own dev server).
    pub fn at(address: &str) -> anyhow::Result<Self> {
        Self::read(|name| (name == "TEMPORAL_ADDRESS").then(|| address.to_owned()))
    }

    /// Whether the connection uses TLS.
    pub fn tls(&self) -> bool {
        self.connection.tls_options.is_some()
    }

    /// Whether the connection presents a client certificate (mTLS).
    pub fn mtls(&self) -> bool {
        self.connection.tls_options.as_ref().is_some_and(|tls| tls.client_tls_options.is_some())
    }
}

/// Connects a namespace-bound client, retrying for up to `patience` (the server may still be starting).
pub async fn connect(settings: &TemporalSettings, identity: &str, patience: Duration) -> anyhow::Result<Client> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let mut options = settings.connection.clone();
        options.identity = identity.to_owned();
        options.connect_timeout = Some(Duration::from_secs(5));
        match Client::connect(options, ClientOptions::new(settings.namespace.clone()).build()).await {
            Ok(client) => return Ok(client),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(address = %settings.address, %error, "Temporal is not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error).context(format!("cannot connect to Temporal at {}", settings.address)),
        }
    }
}

/// Registers the advances' search attributes in the namespace when they are missing (a dev server started
/// without `--search-attribute` flags, or a fresh cluster).
pub async fn ensure_search_attributes(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let existing = client
        .connection()
        .operator_service()
        .list_search_attributes(Request::new(ListSearchAttributesRequest { namespace: namespace.to_owned() }))
        .await
        .context("listing search attributes")?
        .into_inner()
        .custom_attributes;
    let missing: HashMap<String, i32> = search::NAMES
        .iter()
        .filter(|name| !existing.contains_key(**name))
        .map(|name| ((*name).to_owned(), IndexedValueType::Keyword as i32))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let request = AddSearchAttributesRequest { search_attributes: missing.clone(), namespace: namespace.to_owned() };
    match client.connection().operator_service().add_search_attributes(Request::new(request)).await {
        Ok(_) => {
            tracing::info!(?missing, "registered search attributes");
            Ok(())
        }
        // Another process registered them first.
        Err(status) if status.code() == Code::AlreadyExists => Ok(()),
        Err(status) => Err(status).context("registering search attributes"),
    }
}

/// Creates the reconciliation Schedule when it does not exist yet. An existing one is left as it is, so an
/// operator's changes (a new interval, a pause) survive a worker restart.
pub async fn ensure_reconcile_schedule(
    client: &Client,
    schedule_id: &str,
    task_queue: &str,
    interval: Duration,
) -> anyhow::Result<()> {
    let options = CreateScheduleOptions::builder()
        .action(ScheduleAction::start_workflow(ReconcileWorkflow::run, (), task_queue, format!("{schedule_id}-run")))
        .spec(ScheduleSpec::from_interval(interval))
        .note(format!("Checks every open advance against the ledger every {interval:?}; created by advances-worker"))
        .build();
    match client.create_schedule(schedule_id, options).await {
        Ok(_) => {
            tracing::info!(schedule_id, ?interval, "created the reconciliation schedule");
            Ok(())
        }
        Err(temporalio_client::schedules::ScheduleError::Rpc(status)) if status.code() == Code::AlreadyExists => {
            tracing::info!(schedule_id, "the reconciliation schedule exists");
            Ok(())
        }
        Err(error) => Err(error).context("creating the reconciliation schedule"),
    }
}

/// Why an advance's workflow is not running, as Temporal says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRunning {
    /// Temporal does not know the workflow (never started, or past its retention).
    Missing,
    /// It closed: `completed`, `failed`, `canceled`, `terminated`, `continued as new`, `timed out`.
    Closed(String),
}

impl std::fmt::Display for NotRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("no such workflow"),
            Self::Closed(status) => f.write_str(status),
        }
    }
}

/// What Temporal says of an advance's workflow when it is not running: `None` while it runs. Both
/// reconciliation and the API ask it, because a query still answers from a closed workflow's last state.
pub async fn advance_not_running(client: &Client, advance_id: uuid::Uuid) -> anyhow::Result<Option<NotRunning>> {
    let handle = client.get_workflow_handle::<crate::AdvanceWorkflow>(crate::workflow_id(advance_id));
    let status = match handle.describe(WorkflowDescribeOptions::default()).await {
        Ok(description) => description.status(),
        Err(WorkflowInteractionError::NotFound(_)) => return Ok(Some(NotRunning::Missing)),
        Err(error) => return Err(error).context("describing the advance's workflow"),
    };
    let closed = |status: &str| Some(NotRunning::Closed(status.to_owned()));
    Ok(match status {
        WorkflowExecutionStatus::Running => None,
        WorkflowExecutionStatus::Completed => closed("completed"),
        WorkflowExecutionStatus::Failed => closed("failed"),
        WorkflowExecutionStatus::Canceled => closed("canceled"),
        WorkflowExecutionStatus::Terminated => closed("terminated"),
        WorkflowExecutionStatus::ContinuedAsNew => closed("continued as new"),
        WorkflowExecutionStatus::TimedOut => closed("timed out"),
        other => closed(&format!("{other:?}").to_lowercase()),
    })
}

/// Whether the server answers for the namespace.
pub async fn check(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let mut request = Request::new(ListSearchAttributesRequest { namespace: namespace.to_owned() });
    request.set_timeout(Duration::from_secs(3));
    client.connection().operator_service().list_search_attributes(request).await.context("Temporal does not answer")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> anyhow::Result<TemporalSettings> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        TemporalSettings::read(|name| pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn plain_by_default_with_the_sdks_defaults() -> anyhow::Result<()> {
        let settings = read(&[])?;
        assert_eq!((settings.address.as_str(), settings.namespace.as_str()), ("localhost:7233", "default"));
        assert_eq!(settings.task_queue, "advances");
        assert!(!settings.tls());
        assert_eq!(settings.connection.target.scheme(), "http");
        Ok(())
    }

    #[test]
    fn an_api_key_turns_tls_on_and_is_never_printed() -> anyhow::Result<()> {
        let settings = read(&[("TEMPORAL_ADDRESS", "ns.acct.tmprl.cloud:7233"), ("TEMPORAL_API_KEY", "secret-key")])?;
        assert!(settings.tls() && !settings.mtls());
        assert_eq!(settings.connection.target.scheme(), "https");
        assert_eq!(settings.connection.api_key.as_deref(), Some("secret-key"));
        assert!(!format!("{settings:?}").contains("secret-key"));
        let off = read(&[("TEMPORAL_API_KEY", "k"), ("TEMPORAL_TLS", "false")])?;
        assert!(!off.tls(), "TEMPORAL_TLS=false wins");
        Ok(())
    }

    #[test]
    fn a_ca_and_a_client_pair_make_mutual_tls_and_half_a_pair_is_refused() -> anyhow::Result<()> {
        let settings = read(&[
            ("TEMPORAL_TLS_SERVER_CA_CERT_DATA", "ca"),
            ("TEMPORAL_TLS_CLIENT_CERT_DATA", "cert"),
            ("TEMPORAL_TLS_CLIENT_KEY_DATA", "key"),
            ("TEMPORAL_TLS_SERVER_NAME", "temporal.internal"),
        ])?;
        assert!(settings.tls() && settings.mtls());
        let tls = settings.connection.tls_options.clone().unwrap_or_default();
        assert_eq!(tls.server_root_ca_cert.as_deref(), Some(&b"ca"[..]));
        assert_eq!(tls.domain.as_deref(), Some("temporal.internal"));
        assert!(read(&[("TEMPORAL_TLS_CLIENT_CERT_DATA", "cert")]).is_err());
        assert!(read(&[("TEMPORAL_TLS_SERVER_CA_CERT_PATH", "/nonexistent/ca.pem")]).is_err());
        Ok(())
    }
}
