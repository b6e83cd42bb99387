//! The `advances-api`: start, inspect and command advances over REST.
//!
//! The workflow is the source of truth while an advance runs (its query answers `GET`); the `advances`
//! database answers once it has closed, and for lists. The same error format, money rules, client credentials,
//! docs page, `/health` and `/metrics` as the accounts-service.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use advances_model::{Advance, AdvanceStatus, AdvanceTerms};
use advances_store::{Registered, Store};
use advances_workflows::{search, temporal, workflow_id, AdvanceInput, AdvanceWorkflow};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ledger_contract::{LedgerClient, LedgerError};
use prometheus::Registry;
use serde::{Deserialize, Serialize};
use service_kit::auth::{scoped, Authenticator, Caller};
use service_kit::extract::{ApiJson, ApiPath, ApiQuery, OptionalIdempotencyKey};
use service_kit::layers::{self, HttpPolicy};
use service_kit::metrics::HttpMetrics;
use service_kit::openapi::{BearerAuth, CommonResponses};
use service_kit::{health, ApiError, ApiResult, ErrorBody};
use temporalio_client::errors::{WorkflowStartError, WorkflowUpdateError, WorkflowUpdateWithStartError};
use temporalio_client::{
    Client, RpcOptions, WorkflowExecuteUpdateOptions, WorkflowIdConflictPolicy, WorkflowIdReusePolicy,
    WorkflowQueryOptions, WorkflowUpdateWithStartOptions,
};
use temporalio_common::search_attributes::SearchAttributes;
use tokio::net::TcpListener;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;
use uuid::Uuid;

use crate::config::ApiSettings;
use crate::scopes;
use crate::views::{AdvanceList, AdvanceView, AlertList, AlertView, CommandRequest, CreateAdvanceRequest};

/// The most advances or alerts one list returns.
pub const MAX_LIMIT: i64 = 1000;
const DEFAULT_LIMIT: i64 = 100;
const MAX_REASON_CHARS: usize = 500;
/// How long a query to a running workflow may take before the database's copy answers instead.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub settings: Arc<ApiSettings>,
    pub store: Store,
    pub temporal: Client,
    pub ledger: LedgerClient,
    pub registry: Registry,
    pub http: HttpMetrics,
    pub auth: Authenticator,
}

impl ApiState {
    pub fn new(settings: ApiSettings, store: Store, temporal: Client) -> anyhow::Result<Self> {
        let ledger = LedgerClient::with_ca(
            settings.accounts_url.expose(),
            settings.accounts_api_token.as_ref().map(|token| token.expose().to_owned()),
            Duration::from_secs(5),
            settings.accounts_ca.as_deref(),
        )?;
        let registry = Registry::new();
        let http = HttpMetrics::register(&registry)?;
        let auth =
            Authenticator::new(settings.auth, scopes::TOKEN_PREFIX, store.pool().clone(), settings.auth_cache_ttl);
        Ok(Self { settings: Arc::new(settings), store, temporal, ledger, registry, http, auth })
    }

    fn policy(&self) -> HttpPolicy {
        HttpPolicy { request_timeout: self.settings.request_timeout, metrics: self.http.clone() }
    }

    fn terms(&self, advance_id: Uuid, account_id: Uuid, amount: rust_decimal::Decimal) -> AdvanceTerms {
        AdvanceTerms {
            advance_id,
            account_id,
            amount,
            payments: self.settings.advance_payments,
            interval_ms: u64::try_from(self.settings.payment_interval.as_millis()).unwrap_or(u64::MAX),
            max_failed_extra_payments: self.settings.max_failed_extra_payments,
        }
    }

