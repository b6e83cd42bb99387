//! The accounts-service: the only writer of balances.
//!
//! `main.rs` reads [`Settings`] and calls [`run`]. The wire format is `ledger-contract`'s; the shared HTTP
//! plumbing is `service-kit`'s; this crate keeps the ledger's routes, rules and SQL.

pub mod archive;
pub mod committer;
pub mod config;
pub mod db;
pub mod domain;
pub mod metrics;
pub mod openapi;
pub mod routes;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use ledger_contract::scopes;
use service_kit::auth::{scoped, Authenticator};
use service_kit::layers::{self, HttpPolicy};
use service_kit::limits::ClientLimiter;
use sqlx::PgPool;

use crate::committer::{BatchMetrics, BatchSettings, Committer};
use tokio::net::TcpListener;
use utoipa_swagger_ui::SwaggerUi;

pub use config::Settings;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Moves money: accounts, transfers, bank transactions, keys.
    pub pool: PgPool,
    /// Reports and downloads only (on the hot standby with `REPORT_DATABASE_URL`).
    pub report_pool: PgPool,
    /// Every account's book: statements and `as_of` (where the reports read, with generic plans).
    pub book_pool: PgPool,
    /// With reports on a standby: the primary's connections that save and load report snapshots.
    pub snapshot_writer: Option<PgPool>,
    pub settings: Arc<Settings>,
    pub metrics: Arc<metrics::Metrics>,
    pub auth: Authenticator,
    /// Report snapshots (page 1 without a token) per client.
    pub snapshots: ClientLimiter,
    /// Downloads per client.
    pub downloads: ClientLimiter,
    /// The group-commit queue for transfers, bank transactions and holds (`None` with `BATCH_COMMITTERS=0`).
    pub committer: Option<Committer>,
    /// Cold storage (`ARCHIVE_URL`): where statements read archived days.
    pub archive: Option<archive::Archive>,
    /// The event feed and the webhooks.
    pub events: events::Events,
}

