//! Who is calling, and may they: every `/api/` request presents a client's bearer token (401 without a valid
//! one); each route names the scope it needs (403 without it). Both are decided before the handler reads
//! the body, so a refused request records nothing and moves nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use sqlx::PgPool;

use crate::clients::{self, ANONYMOUS};
use crate::error::ApiError;

/// The client a request was made by, and what it may do.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The client's name: recorded with what it writes, and the namespace of its idempotency keys.
    pub name: Arc<str>,
    scopes: Arc<[String]>,
    /// True when authentication is off and this caller stands for anyone.
    anyone: bool,
}

impl Caller {
    /// A caller with these scopes (tests; the services build callers from their database).
    pub fn new(name: &str, scopes: Vec<String>) -> Self {
        Self { name: name.into(), scopes: scopes.into(), anyone: false }
    }

    /// Whoever calls when authentication is off: may do everything, named [`ANONYMOUS`].
    pub fn anyone() -> Self {
        Self { name: ANONYMOUS.into(), scopes: Arc::new([]), anyone: true }
    }

    pub fn may(&self, scope: &str) -> bool {
        self.anyone || self.scopes.iter().any(|held| held == scope)
    }
}

/// `AUTH`: `on` (the default) or `off`, for local experiments only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    On,
    Off,
}

impl AuthMode {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        match text {
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            other => anyhow::bail!("AUTH must be on or off, not {other:?}"),
        }
    }
}

/// The most tokens remembered at once; past it the cache starts over (a flood of distinct valid tokens cannot
/// grow memory without bound).
const CACHE_ENTRIES: usize = 10_000;

/// Checks tokens against the `api_clients` table, remembering each answer for `cache_ttl` so that a transfer
/// does not pay a lookup; a revocation therefore takes effect within `cache_ttl`. Unknown tokens are never
/// remembered.
#[derive(Clone)]
pub struct Authenticator {
    mode: AuthMode,
    /// The prefix of this service's tokens (`ledger`, `advances`).
    prefix: &'static str,
    pool: PgPool,
    cache_ttl: Duration,
    cache: Arc<Mutex<TokenCache>>,
}

/// Token hash → the caller it named, and when that was checked.
type TokenCache = HashMap<[u8; 32], (Caller, Instant)>;

impl Authenticator {
    pub fn new(mode: AuthMode, prefix: &'static str, pool: PgPool, cache_ttl: Duration) -> Self {
        if mode == AuthMode::Off {
            tracing::warn!("AUTH=off: every /api/ request is accepted without a token and may do everything");
        }
        Self { mode, prefix, pool, cache_ttl, cache: Arc::default() }
    }

    /// The caller a request's `Authorization` header names.
    pub async fn caller(&self, authorization: Option<&str>) -> Result<Caller, ApiError> {
        if self.mode == AuthMode::Off {
            return Ok(Caller::anyone());
        }
        let token = authorization.and_then(bearer_token).ok_or(ApiError::Unauthorized)?;
        if !clients::well_formed(token, self.prefix) {
            return Err(ApiError::Unauthorized);
        }
        let hash = clients::token_hash(token);
        if let Some(caller) = self.cached(&hash) {
            return Ok(caller);
        }
        let (name, scopes) = clients::find(&self.pool, &hash).await?.ok_or(ApiError::Unauthorized)?;
        let caller = Caller::new(&name, scopes);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(hash, (caller.clone(), Instant::now()));
        }
        Ok(caller)
    }

    fn cached(&self, hash: &[u8; 32]) -> Option<Caller> {
        let cache = self.cache.lock().ok()?;
        let (caller, at) = cache.get(hash)?;
        (at.elapsed() < self.cache_ttl).then(|| caller.clone())
    }
}

/// The token of `Bearer <token>`, the scheme matched case-insensitively (RFC 9110 §11.1).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Authenticates every request of the routes it wraps and hands the [`Caller`] to the handlers.
pub async fn authenticate(State(auth): State<Authenticator>, mut req: Request, next: Next) -> Response {
    let header = req.headers().get(AUTHORIZATION).and_then(|value| value.to_str().ok());
    match auth.caller(header).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(error) => error.into_response(),
    }
}

/// The route answers only callers holding `scope` (403 `forbidden` naming it otherwise).
pub fn scoped<S: Clone + Send + Sync + 'static>(route: MethodRouter<S>, scope: &'static str) -> MethodRouter<S> {
    route.route_layer(axum::middleware::from_fn(move |req: Request, next: Next| async move {
        match req.extensions().get::<Caller>() {
            Some(caller) if caller.may(scope) => next.run(req).await,
            Some(_) => ApiError::Forbidden(scope).into_response(),
            None => ApiError::Unauthorized.into_response(),
        }
    }))
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Caller>().cloned().ok_or(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn a_caller_may_only_what_its_scopes_say_unless_auth_is_off() {
        let caller = Caller::new("demo", vec!["transfers:write".into()]);
        assert!(caller.may("transfers:write"));
        assert!(!caller.may("bank:write"));
        assert!(Caller::anyone().may("bank:write"));
    }
}