    /// Starts the advance's workflow and waits for its grant in one call (update-with-start: the start and the
    /// `await_grant` update together), for at most `GRANT_WAIT`. A workflow already running with this id is
    /// joined, not started again; one that has closed is left alone. Returns the advance once its grant is
    /// decided, or `None` when the answer must come from the database (it has closed, or the grant takes longer).
    async fn start(&self, terms: &AdvanceTerms) -> ApiResult<Option<Advance>> {
        let attributes = SearchAttributes::new([
            search::ACCOUNT_ID.value_set(terms.account_id.to_string()),
            search::STATUS.value_set(AdvanceStatus::Granting.as_str().to_owned()),
        ]);
        let options = WorkflowUpdateWithStartOptions::new(
            self.settings.temporal.task_queue.clone(),
            workflow_id(terms.advance_id),
            WorkflowIdConflictPolicy::UseExisting,
        )
        .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
        .search_attributes(attributes)
        .static_summary(format!("Advance of {} to account {}", terms.amount, terms.account_id))
        .build();
        let call = self.temporal.execute_update_with_start_workflow(
            AdvanceWorkflow::run,
            AdvanceInput::from(terms.clone()),
            AdvanceWorkflow::await_grant,
            (),
            options,
        );
        let advance_id = terms.advance_id;
        match tokio::time::timeout(self.settings.grant_wait, call).await {
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
            Err(_) => match temporal::advance_not_running(&self.temporal, advance_id).await {
                Ok(Some(temporal_says)) if temporal_says == temporal::NO_SUCH_WORKFLOW => {
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
    async fn live(&self, advance_id: Uuid) -> Option<Advance> {
        let handle = self.temporal.get_workflow_handle::<AdvanceWorkflow>(workflow_id(advance_id));
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

    /// What Temporal says of an advance's workflow when it is not running (`None` while it runs, or when
    /// Temporal cannot be asked: the database's copy answers then).
    async fn not_running(&self, advance_id: Uuid) -> Option<String> {
        temporal::advance_not_running(&self.temporal, advance_id).await.unwrap_or_else(|error| {
            tracing::debug!(%advance_id, error = format!("{error:#}"), "describe failed; answering from the database");
            None
        })
    }

    /// The freshest view: the workflow's state while the advance is open, else the database's copy; an open
    /// advance whose workflow is not running says so.
    async fn current(&self, advance_id: Uuid) -> ApiResult<AdvanceView> {
        let stored = self.store.get(advance_id).await?;
        let stored = stored.ok_or_else(|| ApiError::NotFound(format!("advance {advance_id} does not exist")))?;
        if !stored.status.is_open() {
            return Ok(AdvanceView::from(&stored));
        }
        // A query would still answer from a terminated workflow's last state, so ask whether it runs first.
        if let Some(temporal_says) = self.not_running(advance_id).await {
            return Ok(AdvanceView::not_running(&stored, &temporal_says));
        }
        Ok(match self.live(advance_id).await {
            Some(live) if live.revision >= stored.revision => AdvanceView::from(&live),
            _ => AdvanceView::from(&stored),
        })
    }
}

fn advance_response(status: StatusCode, advance: &Advance, replayed: bool) -> Response {
    let mut response = (status, Json(AdvanceView::from(advance))).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Grants an advance and schedules its payments, as a durable Temporal workflow.
#[utoipa::path(
    post, path = "/api/v1/advances", tag = "advances",
    request_body = CreateAdvanceRequest,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]+$", description = "The same key is the same advance: it never starts twice")),
    responses(
        (status = 201, description = "Started; `status` is `active` once the grant is made (`granting` if it took longer than GRANT_WAIT)", body = AdvanceView),
        (status = 400, description = "Malformed JSON or ids", body = ErrorBody),
        (status = 404, description = "The account does not exist", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 422, description = "Invalid amount, or the key/advance id already used for another advance", body = ErrorBody),
        (status = 503, description = "The accounts-service, Temporal or the database is unavailable", body = ErrorBody),
    )
)]
pub async fn create_advance(
    State(state): State<ApiState>,
    caller: Caller,
    OptionalIdempotencyKey(key): OptionalIdempotencyKey,
    ApiJson(request): ApiJson<CreateAdvanceRequest>,
) -> ApiResult<Response> {
    let amount =
        request.amount.validate().map_err(|error| ApiError::validation("invalid_amount", error.to_string()))?;
    let advance_id = request
        .advance_id
        .or_else(|| key.as_ref().map(|key| advance_id_for_key(&caller.name, key.as_str())))
        .unwrap_or_else(Uuid::new_v4);
    let terms = state.terms(advance_id, request.account_id, amount.value());
    terms.validate().map_err(|error| ApiError::validation("invalid_amount", error.to_string()))?;
    match state.ledger.account(terms.account_id).await {
        Ok(_) => {}
        Err(LedgerError::Api { status: 404, .. }) => {
            return Err(ApiError::NotFound(format!("account {} does not exist", terms.account_id)))
        }
        Err(error) => {
            tracing::warn!(%error, "checking the account failed");
            return Err(ApiError::UpstreamUnavailable("the accounts-service".into()));
        }
    }
    let (created, terms) = match state.store.register(&Advance::new(terms.clone())).await? {
        Registered::Created => (true, terms),
        Registered::Exists(existing) if existing.account_id == terms.account_id && existing.amount == terms.amount => {
            (false, *existing)
        }
        Registered::Exists(_) => return Err(ApiError::IdempotencyKeyReused),
    };
    let decided = match state.start(&terms).await {
        Ok(decided) => decided,
        Err(error) => {
            if created {
                state.store.forget_unstarted(terms.advance_id).await?;
            }
            return Err(error);
        }
    };
    let advance = match decided {
        Some(advance) => advance,
        None => match state.live(terms.advance_id).await {
            Some(live) => live,
            None => state.store.get(terms.advance_id).await?.unwrap_or_else(|| Advance::new(terms.clone())),
        },
    };
    Ok(advance_response(StatusCode::CREATED, &advance, !created))
}

/// Reads an advance: the live workflow state while it runs, the stored state once it has closed.
#[utoipa::path(
    get, path = "/api/v1/advances/{advance_id}", tag = "advances",
    params(("advance_id" = Uuid, Path, description = "The advance's id")),
    responses(
        (status = 200, description = "The advance and every payment", body = AdvanceView),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 404, description = "No such advance", body = ErrorBody),
    )
)]
pub async fn get_advance(State(state): State<ApiState>, ApiPath(advance_id): ApiPath<Uuid>) -> ApiResult<Response> {
    Ok((StatusCode::OK, Json(state.current(advance_id).await?)).into_response())
}