impl AppState {
    /// Where an account's book is read: its own pool and the archive.
    pub fn book(&self) -> db::statements::Book<'_> {
        db::statements::Book { pool: &self.book_pool, archive: self.archive.as_ref() }
    }

    /// With reports on a standby: the primary and how long reads wait for the standby to catch up.
    pub fn replica(&self) -> Option<db::reports::Replica<'_>> {
        let wait = self.settings.report_replica_wait;
        self.snapshot_writer.as_ref().map(|primary| db::reports::Replica { primary, wait })
    }

    /// The time limit and metrics the common middleware applies.
    pub fn http_policy(&self) -> HttpPolicy {
        HttpPolicy { request_timeout: self.settings.request_timeout, metrics: self.metrics.http.clone() }
    }

    /// Bundles the connected pools with the settings, the clients' authenticator, the per-client limits, a
    /// fresh metrics registry and the committers (started on the current runtime).
    pub fn new(
        pool: PgPool,
        report_pool: PgPool,
        book_pool: PgPool,
        events_pool: PgPool,
        snapshot_writer: Option<PgPool>,
        settings: Settings,
    ) -> anyhow::Result<Self> {
        let auth = Authenticator::new(settings.auth, scopes::TOKEN_PREFIX, pool.clone(), settings.auth_cache_ttl);
        let per_client = settings.report_concurrency_per_client;
        let metrics = Arc::new(metrics::Metrics::new()?);
        let archive = settings.archive_url.as_deref().map(archive::Archive::open).transpose()?;
        let events = events::Events::new(
            events_pool,
            settings.events.clone(),
            &ledger_contract::events::ALL,
            Arc::new(db::ledger::TransactionSubjects),
            metrics.events.clone(),
            settings.request_timeout,
        );
        let committer = (settings.batch_committers > 0).then(|| {
            let batch = BatchSettings {
                committers: settings.batch_committers,
                max_batch: settings.batch_max,
                queue: settings.batch_max * settings.batch_committers * 4,
                key_wait: settings.idempotency_wait,
            };
            let batch_metrics =
                BatchMetrics { sizes: metrics.batch_size.clone(), waiting: metrics.batch_waiting.clone() };
            Committer::start(pool.clone(), batch, batch_metrics)
        });
        Ok(Self {
            pool,
            report_pool,
            book_pool,
            snapshot_writer,
            committer,
            archive,
            events,
            metrics,
            auth,
            snapshots: ClientLimiter::new("report snapshots", per_client, 1),
            downloads: ClientLimiter::new("downloads", per_client, 5),
            settings: Arc::new(settings),
        })
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let policy = state.http_policy();
    let api = Router::new()
        .route("/api/v1/accounts", scoped(post(routes::accounts::create_account), scopes::ACCOUNTS_WRITE))
        .route("/api/v1/accounts/{account_id}", scoped(get(routes::accounts::get_account), scopes::ACCOUNTS_READ))
        .route(
            "/api/v1/accounts/{account_id}/statement",
            scoped(get(routes::statements::statement), scopes::ACCOUNTS_READ),
        )
        .route(
            "/api/v1/accounts/{account_id}/statement/export",
            scoped(get(routes::statements::export_statement), scopes::ACCOUNTS_READ),
        )
        .route("/api/v1/transaction", scoped(post(routes::transactions::create_transfer), scopes::TRANSFERS_WRITE))
        .route(
            "/api/v1/bank_transactions",
            scoped(post(routes::transactions::create_bank_transaction), scopes::BANK_WRITE),
        )
        .route("/api/v1/holds", scoped(post(routes::holds::place_hold), scopes::TRANSFERS_WRITE))
        .route("/api/v1/holds/{hold_id}", scoped(get(routes::holds::get_hold), scopes::ACCOUNTS_READ))
        .route("/api/v1/holds/{hold_id}/capture", scoped(post(routes::holds::capture_hold), scopes::TRANSFERS_WRITE))
        .route("/api/v1/holds/{hold_id}/void", scoped(post(routes::holds::void_hold), scopes::TRANSFERS_WRITE))
        .route("/api/v1/transactions", scoped(get(routes::reports::list_transactions), scopes::REPORTS_READ))
        .route("/api/v1/transactions/export", scoped(get(routes::reports::export_transactions), scopes::REPORTS_READ))
        .route(
            "/api/v1/transactions/by_key",
            scoped(get(routes::transactions::transactions_by_key), scopes::ACCOUNTS_READ),
        )
        .route(
            "/api/v1/transactions/by_keys",
            scoped(post(routes::transactions::transactions_by_keys), scopes::ACCOUNTS_READ),
        )
        .merge(events::routes::router(state.events.clone()))
        // Any client may read the spec.
        .route("/api/v1/openapi.json", get(|| async { axum::Json(openapi::document()) }));
    // The docs page and its copy of the spec are public: the spec describes the API and holds no data.
    let docs = SwaggerUi::new("/docs").url("/docs/openapi.json", openapi::document());
    let router = Router::new()
        .merge(layers::protect(api, &state.auth))
        .merge(docs)
        .route("/health", get(routes::system::health))
        .route("/metrics", get(routes::system::metrics));
    layers::standard_layers(router, &policy).with_state(state)
}

/// Connects, migrates, and serves on `listener` until `shutdown` completes; then lets in-flight requests
/// finish for at most `SHUTDOWN_GRACE`.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Every setting, for the operator reading the log; secrets print as `Secret([redacted])`.
    tracing::info!(?settings, "accounts-service starting");
    let pool = db::connect(&settings).await?;
    db::MIGRATOR.run(&pool).await?;
    let report_pool = db::connect_reports(&settings).await?;
    let book_pool = db::connect_book(&settings).await?;
    let events_pool = db::connect_events(&settings).await?;
    let snapshot_writer = db::connect_snapshot_writer(&settings).await?;
    let state = AppState::new(
        pool.clone(),
        report_pool.clone(),
        book_pool.clone(),
        events_pool.clone(),
        snapshot_writer.clone(),
        settings.clone(),
    )?;
    match db::partitions::create_ahead(&pool).await {
        Ok(created) => tracing::info!(created, "daily partitions of transactions are ready"),
        Err(error) => tracing::warn!(error = %error, "creating daily partitions failed; will retry"),
    }
    let janitor = tokio::spawn(purge_periodically(pool.clone(), settings.clone(), state.archive.clone()));
    let sealer = tokio::spawn(seal_periodically(pool.clone(), settings.report_seal_interval, state.metrics.clone()));
    let expiry = tokio::spawn(expire_holds_periodically(pool.clone(), settings.clone(), state.metrics.clone()));
    let event_workers = state.events.start_workers();
    tracing::info!(addr = %listener.local_addr()?, "accounts-service listening");
    let served = service_kit::serve::serve(listener, app(state), shutdown, settings.server).await;
    janitor.abort();
    sealer.abort();
    expiry.abort();
    event_workers.iter().for_each(|worker| worker.abort());
    pool.close().await;
    report_pool.close().await;
    book_pool.close().await;
    events_pool.close().await;
    if let Some(writer) = snapshot_writer {
        writer.close().await;
    }
    served
}

