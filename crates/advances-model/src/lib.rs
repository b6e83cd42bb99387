//! The advance model, as pure code (no Temporal, no clock, no I/O): what the workflows run on, the store
//! mirrors and the API shows.
//!
//! - [`terms`]: an advance's terms and how its amount splits into payments;
//! - [`product`]: the products operators define, and what a request under one may ask;
//! - [`keys`]: ids and ledger keys derived from business ids;
//! - [`status`]: the statuses of an advance and its payments;
//! - [`advance`]: the state and its payment schedule (grant, collect, roll over, default);
//! - [`operator`]: pay off, pause, resume, cancel;
//! - [`servicing`]: reschedule, prepay, write off, and a pay-off's quote;
//! - [`mirror`]: what changed since an earlier state, for the database's copy;
//! - [`exposure`]: what an advance adds to the lender's book;
//! - [`happened`]: what a change of an advance tells the world (its events);
//! - [`alerts`] and [`reconcile`]: what operators are told, and what a reconciliation run reports.
//!
//! Every state change keeps the seed's formula, generalised: `paid + scheduled + processing + written off =
//! amount`, while the advance is open and once it is written off.

pub mod advance;
pub mod alerts;
pub mod exposure;
pub mod happened;
pub mod keys;
pub mod mirror;
pub mod operator;
pub mod product;
pub mod reconcile;
pub mod servicing;
pub mod status;
pub mod terms;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod testing;

pub use advance::{Advance, Cover, Pause, Payment, ScheduleError};
pub use alerts::{Alert, AlertKind};
pub use exposure::Exposure;
pub use happened::{happened, Happened};
pub use keys::{grant_key, payment_id, payment_key};
pub use mirror::{AdvanceChange, ChangeError, Mirror};
pub use product::{valid_product_name, Product, ProductError, RequestError};
pub use reconcile::{IdRange, RangeProgress, ReconcileReport};
pub use servicing::{Prepay, Reschedule};
pub use status::{AdvanceStatus, PaymentKind, PaymentStatus};
pub use terms::{split, AdvanceTerms, TermsError, MAX_PAYMENTS};
