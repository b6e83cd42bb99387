//! The `advances-api`: start, inspect and command advances over REST.
//!
//! The workflow is the source of truth while an advance runs (its query answers `GET`); the `advances`
//! database answers once it has closed, and for lists. The same error format, money rules, client credentials,
//! docs page, `/health` and `/metrics` as the accounts-service.
//!
//! - [`routes`]: the handlers, one module per resource; [`views`]: the JSON shapes; [`openapi`]: the document;
//! - [`state`]: what every handler can reach; [`gateway`]: every call to Temporal;
//! - [`config`]: the settings; [`scopes`]: what each client may do;
//! - [`product_command`]: `advances-api product add|list|retire` (the API only reads products).
//!
//! The worker that runs the workflows is another process (`advances-worker`, in `activities/`).

pub mod config;
pub mod gateway;
pub mod openapi;
pub mod product_command;
pub mod routes;
pub mod scopes;
pub mod state;
pub mod views;

use std::future::Future;
use std::time::Duration;

use advances_store::Store;
use advances_workflows::temporal;
use axum::routing::{get, post};
use axum::{Json, Router};
use service_kit::auth::scoped;
use service_kit::layers;
use tokio::net::TcpListener;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::ApiSettings;
use crate::gateway::Gateway;
use crate::routes::{advances, alerts, book, commands, servicing, system};
use crate::state::ApiState;

/// The whole HTTP application.
pub fn app(state: ApiState) -> Router {
    let policy = state.policy();
    let api = Router::new()
        .route(
            "/api/v1/advances",
            scoped(post(advances::create_advance), scopes::ADVANCES_WRITE)
                .merge(scoped(get(advances::list_advances), scopes::ADVANCES_READ)),
        )
        .route("/api/v1/advances/{advance_id}", scoped(get(advances::get_advance), scopes::ADVANCES_READ))
        .route("/api/v1/advances/{advance_id}/cancel", scoped(post(commands::cancel_advance), scopes::ADVANCES_OPERATE))
        .route(
            "/api/v1/advances/{advance_id}/pay_off",
            scoped(post(commands::pay_off_advance), scopes::ADVANCES_OPERATE),
        )
        .route("/api/v1/advances/{advance_id}/pause", scoped(post(commands::pause_advance), scopes::ADVANCES_OPERATE))
        .route("/api/v1/advances/{advance_id}/resume", scoped(post(commands::resume_advance), scopes::ADVANCES_OPERATE))
        .route(
            "/api/v1/advances/{advance_id}/reschedule",
            scoped(post(servicing::reschedule_advance), scopes::ADVANCES_OPERATE),
        )
        .route(
            "/api/v1/advances/{advance_id}/prepay",
            scoped(post(servicing::prepay_advance), scopes::ADVANCES_OPERATE),
        )
        .route(
            "/api/v1/advances/{advance_id}/write_off",
            scoped(post(servicing::write_off_advance), scopes::ADVANCES_OPERATE),
        )
        .route(
            "/api/v1/advances/{advance_id}/payoff_quote",
            scoped(get(servicing::payoff_quote), scopes::ADVANCES_OPERATE),
        )
        .route("/api/v1/alerts", scoped(get(alerts::list_alerts), scopes::ALERTS_READ))
        .route("/api/v1/products", scoped(get(book::list_products), scopes::ADVANCES_READ))
        .route("/api/v1/exposure", scoped(get(book::exposure), scopes::ADVANCES_REPORT))
        .merge(events::routes::router(state.events.clone()))
        .route("/api/v1/openapi.json", get(|| async { Json(openapi::document()) }));
    let docs = SwaggerUi::new("/docs").url("/docs/openapi.json", openapi::document());
    let router = Router::new()
        .merge(layers::protect(api, &state.auth))
        .merge(docs)
        .route("/health", get(system::health))
        .route("/metrics", get(system::metrics));
    layers::standard_layers(router, &policy).with_state(state)
}

/// Connects to the database and Temporal, then serves on `listener` until `shutdown` completes.
pub async fn run(
    settings: ApiSettings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let pool = advances_store::connect(settings.database_url.expose(), 16).await?;
    // Not fatal (an operator may add it next), but every request that names no product is refused until then.
    match advances_store::products::find(&pool, &settings.default_product).await? {
        Some(product) if product.retired_at.is_none() => {}
        found => tracing::warn!(
            product = %settings.default_product,
            state = if found.is_some() { "retired" } else { "missing" },
            "DEFAULT_PRODUCT does not lend: requests that name no product get 422 unknown_product \
             (add one with `advances-api product add`)"
        ),
    }
    let client = temporal::connect(&settings.temporal, "advances-api", Duration::from_secs(60)).await?;
    temporal::ensure_search_attributes(&client, &settings.temporal.namespace).await?;
    let (namespace, task_queue) = (settings.temporal.namespace.clone(), settings.temporal.task_queue.clone());
    let gateway = Gateway::new(client, namespace, task_queue, settings.grant_wait);
    let limits = settings.server;
    let state = ApiState::new(settings, Store::new(pool.clone()), gateway)?;
    // The worker writes events too (with every mirrored state); this process serves and delivers them.
    let event_workers = state.events.start_workers();
    tracing::info!(addr = %listener.local_addr()?, "advances-api listening");
    let served = service_kit::serve::serve(listener, app(state), shutdown, limits).await;
    event_workers.iter().for_each(|worker| worker.abort());
    pool.close().await;
    served
}
