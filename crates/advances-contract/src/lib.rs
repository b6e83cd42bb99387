//! The advances API's contract: the request and response types the API serializes and its clients read
//! ([`types`]), and a typed client ([`client`], feature `client`), as `ledger-contract` is for the ledger. No
//! business logic: the rules are the model's and the API's.

#[cfg(feature = "client")]
pub mod client;
pub mod events;
pub mod types;
mod views;

#[cfg(feature = "client")]
pub use client::{AdvancesClient, AdvancesError, Command, Created};
pub use types::*;
