//! What every handler can reach, and the freshest view of an advance.

use std::sync::Arc;
use std::time::Duration;

use advances_model::Advance;
use advances_store::Store;
use ledger_contract::LedgerClient;
use prometheus::Registry;
use service_kit::auth::Authenticator;
use service_kit::layers::HttpPolicy;
use service_kit::metrics::HttpMetrics;
use service_kit::{ApiError, ApiResult};
use uuid::Uuid;

use crate::config::ApiSettings;
use crate::gateway::Gateway;
use crate::routes::book::BookGauges;
use crate::scopes;
use crate::views::{advance_view, not_running_view};
use advances_contract::AdvanceView;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub settings: Arc<ApiSettings>,
    pub store: Store,
    pub temporal: Gateway,
    pub ledger: LedgerClient,
    pub registry: Registry,
    pub http: HttpMetrics,
    pub book_gauges: BookGauges,
    pub auth: Authenticator,
    /// The event feed and the webhooks.
    pub events: events::Events,
}

impl ApiState {
    pub fn new(settings: ApiSettings, store: Store, temporal: Gateway) -> anyhow::Result<Self> {
        let ledger = LedgerClient::with_ca(
            settings.accounts_url.expose(),
            settings.accounts_api_token.as_ref().map(|token| token.expose().to_owned()),
            Duration::from_secs(5),
            settings.accounts_ca.as_deref(),
        )?;
        let registry = Registry::new();
        let http = HttpMetrics::register(&registry)?;
        let book_gauges = BookGauges::register(&registry)?;
        let auth =
            Authenticator::new(settings.auth, scopes::TOKEN_PREFIX, store.pool().clone(), settings.auth_cache_ttl);
        let events = events::Events::new(
            store.pool().clone(),
            settings.events.clone(),
            &advances_contract::events::ALL,
            Arc::new(events::subjects::Inline),
            events::EventMetrics::register(&registry)?,
            settings.request_timeout,
        );
        Ok(Self { settings: Arc::new(settings), store, temporal, ledger, registry, http, book_gauges, auth, events })
    }

    pub fn policy(&self) -> HttpPolicy {
        HttpPolicy { request_timeout: self.settings.request_timeout, metrics: self.http.clone() }
    }

    /// The freshest view: the workflow's state while the advance is open, else the database's copy; an open
    /// advance whose workflow is not running says so.
    pub async fn current(&self, advance_id: Uuid) -> ApiResult<AdvanceView> {
        let stored = self.stored(advance_id).await?;
        if !stored.status.is_open() {
            return Ok(advance_view(&stored));
        }
        // A query would still answer from a terminated workflow's last state, so ask whether it runs first.
        if let Some(temporal_says) = self.temporal.not_running(advance_id).await {
            // The workflow mirrors its end before it completes: one that ended between the read above and the
            // question has its closed state stored by now, and is not stuck.
            let stored = self.stored(advance_id).await?;
            if !stored.status.is_open() {
                return Ok(advance_view(&stored));
            }
            return Ok(not_running_view(&stored, &temporal_says.to_string()));
        }
        Ok(advance_view(&self.live_or(stored).await))
    }

    /// The freshest state of the model: the workflow's while it runs and answers, else the database's copy.
    pub async fn freshest(&self, advance_id: Uuid) -> ApiResult<Advance> {
        let stored = self.stored(advance_id).await?;
        Ok(if stored.status.is_open() { self.live_or(stored).await } else { stored })
    }

    async fn stored(&self, advance_id: Uuid) -> ApiResult<Advance> {
        let stored = self.store.get(advance_id).await?;
        stored.ok_or_else(|| ApiError::NotFound(format!("advance {advance_id} does not exist")))
    }

    async fn live_or(&self, stored: Advance) -> Advance {
        match self.temporal.live(stored.terms.advance_id).await {
            Some(live) if live.revision >= stored.revision => live,
            _ => stored,
        }
    }
}