/// A stable id for advances created with an `Idempotency-Key`: the same client's same key is the same advance;
/// another client's same key is another advance.
pub fn advance_id_for_key(client: &str, key: &str) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x5f0c_8a2e_6b1d_4c3a_9e7f_2d4b_8a6c_1e30);
    // A NUL cannot occur in a client name or a key, so no two (client, key) pairs share a name.
    Uuid::new_v5(&NAMESPACE, format!("{client}\0{key}").as_bytes())
}

/// The filters of the advances list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub account_id: Option<Uuid>,
    /// `granting`, `active`, `completed`, `failed`, `defaulted` or `cancelled`.
    #[param(pattern = "^(granting|active|completed|failed|defaulted|cancelled)$")]
    pub status: Option<String>,
    /// At most this many, newest first (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

fn limit(value: Option<i64>) -> ApiResult<i64> {
    let limit = value.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::validation("invalid_limit", format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    Ok(limit)
}

/// Lists advances newest first, from the database's copy of each workflow's state.
#[utoipa::path(
    get, path = "/api/v1/advances", tag = "advances",
    params(ListQuery),
    responses(
        (status = 200, description = "The advances", body = AdvanceList),
        (status = 400, description = "Malformed parameter", body = ErrorBody),
        (status = 422, description = "Unknown status or limit out of range", body = ErrorBody),
    )
)]
pub async fn list_advances(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<AdvanceList>> {
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(AdvanceStatus::parse(text).ok_or_else(|| {
            ApiError::validation(
                "invalid_status",
                format!("status {text:?} is not one of granting, active, completed, failed, defaulted, cancelled"),
            )
        })?),
    };
    let advances = state.store.list(query.account_id, status, limit(query.limit)?).await?;
    Ok(Json(AdvanceList { advances: advances.iter().map(AdvanceView::from).collect() }))
}

