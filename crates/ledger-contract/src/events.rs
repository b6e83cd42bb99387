//! The ledger's event types (`GET /api/v1/events`, webhooks): each event's `data` is the object as the API's
//! own `GET` shows it at the moment of the change.

use crate::{HoldStatus, TransactionStatus};

/// An account was opened (`data`: the account).
pub const ACCOUNT_CREATED: &str = "account.created";
/// A transaction row was recorded with `status: success`: a transfer, a bank transaction, a hold's capture or
/// its release (`data`: the transaction).
pub const TRANSACTION_SUCCEEDED: &str = "transaction.succeeded";
/// A transaction was recorded with `status: fail` (insufficient funds); nothing moved (`data`: the transaction).
pub const TRANSACTION_FAILED: &str = "transaction.failed";
/// A hold reserves money (`data`: the hold).
pub const HOLD_PLACED: &str = "hold.placed";
/// A hold was refused: the account could not cover it.
pub const HOLD_FAILED: &str = "hold.failed";
pub const HOLD_CAPTURED: &str = "hold.captured";
pub const HOLD_VOIDED: &str = "hold.voided";
pub const HOLD_EXPIRED: &str = "hold.expired";
/// An operator's alert (a webhook endpoint disabled): `data` has `kind`, `message`, `created_at`.
pub const ALERT_RAISED: &str = "alert.raised";

/// Every type the ledger writes.
pub const ALL: [&str; 9] = [
    ACCOUNT_CREATED,
    TRANSACTION_SUCCEEDED,
    TRANSACTION_FAILED,
    HOLD_PLACED,
    HOLD_FAILED,
    HOLD_CAPTURED,
    HOLD_VOIDED,
    HOLD_EXPIRED,
    ALERT_RAISED,
];

/// The event a transaction of this status makes.
pub fn of_transaction(status: TransactionStatus) -> &'static str {
    match status {
        TransactionStatus::Success => TRANSACTION_SUCCEEDED,
        TransactionStatus::Fail => TRANSACTION_FAILED,
    }
}

/// The event a hold makes on reaching this status.
pub fn of_hold(status: HoldStatus) -> &'static str {
    match status {
        HoldStatus::Pending => HOLD_PLACED,
        HoldStatus::Fail => HOLD_FAILED,
        HoldStatus::Captured => HOLD_CAPTURED,
        HoldStatus::Voided => HOLD_VOIDED,
        HoldStatus::Expired => HOLD_EXPIRED,
    }
}
