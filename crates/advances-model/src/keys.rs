//! The ids and ledger keys derived from business ids: a retried activity or a replayed workflow derives the
//! same ones, so money moves at most once under them.

use uuid::Uuid;

/// A payment's id: derived from the advance and the payment's number, so the API can list the payments
/// before the workflow runs, and a replay of the workflow finds the same ids.
pub fn payment_id(advance_id: Uuid, number: u32) -> Uuid {
    Uuid::new_v5(&advance_id, format!("payment-{number}").as_bytes())
}

/// The ledger key of a payment's withdrawal.
pub fn payment_key(payment_id: Uuid) -> String {
    format!("payment-{payment_id}")
}

/// The ledger key of an advance's grant.
pub fn grant_key(advance_id: Uuid) -> String {
    format!("advance-{advance_id}-grant")
}