/// The alerts' list parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// At most this many, newest first (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Lists alerts newest first: defaults and reconciliation mismatches.
#[utoipa::path(
    get, path = "/api/v1/alerts", tag = "advances",
    params(AlertQuery),
    responses(
        (status = 200, description = "The alerts", body = AlertList),
        (status = 400, description = "Malformed parameter", body = ErrorBody),
        (status = 422, description = "Limit out of range", body = ErrorBody),
    )
)]
pub async fn list_alerts(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<AlertQuery>,
) -> ApiResult<Json<AlertList>> {
    let alerts = state.store.alerts(limit(query.limit)?).await?;
    Ok(Json(AlertList { alerts: alerts.into_iter().map(AlertView::from).collect() }))
}

#[derive(Clone, Copy)]
enum Command {
    Cancel,
    PayOff,
    Pause,
    Resume,
}

async fn command(state: &ApiState, advance_id: Uuid, command: Command, request: CommandRequest) -> ApiResult<Response> {
    let note = request.reason.unwrap_or_default();
    if note.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::validation(
            "invalid_reason",
            format!("reason may be at most {MAX_REASON_CHARS} characters"),
        ));
    }
    let stored = state.store.get(advance_id).await?;
    let stored = stored.ok_or_else(|| ApiError::NotFound(format!("advance {advance_id} does not exist")))?;
    let not_active = |detail: String| ApiError::Conflict { code: "advance_not_active", message: detail };
    if !stored.status.is_open() {
        return Err(not_active(format!("the advance is {}, not active", stored.status.as_str())));
    }
    let handle = state.temporal.get_workflow_handle::<AdvanceWorkflow>(workflow_id(advance_id));
    let options = WorkflowExecuteUpdateOptions::default();
    let result = match command {
        Command::Cancel => {
            let reason = if note.is_empty() { "cancelled by an operator".to_owned() } else { note };
            handle.execute_update(AdvanceWorkflow::cancel, reason, options).await
        }
        Command::PayOff => handle.execute_update(AdvanceWorkflow::pay_off, note, options).await,
        Command::Pause => {
            let reason = if note.is_empty() { "paused by an operator".to_owned() } else { note };
            handle.execute_update(AdvanceWorkflow::pause, reason, options).await
        }
        Command::Resume => handle.execute_update(AdvanceWorkflow::resume, note, options).await,
    };
    match result {
        Ok(Some(advance)) => Ok(advance_response(StatusCode::OK, &advance, false)),
        Ok(None) => Err(not_active("the advance is not active".into())),
        Err(WorkflowUpdateError::Failed(failure)) => Err(not_active(failure.message.clone())),
        Err(WorkflowUpdateError::NotFound(_)) => Err(not_active("the advance's workflow is not running".into())),
        Err(error) => {
            tracing::warn!(%advance_id, %error, "operator command failed");
            Err(ApiError::UpstreamUnavailable("Temporal".into()))
        }
    }
}

