//! The accounts-service: the only writer of balances.
//!
//! `main.rs` reads [`Settings`] and calls [`run`]; tests build the router with [`app`] or run the whole
//! service on a port of their own.

pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod views;

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub use config::Settings;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    pub metrics: Arc<metrics::Metrics>,
}

impl AppState {
    /// The token, time limit and metrics the common middleware applies.
    pub fn http_policy(&self) -> http::HttpPolicy {
        http::HttpPolicy {
            api_token: self.settings.api_token.clone(),
            request_timeout: self.settings.request_timeout,
            metrics: self.metrics.http.clone(),
        }
    }

    /// Bundles a connected pool with the settings and a fresh metrics registry.
    pub fn new(pool: PgPool, settings: Settings) -> anyhow::Result<Self> {
        Ok(Self { pool, settings: Arc::new(settings), metrics: Arc::new(metrics::Metrics::new()?) })
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let policy = state.http_policy();
    let api = Router::new()
        .route("/api/v1/accounts", post(routes::accounts::create_account))
        .route("/api/v1/accounts/{account_id}", get(routes::accounts::get_account))
        .route("/api/v1/transaction", post(routes::transactions::create_transfer))
        .route("/api/v1/bank_transactions", post(routes::transactions::create_bank_transaction))
        .route("/api/v1/transactions", get(routes::reports::list_transactions))
        .route("/api/v1/transactions/export", get(routes::reports::export_transactions))
        .route("/api/v1/transactions/by_key", get(routes::transactions::transactions_by_key))
        .route("/api/v1/openapi.json", get(|| async { axum::Json(openapi::ApiDoc::openapi()) }));
    // The docs page and its copy of the spec are public: the spec describes the API and holds no data.
    let docs = SwaggerUi::new("/docs").url("/docs/openapi.json", openapi::ApiDoc::openapi());
    let router = Router::new()
        .merge(http::protect(api, &policy))
        .merge(docs)
        .route("/health", get(routes::system::health))
        .route("/metrics", get(routes::system::metrics));
    http::standard_layers(router, &policy).with_state(state)
}

/// Connects, migrates, and serves on `listener` until `shutdown` completes; then lets in-flight requests
/// finish for at most `SHUTDOWN_GRACE`.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let pool = db::connect(&settings).await?;
    db::MIGRATOR.run(&pool).await?;
    let state = AppState::new(pool.clone(), settings.clone())?;
    let janitor = tokio::spawn(purge_periodically(pool.clone(), settings.clone()));
    tracing::info!(addr = %listener.local_addr()?, "accounts-service listening");
    let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app(state)).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        let _ = stopping_tx.send(true);
    });
    let grace = settings.shutdown_grace;
    let deadline = async move {
        let _ = stopping_rx.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server.into_future() => result?,
        () = deadline => tracing::warn!(grace_s = grace.as_secs(), "requests still in flight after the grace period were dropped"),
    }
    janitor.abort();
    pool.close().await;
    Ok(())
}

/// Forgets idempotency keys and report snapshots past their time to live, every 10 minutes.
async fn purge_periodically(pool: PgPool, settings: Settings) {
    let mut interval = tokio::time::interval(Duration::from_secs(600));
    loop {
        interval.tick().await;
        match db::purge_expired(&pool, settings.idempotency_key_ttl, settings.report_snapshot_ttl).await {
            Ok((keys, snapshots)) if keys + snapshots > 0 => tracing::info!(keys, snapshots, "purged expired rows"),
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %error, "purging expired rows failed; will retry"),
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Structured logs: JSON lines when `LOG_FORMAT=json`, readable text otherwise; level from `RUST_LOG`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json") {
        builder.json().flatten_event(true).with_current_span(true).init();
    } else {
        builder.init();
    }
}