/// Forgets idempotency keys and report snapshots past their time to live, creates the coming days'
/// partitions, and archives the days past `HOT_RETENTION_DAYS` (with `ARCHIVE_URL`), every 10 minutes.
async fn purge_periodically(pool: PgPool, settings: Settings, archive: Option<archive::Archive>) {
    let mut interval = tokio::time::interval(Duration::from_secs(600));
    loop {
        interval.tick().await;
        match db::partitions::create_ahead(&pool).await {
            Ok(created) if created > 0 => tracing::info!(created, "created daily partitions of transactions"),
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %error, "creating daily partitions failed; will retry"),
        }
        match db::purge_expired(&pool, settings.idempotency_key_ttl, settings.report_snapshot_ttl).await {
            Ok((keys, snapshots)) if keys + snapshots > 0 => tracing::info!(keys, snapshots, "purged expired rows"),
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %error, "purging expired rows failed; will retry"),
        }
        if let Some(archive) = &archive {
            let days = settings.hot_retention_days;
            if let Err(error) = archive::archive_due(&pool, archive, days, settings.archive_stop_after).await {
                tracing::error!(error = %format!("{error:#}"), "archiving failed; nothing was dropped that was not verified, will retry");
            }
        }
    }
}

/// Releases the pending holds past their time, every `HOLD_EXPIRY_INTERVAL`, and reports how late the oldest
/// one still pending is. Every instance runs it; two that expire the same hold wait for each other on its lock,
/// and the second finds it ended.
async fn expire_holds_periodically(pool: PgPool, settings: Settings, metrics: Arc<metrics::Metrics>) {
    let mut ticks = tokio::time::interval(settings.hold_expiry_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let expiries = metrics.ledger_transactions.with_label_values(&["expiry", "success"]);
    loop {
        ticks.tick().await;
        // On a task of its own, so that even a panic (a broken invariant) costs one pass, not every later one.
        let pass = tokio::spawn({
            let (pool, wait) = (pool.clone(), settings.idempotency_wait);
            async move { db::holds::expire_due(&pool, wait).await }
        });
        match pass.await {
            Ok(Ok(0)) => {}
            Ok(Ok(expired)) => {
                expiries.inc_by(expired as u64);
                tracing::info!(expired, "released holds past their time");
            }
            Ok(Err(error)) => tracing::warn!(error = %error, "expiring holds failed; will retry"),
            Err(error) => tracing::error!(error = %error, "an expiry pass panicked; will retry"),
        }
        match db::holds::overdue(&pool).await {
            Ok(overdue) => metrics.holds_overdue.set(overdue.as_secs_f64()),
            Err(error) => tracing::warn!(error = %error, "reading the holds past their time failed"),
        }
    }
}

/// Moves the report seal forward: every `interval` it seals up to the candidate it took one tick before, once
/// that candidate is ready (an older transaction still running keeps it waiting, and the check costs one
/// query a tick), then takes the next candidate. The frontier thus trails the clock by one to two intervals.
async fn seal_periodically(pool: PgPool, interval: Duration, metrics: Arc<metrics::Metrics>) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Option<db::seal::Candidate> = None;
    loop {
        ticks.tick().await;
        let step = async {
            let mut conn = pool.acquire().await?;
            if let Some(candidate) = &pending {
                if !db::seal::ready(&mut conn, candidate).await? {
                    tracing::debug!("an older database transaction is still running; the report seal waits");
                    return Ok(());
                }
                db::seal::seal_to(&mut conn, candidate).await?;
            }
            pending = Some(db::seal::candidate(&mut conn).await?);
            Ok::<_, db::DbError>(())
        };
        if let Err(error) = step.await {
            tracing::warn!(error = %error, "moving the report seal failed; will retry");
        }
        if let Ok(state) = db::seal::state(&pool).await {
            let lag = chrono::Utc::now() - state.frontier;
            metrics.seal_lag.set(lag.num_milliseconds() as f64 / 1000.0);
        }
    }
}