/// Stops future collection of an active advance; a withdrawal already under way finishes and is recorded.
#[utoipa::path(
    post, path = "/api/v1/advances/{advance_id}/cancel", tag = "advances",
    params(("advance_id" = Uuid, Path, description = "The advance's id")),
    request_body(content = Option<CommandRequest>, description = "Optional; an empty body counts as {}"),
    responses(
        (status = 200, description = "Cancelled", body = AdvanceView),
        (status = 400, description = "Malformed id or body", body = ErrorBody),
        (status = 404, description = "No such advance", body = ErrorBody),
        (status = 409, description = "The advance is not active", body = ErrorBody),
        (status = 422, description = "Reason over 500 characters", body = ErrorBody),
        (status = 503, description = "Temporal is unavailable", body = ErrorBody),
    )
)]
pub async fn cancel_advance(
    State(state): State<ApiState>,
    ApiPath(advance_id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<CommandRequest>,
) -> ApiResult<Response> {
    command(&state, advance_id, Command::Cancel, request).await
}

/// Collects everything outstanding now, in one withdrawal (if it fails, it rolls over like any payment).
#[utoipa::path(
    post, path = "/api/v1/advances/{advance_id}/pay_off", tag = "advances",
    params(("advance_id" = Uuid, Path, description = "The advance's id")),
    request_body(content = Option<CommandRequest>, description = "Optional; an empty body counts as {}"),
    responses(
        (status = 200, description = "The outstanding amount is now one payment, due now", body = AdvanceView),
        (status = 400, description = "Malformed id or body", body = ErrorBody),
        (status = 404, description = "No such advance", body = ErrorBody),
        (status = 409, description = "The advance is not active or nothing is scheduled", body = ErrorBody),
        (status = 422, description = "Reason over 500 characters", body = ErrorBody),
        (status = 503, description = "Temporal is unavailable", body = ErrorBody),
    )
)]
pub async fn pay_off_advance(
    State(state): State<ApiState>,
    ApiPath(advance_id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<CommandRequest>,
) -> ApiResult<Response> {
    command(&state, advance_id, Command::PayOff, request).await
}

/// Stops collection of an active advance until it is resumed; a withdrawal already under way finishes.
#[utoipa::path(
    post, path = "/api/v1/advances/{advance_id}/pause", tag = "advances",
    params(("advance_id" = Uuid, Path, description = "The advance's id")),
    request_body(content = Option<CommandRequest>, description = "Optional; an empty body counts as {}"),
    responses(
        (status = 200, description = "Paused; `paused_since` is set", body = AdvanceView),
        (status = 400, description = "Malformed id or body", body = ErrorBody),
        (status = 404, description = "No such advance", body = ErrorBody),
        (status = 409, description = "The advance is not active, or already paused", body = ErrorBody),
        (status = 422, description = "Reason over 500 characters", body = ErrorBody),
        (status = 503, description = "Temporal is unavailable", body = ErrorBody),
    )
)]
pub async fn pause_advance(
    State(state): State<ApiState>,
    ApiPath(advance_id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<CommandRequest>,
) -> ApiResult<Response> {
    command(&state, advance_id, Command::Pause, request).await
}

/// Continues collection of a paused advance: every payment still scheduled moves later by the time it was paused.
#[utoipa::path(
    post, path = "/api/v1/advances/{advance_id}/resume", tag = "advances",
    params(("advance_id" = Uuid, Path, description = "The advance's id")),
    request_body(content = Option<CommandRequest>, description = "Optional; an empty body counts as {}"),
    responses(
        (status = 200, description = "Resumed, with the shifted due times", body = AdvanceView),
        (status = 400, description = "Malformed id or body", body = ErrorBody),
        (status = 404, description = "No such advance", body = ErrorBody),
        (status = 409, description = "The advance is not active, or not paused", body = ErrorBody),
        (status = 422, description = "Reason over 500 characters", body = ErrorBody),
        (status = 503, description = "Temporal is unavailable", body = ErrorBody),
    )
)]
pub async fn resume_advance(
    State(state): State<ApiState>,
    ApiPath(advance_id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<CommandRequest>,
) -> ApiResult<Response> {
    command(&state, advance_id, Command::Resume, request).await
}

/// The health check's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    pub database: String,
    pub temporal: String,
}

