//! The model's states as the API shows them: the one conversion the API's answers and the events' `data` share.

use advances_model::{Advance, Payment};

use crate::types::{AdvanceView, PaymentView};

impl From<&Advance> for AdvanceView {
    fn from(advance: &Advance) -> Self {
        Self {
            advance_id: advance.terms.advance_id,
            account_id: advance.terms.account_id,
            amount: advance.terms.amount,
            product: advance.terms.product.clone(),
            status: advance.status.into(),
            status_reason: advance.status_reason.clone(),
            granted_at: advance.granted_at,
            grant_transaction_id: advance.grant_transaction_id,
            paid_amount: advance.paid_amount(),
            outstanding_amount: advance.outstanding_amount(),
            written_off_amount: advance.written_off,
            payment_interval_ms: advance.terms.interval_ms,
            paused_since: advance.paused.as_ref().map(|pause| pause.since),
            pause_reason: advance.paused.as_ref().map(|pause| pause.reason.clone()),
            payments: advance.payments.iter().map(PaymentView::from).collect(),
        }
    }
}

impl From<&Payment> for PaymentView {
    fn from(payment: &Payment) -> Self {
        Self {
            payment_id: payment.payment_id,
            number: payment.number,
            amount: payment.amount,
            due_at: payment.due_at,
            status: payment.status,
            transaction_id: payment.transaction_id,
            failure_reason: payment.failure_reason.clone(),
            moved_to: payment.moved_to,
            kind: payment.kind,
        }
    }
}
