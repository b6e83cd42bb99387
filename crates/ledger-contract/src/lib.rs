//! The accounts-service's contract: every request and response type it speaks, and a typed client.
//!
//! The service serializes these very types and its clients (the advances worker and API, the tests, the
//! benchmark) read them, so a change to the wire format is one edit both sides see at compile time. No business
//! logic lives here: the rules that refuse a request are the service's.

#[cfg(feature = "client")]
pub mod client;
pub mod events;
pub mod holds;
pub mod scopes;
pub mod types;

#[cfg(feature = "client")]
pub use client::{LedgerClient, LedgerError};
pub use holds::*;
pub use types::*;