/// Checks the database and Temporal.
#[utoipa::path(
    get, path = "/health", tag = "system", security(()),
    responses(
        (status = 200, description = "Up", body = Health),
        (status = 503, description = "The database or Temporal does not answer", body = Health),
    )
)]
pub async fn health(State(state): State<ApiState>) -> Response {
    let database = health::check_database(state.store.pool()).await;
    let temporal = match temporal::check(&state.temporal, &state.settings.temporal.namespace).await {
        Ok(()) => health::OK.to_owned(),
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), "health check: Temporal does not answer");
            health::UNAVAILABLE.to_owned()
        }
    };
    let status = health::status_of(&[&database, &temporal]);
    health::respond(status, Health { status, database, temporal })
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get, path = "/metrics", tag = "system", security(()),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<ApiState>) -> ApiResult<Response> {
    service_kit::metrics::metrics_response(&state.registry)
}

/// The advances API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "advances-api",
        description = "Advances repaid in weekly payments, each advance a durable Temporal workflow. Money is exact \
                       decimal: send amounts as JSON numbers or strings; they come back as JSON numbers with their \
                       exact value. Errors are `{\"error\":{\"code\",\"message\"}}`."
    ),
    paths(
        create_advance, list_advances, get_advance, cancel_advance, pay_off_advance, pause_advance, resume_advance,
        list_alerts, health, metrics
    ),
    modifiers(&BearerAuth, &CommonResponses),
    security(("bearer" = [])),
    tags(
        (name = "advances", description = "Advances, their payments, operator commands and alerts"),
        (name = "system", description = "Health and metrics (no token needed)"),
    )
)]
pub struct ApiDoc;

/// The whole HTTP application.
pub fn app(state: ApiState) -> Router {
    let policy = state.policy();
    let api = Router::new()
        .route(
            "/api/v1/advances",
            scoped(post(create_advance), scopes::ADVANCES_WRITE)
                .merge(scoped(get(list_advances), scopes::ADVANCES_READ)),
        )
        .route("/api/v1/advances/{advance_id}", scoped(get(get_advance), scopes::ADVANCES_READ))
        .route("/api/v1/advances/{advance_id}/cancel", scoped(post(cancel_advance), scopes::ADVANCES_OPERATE))
        .route("/api/v1/advances/{advance_id}/pay_off", scoped(post(pay_off_advance), scopes::ADVANCES_OPERATE))
        .route("/api/v1/advances/{advance_id}/pause", scoped(post(pause_advance), scopes::ADVANCES_OPERATE))
        .route("/api/v1/advances/{advance_id}/resume", scoped(post(resume_advance), scopes::ADVANCES_OPERATE))
        .route("/api/v1/alerts", scoped(get(list_alerts), scopes::ALERTS_READ))
        .route("/api/v1/openapi.json", get(|| async { Json(ApiDoc::openapi()) }));
    let docs = SwaggerUi::new("/docs").url("/docs/openapi.json", ApiDoc::openapi());
    let router = Router::new()
        .merge(layers::protect(api, &state.auth))
        .merge(docs)
        .route("/health", get(health))
        .route("/metrics", get(metrics));
    layers::standard_layers(router, &policy).with_state(state)
}

/// Connects to the database and Temporal, then serves on `listener` until `shutdown` completes.
pub async fn run(
    settings: ApiSettings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let pool = advances_store::connect(settings.database_url.expose(), 16).await?;
    let client = temporal::connect(&settings.temporal, "advances-api", Duration::from_secs(60)).await?;
    temporal::ensure_search_attributes(&client, &settings.temporal.namespace).await?;
    let limits = settings.server;
    let state = ApiState::new(settings, Store::new(pool.clone()), client)?;
    tracing::info!(addr = %listener.local_addr()?, "advances-api listening");
    let served = service_kit::serve::serve(listener, app(state), shutdown, limits).await;
    pool.close().await;
    served
}
