//! The service kit: what every HTTP service of ours shares, so each service keeps only its own routes and rules.
//!
//! - [`error`]: the one error type and its JSON envelope; [`extract`]: extractors that reject with it.
//! - [`auth`] and [`clients`]: callers with scoped bearer tokens, and the `client` command line.
//! - [`layers`]: request ids, tracing, metrics, timeout, body limit, JSON 404/405/500, authentication.
//! - [`health`] and [`metrics`]: `/health` and `/metrics` plumbing; [`openapi`]: what every spec shares.
//! - [`settings`]: one environment reader and one duration parser; [`telemetry`]: logging set-up;
//!   [`serve`]: graceful shutdown with a deadline; [`secret`]: values `Debug` never prints; [`sqlstate`]: PostgreSQL's error codes by name.

pub mod auth;
pub mod clients;
pub mod error;
pub mod extract;
pub mod health;
pub mod idempotency_key;
pub mod layers;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod secret;
pub mod serve;
pub mod settings;
pub mod sqlstate;
pub mod telemetry;

pub use error::{ApiError, ApiResult};
pub use idempotency_key::IdempotencyKey;
pub use money::ErrorBody;
pub use secret::Secret;
