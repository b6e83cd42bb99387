//! Connecting to Temporal, and what the server must have before advances run: search attributes and the
//! reconciliation Schedule. Process wiring for the API and the worker; workflow code never calls it.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use temporalio_client::schedules::{CreateScheduleOptions, ScheduleAction, ScheduleSpec};
use temporalio_client::tonic::{Code, Request};
use temporalio_client::{Client, ClientOptions, ConnectionOptions};
use temporalio_common::protos::temporal::api::enums::v1::IndexedValueType;
use temporalio_common::protos::temporal::api::operatorservice::v1::{
    AddSearchAttributesRequest, ListSearchAttributesRequest,
};

use crate::{search, ReconcileWorkflow};

/// Where Temporal is and which queue the advances use.
#[derive(Debug, Clone)]
pub struct TemporalSettings {
    /// `host:port` of the frontend (`TEMPORAL_ADDRESS`, default `localhost:7233`).
    pub address: String,
    /// `TEMPORAL_NAMESPACE`, default `default`.
    pub namespace: String,
    /// `TEMPORAL_TASK_QUEUE`, default `advances`.
    pub task_queue: String,
}

impl TemporalSettings {
    /// Reads `TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE` and `TEMPORAL_TASK_QUEUE` through `var(name, default)`.
    pub fn read(var: impl Fn(&str, &str) -> String) -> Self {
        Self {
            address: var("TEMPORAL_ADDRESS", "localhost:7233"),
            namespace: var("TEMPORAL_NAMESPACE", "default"),
            task_queue: var("TEMPORAL_TASK_QUEUE", crate::TASK_QUEUE),
        }
    }

    /// The defaults, with the frontend at `address` (a test's or a benchmark's own dev server).
    pub fn at(address: &str) -> Self {
        Self::read(|name, default| if name == "TEMPORAL_ADDRESS" { address.to_owned() } else { default.to_owned() })
    }
}

/// Connects a namespace-bound client, retrying for up to `patience` (the server may still be starting).
pub async fn connect(settings: &TemporalSettings, identity: &str, patience: Duration) -> anyhow::Result<Client> {
    let target = if settings.address.contains("://") {
        settings.address.clone()
    } else {
        format!("http://{}", settings.address)
    };
    let url = url::Url::parse(&target)
        .with_context(|| format!("TEMPORAL_ADDRESS {:?} is not host:port", settings.address))?;
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let options = ConnectionOptions::new(url.clone())
            .identity(identity.to_owned())
            .connect_timeout(Duration::from_secs(5))
            .build();
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

/// Whether the server answers for the namespace.
pub async fn check(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let mut request = Request::new(ListSearchAttributesRequest { namespace: namespace.to_owned() });
    request.set_timeout(Duration::from_secs(3));
    client.connection().operator_service().list_search_attributes(request).await.context("Temporal does not answer")?;
    Ok(())
}
