//! Money and the other wire formats both services and the workflows share.
//!
//! - [`Amount`]: a positive amount of at most two decimal places and at most 10^12, parsed exactly; the one
//!   place that rule lives.
//! - [`decimal`] and [`timestamp`]: how decimals and times look in JSON.
//! - [`ErrorBody`]: the error envelope of every response that is not a success; with the feature `client`,
//!   `client`: the HTTP layer every typed client of our services shares.
//!
//! No web framework and no database here: a client, a workflow or a service can all depend on it.

pub mod amount;
#[cfg(feature = "client")]
pub mod client;
pub mod decimal;
pub mod error_body;
pub mod schema;
pub mod timestamp;

pub use amount::{Amount, AmountError, AmountInput, MAX_AMOUNT};
pub use error_body::{ErrorBody, ErrorDetail};
