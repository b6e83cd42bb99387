//! The `advances-worker`: runs AdvanceWorkflow, ReconcileWorkflow and their activities on the task queue,
//! and serves `/health` and `/metrics` for operators.

use std::future::Future;
use std::time::Duration;

use advances_store::Store;
use advances_workflows::temporal;
use advances_workflows::{AdvanceWorkflow, ReconcileWorkflow};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use ledger_contract::LedgerClient;
use service_kit::health;
use temporalio_client::Client;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tokio::net::TcpListener;

use crate::config::WorkerSettings;
use crate::{Activities, ActivityMetrics};

#[derive(Clone)]
struct Ops {
    pool: sqlx::PgPool,
    metrics: ActivityMetrics,
}

async fn serve_health(State(ops): State<Ops>) -> Response {
    health::database_only(&ops.pool).await
}

async fn serve_metrics(State(ops): State<Ops>) -> Response {
    service_kit::metrics::metrics_response(&ops.metrics.registry).into_response()
}

/// Connects to the database and Temporal, makes sure the search attributes and the reconciliation Schedule
/// exist, then polls the task queue until `shutdown` completes. Must be driven on the current task (the
/// SDK's worker future is not `Send`).
pub async fn run(settings: WorkerSettings, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let pool = advances_store::connect(settings.database_url.expose(), 8).await?;
    let identity = format!("advances-worker@{}", std::process::id());
    let client = temporal::connect(&settings.temporal, &identity, Duration::from_secs(60)).await?;
    temporal::ensure_search_attributes(&client, &settings.temporal.namespace).await?;
    temporal::ensure_reconcile_schedule(
        &client,
        &settings.reconcile_schedule_id,
        &settings.temporal.task_queue,
        settings.reconcile_interval,
    )
    .await?;

    let metrics = ActivityMetrics::new()?;
    let activities = Activities {
        ledger: LedgerClient::with_ca(
            settings.accounts_url.expose(),
            settings.accounts_api_token.as_ref().map(|token| token.expose().to_owned()),
            settings.accounts_timeout,
            settings.accounts_ca.as_deref(),
        )?,
        store: Store::new(pool.clone()),
        metrics: metrics.clone(),
    };
    let listener = TcpListener::bind(settings.metrics_addr).await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let mut worker =
        new_worker(&runtime, client, &settings.temporal.task_queue, settings.max_cached_workflows, activities)?;

    // Healthy only from here: the worker exists and starts polling at once (on a loaded machine creating it has
    // taken seconds, and a health check that answered before would let a caller think advances get picked up).
    let ops = Router::new()
        .route("/health", get(serve_health))
        .route("/metrics", get(serve_metrics))
        .with_state(Ops { pool: pool.clone(), metrics });
    // The operators' port gets the same limits as the services' (header timeout, connection cap).
    let ops_server =
        tokio::spawn(service_kit::serve::serve(listener, ops, std::future::pending(), settings.ops_server));
    tracing::info!(
        task_queue = %settings.temporal.task_queue,
        max_cached_workflows = settings.max_cached_workflows,
        namespace = %settings.temporal.namespace,
        metrics_addr = %settings.metrics_addr,
        "advances-worker polling"
    );
    let result = run_until(&mut worker, shutdown).await;
    ops_server.abort();
    pool.close().await;
    result
}

/// A worker for the advances' workflows and activities on `task_queue`, keeping up to `max_cached` workflows
/// in memory between their tasks.
pub fn new_worker(
    runtime: &Runtime,
    client: Client,
    task_queue: &str,
    max_cached: usize,
    activities: Activities,
) -> anyhow::Result<Worker> {
    let options = WorkerOptions::new(task_queue.to_owned())
        .max_cached_workflows(max_cached)
        .register_workflow::<AdvanceWorkflow>()?
        .register_workflow::<ReconcileWorkflow>()?
        .register_activities(activities)
        .graceful_shutdown_period(Duration::from_secs(10))
        .build();
    Ok(Worker::new(runtime, client, options)?)
}

/// Polls until `shutdown` completes, then lets the tasks in flight finish.
pub async fn run_until(worker: &mut Worker, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let stop = worker.shutdown_handle();
    let run = worker.run();
    tokio::pin!(run);
    tokio::pin!(shutdown);
    let result = tokio::select! {
        result = &mut run => result,
        () = &mut shutdown => {
            tracing::info!("shutting down: finishing tasks in flight");
            stop();
            run.await
        }
    };
    result.map_err(Into::into)
}
