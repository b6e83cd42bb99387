//! The advances service's event types (`GET /api/v1/events`, webhooks), and the `data` of a payment's events.
//! An `advance.*` event's `data` is the advance as `GET /advances/{id}` shows it after the change.

use advances_model::{Advance, Happened, Payment};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::types::PaymentView;

pub const ADVANCE_GRANTED: &str = "advance.granted";
/// The ledger refused the grant: nothing was lent.
pub const ADVANCE_REFUSED: &str = "advance.refused";
pub const PAYMENT_PAID: &str = "payment.paid";
/// A payment was refused; `data.moved_to` is the payment its amount now belongs to.
pub const PAYMENT_FAILED: &str = "payment.failed";
/// Payments were replaced by a reschedule, a prepayment or a pay-off.
pub const ADVANCE_RESCHEDULED: &str = "advance.rescheduled";
pub const ADVANCE_PAUSED: &str = "advance.paused";
pub const ADVANCE_RESUMED: &str = "advance.resumed";
pub const ADVANCE_COMPLETED: &str = "advance.completed";
pub const ADVANCE_DEFAULTED: &str = "advance.defaulted";
pub const ADVANCE_CANCELLED: &str = "advance.cancelled";
pub const ADVANCE_WRITTEN_OFF: &str = "advance.written_off";
/// An operator's alert (`data`: the alert as `GET /alerts` shows it, or a disabled webhook's).
pub const ALERT_RAISED: &str = "alert.raised";

/// Every type the advances service writes.
pub const ALL: [&str; 12] = [
    ADVANCE_GRANTED,
    ADVANCE_REFUSED,
    PAYMENT_PAID,
    PAYMENT_FAILED,
    ADVANCE_RESCHEDULED,
    ADVANCE_PAUSED,
    ADVANCE_RESUMED,
    ADVANCE_COMPLETED,
    ADVANCE_DEFAULTED,
    ADVANCE_CANCELLED,
    ADVANCE_WRITTEN_OFF,
    ALERT_RAISED,
];

/// The type of what happened.
pub fn type_of(happened: Happened) -> &'static str {
    match happened {
        Happened::Granted => ADVANCE_GRANTED,
        Happened::Refused => ADVANCE_REFUSED,
        Happened::PaymentPaid(_) => PAYMENT_PAID,
        Happened::PaymentFailed(_) => PAYMENT_FAILED,
        Happened::Rescheduled => ADVANCE_RESCHEDULED,
        Happened::Paused => ADVANCE_PAUSED,
        Happened::Resumed => ADVANCE_RESUMED,
        Happened::Completed => ADVANCE_COMPLETED,
        Happened::Defaulted => ADVANCE_DEFAULTED,
        Happened::Cancelled => ADVANCE_CANCELLED,
        Happened::WrittenOff => ADVANCE_WRITTEN_OFF,
    }
}

/// The `data` of `payment.paid` and `payment.failed`: the payment, its advance, and for a failed one the
/// payment its amount moved to (when it will be tried again, and for how much).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PaymentEvent {
    pub advance_id: Uuid,
    pub account_id: Uuid,
    pub payment: PaymentView,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to_payment: Option<PaymentView>,
}

impl PaymentEvent {
    /// Payment `number` of `advance`, as it stands in it.
    pub fn of(advance: &Advance, number: u32) -> Option<Self> {
        let find = |n: u32| advance.payments.iter().find(|p| p.number == n);
        let payment: &Payment = find(number)?;
        Some(Self {
            advance_id: advance.terms.advance_id,
            account_id: advance.terms.account_id,
            payment: payment.into(),
            moved_to_payment: payment.moved_to.and_then(find).map(PaymentView::from),
        })
    }
}
